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
from dataclasses import dataclass

import torch

from orchestrator.spec.names import SCHEDULES
from orchestrator.spec.schema import ScheduleSpec

__all__ = ["SHAPES", "PlateauLR", "build_scheduler", "lr_multiplier"]


@dataclass(frozen=True)
class _Run:
    """What a schedule's shape reads besides the step: the spec and the run's length."""

    spec: ScheduleSpec
    epochs: int
    steps_per_epoch: int
    end: float  # end_lr / lr

    @property
    def total(self) -> int:
        return self.epochs * self.steps_per_epoch


def _onecycle(run: _Run, step: int) -> float:
    half = run.total / 2
    distance = abs(min(step, run.total) - half) / half  # 0 at the peak, 1 at both ends
    return 1.0 - (1.0 - run.end) * distance


def _cosine(run: _Run, step: int) -> float:
    epoch = min(step // run.steps_per_epoch, run.epochs)
    return run.end + (1.0 - run.end) * (1.0 + math.cos(math.pi * epoch / run.epochs)) / 2


# One shape per name of ``orchestrator.spec.names.SCHEDULES`` (a test holds them to the same set): step ->
# multiplier before warm-up. Per-epoch shapes read ``step // steps_per_epoch``.
SHAPES: dict[str, Callable[[_Run, int], float]] = {
    "constant": lambda run, step: 1.0,
    "step": lambda run, step: run.spec.gamma ** (step // run.steps_per_epoch // run.spec.step_size),
    "multistep": lambda run, step: run.spec.gamma ** bisect.bisect_right(sorted(run.spec.milestones),
                                                                        step // run.steps_per_epoch),
    "exponential": lambda run, step: run.spec.gamma ** (step // run.steps_per_epoch),
    "poly": lambda run, step: run.end + (1.0 - run.end) * (1.0 - min(step, run.total) / run.total) ** run.spec.power,
    "onecycle": _onecycle,
    "cosine": _cosine,
    "plateau": lambda run, step: 1.0,  # PlateauLR multiplies by its data-driven factor
}


def lr_multiplier(spec: ScheduleSpec, base_lr: float, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Return ``f(step) -> multiplier of base_lr`` for optimiser step ``step`` (0-based, counted over the run)."""
    if spec.name not in SHAPES:
        raise ValueError(f"schedule.name: unknown schedule {spec.name!r}; allowed: {', '.join(SCHEDULES)}")
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1 (got {epochs}, {steps_per_epoch})")
    run = _Run(spec, epochs, steps_per_epoch, spec.end_lr / base_lr)
    shape = SHAPES[spec.name]
    warmup_steps = spec.warmup_epochs * steps_per_epoch or spec.warmup_iters

    def multiplier(step: int) -> float:
        factor = shape(run, step)
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
