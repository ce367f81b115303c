"""A group: the channels that shrink together, as (module, role, indices) slices.

Channel ``c`` of a group of ``n`` channels is the set of tensor slices ``slices[(module,
role)][c]`` (``k`` indices each: more than one where a channel feeds a Linear through a
flatten, one block of H*W features per channel). Removing channel ``c`` removes all of them.
Roles say which dimension the indices run along:

=========  ==========================================================================
role       slices
=========  ==========================================================================
``out``    Conv2d/Linear output filters: weight dim 0 and the bias (the channel's producers)
``in``     Conv2d/Linear input channels/features: weight dim 1
``dw``     depthwise Conv2d (groups == in == out > 1): weight dim 0 and the bias
``gin``    grouped Conv2d input channels: weight dim 1, index j within each group (the
           channel is input j of every group; the layer's groups each lose it)
``bn``     BatchNorm weight, bias, running mean and variance
``pad_in`` a channel placer's (ZeroPadShortcut's) inputs; ``pad_out``: its outputs
=========  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ROLES = ("out", "in", "dw", "gin", "bn", "pad_in", "pad_out")

Key = tuple[str, str]  # (module name, role)


@dataclass(frozen=True, eq=False)
class Group:
    """``n`` coupled channels. ``name``: the first module (in forward order) producing them;
    ``slices``: (module, role) -> long tensor (n, k) of indices along that role's dimension;
    ``residual``: the channels meet another branch in an addition (e.g. ResNet block outputs)."""

    name: str
    slices: dict[Key, torch.Tensor]
    residual: bool = False

    @property
    def n(self) -> int:
        return next(iter(self.slices.values())).shape[0]

    @property
    def producers(self) -> list[str]:
        """Modules whose output filters are channels of this group."""
        return [module for module, role in self.slices if role == "out"]

    def removal(self, channels: torch.Tensor) -> dict[Key, torch.Tensor]:
        """(module, role) -> indices to remove when removing group channels ``channels`` (1-D)."""
        channels = torch.as_tensor(channels, dtype=torch.long)
        return {key: index[channels].flatten() for key, index in self.slices.items()}

    def __repr__(self) -> str:
        modules = sorted({module for module, _ in self.slices})
        return f"Group({self.name!r}, n={self.n}, modules={len(modules)}, residual={self.residual})"
