"""The `convsweep` command line: exit codes, one-line errors with nothing submitted, status and logs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.run.driver import prepare_sweep, _record, sweep_dir
from orchestrator.dirs.trialdir import TrialDir
from orchestrator.spec.expand import expand

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "quickstart.yaml"


def _small_sweep(tmp_path: Path, **changes: object) -> Path:
    data: dict = {
        "name": "cli-small",
        "tracking": {"uri": "sqlite:///mlruns.db"},
        "storage": {"root": "runs"},
        "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 4}},
        "grid": {"layer.method": ["stdconv", "gmconv", "coc"]},
    }
    data.update(changes)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_validate_and_plan_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(QUICKSTART)]) == 0
    assert "ok (quickstart: 10 trials)" in capsys.readouterr().out
    assert main(["plan", str(QUICKSTART), "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    spec = prepare_sweep(QUICKSTART, "smoke")
    for trial in expand(spec):
        assert trial.trial_key in out
    assert "10 trials" in out


def test_malformed_sweep_is_one_line_and_submits_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = _small_sweep(tmp_path, grid={"layer.method": ["stdconv", "gmconvv"]})
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(bad) in err and "layer.method" in err and "gmconvv" in err
    # nothing recorded, nothing submitted, no Ray started
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns.db").exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    # the same through --set and through --executor
    good = _small_sweep(tmp_path)
    assert main(["sweep", str(good), "--set", "base.recipe.optimizer.lr=-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lr" in err
    assert main(["sweep", str(good), "--executor", "kubernetes"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "kubernetes" in err and "local" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns.db").exists()


def test_detach_is_refused_for_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(_small_sweep(tmp_path)), "--detach"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--detach" in err and "slurm" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_sweep_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["status", "nope"], ["resume", "nope"], ["cancel", "nope"], ["logs", "nope", "abc"]):
        assert main([*command, "--root", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "nope" in err


def _record_fake_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_trial_dirs) -> tuple[list[TrialDir], str]:
    """A recorded sweep whose trial directories are as a trainer leaves them: done, failed, midway, untouched."""
    monkeypatch.chdir(tmp_path)
    spec, dirs = record_trial_dirs(_small_sweep(tmp_path))
    done, failed, midway = dirs
    for epoch in (1, 2, 3, 4):
        done.append_metrics({"epoch": epoch, "epoch_seconds": 2.0})
    done.write_summary({"best_val_top1": 50.0, "epochs": 4})  # a trainer writes it before DONE
    done.mark_done()
    failed.append_metrics({"epoch": 1, "epoch_seconds": 2.0})
    failed.mark_failed("Traceback (most recent call last):\nRuntimeError: boom")
    failed.log_path.write_text("[rank 0] Traceback ...\nRuntimeError: boom\n")
    for epoch in (1, 2):
        midway.append_metrics({"epoch": epoch, "epoch_seconds": 30.0})
    return dirs, str(sweep_dir(spec).parent)


def test_status_and_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                         record_trial_dirs) -> None:
    (done, failed, midway), root = _record_fake_progress(tmp_path, monkeypatch, record_trial_dirs)
    assert main(["status", "cli-small", "--root", root]) == 0
    out = capsys.readouterr().out
    lines = {key: next(line for line in out.splitlines() if key in line) for key in (done.path.name,
             failed.path.name, midway.path.name)}  # fmt: skip
    assert "done" in lines[done.path.name] and "4/4" in lines[done.path.name]
    assert "failed" in lines[failed.path.name] and "1/4" in lines[failed.path.name]
    # 2 epochs left at 30 s each
    assert "interrupted" in lines[midway.path.name] and "2/4" in lines[midway.path.name]
    assert "1.0 min" in lines[midway.path.name]
    assert "1 done, 0 running, 1 failed, 1 interrupted, 0 pending" in out

    assert main(["logs", "cli-small", failed.path.name[:6], "--root", root]) == 0
    assert "RuntimeError: boom" in capsys.readouterr().out
    assert main(["logs", "cli-small", midway.path.name, "--root", root]) == 2
    assert "no log yet" in capsys.readouterr().err


def test_table_of_a_sweep_file_and_of_a_recorded_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs recorded as the driver records them (orchestrator.track.tracker), then `convsweep table`."""
    from orchestrator.track.tracker import Tracker

    monkeypatch.chdir(tmp_path)
    path = _small_sweep(tmp_path, table={"rows": ["layer.method"], "metrics": [{"name": "val_top1", "reduce": "best"}]})
    spec = prepare_sweep(path)
    _record(spec, str(path))
    tracker = Tracker(spec.tracking.uri, spec.experiment, spec.name)
    for i, trial in enumerate(expand(spec)):
        td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
        td.create()
        run_id = tracker.ensure_run(trial, td, executor="local", git="g")
        tracker.log_epochs(run_id, [{"epoch": 1, "val_top1": 10.0 * (i + 1)}, {"epoch": 2, "val_top1": 5.0}])
        td.write_summary({"epochs": 2})  # as the job leaves a finished trial (the table checks the folder)
        td.mark_done()
        tracker.end(run_id, "FINISHED")
    assert main(["table", str(path)]) == 0
    out = capsys.readouterr().out
    for method, best in (("stdconv", "10.00"), ("gmconv", "20.00"), ("coc", "30.00")):
        assert any(method in line and best in line for line in out.splitlines()), (method, out)
    assert main(["table", "cli-small", "--format", "csv"]) == 0
    assert "stdconv" in capsys.readouterr().out


PAPER_TABLE2 = Path(__file__).resolve().parents[2] / "experiments" / "gmconv_table2_imagenet.yaml"
# `convsweep table` in a fresh interpreter, failing if the table path imported a heavy package
# layers' and pipelines' package modules are torch-free (their torch modules load on first use): torch is the test
_NO_HEAVY_IMPORTS = ("import sys; from orchestrator.cli import main; rc = main(sys.argv[1:]); "
                     "heavy = sorted({'torch', 'pipelines.loader', 'mlflow', 'ray'} & set(sys.modules)); "
                     "assert not heavy, heavy; sys.exit(rc)")


def test_table_of_a_paper_file_without_its_data_and_without_torch(tmp_path: Path) -> None:
    """A paper sweep (ImageNet roots absent here) prints its table; --profile smoke shows the smoke layout."""
    import csv
    import io
    import os
    import subprocess

    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from orchestrator.spec.load import load_sweep

    env = {**os.environ, "IMAGENET_ROOT": str(tmp_path / "no-imagenet-here")}
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    smoke = load_sweep(PAPER_TABLE2, "smoke", check=False)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(smoke.experiment, artifact_location=str(tmp_path / "art"))
    gmconv = next(t for t in expand(smoke) if t.layer.method == "gmconv")
    run = client.create_run(exp_id, tags={"convsweep.sweep": smoke.name})
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in gmconv.flat_params().items()],
                     metrics=[Metric("best_val_top1", 41.25, 0, 1)])
    client.set_terminated(run.info.run_id, "FINISHED")
    # and one run of the paper sweep, in the same store
    paper = load_sweep(PAPER_TABLE2, "paper", check=False)
    assert paper.name != smoke.name
    paper_exp = client.create_experiment(paper.experiment, artifact_location=str(tmp_path / "art-paper"))
    alexnet = next(t for t in expand(paper) if t.model == "alexnet" and t.layer.method == "gmconv")
    run = client.create_run(paper_exp, tags={"convsweep.sweep": paper.name})
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in alexnet.flat_params().items()],
                     metrics=[Metric("best_val_top1", 55.5, 0, 1)])
    client.set_terminated(run.info.run_id, "FINISHED")

    def table(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = ["table", str(PAPER_TABLE2), "--set", f"tracking.uri={uri}", "--format", "csv", *extra]
        return subprocess.run([sys.executable, "-c", _NO_HEAVY_IMPORTS, *argv], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    done = table("--profile", "smoke")
    assert done.returncode == 0, done.stderr
    rows = {f"{r['model']}/{r['layer.method']}": r for r in csv.DictReader(io.StringIO(done.stdout))}
    assert set(rows) == {"ResNet-20/StdConv", "ResNet-20/S-GMConv", "ResNet-20/GMConv"}, done.stdout
    assert (rows["ResNet-20/GMConv"]["Top-1 mean"], rows["ResNet-20/GMConv"]["Top-1 n"]) == ("41.25", "1")
    done = table()  # the paper layout: four ImageNet models x three methods; the smoke run is not in it
    assert done.returncode == 0, done.stderr
    rows = {f"{r['model']}/{r['layer.method']}": r for r in csv.DictReader(io.StringIO(done.stdout))}
    assert len(rows) == 12 and {"MobileNetV2/StdConv", "AlexNet/GMConv"} <= set(rows), rows
    assert not any(key.startswith("ResNet-20/") for key in rows)
    assert (rows["AlexNet/GMConv"]["Top-1 mean"], rows["AlexNet/GMConv"]["Top-1 n"]) == ("55.5", "1")
    assert rows["AlexNet/GMConv"]["Top-1 paper"] == "57.38" and rows["MobileNetV2/StdConv"]["Top-1 n"] == "0"
    done = table("--profile", "tiny")
    assert done.returncode == 2 and "unknown profile 'tiny'" in done.stderr and "smoke" in done.stderr


def test_an_unexpected_error_is_one_line_naming_a_log_and_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (here: the plan renderer raising a KeyError) is not a traceback on the terminal: one line, exit 3,
    and the traceback in the file it names."""
    import orchestrator.run.plan

    def broken(*args: object) -> str:
        raise KeyError("resources")

    monkeypatch.setattr(orchestrator.run.plan, "render_plan", broken)
    assert main(["plan", str(QUICKSTART)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("convsweep: ") and "unexpected KeyError in `convsweep plan`: " \
        "'resources'; please report it with the traceback in " in err, err
    log = Path(err.rsplit("traceback in ", 1)[1].rstrip("\n"))
    assert "Traceback" in log.read_text() and "broken" in log.read_text()
    log.unlink()


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 success; 1 a trial failed; 2 bad input or state" in out and "3 unexpected error" in out


def test_plan_warns_about_missing_data_and_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    """Planning needs no data: a paper sweep whose roots are not on this machine still plans, with a warning."""
    paper = Path(__file__).resolve().parents[2] / "experiments" / "gmconv_table1_cifar.yaml"
    assert main(["plan", str(paper), "--profile", "paper"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: ") and "is not a cifar10 root" in captured.err
    assert "54 trials" in captured.out and "GPU-hours:" in captured.out and "unknown" not in captured.out


_ERROR_LINE = r"convsweep: (?P<subject>[^:\s]+): (?P<wrong>.+); (?P<todo>.+)"


@pytest.mark.parametrize("argv", [
    ["validate", "{bad}"], ["validate", "{missing}"], ["plan", "{good}", "--profile", "nope"],
    ["calibrate", "{good}", "--steps", "0"], ["sweep", "{bad}"], ["sweep", "{good}", "--detach"],
    ["table", "{good}", "--set", "table=3"], ["export", "{good}", "--out", "x.parquet"],
    ["status", "nosuch"], ["resume", "nosuch"], ["cancel", "nosuch"], ["logs", "nosuch", "abc"],
    ["validate"], ["plan", "{good}", "--bogus"],
], ids=lambda a: "-".join(a).replace("{", "").replace("}", ""))
def test_every_subcommand_fails_with_one_line_of_one_form_and_exit_2(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input or state errors of every subcommand: `convsweep: <FILE or SWEEP>: <what is wrong>; <what to do>`."""
    import re

    monkeypatch.chdir(tmp_path)
    files = {"good": str(_small_sweep(tmp_path)), "missing": str(tmp_path / "none.yaml"),
             "bad": str(_small_sweep(tmp_path, base={"model": "resnet20", "layer": {"method": "gmconvv"}}))}
    argv = [a.format(**files) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    match = re.fullmatch(_ERROR_LINE, err.strip())
    assert match, err
    subject = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else None
    assert match["subject"] in ({"usage", "validate"} if subject is None or "--bogus" in argv else
                                {subject, files["good"]}), err


def test_an_allowed_ignored_knob_is_said_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    """validate expands the sweep once (it used to expand it twice, and say each warning twice)."""
    sweep = _small_sweep(tmp_path, allow_ignored_knobs=True,
                         grid={"layer.method": ["stdconv", "s-gmconv"], "layer.sigma_init": [1.0, 5.0]})
    assert main(["validate", str(sweep)]) == 0
    said = [r for r in caplog.records if "repeat one computation" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert "ok (cli-small: 4 trials)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["validate", "plan", "sweep"])
def test_each_command_expands_its_sweep_once(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """validate/plan (and sweep's preparation) used to expand the same sweep two or three times."""
    import orchestrator.spec.expand

    real, calls = orchestrator.spec.expand._expand_with_sources, []
    monkeypatch.setattr(orchestrator.spec.expand, "_expand_with_sources", lambda spec: calls.append(spec) or real(spec))
    monkeypatch.setattr(orchestrator.spec.expand, "_EXPANDED", {})  # nothing kept from other tests
    monkeypatch.chdir(tmp_path)
    sweep = _small_sweep(tmp_path)
    if command == "sweep":  # the steps of run_sweep before Ray starts
        spec = prepare_sweep(sweep)
        expand(spec), expand(spec)
    else:
        assert main([command, str(sweep)]) == 0
    assert len(calls) == 1, command


def test_names_lists_every_registered_name_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    from layers.knobs import METHOD_REGISTRY
    from orchestrator.spec.names import DEVICES, OPTIMIZERS, SCHEDULES

    assert main(["names"]) == 0
    out = capsys.readouterr().out
    for registry in (METHOD_REGISTRY, OPTIMIZERS, SCHEDULES, DEVICES):
        for name in registry:
            assert f"  {name} " in out, name
    assert "sigma_pattern: " in out and "(default 'sigma1_rsigma'" in out


def test_an_unknown_table_format_is_one_line_listing_the_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["table", str(QUICKSTART), "--format", "docx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("convsweep: ") and "--format" in err, err
    assert err.strip().endswith("(got 'docx'; allowed: md, csv, latex, html)"), err
