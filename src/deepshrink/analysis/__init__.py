"""Measuring models: parameters, latency, MACs, memory traffic and sizes, and first-layer filters."""

from deepshrink.analysis.costs import CostReport, LayerCost, format_costs, model_costs
from deepshrink.analysis.filters import KernelMatch, match_first_layer
from deepshrink.analysis.latency import Latency, measure_latency
from deepshrink.analysis.params import count_params

__all__ = ["CostReport", "KernelMatch", "LayerCost", "Latency", "count_params", "format_costs",
           "match_first_layer", "measure_latency", "model_costs"]
