"""Shared fixtures of the orchestrator tests."""

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
