"""LR curves of orchestrator.train.schedules against values computed by hand from the papers' recipes."""

from __future__ import annotations

import io
import math

import pytest
import torch

from orchestrator.spec.schema import ScheduleSpec
from orchestrator.train.schedules import PlateauLR, build_scheduler, lr_multiplier


def lr_curve(spec: ScheduleSpec, lr: float, epochs: int, steps_per_epoch: int) -> list[float]:
    """The lr used by every optimiser step of the run, read from a real optimiser driven by the scheduler."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr, momentum=0.9)
    sched = build_scheduler(opt, spec, epochs, steps_per_epoch)
    lrs = []
    for _ in range(epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_exponential_mobilenetv2_x098_per_epoch() -> None:
    # GMConv Sec. 4.2: MobileNetV2, lr 0.01 multiplied by 0.98 every epoch.
    lrs = lr_curve(ScheduleSpec(name="exponential", gamma=0.98), 0.01, epochs=12, steps_per_epoch=3)
    assert lrs[0:3] == pytest.approx([0.01] * 3)
    assert lrs[3:6] == pytest.approx([0.0098] * 3)
    assert lrs[6] == pytest.approx(0.009604)
    assert lrs[30] == pytest.approx(0.01 * 0.98**10)


def test_multistep_x02_at_milestones() -> None:
    # Cutout's ResNet-18 recipe (GMConv Table 1): lr 0.1, divided by 5 at 60, 120, 160.
    lrs = lr_curve(ScheduleSpec(name="multistep", milestones=(60, 120, 160), gamma=0.2), 0.1, 200, 1)
    assert lrs[59] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.02)
    assert lrs[119] == pytest.approx(0.02)
    assert lrs[120] == pytest.approx(0.004)
    assert lrs[160] == pytest.approx(0.0008)
    assert lrs[199] == pytest.approx(0.0008)


def test_step_x01_every_30_epochs_changes_only_at_epoch_boundaries() -> None:
    lrs = lr_curve(ScheduleSpec(name="step", step_size=30, gamma=0.1), 0.1, 90, 2)
    assert lrs[2 * 30 - 1] == pytest.approx(0.1)
    assert lrs[2 * 30] == pytest.approx(0.01)
    assert lrs[2 * 60] == pytest.approx(0.001)
    assert len(set(lrs)) == 3


def test_poly_power_09_to_min_lr() -> None:
    # CoC: poly, power 0.9, min lr 1e-4, stepped per iteration.
    spec = ScheduleSpec(name="poly", power=0.9, end_lr=1e-4)
    lrs = lr_curve(spec, 0.5, epochs=2, steps_per_epoch=5)
    assert lrs[0] == pytest.approx(0.5)
    assert lrs[5] == pytest.approx(1e-4 + (0.5 - 1e-4) * 0.5**0.9)
    assert lrs[9] == pytest.approx(1e-4 + (0.5 - 1e-4) * 0.1**0.9)
    assert lr_multiplier(spec, 0.5, 2, 5)(10) * 0.5 == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_onecycle_rises_to_peak_at_half_and_returns() -> None:
    # ACONV ResNet: from 0.001 up to the peak in the first half, back to 0.001 at the end.
    lrs = lr_curve(ScheduleSpec(name="onecycle", end_lr=0.001), 0.05, epochs=4, steps_per_epoch=5)
    assert lrs[0] == pytest.approx(0.001)
    assert max(lrs) == pytest.approx(0.05)
    assert lrs.index(max(lrs)) == 10
    assert lrs[5] == pytest.approx(0.001 + 0.049 * 0.5)
    assert lrs[15] == pytest.approx(0.001 + 0.049 * 0.5)
    assert lr_multiplier(ScheduleSpec(name="onecycle", end_lr=0.001), 0.05, 4, 5)(20) * 0.05 == pytest.approx(0.001)


def test_cosine_per_epoch() -> None:
    lrs = lr_curve(ScheduleSpec(name="cosine"), 0.1, epochs=4, steps_per_epoch=2)
    expected = [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert lrs[::2] == pytest.approx(expected)
    assert lrs[1::2] == pytest.approx(expected)
    assert expected[1] == pytest.approx(0.0853553, rel=1e-5)


def test_linear_warmup_then_schedule_with_milestones_in_place() -> None:
    lrs = lr_curve(ScheduleSpec(name="constant", warmup_epochs=2), 0.1, epochs=4, steps_per_epoch=5)
    assert lrs[:10] == pytest.approx([0.01 * (i + 1) for i in range(10)])
    assert lrs[10:] == pytest.approx([0.1] * 10)
    warm_multi = lr_curve(ScheduleSpec(name="multistep", milestones=(2,), warmup_epochs=1), 0.1, 3, 4)
    assert warm_multi == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1] + [0.01] * 4)


def test_scheduler_state_round_trips_through_weights_only_load() -> None:
    spec = ScheduleSpec(name="poly", power=0.9, end_lr=0.0, warmup_epochs=1)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.2)
    sched = build_scheduler(opt, spec, 3, 4)
    for _ in range(7):
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    sched2 = build_scheduler(opt2, spec, 3, 4)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert sched2.last_epoch == sched.last_epoch == 8


def test_unknown_schedule_is_a_valueerror_naming_it() -> None:
    bad = ScheduleSpec.model_construct(name="linear")
    with pytest.raises(ValueError, match=r"schedule.name: unknown schedule 'linear'; allowed: constant"):
        lr_multiplier(bad, 0.1, 1, 1)


def _plateau_run(spec: ScheduleSpec, lr: float, losses: list[float], steps_per_epoch: int = 3) -> list[float]:
    """Drive a PlateauLR like the trainer does (steps, then one observation per epoch); the lr of every epoch."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    sched = build_scheduler(opt, spec, len(losses), steps_per_epoch)
    assert isinstance(sched, PlateauLR)
    lrs = []
    for loss in losses:
        for _ in range(steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        sched.observe(loss)
    return lrs[::steps_per_epoch]


def test_plateau_matches_torch_reduce_lr_on_plateau() -> None:
    # ACONV simple net: x0.9 after 10 evaluations without improvement; long flat stretches, tiny "improvements"
    # under the 1e-4 relative threshold, a NaN, a floor at end_lr.
    rng = torch.Generator().manual_seed(0)
    losses = [2.0 - 0.1 * i for i in range(5)] + [1.6] * 25 + [1.59995] * 12 + [float("nan")] * 3
    losses += [1.0 + 0.01 * float(torch.rand(1, generator=rng)) for _ in range(60)] + [0.5] + [0.6] * 200
    for end_lr in (0.0, 0.004):
        spec = ScheduleSpec(name="plateau", gamma=0.9, patience=10, end_lr=end_lr)
        ours = _plateau_run(spec, 0.01, losses)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        reference = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.9, patience=10,
                                                               min_lr=end_lr)
        theirs = []
        for loss in losses:
            theirs.append(opt.param_groups[0]["lr"])
            reference.step(loss)
        assert ours == pytest.approx(theirs, rel=1e-12)
        assert len(set(theirs)) > 5  # the run does cut the lr several times
    assert min(ours) == pytest.approx(0.004)


def test_plateau_cut_applies_from_the_next_step_and_keeps_warmup() -> None:
    spec = ScheduleSpec(name="plateau", gamma=0.5, patience=0, warmup_epochs=1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_scheduler(opt, spec, 3, 2)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # warmup step 1 of 2
    sched.observe(1.0)
    sched.observe(1.0)  # no improvement, patience 0: cut at once, inside the warmup
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025) and sched.get_last_lr() == pytest.approx([0.025])
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # warmup done: 0.1 x 0.5


def test_plateau_state_round_trips_through_weights_only_load() -> None:
    spec = ScheduleSpec(name="plateau", gamma=0.9, patience=2)
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85]
    full = _plateau_run(spec, 0.1, losses + [0.85, 0.85, 0.85], steps_per_epoch=1)

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_scheduler(opt, spec, 12, 1)
    for loss in losses:
        opt.step()
        sched.step()
        sched.observe(loss)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert (state["factor"], state["best"], state["num_bad_evaluations"]) == (pytest.approx(0.9), 0.8, 2)

    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched2 = build_scheduler(opt2, spec, 12, 1)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(state)
    resumed = []
    for loss in (0.85, 0.85, 0.85):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
        sched2.observe(loss)
    assert resumed == pytest.approx(full[-3:])
    assert full[-1] == pytest.approx(0.1 * 0.9**2)  # the third bad evaluation after 0.8 cuts again


def test_constant_warmup_in_iterations_as_mmcv() -> None:
    # CoC's released light-model configs: poly (mmcv's default power 1, min_lr 0) per iteration, lr 0.5,
    # warmup='constant' for warmup_iters with mmcv's default warmup_ratio 0.1: regular lr x 0.1 until then.
    spec = ScheduleSpec(name="poly", power=1.0, end_lr=0.0, warmup="constant", warmup_iters=7)
    lrs = lr_curve(spec, 0.5, epochs=4, steps_per_epoch=5)
    total = 20
    want = [0.5 * (1 - t / total) * (0.1 if t < 7 else 1.0) for t in range(total)]
    assert lrs == pytest.approx(want)
    assert lrs[6] == pytest.approx(0.5 * (1 - 6 / 20) * 0.1) and lrs[7] == pytest.approx(0.5 * (1 - 7 / 20))


def test_warmup_iters_linear_and_ratio() -> None:
    lrs = lr_curve(ScheduleSpec(name="constant", warmup_iters=4), 0.2, epochs=2, steps_per_epoch=3)
    assert lrs == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    lrs = lr_curve(ScheduleSpec(name="constant", warmup="constant", warmup_ratio=0.25, warmup_epochs=1), 0.2, 2, 3)
    assert lrs == pytest.approx([0.05] * 3 + [0.2] * 3)


def test_warmup_epochs_and_iters_are_exclusive() -> None:
    with pytest.raises(ValueError, match="set warmup_epochs or warmup_iters, not both"):
        ScheduleSpec(warmup_epochs=1, warmup_iters=10)
    with pytest.raises(ValueError):
        ScheduleSpec(warmup="constant", warmup_ratio=0.0)


def test_shapes_cover_exactly_the_registered_schedules():
    from orchestrator.spec.names import SCHEDULES
    from orchestrator.spec.sections import ScheduleName
    from orchestrator.train.schedules import SHAPES

    assert list(SHAPES) == list(SCHEDULES) == list(ScheduleName.__args__)
    for name in SCHEDULES:
        assert 0.0 < lr_multiplier(ScheduleSpec(name=name, end_lr=0.001), 0.1, 4, 3)(5) <= 1.0
