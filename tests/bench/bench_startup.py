"""From ``convsweep sweep`` to the first training step of a one-trial local sweep (goal: <= 10 s).

Runs the real CLI in a fresh process (as a user would) on a one-trial sweep (ResNet-20 on digits, one step,
world size 1, local executor with warm start), and prints, per repeat, the wall time from launching the
command to: the trial's job being submitted (the mtime of its ``job.json``), the start of its first step (the
metrics line's mtime minus its epoch_seconds) and the command's exit.

Each ``--proxies`` kind is measured: ``threads`` (the default: no Ray process) and ``actors`` (Tune's runtime).

Run:  cd /work/main && .venv/bin/python tests/bench/bench_startup.py [--repeats 3] [--code DIR] [--against OLD]
(``--code DIR`` measures another checkout of the package; ``--against OLD`` also measures OLD, e.g. a
``git archive main`` copy, alternating with DIR run by run so both see the same load, and prints both.)
CPU seconds are those of the command and the processes it waited for (Ray's, the job's), from ``getrusage``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

GOAL_SECONDS = 10.0


def measure(code: Path, proxies: str | None) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    sweep = work / "startup.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "bench-startup",
        "tracking": {"uri": f"sqlite:///{work / 'mlruns.db'}"},
        "storage": {"root": str(work / "runs")},
        "base": {"model": "resnet20", "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
                 "recipe": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 1}},
        "seeds": [0],
        "resources": {"processes_per_node": 1},
        # code from before tune.proxies existed is run without the key (it ran what is now "actors")
        "tune": {"max_concurrent_trials": 1, "max_failures": 0, **({"proxies": proxies} if proxies else {})},
    }))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", str(sweep)], cwd=work, env=env,
                          capture_output=True, text=True, check=False)
    end = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode != 0:
        raise RuntimeError(f"convsweep sweep failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    (trial,) = [p for p in (work / "runs" / "bench-startup").iterdir() if (p / "metrics.jsonl").exists()]
    metrics = trial / "metrics.jsonl"
    seconds = float(json.loads(metrics.read_text().splitlines()[0])["epoch_seconds"])
    return {"first_step": os.path.getmtime(metrics) - seconds - start, "exit": end - start,
            "submitted": os.path.getmtime(trial / "job.json") - start, "cpu": cpu}


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _print(code: Path, proxies: str | None, rows: list[dict[str, float]]) -> None:
    print(f"code {code}" + (f", tune.proxies {proxies}:" if proxies else ":"))
    for label, key in (("launch -> job submitted [s]", "submitted"), ("launch -> first training step [s]",
                                                                      "first_step"), ("launch -> exit [s]", "exit"),
                       ("CPU seconds (all processes)", "cpu")):
        values = [row[key] for row in rows]
        print(f"  {label:36s} " + " ".join(f"{v:7.2f}" for v in values) + f"   median {_median(values):6.2f}")
    best = _median([row["first_step"] for row in rows])
    print(f"  first step, median / goal of {GOAL_SECONDS:.0f} s: {best / GOAL_SECONDS:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[2],
                        help="the checkout whose orchestrator to run (default: this one)")
    parser.add_argument("--proxies", default="threads,actors",
                        help="tune.proxies to measure --code with, comma-separated (--against runs without the key)")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout to measure too, alternating with --code (e.g. the code before a change)")
    args = parser.parse_args()
    variants: list[tuple[Path, str | None]] = [(args.against.resolve(), None)] if args.against else []
    variants += [(args.code.resolve(), proxies) for proxies in args.proxies.split(",")]
    print(f"start-up benchmark: one-trial local sweep ({os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start)")
    rows: dict[tuple[Path, str | None], list[dict[str, float]]] = {variant: [] for variant in variants}
    for _ in range(args.repeats):
        for variant in variants:  # alternating: a change in the machine's load hits all alike
            rows[variant].append(measure(*variant))
    for variant in variants:
        _print(*variant, rows[variant])
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
