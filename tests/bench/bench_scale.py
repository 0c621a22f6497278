"""Cluster scale: the real driver (Ray Tune, proxies, the MLflow writer, the SLURM executor and its watcher)
against a real SLURM, at several numbers of concurrent trials, side by side.

The SLURM is a second instance of slurm/local/ (its own folder and ports, beside the tests' cluster) whose two
nodes have ``--cpus`` fake CPUs each, so that many one-CPU trials run at once on this 2-core machine. Each trial
is ``scale_loadjob.LoadJob``, a load generator that writes ``--epochs`` metrics lines ``--epoch-seconds`` apart,
a summary and DONE, without importing torch. For N concurrent trials the sweep has 2N trials (two waves), so
that scheduling latency is measured too. Printed per N:

- driver memory: the peak during the sweep of the summed RSS and PSS of this process (the driver) and every
  process under it (Ray's GCS, raylet, its workers: one per running trial), with the most trials seen running
  at once (on a loaded machine fewer than N may overlap); and its growth per concurrent trial between the
  smallest and each larger N (goal: <= 50 MB per trial);
- slurmctld RPCs per minute, from ``sdiag`` before/after (nothing else uses that cluster): the state queries
  (squeue/scontrol: REQUEST_JOB_INFO*; goal: independent of N, <= 10/min at 64), and the submissions
  (REQUEST_SUBMIT_BATCH_JOB: one per trial, they follow the trials' throughput), plus the watcher's own count
  of SLURM commands;
- scheduling latency: from a trial's job end (its DONE marker) to the next trial's job submission
  (``job.json``), median and max;
- MLflow rows written per second (metrics, params, tags), over the sweep's wall time;
- first, the floor of "one Ray worker per trial" (``scale_floor.py``, in a process of its own): the PSS of a Ray
  Tune function-trial worker that imports nothing and sleeps, of one that loads what the proxy loads, and of
  one that also opens MLflow (each proxy did, before the sweep's one writer).

Each N runs once per ``--proxies`` kind: ``threads`` (the trials followed by threads of the driver, no Ray
process) and ``actors`` (one Ray Tune worker per running trial), side by side.

Run:  cd /work/main && .venv/bin/python tests/bench/bench_scale.py [--trials 8,32,64] [--proxies threads,actors]
      [--poll-seconds 15]
Needs root (the SLURM daemons); stops the bench cluster at the end unless --keep-cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCAL = REPO / "slurm" / "local"
CLUSTER_ENV = {"CONVSWEEP_SLURM_DIR": "/tmp/convsweep-slurm-bench", "CONVSWEEP_SLURM_PORT_BASE": "16917",
               "CONVSWEEP_SLURM_CLUSTER": "csbench"}
GOAL_RPM = 10.0
GOAL_MB_PER_TRIAL = 50.0


# -- the cluster ----------------------------------------------------------------------------------------------
def start_cluster(cpus: int) -> str:
    env = {**os.environ, **CLUSTER_ENV, "CONVSWEEP_SLURM_CPUS": str(cpus)}
    # a cluster left up with another CPU count is restarted: its slurm.conf is written only while it is down
    conf = Path(CLUSTER_ENV["CONVSWEEP_SLURM_DIR"]) / "etc" / "slurm.conf"
    if conf.exists() and f"CPUs={cpus} " not in conf.read_text():
        subprocess.run(["bash", str(LOCAL / "stop.sh")], env=env, check=True, capture_output=True)
    out = subprocess.run(["bash", str(LOCAL / "start.sh")], env=env, check=True, capture_output=True, text=True)
    return [ln for ln in out.stdout.splitlines() if ln.startswith("export SLURM_CONF=")][-1].split("=", 1)[1]


def stop_cluster() -> None:
    subprocess.run(["bash", str(LOCAL / "stop.sh")], env={**os.environ, **CLUSTER_ENV}, check=False,
                   capture_output=True)


def sdiag_counts() -> dict[str, int]:
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    section = out.split("Remote Procedure Call statistics by message type", 1)[1].split("by user", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s*(\w+)\s+\(\s*\d+\)\s+count:(\d+)", section, re.M)}


# -- memory of the driver and everything under it ---------------------------------------------------------------
def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def memory_mb(root: int) -> tuple[float, float, int]:
    """(RSS, PSS) in MB summed over ``root`` and its descendants, and how many processes that is."""
    rss = pss = 0
    pids = _descendants(root)
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines()[1:] if ":" in line)
        rss += int(fields.get("Rss", "0 kB").split()[0])
        pss += int(fields.get("Pss", "0 kB").split()[0])
    return rss / 1024, pss / 1024, len(pids)


class PeakMemory:
    """Samples ``memory_mb`` and the number of running trials every second; keeps the peak of each."""

    def __init__(self, running) -> None:  # noqa: ANN001
        self.running, self.peak, self.most_running = running, (0.0, 0.0, 0), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.most_running = max(self.most_running, self.running())
            sample = memory_mb(os.getpid())
            if sample[1] > self.peak[1]:
                self.peak = sample

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- one sweep ---------------------------------------------------------------------------------------------------
def run_one(work: Path, n: int, proxies: str, args: argparse.Namespace) -> dict[str, float]:
    from orchestrator.run.driver import run_sweep
    from slurm.watcher import watcher_for

    name = f"bench-scale-{proxies}-{n}"
    sweep_file = work / f"{name}.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": name,
        "tracking": {"uri": f"sqlite:///{work / f'{name}.db'}"},
        "storage": {"root": str(work / "runs")},
        "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": args.epochs}},
        "seeds": list(range(2 * n)),
        "resources": {"processes_per_node": 1, "gpus_per_node": 0},
        "executor": {"kind": "slurm", "slurm": {"time": "00:20:00", "poll_seconds": args.poll_seconds}},
        "tune": {"max_concurrent_trials": n, "max_failures": 0, "proxies": proxies},
    }))  # fmt: skip
    runs = work / "runs" / name

    def running() -> int:
        if not runs.is_dir():
            return 0
        return sum((p / "job.json").exists() and not (p / "DONE").exists() for p in runs.iterdir())

    before = sdiag_counts()
    start = time.time()
    with PeakMemory(running) as peak:
        result = run_sweep(sweep_file, show_progress=False)
    wall = time.time() - start
    after = sdiag_counts()
    if not result.ok or len(result.finished) != 2 * n:
        raise RuntimeError(f"N={n}: the sweep did not finish cleanly: {result}")
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    queries = sum(v for k, v in delta.items() if k.startswith("REQUEST_JOB_INFO"))
    trials = [p for p in runs.iterdir() if (p / "DONE").exists()]
    submitted = sorted((p / "job.json").stat().st_mtime for p in trials)
    ended = sorted((p / "DONE").stat().st_mtime for p in trials)
    latency = [submitted[i] - ended[i - n] for i in range(n, len(submitted))]
    with sqlite3.connect(work / f"{name}.db") as db:
        rows = sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("metrics", "params", "tags"))
    watcher = watcher_for(runs / "jobs", args.poll_seconds)
    return {"wall": wall, "most_running": peak.most_running, "rss": peak.peak[0], "pss": peak.peak[1], "procs": peak.peak[2],
            "query_rpm": queries / wall * 60, "submit_rpm": delta.get("REQUEST_SUBMIT_BATCH_JOB", 0) / wall * 60,
            "other_rpm": (sum(delta.values()) - queries - delta.get("REQUEST_SUBMIT_BATCH_JOB", 0)) / wall * 60,
            "watcher_calls_pm": sum(watcher.calls.values()) / wall * 60,
            "latency_median": statistics.median(latency) if latency else float("nan"),
            "latency_max": max(latency) if latency else float("nan"), "rows_per_s": rows / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="8,16", help="numbers of concurrent trials, comma-separated")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-seconds", type=float, default=3.0)
    parser.add_argument("--poll-seconds", type=float, default=15.0, help="executor.slurm.poll_seconds")
    parser.add_argument("--proxies", default="threads,actors",
                        help="tune.proxies to compare, comma-separated (each runs every --trials count)")
    parser.add_argument("--keep-cluster", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare-worker measurement")
    args = parser.parse_args()
    counts = [int(x) for x in args.trials.split(",")]
    modes = args.proxies.split(",")
    floor = {} if args.no_floor else measure_floor()
    os.environ["SLURM_CONF"] = start_cluster(cpus=max(counts))
    # the proxies (Ray workers, started by this process) submit the load generator; its module is found on
    # PYTHONPATH and pickled by value, so the jobs need only the package
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])
    os.environ["CONVSWEEP_TRIAL_JOB"] = "scale_loadjob:LoadJob"
    os.environ["CONVSWEEP_LOADJOB_EPOCH_S"] = str(args.epoch_seconds)
    sys.path[:0] = [str(HERE), str(REPO)]
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"scale benchmark: {counts} concurrent trials (2 waves each), {args.epochs} epochs of "
          f"{args.epoch_seconds:g} s, poll_seconds {args.poll_seconds:g}; SLURM nodes with {max(counts)} fake CPUs "
          f"each ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start); work {work}")
    base = memory_mb(os.getpid())
    try:
        # every N of one kind of proxy, then the next: the growth per trial compares runs of one kind
        rows = [run_one(work, n, mode, args) for mode in modes for n in counts]
    finally:
        if not args.keep_cluster:
            stop_cluster()
    print(f"  {'tune.proxies':44s} " + " ".join(f"{mode:>9s}" for mode in modes for _ in counts))
    print(f"  {'concurrent trials':44s} " + " ".join(f"{n:>9d}" for _ in modes for n in counts) + "   goal")
    lines = [
        ("sweep wall time [s]", "wall", "{:9.1f}", ""),
        ("trials running at once, at most", "most_running", "{:9.0f}", ""),
        ("driver + Ray processes at peak", "procs", "{:9.0f}", ""),
        ("driver RSS at peak [MB]", "rss", "{:9.0f}", ""),
        ("driver PSS at peak [MB]", "pss", "{:9.0f}", ""),
        ("slurmctld state queries / min", "query_rpm", "{:9.1f}", f"<= {GOAL_RPM:.0f}, flat in N"),
        ("slurmctld submissions / min", "submit_rpm", "{:9.1f}", "(one per trial)"),
        ("slurmctld other RPCs / min (jobs' own)", "other_rpm", "{:9.1f}", ""),
        ("watcher's SLURM commands / min", "watcher_calls_pm", "{:9.1f}", ""),
        ("job end -> next submission, median [s]", "latency_median", "{:9.2f}", ""),
        ("job end -> next submission, max [s]", "latency_max", "{:9.2f}", ""),
        ("MLflow rows written / s", "rows_per_s", "{:9.1f}", ""),
    ]
    for label, key, fmt, goal in lines:
        print(f"  {label:44s} " + " ".join(fmt.format(r[key]) for r in rows) + f"   {goal}")
    print(f"  {'driver alone before Ray, RSS / PSS [MB]':44s} {base[0]:9.0f} {base[1]:9.0f}")
    for m, mode in enumerate(modes):
        first = rows[m * len(counts)]
        for n, row in zip(counts[1:], rows[m * len(counts) + 1:(m + 1) * len(counts)]):
            for kind in ("rss", "pss"):
                # per trial that really ran at the same time (fewer than N overlap on a loaded machine)
                growth = (row[kind] - first[kind]) / max(1, row["most_running"] - first["most_running"])
                print(f"  {mode:7s} {kind.upper()} growth per concurrent trial, {counts[0]} -> {n}: {growth:7.1f} MB"
                      f"   goal <= {GOAL_MB_PER_TRIAL:.0f} MB: {'met' if growth <= GOAL_MB_PER_TRIAL else 'NOT met'}")
    per_trial = [r["pss"] / max(1, r["most_running"]) for r in rows]
    print(f"  {'PSS per running trial (total / at most) [MB]':44s} " + " ".join(f"{v:9.1f}" for v in per_trial))
    for variant, (pss, rss) in floor.items():
        print(f"  one Tune trial worker at rest, {variant:6s} PSS / RSS [MB] {pss:9.0f} {rss:9.0f}"
              + ("   (the floor of one Ray worker per trial)" if variant == "bare" else ""))
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


def measure_floor() -> dict[str, tuple[float, float]]:
    out = subprocess.run([sys.executable, str(HERE / "scale_floor.py")], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))


if __name__ == "__main__":
    sys.exit(main())
