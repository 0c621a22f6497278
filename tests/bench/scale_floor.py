"""The floor of "one Ray worker per trial": the memory of a Ray Tune function-trial worker that does nothing.

Starts a Ray local cluster and a Tune experiment of ``--trials`` function trials that sleep, in three variants
run one after the other, and prints the PSS and RSS of each trial's worker process once all of them run:

- ``bare``: the trainable imports nothing beyond what Tune's worker needs (the floor);
- ``proxy``: it imports what convsweep's proxy loads in its worker (``orchestrator.run.tune``, ``.proxy``, the
  local and SLURM executors) -- the proxy at rest, before it follows a job;
- ``mlflow``: ``proxy`` plus an MLflow client on a SQLite store, what each worker carried when every proxy
  wrote its own records (before the sweep's one writer).

Run:  cd /work/main && .venv/bin/python tests/bench/scale_floor.py [--trials 3]   (bench_scale.py runs it too)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

VARIANTS = ("bare", "proxy", "mlflow")


def _memory_mb(pid: int) -> tuple[float, float]:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    fields = dict(line.split(":", 1) for line in text.splitlines()[1:] if ":" in line)
    return int(fields["Pss"].split()[0]) / 1024, int(fields["Rss"].split()[0]) / 1024


def _trainable(config: dict) -> None:
    if config["variant"] in ("proxy", "mlflow"):
        import orchestrator.run.executors.local  # noqa: F401
        import orchestrator.run.proxy  # noqa: F401
        import orchestrator.run.tune  # noqa: F401
        import slurm.executor  # noqa: F401
    if config["variant"] == "mlflow":
        from mlflow.tracking import MlflowClient

        MlflowClient(config["uri"]).search_experiments()
    Path(config["out"], f"{os.getpid()}.pid").write_text("")
    deadline = time.time() + 600
    while not Path(config["out"], "stop").exists() and time.time() < deadline:
        time.sleep(0.5)


def measure(trials: int, variant: str, work: Path) -> tuple[float, float]:
    """Median (PSS, RSS) in MB of the workers of ``trials`` concurrent sleeping trials."""
    from ray import tune

    out = work / variant
    out.mkdir()
    samples: list[tuple[float, float]] = []

    def sample() -> None:  # once every trial's imports are done and it sleeps; then the trials end
        deadline = time.time() + 300
        while len(list(out.glob("*.pid"))) < trials and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(3)
        samples.extend(_memory_mb(int(p.stem)) for p in out.glob("*.pid"))
        (out / "stop").write_text("")

    thread = threading.Thread(target=sample)
    thread.start()
    tune.Tuner(
        tune.with_resources(_trainable, {"cpu": 0.001}),
        param_space={"variant": variant, "out": str(out), "uri": f"sqlite:///{work / 'm.db'}",
                     "i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=trials, reuse_actors=False),
        run_config=tune.RunConfig(storage_path=str(work / "tune"), name=variant, verbose=0),
    ).fit()
    thread.join()
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def floor(trials: int = 3) -> dict[str, tuple[float, float]]:
    import ray

    from orchestrator.run.tune import init_ray

    work = Path(tempfile.mkdtemp(prefix="scale-floor-"))
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{work / 'm.db'}").search_experiments()  # the tables, before the trials open it at once
    started = init_ray()
    try:
        return {variant: measure(trials, variant, work) for variant in VARIANTS}
    finally:
        if started:
            ray.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[2]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(repo))
    result = floor(args.trials)
    print(json.dumps(result))
    print(f"one Ray Tune function-trial worker, median of {args.trials} running at once:")
    for variant, (pss, rss) in result.items():
        print(f"  {variant:8s} PSS {pss:7.1f} MB   RSS {rss:7.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
