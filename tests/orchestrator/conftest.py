"""Shared fixtures of the orchestrator tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread, as a trial process gets (cpus_per_process=1): on a busy 2-core machine a second
    OpenMP thread spinning against other processes makes a forward pass tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def record_trial_dirs() -> Callable[[Path], tuple]:
    """Records a sweep file as the driver does before any job runs: the prepared sweep, its record, and a trial
    directory holding its spec for every trial, returned in expansion order."""
    from orchestrator.dirs.trialdir import TrialDir
    from orchestrator.run.driver import _record, prepare_sweep
    from orchestrator.spec.expand import expand

    def record(sweep_file: Path) -> tuple:
        spec = prepare_sweep(sweep_file)
        _record(spec, None)
        dirs = []
        for trial in expand(spec):
            td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
            td.create()
            td.write_spec(trial.model_dump(mode="json"))
            dirs.append(td)
        return spec, dirs

    return record
