"""The sweep's folder (``SweepDir``): where each file of a sweep lives, its trial directories, and the sweep record."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from orchestrator.run.sweepdir import SweepDir, load_recorded, record_sweep
from orchestrator.spec.load import load_sweep


def test_every_file_of_a_sweep_lives_where_earlier_versions_put_it(tmp_path: Path) -> None:
    """The names are an on-disk contract: a sweep recorded by an earlier version must still resume, cancel and
    show its status."""
    folder = SweepDir(tmp_path / "runs", "s1")
    assert folder.path == tmp_path / "runs" / "s1"
    expected = {"record": "sweep.json", "driver_pid": "driver.pid", "driver_job": "driver.json",
                "stopping": "STOPPING", "jobs": "jobs", "driver_log": "jobs/driver.log", "tune": "tune",
                "report": "report.html"}  # fmt: skip
    assert {name: getattr(folder, name).relative_to(folder.path).as_posix() for name in expected} == expected
    # the detached driver's log must be inside the executor's folder: `attach` accepts only jobs logging there
    assert folder.driver_log.is_relative_to(folder.jobs)
    assert not folder.path.exists()  # naming a path creates nothing


def test_a_reused_trial_resolves_into_the_sweep_that_trained_it(tmp_path: Path) -> None:
    source, own = SweepDir(tmp_path, "first"), SweepDir(tmp_path, "second")
    for key in ("bbb", "aaa"):
        source.trial(key).create()
        source.trial(key).write_spec({"trial_key": key})
    own.path.mkdir()
    os.symlink(source.trial_link("aaa"), own.trial_link("aaa"))
    (own.path / "jobs").mkdir()  # not a trial: no spec.json
    assert own.trial_link("aaa").is_symlink()
    assert own.trial("aaa").path == source.trial("aaa").path  # TrialDir resolves the link
    assert [td.path.name for td in source.trials()] == ["aaa", "bbb"]  # sorted, trials only
    assert [td.path for td in own.trials()] == [source.trial("aaa").path]
    assert SweepDir(tmp_path, "never-ran").trials() == []


def test_record_round_trip_by_name_and_by_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump({
        "name": "rec", "tracking": {"uri": "sqlite:///mlruns.db"}, "storage": {"root": str(tmp_path / "runs")},
        "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 2}},
        "grid": {"layer.method": ["stdconv", "gmconv"]},
    }))  # fmt: skip
    spec = load_sweep(path)
    record_sweep(spec, str(path))
    assert SweepDir.of(spec).record.is_file()
    for name, root in (("rec", tmp_path / "runs"), (SweepDir.of(spec).path, "elsewhere")):
        again, source = load_recorded(name, root)
        assert again == spec and source == str(path)
    with pytest.raises(ValueError, match="no recorded sweep 'other'"):
        load_recorded("other", tmp_path / "runs")
