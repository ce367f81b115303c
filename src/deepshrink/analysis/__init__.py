"""Measuring models: latency (and, in later issues, MACs, memory traffic, sizes)."""

from deepshrink.analysis.latency import Latency, measure_latency
from deepshrink.analysis.params import count_params

__all__ = ["Latency", "count_params", "measure_latency"]
