"""CONVSWEEP_FAULT (orchestrator.train.faults): parsing, and what a plan does after each epoch. A trainer acting
on it for real is in test_resume.py and test_job.py (crash_once through a requeued job)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.train.faults import CRASH_ONCE_MARKER, FAULT_ENV, FaultPlan, InjectedFault, parse_faults


def test_fault_spec_errors_name_the_variable() -> None:
    assert [(f.kind, f.value) for f in parse_faults("crash:epoch=2; sleep:seconds=0.5")] == [("crash", 2),
                                                                                           ("sleep", 0.5)]
    for bad in ("explode:epoch=1", "crash:seconds=1", "crash:epoch=x", "sleep"):
        with pytest.raises(ValueError, match=f"{FAULT_ENV}: bad fault"):
            parse_faults(bad)


def test_crash_once_fires_on_the_first_attempt_only_and_every_rank_decides_before_the_marker(tmp_path: Path) -> None:
    env = {FAULT_ENV: "crash_once:epoch=2"}
    main, other = (FaultPlan.from_env(tmp_path, is_main=m, environ=env) for m in (True, False))
    main.after_epoch(1)  # not its epoch
    with pytest.raises(InjectedFault, match="crash_once after epoch 2"):
        main.after_epoch(2)
    assert (tmp_path / CRASH_ONCE_MARKER).exists()  # rank 0 remembers it
    with pytest.raises(InjectedFault):
        other.after_epoch(2)  # armed before rank 0 left the marker, so it crashes alike
    alone = tmp_path / "rank1-only"
    alone.mkdir()
    with pytest.raises(InjectedFault):
        FaultPlan.from_env(alone, is_main=False, environ=env).after_epoch(2)
    assert not (alone / CRASH_ONCE_MARKER).exists()  # only rank 0 writes to the trial directory
    retry = FaultPlan.from_env(tmp_path, is_main=True, environ=env)
    retry.after_epoch(2)  # the next attempt runs through


def test_crash_fires_on_every_attempt_and_sleep_after_every_epoch(tmp_path: Path) -> None:
    env = {FAULT_ENV: "crash:epoch=1"}
    for _ in range(2):
        with pytest.raises(InjectedFault, match="crash after epoch 1"):
            FaultPlan.from_env(tmp_path, is_main=True, environ=env).after_epoch(1)
    assert not (tmp_path / CRASH_ONCE_MARKER).exists()
    sleepy = FaultPlan.from_env(tmp_path, is_main=True, environ={FAULT_ENV: "sleep:seconds=0.2"})
    started = time.perf_counter()
    sleepy.after_epoch(1)
    sleepy.after_epoch(2)
    assert time.perf_counter() - started >= 0.4
    FaultPlan.from_env(tmp_path, is_main=True, environ={}).after_epoch(1)  # no variable: nothing happens
