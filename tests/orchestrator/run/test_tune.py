"""The Tune side of a sweep (``orchestrator.run.tune``) on the real stack: a Ray local cluster, the trials'
proxies in Ray workers, the sweep's one MLflow writer actor, a real SQLite store, submitit local jobs.

The jobs are ``probejob.ProbeJob`` (no training, no torch), so what is tested is the driver's side: the proxies
load no MLflow or torch, and every trial's records still reach MLflow, each once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from probejob import EPOCHS, PROXY_MODULES

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
TRIALS = 3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_proxies_load_no_mlflow_and_their_records_arrive_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    sweep = tmp_path / "probe.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "probe",
        "tracking": {"uri": uri},
        "storage": {"root": str(tmp_path / "runs")},
        "base": {"model": "resnet20", "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
                 "recipe": {"epochs": EPOCHS}},
        "seeds": list(range(TRIALS)),
        "resources": {"processes_per_node": 1},
        "executor": {"local": {"warm_start": False}},
        "tune": {"max_concurrent_trials": TRIALS, "max_failures": 0, "proxies": "actors"},
    }))  # fmt: skip
    # the proxies build the probe job from this variable (orchestrator.run.proxy._trial_job); Ray's workers
    # inherit PYTHONPATH from the driver
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]),
           "CONVSWEEP_TRIAL_JOB": "probejob:ProbeJob"}
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", str(sweep), "--no-progress"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    dirs = sorted((tmp_path / "runs" / "probe").glob("*/" + PROXY_MODULES))
    assert len(dirs) == TRIALS
    for path in dirs:
        loaded = {name.split(".")[0] for name in json.loads(path.read_text())}
        assert "ray" in loaded and "orchestrator" in loaded  # it is the proxy's worker
        assert not loaded & {"mlflow", "torch", "sqlalchemy", "alembic"}, sorted(loaded & {"mlflow", "torch"})

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("probe").experiment_id])
    assert len(runs) == TRIALS and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        for key in ("epoch", "train_loss", "val_top1"):
            steps = Counter(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == Counter(range(1, EPOCHS + 1)), (key, steps)
        assert "best_val_top1" in run.data.metrics and run.data.tags["convsweep.job_id"]
