"""Runs pivoted into a table's cells (orchestrator.tables.pivot), from a real MLflow store (SQLite), checked with
numpy/scipy directly; a sweep's whole table is test_build.py's, reading the store test_query.py's."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from pydantic import ValidationError
from scipy import stats

from orchestrator.tables.pivot import build_table
from orchestrator.tables.render import FORMATS, render
from orchestrator.track.query import fetch_runs
from orchestrator.spec.tablespec import TableSpec

SWEEP = "toy-table"

# (model, method, dataset) -> best_val_top1 of each seed
BEST = {
    ("resnet20", "stdconv", "cifar10"): [91.0, 91.4, 90.9],
    ("resnet20", "gmconv", "cifar10"): [91.9, 92.3, 91.7],
    ("resnet20", "stdconv", "cifar100"): [67.0, 66.5, 67.2],
    ("resnet20", "gmconv", "cifar100"): [67.9, 68.1],  # one seed short: partial cell
    ("resnet56", "stdconv", "cifar10"): [92.8, 93.0, 92.7],
    ("resnet56", "gmconv", "cifar10"): [93.3, 93.1, 93.6],
    ("resnet56", "stdconv", "cifar100"): [69.8, 70.1, 69.5],
    # ("resnet56", "gmconv", "cifar100") never finished: a missing cell
}
PARAMS_M = {"resnet20": 272_474, "resnet56": 855_770}

REFERENCE = """model,method,dataset,params_m,top1
resnet20,std,cifar10,0.27,91.58
resnet20,gmconv,cifar10,0.27,91.81
resnet20,std,cifar100,0.27,67.03
resnet20,gmconv,cifar100,0.27,67.45
resnet56,std,cifar10,0.85,92.86
resnet56,gmconv,cifar10,0.85,93.28
resnet56,std,cifar100,0.85,69.84
resnet56,gmconv,cifar100,0.85,70.65
"""


def _log(client: MlflowClient, exp_id: str, *, sweep: str, model: str, method: str, dataset: str, seed: int,
         best: float, status: str = "FINISHED", history: list[float] | None = None) -> str:
    run = client.create_run(exp_id, tags={"convsweep.sweep": sweep, "convsweep.kind": "train"})
    params = {"model": model, "layer.method": method, "dataset.name": dataset, "seed": str(seed),
              "layer.stnd": "False", "recipe.optimizer.lr": "0.1"}
    history = history or [best - 5.0, best, best - 0.3]  # best in the middle: final != best
    metrics = [Metric("val_top1", v, 0, step) for step, v in enumerate(history, start=1)]
    metrics += [Metric("val_top5", v + 20.0 - step, 0, step) for step, v in enumerate(history, start=1)]
    metrics += [Metric("best_val_top1", best, 0, len(history)), Metric("final_val_top1", history[-1], 0, len(history)),
                Metric("folded_params", PARAMS_M.get(model, 1e6), 0, len(history)),
                Metric("folded_flops", 41_000_000.0, 0, len(history))]
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag("convsweep.trial_key", f"{model}{method}{dataset}{seed}")])
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(SWEEP, artifact_location=str(root / "artifacts"))
    for (model, method, dataset), values in BEST.items():
        for seed, best in enumerate(values):
            _log(client, exp_id, sweep=SWEEP, model=model, method=method, dataset=dataset, seed=seed, best=best)
    # must never enter a cell: a FAILED run, a KILLED run and another sweep's FINISHED run, all extreme
    _log(client, exp_id, sweep=SWEEP, model="resnet20", method="gmconv", dataset="cifar10", seed=7, best=1.0,
         status="FAILED")
    _log(client, exp_id, sweep=SWEEP, model="resnet20", method="gmconv", dataset="cifar100", seed=8, best=1.0,
         status="KILLED")
    _log(client, exp_id, sweep="other-sweep", model="resnet56", method="gmconv", dataset="cifar100", seed=0,
         best=1.0)
    (root / "reference").mkdir()
    (root / "reference" / "toy.csv").write_text(REFERENCE)
    return uri, client, root


def _expected() -> list[dict[str, str]]:
    return [{"model": m, "layer.method": k, "dataset.name": d, "seed": str(s)}
            for m in ("resnet20", "resnet56") for k in ("stdconv", "gmconv") for d in ("cifar10", "cifar100")
            for s in range(3)]


def _spec(**kw) -> TableSpec:
    base = dict(
        title="Toy Table 1", rows=["model", "layer.method"], columns=["dataset.name"],
        metrics=[{"name": "val_top1", "reduce": "best", "label": "top1"}],
        extra_metrics=[{"name": "folded_params", "scale": 1e-6, "label": "Params (M)"}],
        reference={"file": "reference/toy.csv", "match": {"model": "model", "layer.method": "method",
                                                          "dataset.name": "dataset"},
                   "values": {"top1": "top1", "Params (M)": "params_m"},
                   "value_map": {"layer.method": {"stdconv": "std"}}},
        baseline={"layer.method": "stdconv"}, test="welch",
    )
    base.update(kw)
    return TableSpec.model_validate(base)


@pytest.fixture(scope="module")
def table(store):
    uri, _, root = store
    runs = fetch_runs(uri, SWEEP, SWEEP)
    return build_table(_spec(), runs, sweep=SWEEP, expected=_expected(), reference_dir=root)


def test_cells_match_numpy_and_scipy(table):
    for (model, method, dataset), values in BEST.items():
        cell = table.cells[((model, method), (dataset,), "top1")]
        assert cell.summary.n == len(values)
        assert cell.summary.mean == pytest.approx(np.mean(values), abs=1e-9)
        assert cell.summary.std == pytest.approx(np.std(values, ddof=1), abs=1e-9)
        assert cell.summary.max == pytest.approx(max(values))
        assert cell.expected_n == 3
        base = BEST[(model, "stdconv", dataset)]
        if method == "stdconv":
            assert cell.is_baseline and math.isnan(cell.p)
        else:
            t, p = stats.ttest_ind(values, base, equal_var=False)
            assert cell.delta_baseline == pytest.approx(np.mean(values) - np.mean(base), abs=1e-9)
            assert (cell.t, cell.p) == pytest.approx((t, p), rel=1e-9)


def test_published_values_and_deltas(table):
    cell = table.cells[(("resnet20", "gmconv"), ("cifar10",), "top1")]
    assert cell.published == 91.81
    assert cell.delta_published == pytest.approx(np.mean(BEST[("resnet20", "gmconv", "cifar10")]) - 91.81)
    # value_map: the CSV spells stdconv "std" for resnet56
    assert table.cells[(("resnet56", "stdconv"), ("cifar100",), "top1")].published == 69.84
    assert table.cells[(("resnet20", "stdconv"), ("cifar10",), "top1")].published == 91.58
    assert table.extras[(("resnet56", "stdconv"), "Params (M)")] == pytest.approx(0.85577)
    assert table.published_extras[(("resnet56", "stdconv"), "Params (M)")] == 0.85


def test_missing_and_partial_cells(table):
    missing = table.cells[(("resnet56", "gmconv"), ("cifar100",), "top1")]
    assert missing.summary.n == 0 and missing.expected_n == 3 and math.isnan(missing.delta_baseline)
    assert table.missing == 1
    md = render(table, "md")
    assert "missing (0/3)" in md
    assert "(2/3)" in md  # resnet20 gmconv cifar100 has 2 of its 3 seeds
    assert "1 of 8 cells missing" in md
    assert table.runs_used == 20  # FAILED, KILLED and the other sweep's run never counted


def test_build_drops_foreign_and_unfinished_runs_handed_in(store):
    """Even without the query's filter, build_table refuses other sweeps' and unfinished runs."""
    uri, client, root = store
    exp = client.get_experiment_by_name(SWEEP)
    everything = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(everything) == 23
    table = build_table(_spec(), everything, sweep=SWEEP, expected=_expected(), reference_dir=root)
    assert table.runs_used == 20 and table.runs_skipped == 3
    assert table.cells[(("resnet20", "gmconv"), ("cifar10",), "top1")].summary.mean == pytest.approx(
        np.mean(BEST[("resnet20", "gmconv", "cifar10")]))


def test_final_and_history_reductions(store):
    uri, client, root = store
    runs = fetch_runs(uri, SWEEP, SWEEP)
    spec = _spec(metrics=[{"name": "val_top1", "reduce": "final", "label": "final"},
                          {"name": "val_top5", "reduce": "best", "label": "top5"}],
                 reference=None, test="none")
    with pytest.raises(ValueError, match="val_top5"):
        build_table(spec, runs, sweep=SWEEP)  # no best_val_top5 summary and no client for the history
    table = build_table(spec, runs, sweep=SWEEP, client=client)
    values = BEST[("resnet56", "gmconv", "cifar10")]
    final = table.cells[(("resnet56", "gmconv"), ("cifar10",), "final")]
    assert final.summary.mean == pytest.approx(np.mean([v - 0.3 for v in values]))
    top5 = table.cells[(("resnet56", "gmconv"), ("cifar10",), "top5")]
    # val_top5 = val_top1 + 20 - step: its best is the max over epochs of that history
    assert top5.summary.mean == pytest.approx(np.mean([max(v - 5 + 19, v + 18, v - 0.3 + 17) for v in values]))


def test_without_expected_trials_layout_comes_from_runs(store):
    uri, _, root = store
    table = build_table(_spec(), fetch_runs(uri, SWEEP, SWEEP), sweep=SWEEP, reference_dir=root)
    # rows x columns seen in the runs: the never-finished combination still shows as a missing cell
    assert len(table.cells) == 8 and table.missing == 1
    assert table.cells[(("resnet20", "gmconv"), ("cifar100",), "top1")].expected_n is None
    assert "missing (0)" in render(table, "md") and "(2)" in render(table, "md")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders(table, fmt):
    text = render(table, fmt)
    assert "resnet56" in text and "91.81" in text
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        row = next(r for r in rows if r["model"] == "resnet20" and r["layer.method"] == "gmconv")
        assert float(row["cifar10 mean"]) == pytest.approx(np.mean(BEST[("resnet20", "gmconv", "cifar10")]))
        assert int(row["cifar100 n"]) == 2
        assert float(row["cifar10 p"]) == pytest.approx(
            stats.ttest_ind(BEST[("resnet20", "gmconv", "cifar10")], BEST[("resnet20", "stdconv", "cifar10")],
                            equal_var=False).pvalue, rel=1e-2)
    elif fmt == "latex":
        assert r"\begin{tabular}" in text and r"$\pm$" in text and r"$\Delta$paper" in text
    elif fmt == "html":
        assert text.startswith("<table>") and "<th>cifar10 paper</th>" in text and "missing (0/3)" in text
    else:
        assert text.count("\n| ") >= 5 and "±" in text


def test_unknown_format_is_a_value_error(table):
    with pytest.raises(ValueError, match="format.*'pdf'.*md, csv, latex, html"):
        render(table, "pdf")


@pytest.mark.parametrize("bad, match", [
    ({"baseline": {"seed": 0}}, "baseline"),
    ({"test": "welch", "baseline": None}, "welch"),
    ({"reference": {"file": "x.csv", "match": {"optimizer": "o"}}}, "reference.match"),
    ({"reference": {"file": "x.csv", "match": {"model": "model"}, "values": {"top5": "t"}}}, "reference.values"),
    ({"rows": ["model"], "columns": ["model"]}, "repeat"),
    ({"aggregate": ["std"]}, "mean"),
])
def test_tablespec_rejects_inconsistent_sections(bad, match):
    with pytest.raises(ValidationError, match=match):
        _spec(**bad)


def test_extra_metric_shorthand():
    spec = _spec(extra_metrics=["folded_flops"], reference=None)
    assert spec.extra_metrics[0].name == "folded_flops" and spec.extra_metrics[0].scale == 1.0


def test_labels_match_values_by_meaning_and_rows_sort_numerically():
    """Labels written as YAML values (5, true) find the logged strings ("5.0", "True"); rows without a plan
    come in the labels' order, then by value (numerically)."""
    from orchestrator.track.query import RunRecord

    spec = TableSpec.model_validate({
        "rows": ["layer.sigma_init", "layer.stnd"],
        "metrics": [{"name": "val_top1", "reduce": "final"}],
        "labels": {"layer.sigma_init": {5: "five"}, "layer.stnd": {True: "stnd"}},
    })
    runs = [RunRecord(str(i), "FINISHED", "s", {"layer.sigma_init": s, "layer.stnd": "True"}, {"val_top1": 1.0})
            for i, s in enumerate(["10.0", "5.0", "1.0"])]
    table = build_table(spec, runs, sweep="s")
    assert [r[0] for r in table.row_keys] == ["5.0", "1.0", "10.0"]
    md = render(table, "md")
    assert "| five | stnd |" in md and "| 10.0 | stnd |" in md
