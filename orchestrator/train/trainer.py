"""One process of one trial: build, resume, train epoch by epoch, checkpoint, evaluate, report through files.

``train(spec, dist, trial_dir)`` runs on every rank of the trial's DDP job. Rank 0 alone writes to the trial
directory (checkpoints, ``metrics.jsonl``, ``summary.json``, ``DONE``/``FAILED``); the driver turns those
files into MLflow records (see ``orchestrator.dirs.trialdir``).

Resume: a restarted trial loads ``checkpoints/last.pt`` (``prev.pt`` if the former is damaged: unreadable or
disagreeing with its checksum; from scratch if both are) on every rank and continues with the next epoch at
the same scheduler position; epochs already checkpointed are not trained again. Rank 0 first cuts
``metrics.jsonl`` back to the epochs the loaded checkpoint holds (one record each), so the history never
shows an epoch twice or an epoch whose weights were lost. A ``plateau`` schedule observes each evaluation's
val loss (all-reduced, so every rank cuts the lr alike) before the epoch's checkpoint, which therefore holds
its patience count.

Best epoch: whenever an evaluation beats every earlier one on val_top1 (the first of equal ones stays best),
rank 0 also writes that epoch's weights to ``checkpoints/best.pt``, after ``last.pt``, so evaluation trials
can re-evaluate the weights behind ``best_val_top1``. A resume puts ``best.pt`` back in step with the
checkpoint it resumes from (a crash between the two writes leaves it one best epoch behind; a fallback to
``prev.pt`` can find it one ahead).

Randomness: at the start of every epoch each rank reseeds Python, NumPy and torch from (seed, rank, epoch),
so the numbers a rank draws in an epoch do not depend on whether the run was interrupted before it. The
checkpoint also records rank 0's generator states (``checkpoint.rng_state``) at the end of the epoch; rank 0
restores them on resume, the other ranks have no saved state and rely on the per-epoch reseed alone. On the
CPU a resumed single-process run reproduces an uninterrupted one bit for bit at the same thread count
(tested).

Fault injection for tests, from the environment variable ``CONVSWEEP_FAULT`` (``;``-separated):
``crash:epoch=N`` raises after epoch N's checkpoint and metrics line on every attempt; ``crash_once:epoch=N``
only on the first attempt (a marker file in the trial directory remembers it); ``sleep:seconds=S`` sleeps S
seconds after every epoch.
"""

from __future__ import annotations

import logging
import os
import random
import time
import traceback
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

import layers
import pipelines
from orchestrator.train.checkpoint import (checkpoint_epoch, load_checkpoint, move_checkpoint, rng_state, save_checkpoint,
                                     set_rng_state)
from orchestrator.spec.schema import TrialSpec
from orchestrator.train.distributed import DistInfo, all_reduce_sum, barrier, broadcast_buffers
from orchestrator.train.optim import build_optimizer
from orchestrator.train.schedules import PlateauLR, build_scheduler
from orchestrator.dirs.trialdir import TrialDir

__all__ = [
    "CRASH_ONCE_MARKER",
    "FAULT_ENV",
    "Fault",
    "InjectedFault",
    "Trainer",
    "build_trial_model",
    "evaluate_model",
    "parse_faults",
    "train",
]

log = logging.getLogger(__name__)

FAULT_ENV = "CONVSWEEP_FAULT"
CRASH_ONCE_MARKER = "FAULT_CRASHED_ONCE"


class InjectedFault(RuntimeError):
    """The crash ``CONVSWEEP_FAULT`` asked for."""


@dataclass(frozen=True)
class Fault:
    kind: str  # crash | crash_once | sleep
    value: float  # the epoch for crashes, seconds for sleep


def parse_faults(text: str | None) -> tuple[Fault, ...]:
    """Parse ``CONVSWEEP_FAULT``; a malformed value is a ValueError naming it."""
    faults = []
    for item in filter(None, (part.strip() for part in (text or "").split(";"))):
        kind, _, arg = item.partition(":")
        key, _, value = arg.partition("=")
        expected = {"crash": "epoch", "crash_once": "epoch", "sleep": "seconds"}.get(kind)
        try:
            number = int(value) if expected == "epoch" else float(value)
        except ValueError:
            number = None
        if expected is None or key != expected or number is None or number < 0:
            raise ValueError(
                f"{FAULT_ENV}: bad fault {item!r}; allowed: crash:epoch=N, crash_once:epoch=N, sleep:seconds=S"
            )
        faults.append(Fault(kind, number))
    return tuple(faults)


def build_trial_model(spec: TrialSpec) -> nn.Module:
    info = pipelines.dataset_info(spec.dataset.name)
    return layers.build_model(
        spec.model, info.num_classes, spec.layer.method, in_channels=info.in_channels, **spec.layer.build_knobs()
    )


def _seed_all(*entropy: int) -> None:
    seed = int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def _autocast(device: str, enabled: bool) -> AbstractContextManager[Any]:
    # float16 autocast (with the GradScaler) on CUDA only; on the CPU the same code runs in float32
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
        with _autocast(dist.device, amp):
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


def train(spec: TrialSpec, dist: DistInfo, trial_dir: TrialDir) -> dict[str, Any]:
    """Train ``spec`` on this rank; returns the summary (written to ``summary.json`` by rank 0)."""
    try:
        return Trainer(spec, dist, trial_dir).run()
    except Exception:
        if dist.is_main:
            trial_dir.mark_failed(traceback.format_exc())
        log.exception("trial %s failed on rank %d", spec.trial_key, dist.rank)
        raise


class Trainer:
    """The state of one rank of one trial (model, optimiser, loaders, position); ``run()`` trains to the end."""

    def __init__(self, spec: TrialSpec, dist: DistInfo, trial_dir: TrialDir) -> None:
        self.spec, self.dist, self.trial_dir = spec, dist, trial_dir
        self.faults = parse_faults(os.environ.get(FAULT_ENV))
        recipe = spec.recipe
        self.on_cuda = dist.device.startswith("cuda")
        self.amp = recipe.amp and self.on_cuda
        self.channels_last = recipe.channels_last and self.on_cuda

        torch.manual_seed(spec.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.info = pipelines.dataset_info(spec.dataset.name)
        self.model = build_trial_model(spec).to(dist.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        loader_args = dict(
            backend=spec.dataset.backend,
            rank=dist.rank,
            world_size=dist.world_size,
            device=dist.device,
            seed=spec.seed,
            num_workers=spec.dataset.num_workers,
        )
        ds = spec.dataset
        batch = recipe.batch_size
        self.train_loader = pipelines.build_loader(ds.name, ds.root, "train", batch_size=batch,
                                                   augment=ds.augment, **loader_args)
        self.val_loader = pipelines.build_loader(ds.name, ds.root, "val", batch_size=batch, **loader_args)
        self.steps_per_epoch = len(self.train_loader)
        if recipe.max_steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, recipe.max_steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise ValueError(f"recipe.batch_size: {recipe.batch_size} leaves no training batch per rank")

        self.optimizer = build_optimizer(self.model, recipe.optimizer)
        self.scheduler = build_scheduler(self.optimizer, recipe.schedule, recipe.epochs, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        # what the training step calls: the DDP wrapper, or the model itself in a single process
        self.ddp = (
            DistributedDataParallel(self.model, device_ids=[torch.device(dist.device)] if self.on_cuda else None)
            if dist.is_distributed
            else self.model
        )
        self.start_epoch, self.best_top1, self.best_epoch, self.last_val = 1, None, 0, None

    # -- resume ------------------------------------------------------------------------------------------
    def _resume(self) -> None:
        state = load_checkpoint(self.trial_dir.last_checkpoint, self.trial_dir.prev_checkpoint)
        epoch = 0 if state is None else int(state["epoch"])
        # Every rank must resume from the same epoch: sum^2 == n * sum of squares holds only when all are equal.
        total, squares = all_reduce_sum([epoch, epoch * epoch], self.dist)
        if total * total != self.dist.world_size * squares:
            raise RuntimeError(f"ranks loaded checkpoints of different epochs (rank {self.dist.rank}: {epoch})")
        if self.dist.is_main:
            # epochs after the checkpoint are trained again: their old records (and a torn line) go first
            dropped = self.trial_dir.keep_metrics_through(epoch)
            if dropped:
                log.warning("metrics.jsonl: dropped %d record(s) after epoch %d, the newest intact checkpoint; "
                            "those epochs are trained again", dropped, epoch)
        if state is None:
            return
        saved_key = TrialSpec.model_validate(state["spec"]).trial_key
        if saved_key != self.spec.trial_key:
            raise ValueError(f"checkpoint: belongs to trial {saved_key}, not {self.spec.trial_key}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = epoch + 1
        self.best_top1, self.best_epoch, self.last_val = state["best_val_top1"], state["best_epoch"], state["last_val"]
        if self.dist.is_main:
            set_rng_state(state["rng"])
            self._restore_best(epoch, state.get("metrics") or {})
            # The crash may have come between the checkpoint and its metrics line: write the line now.
            if epoch not in {int(r["epoch"]) for r in self.trial_dir.iter_metrics()} and state.get("metrics"):
                self.trial_dir.append_metrics(state["metrics"])
        log.info("resuming at epoch %d of %d", self.start_epoch, self.spec.recipe.epochs)

    def _restore_best(self, epoch: int, record: dict[str, Any]) -> None:
        """Make ``best.pt`` hold ``self.best_epoch``'s weights, as the checkpoint of ``epoch`` just loaded knows it."""
        if not self.best_epoch:
            return  # nothing evaluated yet: the first evaluation overwrites whatever is there
        td = self.trial_dir
        if checkpoint_epoch(td.best_checkpoint) == self.best_epoch:
            return
        if checkpoint_epoch(td.prev_best_checkpoint) == self.best_epoch:
            # best.pt is of an epoch after the one resumed (last.pt was unreadable): it will be trained again
            move_checkpoint(td.prev_best_checkpoint, td.best_checkpoint)
        elif self.best_epoch == epoch:
            # the crash came between last.pt and best.pt: the weights just loaded are the best ones
            save_checkpoint(self._best_state(epoch, record), td.best_checkpoint, td.prev_best_checkpoint)
        else:
            log.warning("best.pt: no checkpoint holds the best epoch %d's weights (trained before convsweep kept "
                        "them?); evaluation trials with evaluate.checkpoint: best will refuse this trial until a "
                        "later epoch beats it", self.best_epoch)
            return
        log.info("best.pt: restored the best epoch %d's weights", self.best_epoch)

    # -- one epoch ---------------------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.ddp.train()
        self.train_loader.set_epoch(epoch)
        totals = torch.zeros(3, dtype=torch.float64, device=self.dist.device)  # loss sum, correct, images
        clip = self.spec.recipe.grad_clip
        layer = self.spec.layer
        started = time.perf_counter()
        for step, (images, labels) in enumerate(self.train_loader):
            if step >= self.steps_per_epoch:
                break
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with _autocast(self.dist.device, self.amp):
                logits = self.ddp(images)
                loss = self.criterion(logits, labels)
            if layer.orth:  # in float32, outside autocast; identical on every rank, so DDP's average keeps it
                loss = loss + layers.orth_loss(self.model, layer.orth_weight)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_value_(self.model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            layers.clamp_adaptive_sigmas(self.model)
            totals[0] += loss.detach().float() * labels.numel()
            totals[1] += (logits.detach().argmax(dim=1) == labels).sum()
            totals[2] += labels.numel()
        loss_sum, correct, images_seen = all_reduce_sum(totals.tolist(), self.dist)
        seconds = time.perf_counter() - started
        return {
            "train_loss": loss_sum / images_seen,
            "train_top1": 100.0 * correct / images_seen,
            "images_per_second": images_seen / seconds,
        }

    def _checkpoint_state(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "best_val_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "last_val": self.last_val,
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

    def _inject_faults(self, epoch: int, crash_armed: bool) -> None:
        for fault in self.faults:
            if fault.kind == "sleep":
                time.sleep(fault.value)
            elif fault.value == epoch and (fault.kind == "crash" or crash_armed):
                if self.dist.is_main and fault.kind == "crash_once":
                    (self.trial_dir.path / CRASH_ONCE_MARKER).touch()
                raise InjectedFault(f"{FAULT_ENV}: injected {fault.kind} after epoch {epoch}")

    # -- the whole run -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        spec, dist, recipe = self.spec, self.dist, self.spec.recipe
        if dist.is_main:
            self.trial_dir.create()
            self.trial_dir.failed_marker.unlink(missing_ok=True)
        # Every rank decides about crash_once before rank 0 can leave the marker behind.
        crash_armed = not (self.trial_dir.path / CRASH_ONCE_MARKER).exists()
        self._resume()
        if dist.is_main and spec.analysis.erf is not None and self.start_epoch == 1:
            self._erf("erf_init")  # the reference: the same measurement on the weights as initialised
        barrier(dist)
        for epoch in range(self.start_epoch, recipe.epochs + 1):
            _seed_all(spec.seed, dist.rank, epoch)
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]  # the lr of the epoch's first step
            record: dict[str, Any] = {"epoch": epoch, **self._train_epoch(epoch), "lr": lr}
            broadcast_buffers(self.model, dist)  # evaluate and save rank 0's model on every rank
            if epoch % spec.eval_every == 0 or epoch == recipe.epochs:
                val = evaluate_model(self.model, self.val_loader, dist, amp=self.amp, channels_last=self.channels_last)
                self.last_val = {"top1": val["top1"], "top5": val["top5"]}
                record.update(val_top1=val["top1"], val_top5=val["top5"], val_loss=val["loss"])
                if isinstance(self.scheduler, PlateauLR):  # before the checkpoint, which saves its state
                    self.scheduler.observe(val["loss"])
                if self.best_top1 is None or val["top1"] > self.best_top1:
                    self.best_top1, self.best_epoch = val["top1"], epoch
            record["epoch_seconds"] = time.perf_counter() - started
            record["sigma"] = layers.sigma_summary(self.model)
            if dist.is_main:
                state = self._checkpoint_state(epoch, record)
                save_checkpoint(state, self.trial_dir.last_checkpoint, self.trial_dir.prev_checkpoint)
                if self.best_epoch == epoch:  # after last.pt, which records this epoch as the best one
                    td = self.trial_dir
                    save_checkpoint(self._best_state(epoch, record), td.best_checkpoint, td.prev_best_checkpoint)
                self.trial_dir.append_metrics(record)
                self._shapes(epoch)
            log.info(
                "epoch %d/%d loss %.4f train_top1 %.2f val_top1 %s lr %.3g %.1fs",
                epoch, recipe.epochs, record["train_loss"], record["train_top1"],
                f"{record['val_top1']:.2f}" if "val_top1" in record else "-", lr, record["epoch_seconds"],
            )  # fmt: skip
            self._inject_faults(epoch, crash_armed)
        summary = self._summary()
        if dist.is_main and spec.analysis.erf is not None:
            summary.update(self._erf("erf"))
        if dist.is_main:
            self.trial_dir.write_summary(summary)
            self.trial_dir.mark_done()
        barrier(dist)
        return summary

    def _erf(self, name: str) -> dict[str, float]:
        """Rank 0's ERF of the configured stage; the returned summary holds the init reference too, if kept."""
        from orchestrator.train.analysis import ANALYSIS_DIR, erf_analysis, first_images, read_metrics

        erf = self.spec.analysis.erf
        assert erf is not None
        out_dir = self.trial_dir.path / ANALYSIS_DIR
        erf_analysis(self.model, erf.stage, first_images(self.val_loader, erf.images), out_dir, name)
        return read_metrics(out_dir)

    def _shapes(self, epoch: int) -> None:
        """Rank 0: the learned shapes and their pictures, when asked for and due (orchestrator.train.shapes)."""
        if self.spec.analysis.shapes is None:
            return
        from orchestrator.train.analysis import ANALYSIS_DIR, first_images
        from orchestrator.train.shapes import record_shapes

        record_shapes(self.model, self.spec.analysis.shapes, epoch, self.spec.recipe.epochs,
                      lambda n: first_images(self.val_loader, n), self.trial_dir.read_metrics,
                      self.trial_dir.path / ANALYSIS_DIR)

    def _summary(self) -> dict[str, Any]:
        if self.last_val is None:
            raise RuntimeError("the run ended without a validation result")
        params = flops = None
        if self.dist.is_main:  # the other ranks' summaries are not written anywhere
            folded = layers.reparameterize_model(self.model).cpu()
            shape = (1, self.info.in_channels, *self.info.image_shape)
            params, flops = map(int, layers.count_params_flops(folded, input_shape=shape))
        return {
            "best_val_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "final_val_top1": self.last_val["top1"],
            "final_val_top5": self.last_val["top5"],
            "folded_params": params,
            "folded_flops": flops,
            "epochs": self.spec.recipe.epochs,
        }
