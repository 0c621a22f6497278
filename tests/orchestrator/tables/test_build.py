"""A sweep's table (orchestrator.tables.build): the path `convsweep table FILE` takes, from a sweep file to the
printed table, on a real MLflow store (SQLite)."""

from __future__ import annotations

import csv
import io

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from pydantic import ValidationError
from scipy import stats

from orchestrator.spec.tablespec import TableSpec
from orchestrator.tables.pivot import build_table
from orchestrator.track.query import fetch_runs


TOY_SWEEP = """
name: toy-table-sweep
tracking: {{uri: "{uri}"}}
base: {{model: resnet20, dataset: {{name: digits}}}}
grid: {{layer.method: [stdconv, s-gmconv]}}
seeds: [0, 1, 2]
table:
  rows: [model, layer.method]
  metrics: [{{name: val_top1, reduce: best, label: top1}}]
  baseline: {{layer.method: stdconv}}
  test: welch
"""


def test_sweep_table_and_cli_from_a_sweep_file(tmp_path, capsys):
    """The path `convsweep table FILE` takes: expand the sweep, read its runs, lay out, print."""
    from orchestrator.cli import main
    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_sweep
    from orchestrator.tables.build import sweep_table

    uri = f"sqlite:///{tmp_path / 'toy.db'}"
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_SWEEP.format(uri=uri))
    sweep = load_sweep(path)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(sweep.experiment, artifact_location=str(tmp_path / "art"))
    values = {"stdconv": [90.0, 91.0, 92.5], "s-gmconv": [93.0, 94.5]}  # s-gmconv seed 2 never ran
    for trial in expand(sweep):
        vals = values[trial.layer.method]
        if trial.seed >= len(vals):
            continue
        run = client.create_run(exp_id, tags={"convsweep.sweep": sweep.name})
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in trial.flat_params().items()],
                         metrics=[Metric("best_val_top1", vals[trial.seed], 0, 1)])
        client.set_terminated(run.info.run_id, "FINISHED")
    table = sweep_table(sweep, sweep_dir=tmp_path)
    cell = table.cells[(("resnet20", "s-gmconv"), (), "top1")]
    assert (cell.summary.n, cell.expected_n) == (2, 3)
    t, p = stats.ttest_ind(values["s-gmconv"], values["stdconv"], equal_var=False)
    assert (cell.t, cell.p) == pytest.approx((t, p), rel=1e-9)
    assert main(["table", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["layer.method"], r["top1 n"]) for r in rows] == [("stdconv", "3"), ("s-gmconv", "2")]
    assert float(rows[1]["top1 mean"]) == pytest.approx(93.75) and float(rows[1]["top1 p"]) == pytest.approx(p)


def test_at_best_reads_a_metric_at_the_epoch_where_another_is_best(tmp_path):
    """GMConv Table 2's top-1 and top-5 come from one epoch: the top-5 at the epoch of the best top-1, read
    from the per-epoch history the tracker logs (step = epoch), not the final top-5."""
    from orchestrator.spec.schema import SweepSpec
    from orchestrator.spec.expand import expand
    from orchestrator.tables.build import sweep_table
    from orchestrator.track.tracker import Tracker
    from orchestrator.dirs.trialdir import TrialDir

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    sweep = SweepSpec.model_validate({
        "name": "t2", "tracking": {"uri": uri}, "base": {"dataset": {"name": "digits"}},
        "grid": {"layer.method": ["stdconv", "gmconv"]},
        "table": {"rows": ["layer.method"], "aggregate": ["mean", "n"], "metrics": [
            {"name": "val_top1", "reduce": "best", "label": "Top-1"},
            {"name": "val_top5", "reduce": "at_best", "of": "val_top1", "label": "Top-5"}]},
    })
    # top-1 peaks at epoch 2 and again (tied) at epoch 4, where the trainer keeps the first; top-5 keeps rising
    top1 = {"stdconv": [50.0, 60.0, 55.0, 60.0], "gmconv": [52.0, 58.0, 61.0, 59.0]}
    top5 = {"stdconv": [70.0, 80.0, 82.0, 85.0], "gmconv": [71.0, 79.0, 83.0, 86.0]}
    tracker = Tracker(uri, sweep.experiment, sweep.name)
    for trial in expand(sweep):
        m = trial.layer.method
        run_id = tracker.ensure_run(trial, TrialDir(tmp_path / trial.trial_key), executor="local", git="test")
        tracker.log_epochs(run_id, [{"epoch": e, "val_top1": a, "val_top5": b}
                                    for e, (a, b) in enumerate(zip(top1[m], top5[m]), start=1)])
        best = max(top1[m])
        tracker.log_summary(run_id, {"best_val_top1": best, "best_epoch": top1[m].index(best) + 1,
                                     "final_val_top1": top1[m][-1], "final_val_top5": top5[m][-1], "epochs": 4})
        tracker.end(run_id, "FINISHED")

    table = sweep_table(sweep)  # the database fast path, then the history API for at_best
    cell = lambda method, header: table.cells[((method,), (), header)].summary.mean  # noqa: E731
    assert (cell("stdconv", "Top-1"), cell("stdconv", "Top-5")) == (60.0, 80.0)  # epoch 2, not 4
    assert (cell("gmconv", "Top-1"), cell("gmconv", "Top-5")) == (61.0, 83.0)  # epoch 3, not the final 86
    runs = fetch_runs(uri, sweep.experiment, sweep.name)  # the public API path agrees
    with pytest.raises(ValueError, match="at_best"):
        build_table(sweep.table, runs)  # histories need a client
    again = build_table(sweep.table, runs, client=MlflowClient(tracking_uri=uri))
    assert again.cells[(("gmconv",), (), "Top-5")].summary.mean == 83.0

    with pytest.raises(ValidationError, match="of"):
        TableSpec(rows=["model"], metrics=[{"name": "val_top5", "reduce": "at_best"}])
    with pytest.raises(ValidationError, match="of"):
        TableSpec(rows=["model"], metrics=[{"name": "val_top5", "reduce": "final", "of": "val_top1"}])


def test_gmconv_table2_reads_top1_and_top5_at_one_epoch():
    from pathlib import Path

    from orchestrator.spec.load import load_sweep

    experiments = Path(__file__).resolve().parents[3] / "experiments"
    for path in sorted(experiments.glob("*.yaml")):
        table = load_sweep(path, check=False).table
        names = {m.name: m for m in table.metrics} if table else {}
        if "val_top1" in names and "val_top5" in names:  # reported side by side: the same epoch's
            assert (names["val_top5"].reduce, names["val_top5"].of) == ("at_best", "val_top1"), path.name
    [top1, top5] = load_sweep(experiments / "gmconv_table2_imagenet.yaml", check=False).table.metrics
    assert (top1.name, top1.reduce, top5.name, top5.reduce, top5.of) == ("val_top1", "best", "val_top5", "at_best",
                                                                         "val_top1")
