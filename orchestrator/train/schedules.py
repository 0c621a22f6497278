"""Learning-rate schedules of the three papers, as one multiplier of the base lr per optimiser step.

Every schedule is a pure function ``step -> multiplier`` wrapped in ``torch.optim.lr_scheduler.LambdaLR`` and
stepped once per iteration, always. Schedules the papers define per epoch (step, multistep, exponential,
cosine) read the epoch index ``step // steps_per_epoch`` and therefore change only at epoch boundaries;
poly and one-cycle are smooth in the iteration. The scheduler's state is then a single step counter
(``last_epoch`` in LambdaLR's state_dict, plain data), so a resumed trial continues at the same position.

- constant:    1
- step:        gamma ** (epoch // step_size)                      (GMConv ResNets: /10 every 30 epochs)
- multistep:   gamma ** #(milestones <= epoch)                     (CIFAR ResNets: /10 at 80, 120; Cutout /5)
- exponential: gamma ** epoch                                      (GMConv MobileNetV2: x0.98 per epoch)
- poly:        end + (1 - end) * (1 - t / T) ** power, t in steps   (CoC: power 0.9, min lr 1e-4)
- onecycle:    linear from end_lr up to lr at T / 2, linear back to end_lr at T (ACONV ResNet, Sec. 4.3:
               "starts from 0.001, rises to its peak in the first half, drops to 0.001 towards the end";
               set ``end_lr: 0.001`` for that recipe)
- cosine:      end + (1 - end) * (1 + cos(pi * epoch / epochs)) / 2
- plateau:     a factor, 1 at the start, multiplied by gamma (never below end) each time the validation
               loss has not improved for more than ``patience`` evaluations (ACONV simple net, Sec. 4.2:
               x0.9 after 10 epochs without improvement)
(``end`` = end_lr / lr.) Optional warmup multiplies any of them over the first ``W`` steps, ``W =
warmup_epochs * steps_per_epoch`` or ``warmup_iters``, so milestones stay at the epochs the papers name:
``linear`` by ``(t + 1) / W`` (Goyal et al.'s gradual warmup), ``constant`` by ``warmup_ratio`` (mmcv's
``warmup='constant'``: the regular lr of step t times the ratio, as CoC's released light-model configs run
it for 5,000 iterations).

The plateau schedule depends on the data, so it is not a function of the step alone: ``PlateauLR`` is the
LambdaLR above with its factor as state, and ``observe(val_loss)`` (the trainer calls it after every
evaluation, with the loss all-reduced over the ranks so that every rank decides alike) applies
``torch.optim.lr_scheduler.ReduceLROnPlateau``'s rule with that class's defaults: mode min, relative
threshold 1e-4 (an improvement is a loss below best * (1 - 1e-4)), no cooldown, a cut ignored when it would
change the lr by less than 1e-8. The factor, the best loss and the count of bad evaluations are plain
attributes, so they travel in LambdaLR's ``state_dict`` (checkpointed every epoch) and a resumed trial
continues with the same patience count.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import torch

from orchestrator.spec.schema import ScheduleSpec

__all__ = ["SCHEDULES", "PlateauLR", "build_scheduler", "lr_multiplier"]

SCHEDULES = ("constant", "step", "multistep", "exponential", "poly", "onecycle", "cosine", "plateau")


def lr_multiplier(spec: ScheduleSpec, base_lr: float, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Return ``f(step) -> multiplier of base_lr`` for optimiser step ``step`` (0-based, counted over the run)."""
    if spec.name not in SCHEDULES:
        raise ValueError(f"schedule.name: unknown schedule {spec.name!r}; allowed: {', '.join(SCHEDULES)}")
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1 (got {epochs}, {steps_per_epoch})")
    total = epochs * steps_per_epoch
    end = spec.end_lr / base_lr
    warmup_steps = spec.warmup_epochs * steps_per_epoch or spec.warmup_iters
    milestones = sorted(spec.milestones)

    def main(step: int) -> float:
        epoch = step // steps_per_epoch
        if spec.name in ("constant", "plateau"):  # plateau: PlateauLR multiplies by its data-driven factor
            return 1.0
        if spec.name == "step":
            return spec.gamma ** (epoch // spec.step_size)
        if spec.name == "multistep":
            return spec.gamma ** bisect.bisect_right(milestones, epoch)
        if spec.name == "exponential":
            return spec.gamma**epoch
        if spec.name == "poly":
            progress = min(step, total) / total
            return end + (1.0 - end) * (1.0 - progress) ** spec.power
        if spec.name == "onecycle":
            half = total / 2
            distance = abs(min(step, total) - half) / half  # 0 at the peak, 1 at both ends
            return 1.0 - (1.0 - end) * distance
        # cosine, per epoch
        return end + (1.0 - end) * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2

    def multiplier(step: int) -> float:
        factor = main(step)
        if step < warmup_steps:
            factor *= spec.warmup_ratio if spec.warmup == "constant" else (step + 1) / warmup_steps
        return factor

    return multiplier


class PlateauLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR whose multiplier is ``warmup(step) * factor``; ``observe(val_loss)`` may cut the factor."""

    THRESHOLD = 1e-4  # ReduceLROnPlateau's defaults
    EPS = 1e-8

    def __init__(self, optimizer: torch.optim.Optimizer, spec: ScheduleSpec, epochs: int, steps_per_epoch: int) -> None:
        base_lr = optimizer.param_groups[0]["lr"]
        # Plain numbers only: LambdaLR's state_dict saves every attribute (it must load with weights_only=True).
        self.gamma, self.patience = float(spec.gamma), int(spec.patience)
        self.min_factor = spec.end_lr / base_lr
        self.factor, self.best, self.num_bad_evaluations = 1.0, math.inf, 0
        warmup = lr_multiplier(spec, base_lr, epochs, steps_per_epoch)
        super().__init__(optimizer, lambda step: warmup(step) * self.factor)

    def observe(self, val_loss: float) -> None:
        """Count one evaluation; cut the lr by ``gamma`` after more than ``patience`` without improvement."""
        if val_loss < self.best * (1.0 - self.THRESHOLD):
            self.best, self.num_bad_evaluations = float(val_loss), 0
        else:
            self.num_bad_evaluations += 1
        if self.num_bad_evaluations <= self.patience:
            return
        self.num_bad_evaluations = 0
        factor = max(self.factor * self.gamma, self.min_factor)
        if self.base_lrs[0] * (self.factor - factor) > self.EPS:
            self.factor = factor
            # the next optimiser step already uses the cut lr (LambdaLR would apply it one step late)
            for group, base_lr, fn in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas):
                group["lr"] = base_lr * fn(self.last_epoch)
            self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: ScheduleSpec, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over ``optimizer`` (all groups share the multiplier); call ``.step()`` after every optimiser
    step, and ``observe(val_loss)`` after every evaluation when it is a ``PlateauLR`` (``name: plateau``)."""
    if spec.name == "plateau":
        return PlateauLR(optimizer, spec, epochs, steps_per_epoch)
    base_lr = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(spec, base_lr, epochs, steps_per_epoch))
