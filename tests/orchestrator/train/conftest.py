"""Fixtures of the trainer's tests."""

from __future__ import annotations

import pytest
import torch

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.train.trainer import train

from trial_helpers import CPU, new_trial, tiny_spec


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> TrialDir:
    """The reference: three epochs in one go, on one intra-op thread as the tests that compare with it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trial = new_trial(tmp_path_factory.mktemp("ref"), "ref", tiny_spec())
        train(tiny_spec(), CPU, trial)
    finally:
        torch.set_num_threads(threads)
    return trial
