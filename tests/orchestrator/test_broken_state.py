"""Broken state on disk: every command answers with exit 2 and one line naming the file and the way on.

The state is what a crash, a full disk or a hand edit leaves: a torn or edited sweep.json, a bad line in a
trial's metrics.jsonl, a corrupt job.json, spec.json or summary.json, and a sweep killed before its record
was written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.expand import expand
from orchestrator.sweep import _record, prepare_sweep, sweep_dir
from orchestrator.trialdir import TrialDir


def _sweep_file(tmp_path: Path, **changes: object) -> Path:
    data: dict = {
        "name": "broken",
        "tracking": {"uri": "sqlite:///mlruns.db"},
        "storage": {"root": "runs"},
        "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 2}},
        "grid": {"layer.method": ["stdconv", "gmconv"]},
    }
    data.update(changes)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[TrialDir]:
    """A recorded sweep with one trial directory per trial, each with a spec and one epoch."""
    monkeypatch.chdir(tmp_path)
    spec = prepare_sweep(_sweep_file(tmp_path))
    _record(spec, None)
    dirs = []
    for trial in expand(spec):
        td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
        td.create()
        td.write_spec(trial.model_dump(mode="json"))
        td.append_metrics({"epoch": 1, "epoch_seconds": 2.0})
        dirs.append(td)
    return dirs


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("text", ["{\"spec\": {\"name\": \"bro", "", "[1, 2]", "{\"spec\": {\"name\": 5}}"],
                         ids=["torn", "empty", "not-a-mapping", "bad-spec"])
@pytest.mark.parametrize("command", [["status"], ["resume"], ["table"], ["cancel"], ["logs", "x"]],
                         ids=lambda c: c[0])
def test_corrupt_sweep_record(recorded: list[TrialDir], capsys: pytest.CaptureFixture[str], text: str,
                              command: list[str]) -> None:
    path = Path("runs/broken/sweep.json").resolve()
    path.write_text(text)
    err = _one_line_error([command[0], "broken", *command[1:]], capsys)
    assert str(path) in err and "convsweep sweep FILE" in err


def test_bad_metrics_line_names_file_and_line(recorded: list[TrialDir], capsys: pytest.CaptureFixture[str]) -> None:
    td = recorded[1]
    with open(td.metrics_path, "a", encoding="utf-8") as f:
        f.write("{\"epoch\": 2, \"val_top1\": 9\n")  # a whole line, but not JSON
    err = _one_line_error(["status", "broken"], capsys)
    assert f"{td.metrics_path}: line 2:" in err and "delete that line" in err


def test_torn_last_metrics_line_is_still_being_written(recorded: list[TrialDir]) -> None:
    td = recorded[0]
    with open(td.metrics_path, "a", encoding="utf-8") as f:
        f.write("{\"epoch\": 2, \"val_")  # no newline: the writer is mid-line
    assert [r["epoch"] for r in td.read_metrics()] == [1]


def test_metrics_line_without_epoch(recorded: list[TrialDir], capsys: pytest.CaptureFixture[str]) -> None:
    td = recorded[0]
    with open(td.metrics_path, "a", encoding="utf-8") as f:
        f.write("[2, 3]\n")
    err = _one_line_error(["status", "broken"], capsys)
    assert f"{td.metrics_path}: line 2: not an epoch record" in err


def test_corrupt_job_record(recorded: list[TrialDir], capsys: pytest.CaptureFixture[str]) -> None:
    td = recorded[0]
    td.job_path.write_text("{\"executor\": \"local\", \"job_")
    for argv in (["status", "broken"], ["cancel", "broken"]):
        err = _one_line_error(argv, capsys)
        assert str(td.job_path) in err and "delete it" in err


def test_corrupt_summary_and_spec(recorded: list[TrialDir]) -> None:
    td = recorded[0]
    td.summary_path.write_text("{\"best_epoch\": ")
    with pytest.raises(ValueError, match=rf"^{td.summary_path}: not valid JSON .*delete the trial folder"):
        td.read_summary()
    td.spec_path.write_text("\"just a string\"")
    with pytest.raises(ValueError, match=rf"^{td.spec_path}: not a trial spec"):
        td.read_spec()


def test_corrupt_source_spec_of_an_evaluation_sweep(recorded: list[TrialDir], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    td = recorded[0]
    td.mark_done()
    td.spec_path.write_text("{\"model\": ")
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"name": "broken-rot", "storage": {"root": "runs"},
                                    "base": {"dataset": {"name": "digits"}},
                                    "evaluate": {"source_sweep": "broken", "transforms": ["rot0", "rot90"]}}))
    err = _one_line_error(["plan", str(path)], capsys)
    assert str(td.spec_path) in err and "evaluate.source_sweep" in err


def test_killed_before_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "broken").mkdir(parents=True)  # the driver got as far as the folder
    for command in ("resume", "status"):
        err = _one_line_error([command, "broken"], capsys)
        assert "stopped before it was recorded" in err and "convsweep sweep FILE" in err
    (tmp_path / "runs" / "broken").rmdir()  # not even the folder
    for command in ("resume", "status"):
        err = _one_line_error([command, "broken"], capsys)
        assert "no recorded sweep 'broken'" in err and "convsweep sweep FILE" in err


def test_evaluation_sweep_before_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"name": "rot", "storage": {"root": "runs"}, "base": {"dataset": {"name": "digits"}},
                                    "evaluate": {"source_sweep": "never-ran", "transforms": ["rot0"]}}))
    assert main(["plan", str(path)]) == 0
    assert "0 trials yet" in capsys.readouterr().out
    err = _one_line_error(["sweep", str(path)], capsys)
    assert err.startswith(f"convsweep: {path}: evaluate.source_sweep: the source sweep has no recorded folder")
    assert not (tmp_path / "runs").exists()


def test_validate_checks_every_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = _sweep_file(tmp_path, profiles={"ok": {"seeds": [1]},
                                           "bad": {"base.model": "resnet18", "base.layer.kernel_size": 4}})
    err = _one_line_error(["validate", str(path)], capsys)
    assert err.startswith(f"convsweep: {path}: base.layer.kernel_size:") and "[profile bad]" in err
    path = _sweep_file(tmp_path, profiles={"bad": {"grid.layer.method": ["coc"], "base.layer.skp": 3}})
    err = _one_line_error(["validate", str(path)], capsys)
    assert "base.layer.skp" in err and "skp must be an even integer" in err
    base = {"model": "resnet20", "dataset": {"name": "digits"}, "layer": {"kernel_size": 5}}
    path = _sweep_file(tmp_path, base=base, profiles={"bad": {"base.model": "resnet50"}})
    err = _one_line_error(["validate", str(path)], capsys)
    assert err.startswith(f"convsweep: {path}: base.layer.kernel_size:") and "[profile bad]" in err
    assert main(["validate", str(path), "--profile", "bad"]) == 2  # selected: the same problem
    assert "base.layer.kernel_size" in capsys.readouterr().err
    path = _sweep_file(tmp_path, profiles={"fine": {"seeds": [3, 4]}})
    assert main(["validate", str(path)]) == 0
    assert "ok (broken: 2 trials)" in capsys.readouterr().out
