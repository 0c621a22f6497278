"""What one rank of a training trial saves after each epoch, and how a restarted trial picks up from it.

The files and their atomicity are ``orchestrator.train.checkpoint``'s; this module decides what goes in them
and what a resume does with them (``TrialCheckpoints``), and keeps where a trial stands (``Progress``).

Resume: a restarted trial loads ``checkpoints/last.pt`` (``prev.pt`` if the former is damaged: unreadable or
disagreeing with its checksum; from scratch if both are) on every rank and continues with the next epoch at
the same scheduler position; epochs already checkpointed are not trained again. Rank 0 first cuts
``metrics.jsonl`` back to the epochs the loaded checkpoint holds (one record each), so the history never
shows an epoch twice or an epoch whose weights were lost. Rank 0 also restores its generator states (the
trainer reseeds every rank at each epoch; the other ranks rely on that alone).

Best epoch: whenever an evaluation beats every earlier one on val_top1 (the first of equal ones stays best),
rank 0 also writes that epoch's weights to ``checkpoints/best.pt``, after ``last.pt``, so evaluation trials
can re-evaluate the weights behind ``best_val_top1``. A resume puts ``best.pt`` back in step with the
checkpoint it resumes from (a crash between the two writes leaves it one best epoch behind; a fallback to
``prev.pt`` can find it one ahead).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.schema import TrialSpec
from orchestrator.train.checkpoint import (checkpoint_epoch, load_checkpoint, move_checkpoint, rng_state,
                                           save_checkpoint, set_rng_state)
from orchestrator.train.distributed import DistInfo, all_reduce_sum

__all__ = ["Progress", "TrialCheckpoints"]

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where a trial's training stands beyond its weights and optimiser; saved in every checkpoint."""

    start_epoch: int = 1  # the next epoch to train
    best_top1: float | None = None
    best_epoch: int = 0  # 0: nothing evaluated yet
    last_val: dict[str, float] | None = None

    def observe(self, epoch: int, top1: float, top5: float) -> None:
        """Record epoch ``epoch``'s evaluation; the first of equal top-1s stays the best."""
        self.last_val = {"top1": top1, "top5": top5}
        if self.best_top1 is None or top1 > self.best_top1:
            self.best_top1, self.best_epoch = top1, epoch


class TrialCheckpoints:
    """The checkpoints of one rank of one training trial: ``resume()`` on start, ``save()`` after each epoch.

    ``stateful`` are the objects whose ``state_dict()`` a checkpoint keeps beside the model's, by key (the
    trainer's optimiser, scheduler and gradient scaler).
    """

    def __init__(self, spec: TrialSpec, dist: DistInfo, trial_dir: TrialDir, model: nn.Module,
                 **stateful: Any) -> None:
        self.spec, self.dist, self.trial_dir, self.model, self.stateful = spec, dist, trial_dir, model, stateful

    def resume(self) -> Progress:
        """Load the newest intact checkpoint into the model and the stateful objects, on every rank alike."""
        td = self.trial_dir
        state = load_checkpoint(td.last_checkpoint, td.prev_checkpoint)
        epoch = 0 if state is None else int(state["epoch"])
        # Every rank must resume from the same epoch: sum^2 == n * sum of squares holds only when all are equal.
        total, squares = all_reduce_sum([epoch, epoch * epoch], self.dist)
        if total * total != self.dist.world_size * squares:
            raise RuntimeError(f"ranks loaded checkpoints of different epochs (rank {self.dist.rank}: {epoch})")
        if self.dist.is_main:
            # epochs after the checkpoint are trained again: their old records (and a torn line) go first
            dropped = td.keep_metrics_through(epoch)
            if dropped:
                log.warning("metrics.jsonl: dropped %d record(s) after epoch %d, the newest intact checkpoint; "
                            "those epochs are trained again", dropped, epoch)
        if state is None:
            return Progress()
        saved_key = TrialSpec.model_validate(state["spec"]).trial_key
        if saved_key != self.spec.trial_key:
            raise ValueError(f"checkpoint: belongs to trial {saved_key}, not {self.spec.trial_key}")
        self.model.load_state_dict(state["model"])
        for key, stateful in self.stateful.items():
            stateful.load_state_dict(state[key])
        progress = Progress(epoch + 1, state["best_val_top1"], state["best_epoch"], state["last_val"])
        if self.dist.is_main:
            set_rng_state(state["rng"])
            self._restore_best(epoch, state.get("metrics") or {}, progress.best_epoch)
            # The crash may have come between the checkpoint and its metrics line: write the line now.
            if epoch not in {int(r["epoch"]) for r in td.iter_metrics()} and state.get("metrics"):
                td.append_metrics(state["metrics"])
        log.info("resuming at epoch %d of %d", progress.start_epoch, self.spec.recipe.epochs)
        return progress

    def save(self, epoch: int, record: dict[str, Any], progress: Progress) -> None:
        """Rank 0: ``last.pt`` after epoch ``epoch`` (whose metrics line is ``record``), then ``best.pt`` if the
        epoch is the best so far (``last.pt`` first: it records this epoch as the best one)."""
        td = self.trial_dir
        save_checkpoint(self._last_state(epoch, record, progress), td.last_checkpoint, td.prev_checkpoint)
        if progress.best_epoch == epoch:
            save_checkpoint(self._best_state(epoch, record), td.best_checkpoint, td.prev_best_checkpoint)

    def _restore_best(self, epoch: int, record: dict[str, Any], best_epoch: int) -> None:
        """Make ``best.pt`` hold ``best_epoch``'s weights, as the checkpoint of ``epoch`` just loaded knows it."""
        if not best_epoch:
            return  # nothing evaluated yet: the first evaluation overwrites whatever is there
        td = self.trial_dir
        if checkpoint_epoch(td.best_checkpoint) == best_epoch:
            return
        if checkpoint_epoch(td.prev_best_checkpoint) == best_epoch:
            # best.pt is of an epoch after the one resumed (last.pt was unreadable): it will be trained again
            move_checkpoint(td.prev_best_checkpoint, td.best_checkpoint)
        elif best_epoch == epoch:
            # the crash came between last.pt and best.pt: the weights just loaded are the best ones
            save_checkpoint(self._best_state(epoch, record), td.best_checkpoint, td.prev_best_checkpoint)
        else:
            log.warning("best.pt: no checkpoint holds the best epoch %d's weights (trained before convsweep kept "
                        "them?); evaluation trials with evaluate.checkpoint: best will refuse this trial until a "
                        "later epoch beats it", best_epoch)
            return
        log.info("best.pt: restored the best epoch %d's weights", best_epoch)

    def _last_state(self, epoch: int, record: dict[str, Any], progress: Progress) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            **{key: stateful.state_dict() for key, stateful in self.stateful.items()},
            "rng": rng_state(),
            "best_val_top1": progress.best_top1,
            "best_epoch": progress.best_epoch,
            "last_val": progress.last_val,
            "metrics": record,
            "mlflow_run_id": self.trial_dir.read_run_id(),
            "spec": self.spec.model_dump(mode="json"),
        }

    def _best_state(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        # weights only: best.pt is for evaluation, resuming always starts from last.pt
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "val_top1": record.get("val_top1"),
            "val_top5": record.get("val_top5"),
            "mlflow_run_id": self.trial_dir.read_run_id(),
            "spec": self.spec.model_dump(mode="json"),
        }
