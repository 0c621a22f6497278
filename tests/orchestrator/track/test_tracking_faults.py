"""Tracking faults: a store that is not there at start, one that goes away mid-sweep, a driver killed between
a trial's summary and the end of its run. Real SQLite stores, a real ``mlflow server`` on 127.0.0.1, real
sweeps through the CLI (Ray Tune, submitit local jobs)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.spec.expand import expand
from orchestrator.run.driver import _record, prepare_sweep
from orchestrator.spec.load import load_sweep
from orchestrator.dirs.trialdir import TrialDir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep_file(tmp_path: Path, name: str, uri: str, **changes: object) -> Path:
    data: dict = {
        "name": name,
        "tracking": {"uri": uri},
        "storage": {"root": str(tmp_path / "runs")},
        "base": {
            "model": "resnet20",
            "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
            "recipe": {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 2, "optimizer": {"lr": 0.05}},
        },
        "grid": {"layer.method": ["stdconv", "s-gmconv"]},
        "resources": {"processes_per_node": 1},
        "tune": {"max_concurrent_trials": 2, "max_failures": 1},
        "table": {"rows": ["layer.method"], "metrics": [{"name": "val_top1", "reduce": "best"}]},
    }
    data.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# -- a store that is not there: validate, and every command that opens it ----------------------------------
def test_validate_checks_the_tracking_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    path = _sweep_file(tmp_path, "trk-validate", dead)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and "tracking.uri" in err and "connection refused" in err and "--offline" in err
    assert main(["validate", str(path), "--offline"]) == 0  # a server that runs elsewhere, later
    capsys.readouterr()

    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("these are notes, not a database\n" * 100)
    for uri, words in ((f"sqlite:///{not_a_db}", "not a database"), ("sqlite:////proc/x/mlruns.db", "/proc/x"),
                       ("sqlite:////proc/mlruns.db", "cannot create files in /proc")):
        assert main(["validate", str(path), "--offline", "--set", f"tracking.uri={uri}"]) == 2, uri
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "tracking.uri" in err and words in err, err


def test_an_unreachable_server_is_one_line_for_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{_free_port()}"
    path = _sweep_file(tmp_path, "trk-down", uri)
    _record(prepare_sweep(path), str(path))  # as a sweep run earlier, while the server was up
    root = str(tmp_path / "runs")
    commands = [["sweep", str(path)], ["resume", "trk-down", "--root", root], ["status", "trk-down", "--root", root],
                ["table", str(path)], ["table", "trk-down", "--root", root], ["export", "trk-down", "--root", root],
                ["cancel", "trk-down", "--root", root]]
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, (command, err)
        where = str(path) if command[1] == str(path) else "trk-down"
        assert err.startswith(f"convsweep: {where}: MLflow at {uri} is unreachable (connection refused); "), err
    assert not (tmp_path / "runs" / "trk-down" / "jobs").exists()  # nothing submitted
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_replayed_summary_is_not_logged_twice(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from orchestrator.track.tracker import Tracker

    spec = load_sweep(_sweep_file(tmp_path, "trk-summary", f"sqlite:///{tmp_path / 'mlruns.db'}"))
    trial = expand(spec)[0]
    td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
    td.create()
    tracker = Tracker(spec.tracking.uri, spec.experiment, spec.name)
    run_id = tracker.ensure_run(trial, td, executor="local", git="g")
    summary = {"epochs": 2, "best_epoch": 2, "best_val_top1": 50.0, "final_val_top1": 50.0, "folded_params": 9.0}
    tracker.log_summary(run_id, summary)
    # a driver killed before the run ended replays the summary; a new Tracker knows nothing of the first
    Tracker(spec.tracking.uri, spec.experiment, spec.name).log_summary(run_id, {**summary, "final_val_top5": 90.0})
    client = MlflowClient(spec.tracking.uri)
    for key in ("best_epoch", "best_val_top1", "final_val_top1", "folded_params", "final_val_top5"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [2], key


def test_status_counts_done_trials_whose_records_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy that gave up on the store leaves a DONE trial with a RUNNING run: status says resume delivers it."""
    from orchestrator.track.tracker import Tracker

    monkeypatch.chdir(tmp_path)
    spec = prepare_sweep(_sweep_file(tmp_path, "trk-wait", "sqlite:///mlruns.db"))
    _record(spec, None)
    tracker = Tracker(spec.tracking.uri, spec.experiment, spec.name)
    for i, trial in enumerate(expand(spec)):
        td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
        td.create()
        td.write_spec(trial.model_dump(mode="json"))
        run_id = tracker.ensure_run(trial, td, executor="local", git="g")
        td.append_metrics({"epoch": 1, "epoch_seconds": 1.0})
        td.append_metrics({"epoch": 2, "epoch_seconds": 1.0})
        td.write_summary({"epochs": 2, "best_epoch": 2, "best_val_top1": 50.0})  # as a finished job leaves it
        td.mark_done()
        if i == 0:
            tracker.end(run_id, "FINISHED")
    assert main(["status", "trk-wait", "--root", spec.storage.root]) == 0
    out = capsys.readouterr().out
    assert "1 done trial not FINISHED in MLflow yet" in out and "convsweep resume trk-wait" in out, out


def test_outbox_keeps_calls_through_an_outage_and_gives_up_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real MLflow client calls against a port nobody listens on, then against a store that answers."""
    from mlflow.tracking import MlflowClient

    from orchestrator.track.outbox import TrackingOutbox

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = f"http://127.0.0.1:{_free_port()}"
    notes: list[str] = []
    outbox = TrackingOutbox("k", dead, note=notes.append)
    target = {"client": MlflowClient(dead)}
    calls: list[str] = []

    def search() -> None:
        target["client"].search_experiments()
        calls.append("search")

    assert not outbox.call("search", search) and outbox.pending  # kept, not raised
    assert not outbox.deliver(grace=0)
    assert len(notes) == 1 and f"MLflow at {dead} is unreachable" in notes[0]
    target["client"] = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")  # the store is back
    assert outbox.flush(force=True) and not outbox.pending and calls == ["search"]
    assert len(notes) == 2 and "answers again" in notes[1]
    with pytest.raises(ValueError):  # a wrong request is not an outage: raised at once
        outbox.call("bad", lambda: float("x"))


# -- real sweeps -------------------------------------------------------------------------------------------
def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _end_session(proc: subprocess.Popen) -> None:
    """Ray processes a killed driver leaves behind live in its session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _runs(uri: str, experiment: str, sweep: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], f"tags.`convsweep.sweep` = '{sweep}'")


def _assert_each_record_once(uri: str, runs: list, epochs: int) -> None:
    """No (metric, step) twice in any run; every epoch's metrics there."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for run in runs:
        for key in run.data.metrics:
            steps = Counter(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert all(n == 1 for n in steps.values()), (run.info.run_id, key, steps)
        for key in ("epoch", "val_top1", "train_loss", "lr"):
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == list(
                range(1, epochs + 1)), key


class _MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend, stopped and started again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        mlflow = Path(sys.executable).parent / "mlflow"
        log = open(self.folder / "server.log", "a")
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--default-artifact-root", str(self.folder / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 240  # the first start creates the database; two busy cores are slow
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # uvicorn's worker, if it outlived its parent
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mlflow_outage_mid_sweep_training_goes_on_and_records_arrive_once(tmp_path: Path) -> None:
    server = _MlflowServer(tmp_path)
    server.start()
    driver = None
    try:
        epochs = 3
        path = _sweep_file(tmp_path, "trk-outage", server.uri, base={
            "model": "resnet20", "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
            "recipe": {"epochs": epochs, "batch_size": 16, "max_steps_per_epoch": 2, "optimizer": {"lr": 0.05}},
        })  # fmt: skip
        assert main(["validate", str(path)]) == 0  # the server answers
        spec = load_sweep(path)
        dirs = [TrialDir.for_trial(spec.storage.root, spec.name, t.trial_key) for t in expand(spec)]
        # each epoch lasts a few seconds, so the outage starts while both jobs train
        driver = _cli("sweep", str(path), "--no-progress", cwd=tmp_path, env={"CONVSWEEP_FAULT": "sleep:seconds=4"})
        deadline = time.monotonic() + 600
        while not all(td.read_metrics() for td in dirs):
            assert driver.poll() is None, driver.communicate()[0]
            assert time.monotonic() < deadline, "the trials did not start"
            time.sleep(0.2)
        server.stop()
        down_at = {td.path.name: len(td.read_metrics()) for td in dirs}
        assert all(n < epochs for n in down_at.values()), down_at
        while not all(td.is_done for td in dirs):  # training goes on without the store
            assert driver.poll() is None, driver.communicate()[0]
            assert time.monotonic() < deadline, "the trials did not finish while MLflow was away"
            time.sleep(0.2)
        assert driver.poll() is None  # the finished trials wait for the store
        server.start()
        out, _ = driver.communicate(timeout=600)
        assert driver.returncode == 0, out
        assert "Traceback" not in out, out
        for td in dirs:  # the proxy's word on the outage, one line each way, in the trial's log
            notes = [line for line in td.log_path.read_text().splitlines() if line.startswith("[convsweep driver")]
            assert len(notes) == 2 and "is unreachable" in notes[0] and "answers again" in notes[1], notes
        runs = _runs(server.uri, spec.experiment, spec.name)
        assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
        assert {r.data.tags["convsweep.trial_key"] for r in runs} == {td.path.name for td in dirs}
        _assert_each_record_once(server.uri, runs, epochs)
        for run in runs:
            assert {"best_val_top1", "final_val_top1"} <= set(run.data.metrics)
            assert "world_size" in run.data.params
    finally:
        if driver is not None:
            _end_session(driver)
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_driver_killed_between_summary_and_run_end_then_resume_records_nothing_twice(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    path = _sweep_file(tmp_path, "trk-kill", uri, grid={"layer.method": ["stdconv"]},
                       tune={"max_concurrent_trials": 1, "max_failures": 1})
    spec = load_sweep(path)
    (trial,) = expand(spec)
    td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
    driver = _cli("sweep", str(path), "--no-progress", cwd=tmp_path,
                  env={"CONVSWEEP_DRIVER_FAULT": "kill_after_summary"})
    try:
        out, _ = driver.communicate(timeout=600)
        assert driver.returncode == -signal.SIGKILL, out
    finally:
        _end_session(driver)
    assert td.is_done
    (run,) = _runs(uri, spec.experiment, spec.name)
    assert run.info.status == "RUNNING" and "best_val_top1" in run.data.metrics  # killed inside the window

    resume = _cli("resume", spec.name, "--root", spec.storage.root, "--no-progress", cwd=tmp_path)
    try:
        out, _ = resume.communicate(timeout=600)
        assert resume.returncode == 0, out
    finally:
        _end_session(resume)
    runs = _runs(uri, spec.experiment, spec.name)
    assert len(runs) == 1 and runs[0].info.run_id == run.info.run_id and runs[0].info.status == "FINISHED"
    _assert_each_record_once(uri, runs, 2)
    assert {"best_epoch", "best_val_top1", "final_val_top1"} <= set(runs[0].data.metrics)
