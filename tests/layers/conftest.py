import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the shared variant table (tests/layers/layer_variants.py)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tests run many small ops: on a shared 2-core machine intra-op threads only contend
    (measured 10-100x slower per op under load). Restored after each module so other parts are unaffected."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
