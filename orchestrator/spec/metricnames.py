"""Names of the metrics the trainer reports each epoch (``metrics.jsonl`` keys turned into MLflow metrics).

Kept apart from ``orchestrator.track.tracker`` so that validating a sweep file (``tune.metric``) need not import
MLflow.
"""

from __future__ import annotations

__all__ = ["EPOCH_METRICS"]

EPOCH_METRICS: tuple[str, ...] = (
    "train_loss", "train_top1", "val_top1", "val_top5", "val_loss", "lr", "epoch_seconds", "images_per_second",
)  # fmt: skip
