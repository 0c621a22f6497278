"""Benchmark: `convsweep plan` of a 10,008-trial sweep file (goal <= 5 s), before and after, side by side.

    .venv/bin/python tests/bench/bench_plan.py [--before DIR] [--repeat 3] [--trials 10008]

Three plans of one generated sweep (9 configurations: 3 CIFAR ResNets x 3 methods, x 1,112 seeds):
- plain: ``plan FILE --no-reuse`` (expand, trial keys, the table printed as text);
- reuse: ``plan FILE`` with the sweep's ``tracking.uri`` a SQLite store holding FINISHED runs of another
  sweep, 200 of them with this sweep's trial keys and DONE trial directories (found as reused), so the
  lookup of every trial's key in the store is timed;
- gpu_type cold: ``plan FILE --no-reuse --set resources.gpu_type=A100`` (the FLOP estimate of each distinct
  model, its saved counts deleted before each run: these CIFAR ResNets' are worked out from their shapes,
  ``layers.declared_macs``, no torch; before that, each model was built and counted, torch imported);
- gpu_type warm: the same, the counts a previous plan saved under the storage root read back (same code).

Each plan is a fresh ``convsweep`` process (start-up, imports, loading the file included), as a user runs it,
with PYTHONPATH at the code measured: "before" is a ``git archive`` of another commit (default: ``main``)
extracted under /tmp, "after" this checkout. The store is built once through the MLflow client and cached
under /tmp. Printed: the fastest wall seconds of ``--repeat`` runs and the CPU seconds (user + system) of that
run, which is what the wall time would be on an idle machine; the goal applies to CPU seconds here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 5.0
REPO = Path(__file__).resolve().parents[2]
CACHE = Path(tempfile.gettempdir()) / "convsweep-bench-plan"
SWEEP = """
name: bench-plan
tracking: {{uri: "sqlite:///{db}"}}
storage: {{root: "{root}"}}
base:
  model: resnet20
  dataset: {{name: cifar10, backend: synthetic}}
  recipe: {{epochs: 3}}
grid:
  model: [resnet20, resnet56, resnet18_cifar]
  layer.method: [stdconv, s-gmconv, gmconv]
seeds: {seeds}
"""
SOURCE_RUNS = 200  # finished runs of another sweep holding this sweep's keys


def sweep_file(trials: int) -> Path:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"bench_plan_{trials}.yaml"
    path.write_text(SWEEP.format(db=CACHE / "mlruns.db", root=CACHE / "runs", seeds=list(range(-(-trials // 9)))))
    return path


def build_store(path: Path) -> None:
    """SOURCE_RUNS FINISHED runs of sweep ``bench-plan-source`` with the first trials' keys, and their DONE
    directories; built once (the MLflow client takes ~60 ms a run)."""
    db = CACHE / "mlruns.db"
    if db.exists():
        return
    sys.path.insert(0, str(REPO))
    from mlflow.tracking import MlflowClient

    from orchestrator.dirs.trialdir import TrialDir
    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_sweep

    trials = expand(load_sweep(path, check=False))[:SOURCE_RUNS]
    work = CACHE / "building.db"
    work.unlink(missing_ok=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{work}")
    exp = client.create_experiment("bench-plan-source", artifact_location=str(CACHE / "artifacts"))
    for trial in trials:
        folder = TrialDir.for_trial(str(CACHE / "runs"), "bench-plan-source", trial.trial_key)
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.done_marker.write_text("")
        run = client.create_run(exp, tags={"convsweep.sweep": "bench-plan-source", "convsweep.kind": "train",
                                           "convsweep.trial_key": trial.trial_key,
                                           "convsweep.trial_dir": str(folder.path)})
        client.set_terminated(run.info.run_id, "FINISHED")
    shutil.move(work, db)


def measure(code: Path, args: list[str], cold: bool = False) -> tuple[float, float, int, str]:
    """(wall s, CPU s, exit code, the plan's last line) of one `convsweep plan` process."""
    if cold:
        (CACHE / "runs" / "flops.json").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(code)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "plan", *args], env=env, cwd=CACHE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.communicate()[0]
    wall = time.perf_counter() - start
    cpu = _child_cpu()
    lines = [line for line in out.strip().splitlines() if line.strip()]
    return wall, cpu, proc.returncode, lines[-1][:110] if lines else ""


_LAST_CPU = [0.0]


def _child_cpu() -> float:
    """CPU seconds of the child just reaped (from the running total of reaped children)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = r.ru_utime + r.ru_stime
    spent, _LAST_CPU[0] = total - _LAST_CPU[0], total
    return spent


def checkout(ref: str) -> Path:
    """A ``git archive`` of ``ref`` under /tmp (made once per commit)."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    target = Path(tempfile.gettempdir()) / f"convsweep-bench-plan-{commit[:12]}"
    if not target.is_dir():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        tmp.rename(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git ref of the code to compare with (default: main)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the fastest is reported")
    parser.add_argument("--trials", type=int, default=10008)
    parser.add_argument("--cases", default="plain,reuse,gpu cold,gpu warm", help="comma-separated subset")
    args = parser.parse_args()
    path = sweep_file(args.trials)
    build_store(path)
    codes = {f"before ({args.before})": checkout(args.before), "after (this checkout)": REPO}
    gpu = [str(path), "--no-reuse", "--set", "resources.gpu_type=A100"]
    cases = {"plain": ([str(path), "--no-reuse"], False), "reuse": ([str(path)], False), "gpu cold": (gpu, True),
             "gpu warm": (gpu, False)}
    print(f"convsweep plan, {args.trials} trials; fastest of {args.repeat} (wall s / CPU s); goal <= "
          f"{GOAL_SECONDS} CPU s")
    print(f"{'case':<10}" + "".join(f"{name:>32}" for name in codes) + "   ratio (CPU)   last line (after)")
    for case, (argv, cold) in cases.items():
        if case not in args.cases.split(","):
            continue
        cells, cpus, line = [], [], ""
        for code in codes.values():
            runs = [measure(code, argv, cold) for _ in range(args.repeat)]
            wall, cpu, status, line = min(runs)
            cells.append(f"{wall:7.2f} / {cpu:5.2f}{'' if status == 0 else f' (exit {status})':>10}")
            cpus.append(cpu)
        print(f"{case:<10}" + "".join(f"{c:>32}" for c in cells) + f"   {cpus[0] / max(cpus[1], 1e-9):5.1f}x"
              f"        {line}")
    print(f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
