"""The validation pass: top-1/top-5 and loss of a model over a whole split, shared by the trainer's per-epoch
evaluation and the evaluation trials (``orchestrator.train.evaluate``); and the mixed-precision context both
the training step and this pass run in."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from orchestrator.train.distributed import DistInfo, all_reduce_sum

__all__ = ["autocast", "evaluate_model"]


def autocast(device: str, enabled: bool) -> AbstractContextManager[Any]:
    """float16 autocast (with the trainer's GradScaler) on CUDA only; on the CPU the same code runs in float32."""
    return torch.autocast("cuda", dtype=torch.float16) if enabled and device.startswith("cuda") else nullcontext()


@torch.no_grad()
def evaluate_model(
    model: nn.Module, loader: Any, dist: DistInfo, *, amp: bool = False, channels_last: bool = False
) -> dict[str, float]:
    """Top-1/top-5 (percent) and mean cross-entropy of ``model`` over the whole split, every image counted once
    across the ranks (the sums are all-reduced, so every rank returns the same figures).

    Pass the unwrapped module: a DDP forward would synchronise buffers, and ranks may hold different numbers
    of validation batches (the val loader gives exact disjoint shards), so collectives inside the loop hang.
    """
    was_training = model.training
    model.eval()
    counts = torch.zeros(4, dtype=torch.float64, device=dist.device)  # correct@1, correct@5, images, loss sum
    for images, labels in loader:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(dist.device, amp):
            logits = model(images)
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(labels[:, None])
        counts[0] += hits[:, 0].sum()
        counts[1] += hits.any(dim=1).sum()
        counts[2] += labels.numel()
        counts[3] += F.cross_entropy(logits.float(), labels, reduction="sum")
    model.train(was_training)
    correct1, correct5, total, loss_sum = all_reduce_sum(counts.tolist(), dist)
    if total == 0:
        raise ValueError("evaluate_model: the validation split is empty")
    return {"top1": 100.0 * correct1 / total, "top5": 100.0 * correct5 / total, "loss": loss_sum / total,
            "count": int(total)}
