"""One process of one trial: build, resume, train epoch by epoch, checkpoint, evaluate, report through files.

``train(spec, dist, trial_dir)`` runs on every rank of the trial's DDP job. Rank 0 alone writes to the trial
directory (checkpoints, ``metrics.jsonl``, ``summary.json``, ``DONE``/``FAILED``); the driver turns those
files into MLflow records (see ``orchestrator.dirs.trialdir``).

An epoch: reseed, train its steps, share rank 0's buffers, evaluate when due (``eval_every`` and the last
epoch; ``orchestrator.train.validation``), checkpoint and append its metrics line (rank 0;
``orchestrator.train.resume`` says what a checkpoint holds and how a restart resumes from it), record the
learned shapes when asked (``orchestrator.train.shapes``), then act on ``CONVSWEEP_FAULT``
(``orchestrator.train.faults``). A ``plateau`` schedule observes each evaluation's val loss (all-reduced, so
every rank cuts the lr alike) before the epoch's checkpoint, which therefore holds its patience count.

Randomness: at the start of every epoch each rank reseeds Python, NumPy and torch from (seed, rank, epoch),
so the numbers a rank draws in an epoch do not depend on whether the run was interrupted before it. The
checkpoint also records rank 0's generator states at the end of the epoch; rank 0 restores them on resume,
the other ranks have no saved state and rely on the per-epoch reseed alone. On the CPU a resumed
single-process run reproduces an uninterrupted one bit for bit at the same thread count (tested).

The data backend the loaders run on (``dataset.backend`` with ``auto`` resolved: ``pytorch``, ``dali-cpu``,
``dali-gpu`` or ``synthetic``) is written as ``data_backend`` into epoch 1's metrics line and the summary.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import layers
import pipelines
from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.schema import TrialSpec
from orchestrator.train.analysis import ANALYSIS_DIR, first_images, trial_erf
from orchestrator.train.build import build_loaders, build_trial_model
from orchestrator.train.distributed import DistInfo, all_reduce_sum, barrier, broadcast_buffers
from orchestrator.train.faults import FaultPlan
from orchestrator.train.optim import build_optimizer
from orchestrator.train.resume import Progress, TrialCheckpoints
from orchestrator.train.schedules import PlateauLR, build_scheduler
from orchestrator.train.shapes import record_shapes
from orchestrator.train.validation import autocast, evaluate_model

__all__ = ["Trainer", "train"]

log = logging.getLogger(__name__)


def train(spec: TrialSpec, dist: DistInfo, trial_dir: TrialDir) -> dict[str, Any]:
    """Train ``spec`` on this rank; returns the summary (written to ``summary.json`` by rank 0)."""
    try:
        return Trainer(spec, dist, trial_dir).run()
    except Exception:
        if dist.is_main:
            trial_dir.mark_failed(traceback.format_exc())
        log.exception("trial %s failed on rank %d", spec.trial_key, dist.rank)
        raise


def _seed_all(*entropy: int) -> None:
    seed = int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


class Trainer:
    """The state of one rank of one trial (model, optimiser, loaders, position); ``run()`` trains to the end."""

    def __init__(self, spec: TrialSpec, dist: DistInfo, trial_dir: TrialDir) -> None:
        self.spec, self.dist, self.trial_dir = spec, dist, trial_dir
        recipe = spec.recipe
        self.on_cuda = dist.device.startswith("cuda")
        self.amp = recipe.amp and self.on_cuda
        self.channels_last = recipe.channels_last and self.on_cuda

        torch.manual_seed(spec.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.info = pipelines.dataset_info(spec.dataset.name)
        self.model = build_trial_model(spec).to(dist.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_loader, self.val_loader = build_loaders(spec, dist)
        # what `dataset.backend: auto` chose on this node (DALI or the torch fallback): recorded, not implied
        self.data_backend = self.train_loader.backend
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
        self.checkpoints = TrialCheckpoints(spec, dist, trial_dir, self.model, optimizer=self.optimizer,
                                            scheduler=self.scheduler, scaler=self.scaler)
        self.progress = Progress()

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
            with autocast(self.dist.device, self.amp):
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

    def _validate(self, epoch: int) -> dict[str, float]:
        """Evaluate rank 0's weights (every rank alike) and let the schedule and the progress see the result."""
        val = evaluate_model(self.model, self.val_loader, self.dist, amp=self.amp, channels_last=self.channels_last)
        if isinstance(self.scheduler, PlateauLR):  # before the checkpoint, which saves its state
            self.scheduler.observe(val["loss"])
        self.progress.observe(epoch, val["top1"], val["top5"])
        return {"val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"]}

    # -- the whole run -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        spec, dist, recipe = self.spec, self.dist, self.spec.recipe
        if dist.is_main:
            self.trial_dir.create()
            self.trial_dir.failed_marker.unlink(missing_ok=True)
        faults = FaultPlan.from_env(self.trial_dir.path, is_main=dist.is_main)
        self.progress = self.checkpoints.resume()
        if dist.is_main and spec.analysis.erf is not None and self.progress.start_epoch == 1:
            self._erf("erf_init")  # the reference: the same measurement on the weights as initialised
        barrier(dist)
        for epoch in range(self.progress.start_epoch, recipe.epochs + 1):
            _seed_all(spec.seed, dist.rank, epoch)
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]  # the lr of the epoch's first step
            record: dict[str, Any] = {"epoch": epoch, **self._train_epoch(epoch), "lr": lr}
            broadcast_buffers(self.model, dist)  # evaluate and save rank 0's model on every rank
            if epoch % spec.eval_every == 0 or epoch == recipe.epochs:
                record.update(self._validate(epoch))
            record["epoch_seconds"] = time.perf_counter() - started
            record["sigma"] = layers.sigma_summary(self.model)
            if epoch == 1:  # the driver tags the run with it as soon as the first line arrives
                record["data_backend"] = self.data_backend
            if dist.is_main:
                self.checkpoints.save(epoch, record, self.progress)
                self.trial_dir.append_metrics(record)
                self._shapes(epoch)
            log.info(
                "epoch %d/%d loss %.4f train_top1 %.2f val_top1 %s lr %.3g %.1fs",
                epoch, recipe.epochs, record["train_loss"], record["train_top1"],
                f"{record['val_top1']:.2f}" if "val_top1" in record else "-", lr, record["epoch_seconds"],
            )  # fmt: skip
            faults.after_epoch(epoch)
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
        assert self.spec.analysis.erf is not None
        return trial_erf(self.model, self.spec.analysis.erf, self.val_loader, self.trial_dir.path / ANALYSIS_DIR,
                         name)

    def _shapes(self, epoch: int) -> None:
        """Rank 0: the learned shapes and their pictures, when asked for and due (orchestrator.train.shapes)."""
        if self.spec.analysis.shapes is None:
            return
        record_shapes(self.model, self.spec.analysis.shapes, epoch, self.spec.recipe.epochs,
                      lambda n: first_images(self.val_loader, n), self.trial_dir.read_metrics,
                      self.trial_dir.path / ANALYSIS_DIR)

    def _summary(self) -> dict[str, Any]:
        progress = self.progress
        if progress.last_val is None:
            raise RuntimeError("the run ended without a validation result")
        params = flops = None
        if self.dist.is_main:  # the other ranks' summaries are not written anywhere
            folded = layers.reparameterize_model(self.model).cpu()
            shape = (1, self.info.in_channels, *self.info.image_shape)
            params, flops = map(int, layers.count_params_flops(folded, input_shape=shape))
        return {
            "best_val_top1": progress.best_top1,
            "best_epoch": progress.best_epoch,
            "final_val_top1": progress.last_val["top1"],
            "final_val_top5": progress.last_val["top5"],
            "folded_params": params,
            "folded_flops": flops,
            "epochs": self.spec.recipe.epochs,
            "data_backend": self.data_backend,
        }
