"""The `Loader` every backend returns: epoch bookkeeping over a `ShardPlan`, resumable inside an epoch.

A `Loader` yields `(images, labels)`: float32 NCHW normalised images and int64 labels on the requested
device, whatever the backend. It is driven by a `ShardPlan` (`pipelines.sharding`), which also gives its
length, `num_samples` and the order for `set_epoch`. Its position is plain data: `state_dict()` returns
`{"epoch", "batches_done"}` and `load_state_dict()` makes the next iteration start after the batches already
consumed, without reading the skipped files (the sample order is restored exactly; the random augmentation
parameters of the resumed batches are drawn afresh). A backend implements `_iter_batches`.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..sharding import ShardPlan

__all__ = ["Loader"]


class Loader:
    """Base class: epoch bookkeeping over a `ShardPlan`; subclasses implement `_iter_batches`."""

    backend: str = ""

    def __init__(self, plan: ShardPlan, device: torch.device) -> None:
        self.plan = plan
        self.device = device
        self._epoch = 0
        self._skip = 0
        self._done = 0

    @property
    def num_samples(self) -> int:
        return self.plan.num_samples

    @property
    def batch_size(self) -> int:
        return self.plan.batch_size

    @property
    def epoch(self) -> int:
        return self._epoch

    def __len__(self) -> int:
        return len(self.plan)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration follows.

        A new epoch starts at its first batch; setting the epoch already selected keeps the position (so
        `load_state_dict(state)` followed by the trainer's usual `set_epoch(state["epoch"])` resumes).
        """
        if int(epoch) != self._epoch:
            self._epoch, self._skip, self._done = int(epoch), 0, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches_done": self._done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if not 0 <= done <= len(self):
            raise ValueError(f"state.batches_done: must be in [0, {len(self)}] (got {done!r})")
        self._epoch, self._skip, self._done = epoch, done, done

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        skip, self._skip = self._skip, 0
        self._done = skip
        batches = self.plan.batches(self._epoch)[skip:]
        for images, labels in self._iter_batches(batches):
            self._done += 1
            yield images, labels

    def _iter_batches(self, batches: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError
