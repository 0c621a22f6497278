"""Benchmark: `convsweep table` over an MLflow store of N FINISHED runs of one sweep (goal <= 2 s at 10,000
runs, <= 5 s at 100,000), and `convsweep plan` of the same sweep's N trials (goal <= 5 s at 10,000).

    .venv/bin/python tests/bench/bench_tables.py [--runs 10000] [--rebuild] [--skip-search-runs]
    .venv/bin/python tests/bench/bench_tables.py --runs 100000 --skip-search-runs

The store (SQLite) is built once through the MLflow client, one ``create_run`` + one ``log_batch`` + one
``set_terminated`` per run with what a real trial logs (its ~45 flat params, 3 epochs of per-epoch metrics,
the end-of-run summary metrics, the contract's tags), plus 200 FAILED runs and 200 runs of another sweep
that must not count. Building takes minutes, so the file is cached under /tmp and reused. Past 20,000 runs
the client would take hours (~60 ms a run): MLflow then creates the schema, the experiment and one run per
distinct status/sweep through its client, and every other run is that run's rows copied in SQL with its own
id, params, tags and metric values (the same tables and columns MLflow writes; ``--client-build`` forces the
slow way).

Machine load skews wall times on a shared machine: each CLI figure is printed with the CPU time the process
used (user + system), which is what the goal would be on an idle machine.

Printed side by side in one run:
- library: ``sweep_table`` + ``render`` in this process (lay out the planned trials, read the runs,
  aggregate, render), with the time of reading the runs (``fetch_columns``) and of pivoting them;
- the same through ``MlflowClient.search_runs`` (``fetch_columns(api_only=True)``), for the ratio;
- CLI: ``convsweep table FILE --tracking-uri URI`` as a fresh process (adds Python start-up, imports and the
  CLI's own loading of the sweep file, schema only), the figure a user waits for; its ratio to the goal.
  With ``--before DIR`` (a tree of older code: ``git archive main | tar -x -C DIR``) the same command runs
  with that code too, alternately with this one so that the machine's load falls on both alike, and both
  medians are printed side by side (the two must print the same table).

    .venv/bin/python tests/bench/bench_tables.py --runs 100000 --skip-search-runs --before /tmp/convsweep-before
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "convsweep-bench-tables"
REPO = Path(__file__).resolve().parents[2]
SWEEP = """
name: bench-tables
tracking: {{uri: "sqlite:///{db}"}}
base:
  model: resnet20
  dataset: {{name: digits}}
  recipe: {{epochs: 3}}
grid:
  model: [resnet20, resnet56, resnet18_cifar]
  layer.method: [stdconv, s-gmconv, gmconv]
seeds: {seeds}
table:
  title: "bench: 10,000 runs"
  rows: [model, layer.method]
  metrics: [{{name: val_top1, reduce: best, label: top1}}, {{name: val_top5, reduce: final, label: top5}}]
  aggregate: [mean, std, max, n]
  extra_metrics: [{{name: folded_params, scale: 1.0e-6, label: "Params (M)"}}]
  baseline: {{layer.method: stdconv}}
  test: welch
"""


def _sweep_file(runs: int) -> Path:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"bench_tables_{runs}.yaml"
    seeds = list(range(-(-runs // 9)))
    path.write_text(SWEEP.format(db=CACHE / f"mlruns-{runs}.db", seeds=seeds))
    return path


def build_store(sweep_file: Path, runs: int) -> None:
    """Log ``runs`` FINISHED trial runs (+ 400 that must not count) through the MLflow client."""
    import random

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_sweep

    sweep = load_sweep(sweep_file, check=False)
    trials = expand(sweep)[:runs]
    final_db = CACHE / f"mlruns-{runs}.db"
    work = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlruns.db'}")
    exp_id = client.create_experiment(sweep.experiment, artifact_location=str(work / "artifacts"))
    rng = random.Random(0)
    extra = [(t, "FAILED", sweep.name) for t in trials[:200]] + [(t, "FINISHED", "other-sweep") for t in trials[:200]]
    start = time.perf_counter()
    for i, (trial, status, name) in enumerate([(t, "FINISHED", sweep.name) for t in trials] + extra):
        run = client.create_run(exp_id, run_name=f"{trial.model}-{trial.layer.method}-{trial.trial_key}", tags={
            "convsweep.sweep": name, "convsweep.trial_key": trial.trial_key, "convsweep.kind": "train",
            "convsweep.trial_dir": f"runs/{name}/{trial.trial_key}", "convsweep.git_commit": "0" * 40,
            "convsweep.executor": "local", "convsweep.host": "bench", "convsweep.job_id": str(i),
            "convsweep.job_ids": str(i), "convsweep.requeues": "0"})
        acc = [rng.gauss(60 + 10 * e, 2) for e in range(1, 4)]
        metrics = [Metric(k, v, 0, e) for e in range(1, 4) for k, v in (
            ("train_loss", 2.0 / e), ("train_top1", acc[e - 1] + 3), ("val_top1", acc[e - 1]),
            ("val_top5", acc[e - 1] + 20), ("lr", 0.1), ("epoch_seconds", 1.0), ("images_per_second", 900.0))]
        metrics += [Metric("best_val_top1", max(acc), 0, 3), Metric("final_val_top1", acc[-1], 0, 3),
                    Metric("final_val_top5", acc[-1] + 20, 0, 3), Metric("folded_params", 272474.0, 0, 3),
                    Metric("folded_flops", 41e6, 0, 3)]
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[Param(k, v) for k, v in trial.flat_params().items()], tags=[RunTag("bench", "1")])
        client.set_terminated(run.info.run_id, status)
        if (i + 1) % 1000 == 0:
            print(f"  logged {i + 1} runs ({time.perf_counter() - start:.0f} s)", flush=True)
    shutil.copyfile(work / "mlruns.db", final_db)
    shutil.rmtree(work, ignore_errors=True)


def build_store_by_copy(sweep_file: Path, runs: int) -> None:
    """The store ``build_store`` makes, written mostly in SQL: see the module docstring."""
    import random
    import sqlite3
    import uuid

    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_sweep

    sweep = load_sweep(sweep_file, check=False)
    trials = expand(sweep)[:runs]
    final_db = CACHE / f"mlruns-{runs}.db"
    work = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlruns.db'}")
    exp_id = client.create_experiment(sweep.experiment, artifact_location=str(work / "artifacts"))
    template = client.create_run(exp_id, run_name="template").info.run_id
    names = ("train_loss", "train_top1", "val_top1", "val_top5", "lr", "epoch_seconds", "images_per_second")
    client.log_batch(template, metrics=[Metric(k, 1.0, 0, e) for e in range(1, 4) for k in names] + [
        Metric(k, 1.0, 0, 3) for k in ("best_val_top1", "final_val_top1", "final_val_top5", "folded_params",
                                       "folded_flops")], params=[Param("x", "1")], tags=[RunTag("bench", "1")])
    client.set_terminated(template, "FINISHED")
    db = sqlite3.connect(work / "mlruns.db")
    cols = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in ("runs", "metrics", "latest_metrics")}
    run_row = dict(zip(cols["runs"], db.execute("SELECT * FROM runs WHERE run_uuid = ?", (template,)).fetchone()))
    rng = random.Random(0)
    extra = [(t, "FAILED", sweep.name) for t in trials[:200]] + [(t, "FINISHED", "other-sweep") for t in trials[:200]]
    rows: dict[str, list[tuple]] = {"runs": [], "tags": [], "params": [], "metrics": [], "latest_metrics": []}
    start = time.perf_counter()
    for i, (trial, status, name) in enumerate([(t, "FINISHED", sweep.name) for t in trials] + extra):
        run_id = uuid.uuid4().hex
        run = {**run_row, "run_uuid": run_id, "status": status, "artifact_uri": f"{work}/artifacts/{run_id}",
               "name": f"{trial.model}-{trial.layer.method}-{trial.trial_key}"}
        rows["runs"].append(tuple(run[c] for c in cols["runs"]))
        tags = {"convsweep.sweep": name, "convsweep.trial_key": trial.trial_key, "convsweep.kind": "train",
                "convsweep.trial_dir": f"runs/{name}/{trial.trial_key}", "convsweep.git_commit": "0" * 40,
                "convsweep.executor": "local", "convsweep.host": "bench", "convsweep.job_id": str(i),
                "convsweep.job_ids": str(i), "convsweep.requeues": "0", "bench": "1", "mlflow.runName": run["name"]}
        rows["tags"] += [(k, v, run_id) for k, v in tags.items()]
        rows["params"] += [(k, v, run_id) for k, v in trial.flat_params().items()]
        acc = [rng.gauss(60 + 10 * e, 2) for e in range(1, 4)]
        history = [(k, v, e) for e in range(1, 4) for k, v in (
            ("train_loss", 2.0 / e), ("train_top1", acc[e - 1] + 3), ("val_top1", acc[e - 1]),
            ("val_top5", acc[e - 1] + 20), ("lr", 0.1), ("epoch_seconds", 1.0), ("images_per_second", 900.0))]
        history += [("best_val_top1", max(acc), 3), ("final_val_top1", acc[-1], 3),
                    ("final_val_top5", acc[-1] + 20, 3), ("folded_params", 272474.0, 3), ("folded_flops", 41e6, 3)]
        latest = {k: (v, e) for k, v, e in history}
        for table, items in (("metrics", [(k, v, e) for k, v, e in history]),
                             ("latest_metrics", [(k, v, e) for k, (v, e) in latest.items()])):
            for k, v, e in items:
                row = {"key": k, "value": v, "timestamp": 0, "step": e, "is_nan": False, "run_uuid": run_id}
                rows[table].append(tuple(row[c] for c in cols[table]))
    for table in ("metrics", "latest_metrics", "params", "tags", "runs"):
        db.execute(f"DELETE FROM {table} WHERE run_uuid = ?", (template,))
    for table, values in rows.items():
        marks = ",".join("?" * len(values[0]))
        names_sql = "" if table not in cols else f"({','.join(cols[table])})"
        if table in ("tags", "params"):
            names_sql = "(key, value, run_uuid)"
        db.executemany(f"INSERT INTO {table} {names_sql} VALUES ({marks})", values)
    db.commit()
    db.close()
    print(f"  wrote {len(rows['runs'])} runs in {time.perf_counter() - start:.0f} s", flush=True)
    shutil.copyfile(work / "mlruns.db", final_db)
    shutil.rmtree(work, ignore_errors=True)


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed_process(cmd: list[str], repeats: int) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Median wall time and median CPU time (user + system) of running ``cmd``, and its last result."""
    walls, cpus, proc = [], [], None
    for _ in range(repeats):
        cpu0, t0 = _cpu_of_children(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu_of_children() - cpu0)
    assert proc is not None
    return statistics.median(walls), statistics.median(cpus), proc


def _timed_trees(cmd: list[str], trees: dict[str, Path], repeats: int) -> dict[str, tuple[float, float, str]]:
    """Median wall and CPU time of ``cmd`` run with each tree's code (its PYTHONPATH), the trees taking turns
    so that the machine's load falls on each alike, and each one's output."""
    walls: dict[str, list[float]] = {label: [] for label in trees}
    cpus: dict[str, list[float]] = {label: [] for label in trees}
    out: dict[str, str] = {}
    for _ in range(repeats):
        for label, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            cpu0, t0 = _cpu_of_children(), time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=CACHE)
            walls[label].append(time.perf_counter() - t0)
            cpus[label].append(_cpu_of_children() - cpu0)
            out[label] = proc.stdout
    return {label: (statistics.median(walls[label]), statistics.median(cpus[label]), out[label]) for label in trees}


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--rebuild", action="store_true", help="build the cached store again")
    ap.add_argument("--skip-search-runs", action="store_true", help="skip the slow search_runs comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--client-build", action="store_true", help="build the store through MLflow's client only")
    ap.add_argument("--before", help="a tree of older code to time the CLI with, side by side (see the doc)")
    args = ap.parse_args(argv)

    goal = 2.0 if args.runs <= 10_000 else 5.0
    sweep_file = _sweep_file(args.runs)
    db = CACHE / f"mlruns-{args.runs}.db"
    if args.rebuild or not db.exists():
        print(f"building {db} ({args.runs} runs + 400 that must not count); cached for later runs", flush=True)
        if args.runs > 20_000 and not args.client_build:
            build_store_by_copy(sweep_file, args.runs)
        else:
            build_store(sweep_file, args.runs)

    from orchestrator.spec.load import load_sweep
    from orchestrator.tables.build import expected_layout, needed_keys, sweep_table
    from orchestrator.tables.pivot import build_table
    from orchestrator.tables.render import render
    from orchestrator.track.query import fetch_columns

    sweep = load_sweep(sweep_file, check=False)
    uri = sweep.tracking.uri
    params, metrics, fallback = needed_keys(sweep.table)
    lib_s, table = _timed(lambda: render(sweep_table(sweep), "md"), args.repeats)
    assert isinstance(table, str)
    cells = sweep_table(sweep)
    n_runs = cells.runs_used
    layout_s, expected = _timed(lambda: expected_layout(sweep), 1)
    fetch_s, runs = _timed(lambda: fetch_columns(uri, sweep.experiment, sweep.name, params=params, metrics=metrics,
                                                 fallback=fallback), 1)
    pivot_s, _ = _timed(lambda: build_table(sweep.table, runs, sweep=sweep.name, expected=expected), 1)
    print(table)
    print(f"runs in the table: {n_runs} (expected {args.runs}); missing cells: {cells.missing}")
    print(f"library  sweep_table + render (fast path), median of {args.repeats}: {lib_s:.2f} s   goal <= {goal:.0f} s: "
          f"{'met' if lib_s <= goal else 'NOT met'}  (planned layout {layout_s:.2f} s, reading the runs {fetch_s:.2f} s, "
          f"pivoting them {pivot_s:.2f} s)")
    if not args.skip_search_runs:
        api_s, _ = _timed(lambda: render(build_table(sweep.table, fetch_columns(
            uri, sweep.experiment, sweep.name, params=params, metrics=metrics, fallback=fallback, api_only=True),
            sweep=sweep.name, expected=expected), "md"), 1)
        print(f"library  same table via MlflowClient.search_runs (paginated): {api_s:.2f} s  "
              f"(fast path is {api_s / lib_s:.1f}x faster)")
    cli = [sys.executable, "-m", "orchestrator.cli", "table", str(sweep_file), "--tracking-uri", uri]
    trees = {"this code": REPO, **({"before": Path(args.before).resolve()} if args.before else {})}
    timed = _timed_trees(cli, trees, args.repeats)
    for label, (cli_s, cli_cpu, out) in timed.items():
        assert out.strip() == table.strip(), f"the CLI ({label}) printed another table than the library"
        print(f"CLI      convsweep table FILE, {label:9s} (fresh process, imports included), median of {args.repeats}: "
              f"{cli_s:.2f} s wall, {cli_cpu:.2f} s CPU   goal <= {goal:.0f} s: {'met' if cli_s <= goal else 'NOT met'} "
              f"({cli_s / goal:.2f} x the goal; CPU {cli_cpu / goal:.2f} x)")
    if "before" in timed:
        (now_s, now_cpu, _), (then_s, then_cpu, _) = timed["this code"], timed["before"]
        print(f"CLI      before -> this code: {then_s:.2f} s -> {now_s:.2f} s wall ({then_s / now_s:.1f}x), "
              f"{then_cpu:.2f} s -> {now_cpu:.2f} s CPU ({then_cpu / now_cpu:.1f}x)")
    plan_cmd = [sys.executable, "-m", "orchestrator.cli", "plan", str(sweep_file)]
    plan_s, plan_cpu, proc = _timed_process(plan_cmd, args.repeats)
    planned = proc.stdout.strip().splitlines()[-1]
    plan_goal = 5.0 * max(1.0, args.runs / 10_000)
    print(f"CLI      convsweep plan FILE ({planned.split(';')[0]}), median of {args.repeats}: {plan_s:.2f} s wall, "
          f"{plan_cpu:.2f} s CPU   goal <= {plan_goal:.0f} s: {'met' if plan_s <= plan_goal else 'NOT met'} "
          f"({plan_s / plan_goal:.2f} x the goal; CPU {plan_cpu / plan_goal:.2f} x)")
    bare = [sys.executable, "-c", "pass"]
    bare_s, _ = _timed(lambda: subprocess.run(bare, check=True), args.repeats)
    print(f"process  Python start-up alone (for scale), median of {args.repeats}: {bare_s:.2f} s")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
