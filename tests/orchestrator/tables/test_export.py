"""`convsweep export` and `convsweep table FILE --runs EXPORT`: every run of a sweep in one file, and the
same table rendered from that file alone (no MLflow, no torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.spec.expand import expand
from orchestrator.tables.export import read_export
from orchestrator.run.driver import _record, prepare_sweep
from orchestrator.dirs.trialdir import TrialDir

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small sweep whose runs are recorded as the driver records them: 3 methods x 2 seeds, 3 epochs each
    with summaries, one run left KILLED (a driver killed mid-trial leaves that)."""
    from orchestrator.track.tracker import Tracker

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({
        "name": "export-small",
        # absolute: MLflow caches a store per URI string, so a relative one would follow the first test's cwd
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlruns.db'}"},
        "storage": {"root": "runs"},
        "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 3}},
        "grid": {"layer.method": ["stdconv", "gmconv", "coc"]},
        "seeds": [0, 1],
        "table": {"rows": ["layer.method"], "metrics": [{"name": "val_top1", "reduce": "best", "label": "top1"}],
                  "aggregate": ["mean", "std", "max", "n"], "baseline": {"layer.method": "stdconv"},
                  "test": "student"},
    }))
    spec = prepare_sweep(path)
    _record(spec, str(path))
    tracker = Tracker(spec.tracking.uri, spec.experiment, spec.name)
    for i, trial in enumerate(expand(spec)):
        td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
        td.create()
        run_id = tracker.ensure_run(trial, td, executor="local", git="abc123")
        epochs = [{"epoch": e, "val_top1": 10.0 * i + e * 1.5, "val_loss": 2.0 / e, "lr": 0.1 / e,
                   "sigma": {"aconv.0.mean": 0.3 + 0.01 * e}} for e in (1, 2, 3)]
        tracker.log_epochs(run_id, epochs)
        if i == 5:
            tracker.end(run_id, "KILLED")
            continue
        summary = {"epochs": 3, "best_val_top1": 10.0 * i + 4.5, "final_val_top1": 10.0 * i + 4.5, "best_epoch": 3}
        tracker.log_summary(run_id, summary)
        td.write_summary(summary)  # the folder as a finished job leaves it (a table leaves out what it contradicts)
        td.mark_done()
        tracker.end(run_id, "FINISHED")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_export_holds_every_run_param_and_epoch(recorded: Path, capsys: pytest.CaptureFixture[str],
                                                suffix: str) -> None:
    out = recorded.parent / f"export{suffix}"
    assert main(["export", str(recorded), "--out", str(out)]) == 0
    assert f"6 runs written to {out}" in capsys.readouterr().out
    runs = read_export(out)
    spec = prepare_sweep(recorded)
    trials = {t.trial_key: t for t in expand(spec)}
    assert sorted(r.trial_key for r in runs) == sorted(trials)
    assert sorted(r.status for r in runs) == ["FINISHED"] * 5 + ["KILLED"]
    for r in runs:
        trial = trials[r.trial_key]
        assert r.params == {k: str(v) for k, v in trial.flat_params().items()}
        assert r.seed == str(trial.seed) and r.git_commit == "abc123" and r.sweep == "export-small"
        assert [s for s, _ in r.history["val_top1"]] == [1, 2, 3]
        assert [v for _, v in r.history["val_loss"]] == pytest.approx([2.0, 1.0, 2.0 / 3])
        assert any(k.startswith("sigma") for k in r.history), sorted(r.history)
        if r.status == "FINISHED":
            assert r.metrics["best_val_top1"] == r.history["val_top1"][-1][1]


def test_table_from_an_export_equals_the_table_from_mlflow(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = recorded.parent / "export.jsonl"
    assert main(["export", "export-small", "--out", str(out)]) == 0  # by recorded name, like status/resume
    capsys.readouterr()
    assert main(["table", str(recorded)]) == 0
    from_mlflow = capsys.readouterr().out
    assert main(["table", str(recorded), "--runs", str(out)]) == 0
    from_file = capsys.readouterr().out
    assert from_file == from_mlflow
    assert "5 runs" in from_file and "| t |" in from_file.replace("top1 ", "")  # the KILLED run is left out


def test_table_from_an_export_needs_no_mlflow_and_no_torch(recorded: Path) -> None:
    out = recorded.parent / "export.csv"
    assert main(["export", str(recorded), "--out", str(out)]) == 0
    (recorded.parent / "mlruns.db").unlink()  # the store is gone: the file alone must do
    code = ("import sys; from orchestrator.cli import main; rc = main(sys.argv[1:]); "
            "heavy = sorted({'torch', 'mlflow', 'ray', 'pipelines.loader'} & set(sys.modules)); "
            "assert not heavy, heavy; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, "table", str(recorded), "--runs", str(out)],
                            capture_output=True, text=True, cwd=recorded.parent, timeout=120,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "stdconv" in result.stdout and "5 runs" in result.stdout


def test_bad_export_files_are_one_line_errors(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = recorded.parent / "bad.jsonl"
    bad.write_text(json.dumps({"kind": "sweep", "format": "other/9"}) + "\n")
    assert main(["table", str(recorded), "--runs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.jsonl:1" in err and "convsweep-runs/1" in err
    assert main(["table", str(recorded), "--runs", str(recorded.parent / "none.jsonl")]) == 2
    assert "no such export file" in capsys.readouterr().err
    assert main(["export", str(recorded), "--out", str(recorded.parent / "x.parquet")]) == 2
    assert "allowed: .jsonl, .csv" in capsys.readouterr().err
