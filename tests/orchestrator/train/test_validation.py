"""The validation pass (orchestrator.train.validation) on a model whose outputs are known: top-1, top-k with fewer
than five classes, the mean loss, and the model's mode left as it was. Across ranks: test_distributed.py."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from orchestrator.train.distributed import DistInfo
from orchestrator.train.validation import evaluate_model

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device="cpu", backend=None)


def test_top1_top3_and_mean_loss_of_known_logits() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [0.0, 1.0, 0.5]])
    labels = torch.tensor([0, 2, 1, 0])  # the first alone is a top-1 hit
    loader = [(logits[:3], labels[:3]), (logits[3:], labels[3:])]  # uneven batches, as a last batch is
    model = nn.Identity().train()
    result = evaluate_model(model, loader, CPU)
    assert result["top1"] == 25.0 and result["count"] == 4
    assert result["top5"] == 100.0  # three classes: top-k takes all three, so every image is a hit
    expected = -sum(torch.log_softmax(row, 0)[label].item() for row, label in zip(logits, labels)) / 4
    assert math.isclose(result["loss"], expected, rel_tol=1e-6)  # summed in float32 per batch
    assert model.training  # evaluation puts it back in the mode it found it in


def test_an_empty_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="validation split is empty"):
        evaluate_model(nn.Identity(), [], CPU)
