"""``PruneConfig``: how fine-grained pruning chooses the weights to mask. It validates itself
once, on construction; every caller (the ``prune_`` verb, the prune job, the CLI, recipes)
builds one and relies on that check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from deepshrink.errors import ConfigError, is_int, is_number
from deepshrink.prune.criteria import CRITERIA, SCOPES
from deepshrink.prune.schedules import SCHEDULES, schedule_amounts


@dataclass(frozen=True)
class PruneConfig:
    """What to prune and how.

    ``sparsity``: the fraction of each selected layer's weights (``scope="layer"``) or of all of
    them together (``scope="global"``) to prune, in [0, 1), for the magnitude and random
    criteria; the std criterion takes ``std_factor`` s >= 0 instead (prune |w| < s * std(w)).
    ``max_layer_sparsity`` (global magnitude only; None: no cap) keeps any layer from losing
    more than that fraction. ``exclude`` holds fnmatch globs of layer names left dense, besides
    the first conv and the classifier unless ``exclude_first_last`` is False (see
    :mod:`deepshrink.prune.select`). ``schedule`` and ``prune_epochs`` apply when pruning during
    training (``linear``/``agp`` ramp up over the first ``prune_epochs`` epochs, default half).
    """

    sparsity: float | None = None
    criterion: str = "magnitude"
    scope: str = "layer"
    std_factor: float | None = None
    max_layer_sparsity: float | None = None
    schedule: str = "oneshot"
    prune_epochs: int | None = None
    exclude: tuple[str, ...] = ()
    exclude_first_last: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", tuple(self.exclude))
        for field, value, options in (("criterion", self.criterion, CRITERIA), ("scope", self.scope, SCOPES),
                                      ("schedule", self.schedule, SCHEDULES)):
            if value not in options:
                self._fail(field, f"must be one of {', '.join(options)}, got {value!r}")
        self._check_amount()
        self._check_cap()
        if self.prune_epochs is not None and not (is_int(self.prune_epochs) and self.prune_epochs >= 1):
            self._fail("prune_epochs", f"must be an integer >= 1, got {self.prune_epochs!r}")
        if not (is_int(self.seed) and self.seed >= 0):
            self._fail("seed", f"must be an integer >= 0, got {self.seed!r}")

    def _fail(self, field: str, problem: str):
        raise ConfigError("PruneConfig", field, problem)

    def _check_amount(self) -> None:
        if self.criterion == "std":
            if self.sparsity is not None:
                self._fail("sparsity", "does not apply to the std criterion: give std_factor")
            if not (is_number(self.std_factor) and math.isfinite(self.std_factor) and self.std_factor >= 0):
                self._fail("std_factor", f"must be a finite number >= 0 for the std criterion, got {self.std_factor!r}")
            return
        if self.std_factor is not None:
            self._fail("std_factor", f"applies to the std criterion only, not {self.criterion}")
        if not (is_number(self.sparsity) and 0.0 <= self.sparsity < 1.0):
            self._fail("sparsity", f"must be in [0, 1), got {self.sparsity!r}")

    def _check_cap(self) -> None:
        cap = self.max_layer_sparsity
        if cap is None:
            return
        if not (is_number(cap) and 0.0 < cap <= 1.0):
            self._fail("max_layer_sparsity", f"must be in (0, 1], got {cap!r}")
        if cap < 1.0 and (self.criterion, self.scope) != ("magnitude", "global"):
            self._fail("max_layer_sparsity", "applies to the magnitude criterion with global scope only")
        if self.sparsity > cap:
            self._fail("max_layer_sparsity", f"{cap} is below the sparsity {self.sparsity}, which then cannot be reached")

    @property
    def amount(self) -> float:
        """What the criterion takes: the sparsity, or the std factor of the std criterion."""
        return self.std_factor if self.criterion == "std" else self.sparsity

    @property
    def layer_cap(self) -> float:
        """``max_layer_sparsity`` as the criteria take it (1.0: no cap)."""
        return 1.0 if self.max_layer_sparsity is None else float(self.max_layer_sparsity)

    def check_epochs(self, epochs: int) -> None:
        """A :class:`ConfigError` when ``prune_epochs`` does not fit in ``epochs`` epochs of training."""
        if self.prune_epochs is not None and self.prune_epochs > max(epochs, 1):
            self._fail("prune_epochs", f"must be at most the {max(epochs, 1)} training epochs, got {self.prune_epochs}")

    def ramp_epochs(self, epochs: int) -> int:
        """Epochs over which linear/agp ramp up in a run of ``epochs`` epochs."""
        return self.prune_epochs or max(1, epochs // 2)

    def amounts(self, epochs: int) -> dict[int, float]:
        """{epoch: amount} of the schedule for a run of ``epochs`` epochs."""
        return schedule_amounts(self.schedule, self.amount, self.ramp_epochs(epochs))

    def record(self, epochs: int) -> dict[str, Any]:
        """The settings as a history entry of the model file."""
        key = "std_factor" if self.criterion == "std" else "target_sparsity"
        record = {"stage": "prune", "criterion": self.criterion, key: self.amount, "scope": self.scope,
                  "schedule": self.schedule if epochs else "oneshot", "epochs": epochs,
                  "exclude": list(self.exclude), "exclude_first_last": self.exclude_first_last}
        if self.layer_cap < 1.0:
            record["max_layer_sparsity"] = self.layer_cap
        if epochs and self.schedule != "oneshot":
            record["prune_epochs"] = self.ramp_epochs(epochs)
        return record

