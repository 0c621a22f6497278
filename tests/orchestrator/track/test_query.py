"""Reading a sweep's runs back (orchestrator.track.query): the SQLite store read directly and MLflow's API
(``MlflowClient.search_runs``, the path of a tracking server) give the same columns and the same table, on a
real SQLite store holding what must be left out (other statuses, sweeps and experiments, deleted runs)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from orchestrator.spec.tablespec import TableSpec
from orchestrator.tables.build import needed_keys
from orchestrator.tables.pivot import build_table
from orchestrator.tables.render import render
from orchestrator.track.query import RunColumns, fetch_columns, fetch_runs, records_from_runs

SWEEP = "toy-query"
REPO = Path(__file__).resolve().parents[3]


def _log(client: MlflowClient, exp_id: str, *, sweep: str = SWEEP, method: str = "gmconv", seed: int = 0,
         metrics: dict[str, float] | None = None, status: str = "FINISHED", params: dict[str, str] | None = None) -> str:
    run = client.create_run(exp_id, tags={"convsweep.sweep": sweep})
    params = {"model": "resnet20", "layer.method": method, "seed": str(seed)} if params is None else params
    metrics = {"best_val_top1": 90.0 + seed, "val_top1": 89.0 + seed} if metrics is None else metrics
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, 0, 1) for k, v in metrics.items()],
                     params=[Param(k, v) for k, v in params.items()], tags=[RunTag("convsweep.kind", "train")])
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("query")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(SWEEP, artifact_location=str(root / "artifacts"))
    ids = {f"{m}{s}": _log(client, exp_id, method=m, seed=s) for m in ("stdconv", "gmconv") for s in range(3)}
    # a run without its summary (the raw metric stands in), one with a NaN summary, one lacking a layout param
    ids["no-summary"] = _log(client, exp_id, method="gmconv", seed=5, metrics={"val_top1": 80.0})
    ids["nan"] = _log(client, exp_id, method="stdconv", seed=6, metrics={"best_val_top1": math.nan, "val_top1": 1.0})
    ids["no-method"] = _log(client, exp_id, params={"model": "resnet20", "seed": "7"})
    # what must never come back: other statuses, another sweep, a deleted run, another experiment's run
    _log(client, exp_id, status="FAILED", metrics={"best_val_top1": 1.0})
    _log(client, exp_id, status="KILLED", metrics={"best_val_top1": 1.0})
    _log(client, exp_id, sweep="other-sweep", metrics={"best_val_top1": 1.0})
    client.delete_run(_log(client, exp_id, metrics={"best_val_top1": 1.0}))
    _log(client, client.create_experiment("elsewhere", artifact_location=str(root / "a2")),
         metrics={"best_val_top1": 1.0})
    return uri, ids


SPEC = TableSpec.model_validate({"rows": ["model", "layer.method"], "metrics": [{"name": "val_top1", "reduce": "best"}],
                                 "aggregate": ["mean", "std", "max", "n"], "baseline": {"layer.method": "stdconv"},
                                 "test": "welch"})


def _both(uri: str) -> tuple[RunColumns, RunColumns]:
    params, metrics, fallback = needed_keys(SPEC)
    return tuple(fetch_columns(uri, SWEEP, SWEEP, params=params, metrics=metrics, fallback=fallback, api_only=api)
                 for api in (False, True))  # type: ignore[return-value]


def _rows(columns: RunColumns) -> dict[str, tuple[dict[str, str], dict[str, float]]]:
    records = map(columns.record, columns.run_ids)
    return {rec.run_id: (dict(rec.params), dict(rec.metrics)) for rec in records}


def test_sqlite_store_and_api_give_the_same_runs_and_values(store: tuple[str, dict[str, str]]) -> None:
    uri, ids = store
    direct, api = _both(uri)
    assert sorted(direct.run_ids) == sorted(api.run_ids) == sorted(ids.values())  # nothing that must be left out
    d, a = _rows(direct), _rows(api)
    for rid in ids.values():
        assert d[rid][0] == a[rid][0]  # params as logged, only those asked for
        assert set(d[rid][0]) <= {"model", "layer.method"}
        summary_d, summary_a = d[rid][1].get("best_val_top1"), a[rid][1].get("best_val_top1")
        assert (summary_d == summary_a) or (math.isnan(summary_d) and math.isnan(summary_a)), rid
    assert math.isnan(d[ids["nan"]][1]["best_val_top1"])  # MLflow's is_nan row, not its stored 0
    # the run without its summary holds the raw metric on both paths (a store read may hold it for more runs)
    assert "best_val_top1" not in d[ids["no-summary"]][1]
    assert d[ids["no-summary"]][1]["val_top1"] == a[ids["no-summary"]][1]["val_top1"] == 80.0
    assert set(a[ids["gmconv0"]][1]) == {"best_val_top1"}


def test_sqlite_store_and_api_give_the_same_table(store: tuple[str, dict[str, str]]) -> None:
    uri, _ = store
    direct, api = _both(uri)
    client = MlflowClient(tracking_uri=uri)  # the run without its summary: its best from the history
    tables = [build_table(SPEC, columns, sweep=SWEEP, client=client) for columns in (direct, api)]
    assert render(tables[0], "csv") == render(tables[1], "csv")
    assert render(tables[0], "md") == render(tables[1], "md")
    # and the same as the table of the whole MLflow Run objects, filtered by build_table itself
    whole = build_table(SPEC, fetch_runs(uri, SWEEP, SWEEP, finished_only=False), sweep=SWEEP, client=client)
    assert render(whole, "csv") == render(tables[0], "csv")
    table = tables[0]
    assert (table.runs_used, table.runs_skipped) == (8, 1)  # the run without layer.method
    gm = table.cells[(("resnet20", "gmconv"), (), "val_top1")]
    assert sorted(gm.values) == [80.0, 90.0, 91.0, 92.0]  # the raw val_top1 of the run without its summary
    std = table.cells[(("resnet20", "stdconv"), (), "val_top1")]
    assert len(std.values) == 4 and sum(math.isnan(v) for v in std.values) == 1


def test_a_store_read_imports_no_mlflow(store: tuple[str, dict[str, str]]) -> None:
    """MLflow's import alone takes seconds; the SQLite read needs none of it."""
    uri, ids = store
    code = ("import sys; from orchestrator.track.query import fetch_columns; "
            f"c = fetch_columns({uri!r}, {SWEEP!r}, {SWEEP!r}, params=['model'], metrics=['best_val_top1']); "
            "print(len(c.run_ids), 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == [str(len(ids)), "False"]


def test_unknown_experiment_and_quoted_sweep_are_value_errors(store: tuple[str, dict[str, str]]) -> None:
    uri, _ = store
    with pytest.raises(ValueError, match="no-such-exp"):
        fetch_runs(uri, "no-such-exp", SWEEP)
    with pytest.raises(ValueError, match="no-such-exp"):  # the store read hands an unknown name to the API
        fetch_columns(uri, "no-such-exp", SWEEP, params=["model"], metrics=[])
    with pytest.raises(ValueError, match="sweep_name"):
        fetch_columns(uri, SWEEP, "x' or '1'='1", params=["model"], metrics=[])


def test_a_file_that_is_no_store_is_left_to_the_api(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The direct read answers None (the caller asks MLflow's API) for a file it cannot read as a store."""
    from orchestrator.track.sqlitecolumns import read_columns

    (tmp_path / "mlruns.db").write_bytes(b"not a database, " * 100)
    assert read_columns(tmp_path / "mlruns.db", SWEEP, "convsweep.sweep", SWEEP, ["model"], []) is None
    assert "using MlflowClient.search_runs" in caplog.text


def test_non_database_store_goes_through_search_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that is not a SQLite file (a file store here, a tracking server elsewhere) uses the API path."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(SWEEP)
    _log(client, exp_id, seed=0, metrics={"best_val_top1": 91.5, "val_top1": 90.0})
    _log(client, exp_id, seed=1, status="FAILED")
    _log(client, exp_id, sweep="other", seed=2)
    columns = fetch_columns(uri, SWEEP, SWEEP, params=["model"], metrics=["best_val_top1"],
                            fallback={"best_val_top1": "val_top1"})
    (rid,) = columns.run_ids
    assert columns.record(rid).params == {"model": "resnet20"} and columns.record(rid).metrics == {"best_val_top1": 91.5}
    assert records_from_runs(fetch_runs(uri, SWEEP, SWEEP))[0].run_id == rid
