"""Tune's trial scheduler asked directly by the driver's threads (``orchestrator.run.tune.SchedulerDecisions``)
and the replay of a sweep's epochs on disk into it (``orchestrator.run.pool.replay``): Tune's real ASHA, no jobs."""

from __future__ import annotations

from orchestrator.run.pool import replay
from orchestrator.run.tune import SchedulerDecisions
from orchestrator.spec.expand import expand
from orchestrator.spec.schema import SweepSpec


def _asha() -> tuple[SchedulerDecisions, list[str]]:
    spec = SweepSpec.model_validate({
        "name": "asha", "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 4}},
        "seeds": [0, 1, 2, 3],
        "tune": {"scheduler": "asha", "metric": "val_top1", "mode": "max", "grace_period": 1, "reduction_factor": 2},
    })  # fmt: skip
    return SchedulerDecisions(spec, expand(spec)), [t.trial_key for t in expand(spec)]


def _epoch(epoch: int, top1: float) -> dict[str, float]:
    return {"epoch": epoch, "val_top1": top1, "lr": 0.1}


def test_asha_stops_a_trial_below_the_rung_and_lets_the_others_on() -> None:
    decisions, (a, b, c, _) = _asha()
    for key in (a, b, c):
        decisions.add(key)
    assert decisions.result(a, _epoch(1, 10.0))  # alone on the rung: goes on
    assert not decisions.result(b, _epoch(1, 5.0))  # below the median of the rung
    assert decisions.result(c, _epoch(1, 20.0))
    decisions.add(a)  # a retried trial keeps its place: adding it again changes nothing
    assert decisions.result(a, _epoch(2, 30.0))
    decisions.complete(a, _epoch(2, 30.0))


def test_replayed_epochs_fill_the_rungs_a_resumed_sweep_is_judged_against() -> None:
    history = {"done": [_epoch(1, 10.0), _epoch(2, 20.0)], "running": [_epoch(1, 40.0)]}
    decisions, (a, *_) = _asha()
    last = replay(decisions, history, running={"running"})
    assert last == {"running": _epoch(1, 40.0)}  # a running trial reports only newer epochs
    decisions.add(a)
    assert not decisions.result(a, _epoch(1, 15.0))  # below the rung the earlier trials left (10, 40)
    assert decisions.result("running", _epoch(2, 35.0))  # its place was kept: judged at the next rung

    fresh, (a, *_) = _asha()
    fresh.add(a)
    assert fresh.result(a, _epoch(1, 15.0))  # without the replay the same epoch is first on an empty rung
