"""Orchestrator overhead: what convsweep adds around training, per trial, on this machine.

A sweep of N one-step trials (ResNet-20 on digits, one step of batch 8, world size 1) is run through the
whole stack (validation, MLflow SQLite, Ray Tune, submitit local jobs), once with one trial at a time and
once with two concurrent trials (the local bound on 2 cores), both with the local executor's warm start (ranks
forked from a process that has imported torch and the trainer), and once more with two concurrent trials
started cold (``executor.local.warm_start: false``, every rank a fresh interpreter). Printed side by side:

- Ray start (once per driver),
- wall time of the sweep after Ray is up, the trials' own training time (sum of their epoch_seconds) and
  the per-trial overhead = (wall - training) / N  (goal: <= 2 s),
- the job-side part of a trial's overhead (mean per trial, not divided by concurrency): from submission to
  the job's first log line (processes up: Python, torch, DDP) and from there to its first step (data, model),
- a job's own import chain in a fresh process (torch, layers, pipelines, the trainer; each on top of the
  previous) and which heavy packages it loads (timm, DALI, MLflow and Ray should not be among them),
- time to the first training step: from calling run_sweep to the start of the first trial's first epoch
  (the epoch's end, the mtime of its metrics line, minus its epoch_seconds).

Run:  cd /work/main && .venv/bin/python tests/bench/bench_orchestrator.py [--trials 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

GOAL_SECONDS = 2.0


def _measure(trials: int, concurrency: int, warm_start: bool = True) -> dict[str, float]:
    from orchestrator.run.driver import run_sweep

    work = Path(tempfile.mkdtemp(prefix="bench-orch-"))
    sweep_file = work / "bench.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "bench-orchestrator",
        "tracking": {"uri": f"sqlite:///{work / 'mlruns.db'}"},
        "storage": {"root": str(work / "runs")},
        "base": {"model": "resnet20", "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
                 "recipe": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 1}},
        "seeds": list(range(trials)),
        "resources": {"processes_per_node": 1},
        "tune": {"max_concurrent_trials": concurrency, "max_failures": 0},
        "executor": {"kind": "local", "local": {"warm_start": warm_start}},
    }))  # fmt: skip
    t1 = time.time()
    result = run_sweep(sweep_file, show_progress=False)
    wall = time.time() - t1
    if not result.ok or len(result.finished) != trials:
        raise RuntimeError(f"sweep did not finish cleanly: {result}")
    training, first_step, job_start, job_setup = 0.0, float("inf"), 0.0, 0.0
    for key in result.finished:
        trial = work / "runs" / "bench-orchestrator" / key
        metrics = trial / "metrics.jsonl"
        seconds = float(json.loads(metrics.read_text().splitlines()[0])["epoch_seconds"])
        step_start = os.path.getmtime(metrics) - seconds
        training += seconds
        first_step = min(first_step, step_start - t1)
        # the job's first log line: its processes are up (Python, torch, DDP); then data and model are built
        first_line = (trial / "job.log").read_text().splitlines()[0]
        logged = datetime.strptime(first_line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        job_start += logged - os.path.getmtime(trial / "job.json")
        job_setup += step_start - logged
    return {"wall": wall, "training": training, "overhead": (wall - training) / trials, "first_step": first_step,
            "job_start": job_start / trials, "job_setup": job_setup / trials}


_IMPORT_PROBE = """
import json, sys, time
out = {}
for name in ("torch", "layers", "pipelines", "orchestrator.train.trainer"):
    t = time.perf_counter()
    __import__(name)
    out[name] = time.perf_counter() - t
heavy = ("timm", "torchvision", "torch._dynamo", "sklearn", "scipy", "nvidia.dali", "mlflow", "ray")
out["loaded"] = [m for m in heavy if m in sys.modules]
print(json.dumps(out))
"""


def _job_imports() -> dict[str, object]:
    """What a job process pays to import its chain (torch, layers, pipelines, trainer), in a fresh process."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    from orchestrator.run.tune import init_ray

    t0 = time.time()
    init_ray()
    ray_start = time.time() - t0
    print(f"orchestrator benchmark: {args.trials} one-step trials, world size 1 ({os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start)")
    print(f"  Ray start (once per driver)            {ray_start:7.2f} s")
    imports = _job_imports()
    chain = ", ".join(f"{k} {v:.2f} s" for k, v in imports.items() if k != "loaded")
    print(f"  a job's imports, fresh process: {chain}; heavy modules loaded: {imports['loaded']}")
    runs = ((1, True), (2, True), (2, False))
    print(f"  {'concurrent trials':38s} " + " ".join(f"{c:>9d}" for c, _ in runs))
    print(f"  {'ranks start':38s} " + " ".join(f"{'warm' if w else 'cold':>9s}" for _, w in runs))
    rows = [_measure(args.trials, concurrency, warm) for concurrency, warm in runs]
    for label, key in (("sweep wall time (Ray up) [s]", "wall"), ("training time, sum of epoch_seconds [s]", "training"),
                       ("overhead per trial [s]", "overhead"),
                       ("  of which: job processes start [s]", "job_start"),
                       ("  of which: job builds data + model [s]", "job_setup"),
                       ("time to first training step [s]", "first_step")):
        print(f"  {label:38s} " + " ".join(f"{row[key]:9.2f}" for row in rows))
    print(f"  {'overhead / goal of ' + str(GOAL_SECONDS) + ' s':38s} "
          + " ".join(f"{row['overhead'] / GOAL_SECONDS:9.2f}" for row in rows))
    print(f"  warm / cold overhead at 2 concurrent: {rows[1]['overhead'] / rows[2]['overhead']:.2f}")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
