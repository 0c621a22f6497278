"""Benchmark: `convsweep table` over an MLflow store of 10,000 FINISHED runs of one sweep (goal <= 2 s).

    .venv/bin/python tests/bench/bench_tables.py [--runs 10000] [--rebuild] [--skip-search-runs]

The store (SQLite) is built once through the MLflow client, one ``create_run`` + one ``log_batch`` + one
``set_terminated`` per run with what a real trial logs (its ~45 flat params, 3 epochs of per-epoch metrics,
the end-of-run summary metrics, the contract's tags), plus 200 FAILED runs and 200 runs of another sweep
that must not count. Building takes minutes, so the file is cached under /tmp and reused.

Printed side by side in one run:
- library: ``sweep_table`` + ``render`` in this process (lay out the 10,000 planned trials, read the runs,
  aggregate, render), the figure the 2 s goal is about;
- the same through ``MlflowClient.search_runs`` (``fetch_runs``, paginated), for the ratio;
- CLI: ``convsweep table FILE --tracking-uri URI`` as a fresh process (adds Python start-up, imports and the
  CLI's own loading of the sweep file, schema only), the figure a user waits for; its ratio to the 2 s goal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "convsweep-bench-tables"
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

    from orchestrator.expand import expand
    from orchestrator.sweepfile import load_sweep

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
    args = ap.parse_args(argv)

    sweep_file = _sweep_file(args.runs)
    db = CACHE / f"mlruns-{args.runs}.db"
    if args.rebuild or not db.exists():
        print(f"building {db} ({args.runs} runs + 400 that must not count); cached for later runs", flush=True)
        build_store(sweep_file, args.runs)

    from orchestrator.expand import expand
    from orchestrator.sweepfile import load_sweep
    from orchestrator.tables import (build_table, expected_layout, fetch_records, fetch_runs, needed_keys, render,
                                     sweep_table)

    sweep = load_sweep(sweep_file, check=False)
    uri = sweep.tracking.uri
    params, metrics, fallback = needed_keys(sweep.table)
    lib_s, table = _timed(lambda: render(sweep_table(sweep), "md"), args.repeats)
    assert isinstance(table, str)
    cells = sweep_table(sweep)
    n_runs = cells.runs_used
    layout_s, _ = _timed(lambda: expected_layout(sweep), 1)
    fetch_s, _ = _timed(lambda: fetch_records(uri, sweep.experiment, sweep.name, params=params, metrics=metrics,
                                              fallback=fallback), 1)
    print(table)
    print(f"runs in the table: {n_runs} (expected {args.runs}); missing cells: {cells.missing}")
    print(f"library  sweep_table + render (fast path), median of {args.repeats}: {lib_s:.2f} s   goal <= 2 s: "
          f"{'met' if lib_s <= 2 else 'NOT met'}  (planned layout {layout_s:.2f} s, reading the runs {fetch_s:.2f} s)")
    if not args.skip_search_runs:
        expected = [t.flat_params() for t in expand(sweep)]
        api_s, _ = _timed(lambda: render(build_table(sweep.table, fetch_runs(uri, sweep.experiment, sweep.name),
                                                      sweep=sweep.name, expected=expected), "md"), 1)
        print(f"library  same table via MlflowClient.search_runs (paginated): {api_s:.2f} s  "
              f"(fast path is {api_s / lib_s:.1f}x faster)")
    cli = [sys.executable, "-m", "orchestrator.cli", "table", str(sweep_file), "--tracking-uri", uri]
    cli_s, proc = _timed(lambda: subprocess.run(cli, capture_output=True, text=True, check=True), args.repeats)
    assert proc.stdout.strip() == table.strip(), "the CLI printed another table than the library"
    print(f"CLI      convsweep table FILE (fresh process, imports included), median of {args.repeats}: {cli_s:.2f} s"
          f"   goal <= 2 s: {'met' if cli_s <= 2 else 'NOT met'} ({cli_s / 2:.2f} x the goal)")
    bare = [sys.executable, "-c", "pass"]
    bare_s, _ = _timed(lambda: subprocess.run(bare, check=True), args.repeats)
    print(f"process  Python start-up alone (for scale), median of {args.repeats}: {bare_s:.2f} s")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
