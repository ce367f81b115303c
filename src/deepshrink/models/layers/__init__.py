"""Layers beyond torch.nn that zoo models are built from."""

from deepshrink.models.layers.adder import AdderConv2d, adder2d

__all__ = ["AdderConv2d", "adder2d"]
