"""Trials reused across sweeps (``orchestrator.run.reuse``), over two real sweeps sharing one trial: Ray Tune,
submitit local jobs, MLflow SQLite. A cell finished in one sweep is linked, not trained, in the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.spec.expand import expand
from orchestrator.run.reuse import REUSED_FROM_RUN, REUSED_FROM_SWEEP
from orchestrator.run.control import status_rows
from orchestrator.run.driver import run_sweep
from orchestrator.spec.load import load_sweep
from orchestrator.tables.build import sweep_table
from orchestrator.dirs.trialdir import TrialDir

pytestmark = [pytest.mark.timeout(600)]


def _write(folder: Path, name: str, methods: list[str]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "tracking": {"uri": f"sqlite:///{folder / 'mlruns.db'}"},
        "storage": {"root": str(folder / "runs")},
        "base": {
            "model": "resnet20",
            "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
            "recipe": {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 2, "optimizer": {"lr": 0.05}},
        },
        "grid": {"layer.method": methods},
        "tune": {"max_concurrent_trials": 2},
        "table": {"rows": ["layer.method"], "metrics": [{"name": "val_top1", "reduce": "final"}],
                  "aggregate": ["mean", "n"]},
    }))
    return path


def _runs(uri: str, sweep: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(sweep)
    return [] if exp is None else client.search_runs([exp.experiment_id], f"tags.`convsweep.sweep` = '{sweep}'")


def _history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in run.data.metrics}


@pytest.mark.slow
def test_a_trial_finished_in_one_sweep_is_linked_not_trained_in_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _write(tmp_path, "reuse-first", ["stdconv", "s-gmconv"])
    second = _write(tmp_path, "reuse-second", ["s-gmconv", "coc"])
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert run_sweep(first, show_progress=False).ok
    shared = {t.trial_key for t in expand(load_sweep(first))} & {t.trial_key for t in expand(load_sweep(second))}
    assert len(shared) == 1, "the two sweeps must share exactly the s-gmconv trial"
    (key,) = shared
    assert not (tmp_path / "runs" / "reuse-second").exists()
    source_dir = TrialDir.for_trial(tmp_path / "runs", "reuse-first", key)
    source_metrics = source_dir.metrics_path.read_bytes()

    # plan: the shared trial is marked and priced at nothing
    assert main(["plan", str(second)]) == 0
    out = capsys.readouterr().out
    assert "reused from reuse-first" in out and "1 trial reused from reuse-first" in out.replace("\n", " ")
    assert main(["plan", str(second), "--no-reuse"]) == 0
    assert "reused from" not in capsys.readouterr().out

    result = run_sweep(second, show_progress=False)
    assert result.ok and result.reused == {key: "reuse-first"}
    assert len(result.finished) == 1 and key not in result.finished  # only coc trained

    client = MlflowClient(uri)
    runs = {r.data.tags["convsweep.trial_key"]: r for r in _runs(uri, "reuse-second")}
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs.values())
    link = runs[key]
    (original,) = [r for r in _runs(uri, "reuse-first") if r.data.tags["convsweep.trial_key"] == key]
    assert link.data.tags[REUSED_FROM_RUN] == original.info.run_id
    assert link.data.tags[REUSED_FROM_SWEEP] == "reuse-first"
    assert link.data.params["sweep"] == "reuse-second" and link.data.params["trial_key"] == key
    assert _history(client, link.info.run_id) == _history(client, original.info.run_id)

    # status counts it finished and says where from; the table reads it like any other run
    rows = {r.trial_key: r for r in status_rows("reuse-second", tmp_path / "runs")}
    assert {r.state for r in rows.values()} == {"done"}
    assert "reused from reuse-first" in rows[key].label
    assert (tmp_path / "runs" / "reuse-second" / key).is_symlink()
    table = sweep_table(load_sweep(second))
    assert table.runs_used == 2
    assert all(cell.summary.n == 1 for cell in table.cells.values())

    # running the sweep again trains nothing and links nothing twice
    again = run_sweep(second, show_progress=False)
    assert again.reused == {} and sorted(again.skipped) == sorted(runs) and not again.finished
    assert len(_runs(uri, "reuse-second")) == 2

    # --no-reuse: the link goes, the trial is trained here; the source is untouched
    forced = run_sweep(second, show_progress=False, reuse=False)
    assert forced.ok and forced.finished == [key]
    own = TrialDir.for_trial(tmp_path / "runs", "reuse-second", key)
    assert not (tmp_path / "runs" / "reuse-second" / key).is_symlink() and own.is_done and len(own.read_metrics()) == 2
    assert source_dir.metrics_path.read_bytes() == source_metrics and source_dir.is_done
    runs_after = _runs(uri, "reuse-second")
    assert sorted(r.data.tags["convsweep.trial_key"] for r in runs_after) == sorted(runs)  # one run per key
    assert all(REUSED_FROM_RUN not in r.data.tags for r in runs_after)
    assert json.loads((own.path / "spec.json").read_text())["sweep"] == "reuse-second"


@pytest.mark.parametrize("reader", ["sqlite-file", "mlflow-query-per-key", "mlflow-one-query"])
def test_a_trial_asking_for_analyses_is_not_reused_from_one_trained_without_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    """Analyses are not part of a trial's key (asking for one keeps the trials already run in their own sweep),
    but a trial recorded elsewhere without the ERF is no stand-in for one that asks for it. Both ways of
    finding sources give the same answers: the SQLite file read directly, and MLflow's API (what an http store
    gets) with one query per candidate or one query for a large plan."""
    from orchestrator.run import reuse

    monkeypatch.setattr(reuse, "_KEYED_QUERIES", 0 if reader == "mlflow-one-query" else 20)

    def find_sources(spec, trials):
        client = None if reader == "sqlite-file" else MlflowClient(spec.tracking.uri)
        return reuse.find_sources(spec, trials, client)
    from orchestrator.track.tracker import Tracker

    first = load_sweep(_write(tmp_path, "plain", ["stdconv"]))
    (trial,) = expand(first)
    td = TrialDir.for_trial(first.storage.root, first.name, trial.trial_key)
    td.create()
    td.write_spec(trial.model_dump(mode="json"))
    run_id = Tracker(first.tracking.uri, first.experiment, first.name).ensure_run(trial, td, executor="local", git="g")
    td.write_summary({"epochs": 2, "best_val_top1": 50.0})
    td.mark_done()
    MlflowClient(first.tracking.uri).set_terminated(run_id, "FINISHED")

    same = load_sweep(_write(tmp_path, "same", ["stdconv"]))
    assert {k: s.sweep for k, s in find_sources(same, expand(same)).items()} == {trial.trial_key: "plain"}
    data = yaml.safe_load((tmp_path / "same.yaml").read_text())
    data["name"] = "with-erf"
    data["base"]["analysis"] = {"erf": {"stage": "layers.1", "images": 4}}
    (tmp_path / "with-erf.yaml").write_text(yaml.safe_dump(data))
    with_erf = load_sweep(tmp_path / "with-erf.yaml")
    (asking,) = expand(with_erf)
    assert asking.trial_key == trial.trial_key  # the same computation...
    assert find_sources(with_erf, [asking]) == {}  # ...but not the same record
