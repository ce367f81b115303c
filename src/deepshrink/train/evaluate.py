"""Evaluation: top-1 accuracy and mean cross-entropy over a loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.train.distributed import all_reduce_sum


@dataclass(frozen=True)
class EvalResult:
    top1: float      # fraction correct, 0..1
    loss: float      # mean cross-entropy (nats)
    examples: int
    correct: int


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device | str = "cpu", *, across_ranks: bool = False) -> EvalResult:
    """Evaluate ``model`` (put in eval mode, restored afterwards) on (inputs, labels) batches.

    ``across_ranks``: each rank saw its own shard; sum the counts over all ranks.
    """
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    try:
        for inputs, labels in batches:
            inputs, labels = inputs.to(device), labels.to(device)
            logits = model(inputs).float()
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == labels).sum())
            seen += labels.numel()
    finally:
        model.train(was_training)
    if across_ranks:
        sums = all_reduce_sum(torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=device))
        total_loss, correct, seen = sums[0].item(), int(sums[1].item()), int(sums[2].item())
    if seen == 0:
        return EvalResult(0.0, float("nan"), 0, 0)
    return EvalResult(correct / seen, total_loss / seen, seen, correct)
