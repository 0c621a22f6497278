"""Small sweeps for the end-to-end tests of tests/orchestrator/run, and what they leave behind."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from orchestrator.dirs.trialdir import TrialDir


def write_sweep(path: Path, name: str, **changes: object) -> Path:
    data: dict = {
        "name": name,
        "tracking": {"uri": f"sqlite:///{path.parent / 'mlruns.db'}"},
        "storage": {"root": str(path.parent / "runs")},
        "base": {
            "model": "resnet20",
            "dataset": {"name": "digits", "backend": "pytorch", "num_workers": 0},
            "recipe": {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 2, "optimizer": {"lr": 0.05}},
        },
        "grid": {"layer.method": ["stdconv", "s-gmconv"]},
        "seeds": [0],
        "resources": {"processes_per_node": 2},
        "tune": {"max_concurrent_trials": 2, "max_failures": 1},
    }
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def runs_of(uri: str, sweep: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(sweep)
    return [] if exp is None else client.search_runs([exp.experiment_id], f"tags.`convsweep.sweep` = '{sweep}'")


def epoch_counts(td: TrialDir) -> Counter:
    return Counter(int(r["epoch"]) for r in td.iter_metrics())
