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
from orchestrator.spec.expand import expand
from orchestrator.run.driver import prepare_sweep
from orchestrator.dirs.trialdir import TrialDir


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
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_trial_dirs) -> list[TrialDir]:
    """A recorded sweep with one trial directory per trial, each with a spec and one epoch."""
    monkeypatch.chdir(tmp_path)
    _, dirs = record_trial_dirs(_sweep_file(tmp_path))
    for td in dirs:
        td.append_metrics({"epoch": 1, "epoch_seconds": 2.0})
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


# -- a recorded finish the trial folder does not bear out -------------------------------------------------------
def _finish_in_mlflow(spec: object, tds: list[TrialDir]) -> "Tracker":
    """Each trial as a finished job and its driver leave it: checkpoints, summary, DONE, a FINISHED run."""
    import torch

    from orchestrator.train.checkpoint import save_checkpoint
    from orchestrator.track.tracker import Tracker

    tracker = Tracker(spec.tracking.uri, spec.experiment, spec.name)
    for trial, td in zip(expand(spec), tds):
        for epoch in (1, 2):
            save_checkpoint({"epoch": epoch, "model": {"w": torch.full((256,), float(epoch))}},
                            td.last_checkpoint, td.prev_checkpoint)
        td.write_summary({"best_val_top1": 50.0, "epochs": 2})
        td.mark_done()
        run_id = tracker.ensure_run(trial, td, executor="local", git="g")
        tracker.log_summary(run_id, td.read_summary())
        tracker.end(run_id, "FINISHED")
    return tracker


def _status_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["status", "broken"]) == 0
    return capsys.readouterr().out.splitlines()


def test_finished_in_mlflow_but_not_on_disk_is_inconsistent_and_run_again(
        recorded: list[TrialDir], capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.run.driver import SweepResult, _settled, load_recorded

    spec, _ = load_recorded("broken", "runs")
    tracker = _finish_in_mlflow(spec, recorded)
    whole, cut = recorded
    assert "2 done, 0 running, 0 failed, 0 interrupted, 0 pending" in _status_lines(capsys)
    assert _settled(spec, tracker, expand(spec), SweepResult(spec, 2)) == {whole.path.name, cut.path.name}
    size = cut.last_checkpoint.stat().st_size
    cut.last_checkpoint.write_bytes(cut.last_checkpoint.read_bytes()[:1000])
    cut.done_marker.unlink()
    data = bytearray(whole.last_checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit: same size, still loads
    whole.last_checkpoint.write_bytes(bytes(data))

    lines = _status_lines(capsys)
    assert f"  inconsistent {cut.path.name}: MLflow says FINISHED but no DONE marker; checkpoints/last.pt is 1000 " \
           f"bytes where its checksum says {size}" in lines
    assert f"  inconsistent {whole.path.name}: MLflow says FINISHED but checkpoints/last.pt disagrees with its " \
           "checksum" in lines
    assert lines[-1] == ("0 done, 0 running, 0 failed, 2 inconsistent, 0 interrupted, 0 pending "
                         "(`convsweep resume broken` runs the inconsistent ones again)")

    # the table leaves out what a stat can see is wrong (the cut file; the flipped bit needs the bytes hashed)
    from orchestrator.tables.build import _contradicted_runs
    from orchestrator.tables.table import Table

    assert _contradicted_runs(spec, {td.read_run_id() for td in recorded}) == {cut.read_run_id()}
    assert "runs_inconsistent" in Table.__dataclass_fields__

    # what `sweep` and `resume` run: neither trial is settled, and their DONE markers go so that their jobs train
    result = SweepResult(spec, 2)
    assert _settled(spec, tracker, expand(spec), result) == set()
    assert set(result.rerun) == {whole.path.name, cut.path.name} and not whole.is_done


def test_table_footer_counts_the_runs_left_out(recorded: list[TrialDir], capsys: pytest.CaptureFixture[str]) -> None:
    table = {"rows": ["layer.method"], "metrics": [{"name": "val_top1", "reduce": "best"}]}
    path = _sweep_file(Path.cwd(), table=table)
    spec = prepare_sweep(path)
    _finish_in_mlflow(spec, recorded)
    recorded[0].summary_path.unlink()
    assert main(["table", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 runs; 1 of 2 cells missing; 1 FINISHED runs left out: their trial folders disagree" in out, out


def test_interrupted_summary_counts_the_trials_never_started(recorded: list[TrialDir],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli.sweeps import print_result as _print_result
    from orchestrator.run.driver import SweepResult, load_recorded

    spec, _ = load_recorded("broken", "runs")
    first, second = (td.path.name for td in recorded)
    result = SweepResult(spec, 3, interrupted=[first], not_started=[second, "c"], halted=True)
    assert _print_result(result) == 130
    line = capsys.readouterr().out.splitlines()[0]
    assert line == (f"sweep broken: 3 trials; 0 already finished, 1 run now: 0 finished, 0 stopped early, 0 failed, "
                    f"1 interrupted, 2 not started (convsweep resume broken --root {spec.storage.root} continues them)")
    assert _print_result(SweepResult(spec, 3, not_started=[first, second, "c"], halted=True)) == 130
    assert "0 run now" in (out := capsys.readouterr().out) and ", 3 not started (convsweep resume" in out


def test_rays_restore_advice_does_not_reach_the_user(caplog: pytest.LogCaptureFixture) -> None:
    import ray.tune.tune as ray_tune_module

    from orchestrator.run.rayquiet import RAY_TUNE_LOGGER as _RAY_TUNE_LOGGER, quiet_ray_advice as _quiet_ray_advice

    assert ray_tune_module.logger.name == _RAY_TUNE_LOGGER  # where the installed Ray logs its advice
    _quiet_ray_advice()
    logger = ray_tune_module.logger
    logger.addHandler(caplog.handler)  # Ray's loggers do not propagate to the root logger caplog listens on
    try:
        logger.warning("Experiment has been interrupted, but the most recent state was saved.\n"
                       'Resume experiment with: Tuner.restore(path="/x/tune", trainable=...)')
        logger.error("Trials did not complete: %s", ["abc"])
        logger.warning("something else Ray says")
    finally:
        logger.removeHandler(caplog.handler)
    assert {r.getMessage() for r in caplog.records} == {"something else Ray says"}  # (root may see it too)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_resume_converges_on_damaged_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's scenario on 2 one-process trials: one trial's newest checkpoint truncated, the other's every
    checkpoint; both DONE markers gone; the first run KILLED (a killed driver), the second left FINISHED.
    `resume` trains both -- from prev.pt and from scratch -- and a second `resume` has nothing left. (That an
    intact trial is settled: test_finished_in_mlflow_but_not_on_disk_is_inconsistent_and_run_again.)"""
    import ray
    from mlflow.tracking import MlflowClient

    from orchestrator.run.driver import run_sweep
    from orchestrator.run.tune import init_ray

    monkeypatch.chdir(tmp_path)
    dataset = {"name": "digits", "backend": "pytorch", "num_workers": 0}
    path = _sweep_file(tmp_path, base={"model": "resnet20", "dataset": dataset,
                                       "recipe": {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 1}},
                       resources={"processes_per_node": 1}, tune={"max_concurrent_trials": 2})
    started = init_ray()  # one Ray for the three drivers
    try:
        first = run_sweep(path, show_progress=False)
        assert len(first.finished) == 2, first
        spec = first.sweep
        killed, finished = (TrialDir.for_trial(spec.storage.root, spec.name, t.trial_key) for t in expand(spec))
        before = {td.path.name: td.read_metrics() for td in (killed, finished)}
        cut = killed.last_checkpoint.read_bytes()
        killed.last_checkpoint.write_bytes(cut[: len(cut) // 2])
        for checkpoint in finished.checkpoint_dir.glob("*.pt"):
            checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
        for td in (killed, finished):
            td.done_marker.unlink()
        client = MlflowClient(spec.tracking.uri)
        client.set_terminated(killed.read_run_id(), "KILLED")

        states = {line.split()[1]: line.split()[5] for line in _status_lines(capsys) if line.startswith("│")}
        assert (states[killed.path.name], states[finished.path.name]) == ("interrupted", "inconsistent")

        assert main(["resume", "broken", "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "2 trials; 0 already finished, 2 run now: 2 finished, 0 stopped early, 0 failed\n" in out, out
        assert f"run again {finished.path.name}: MLflow says FINISHED but no DONE marker" in out
        assert "Tuner.restore" not in out
        for td in (killed, finished):
            assert td.is_done and [r["epoch"] for r in td.iter_metrics()] == [1, 2]  # each epoch once
            assert [r["val_top1"] for r in td.read_metrics()] == [r["val_top1"] for r in before[td.path.name]]
        assert "resuming at epoch 2 of 2" in killed.log_path.read_text()
        assert "dropped 2 record(s) after epoch 0" in finished.log_path.read_text()  # from scratch

        assert main(["resume", "broken", "--no-progress"]) == 0
        assert "2 trials; 2 already finished, 0 run now" in capsys.readouterr().out
        assert {client.get_run(td.read_run_id()).info.status for td in (killed, finished)} == {"FINISHED"}
    finally:
        if started:
            ray.shutdown()
