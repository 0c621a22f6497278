"""Shared fixtures of the experiment tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless Chromium, installed by orchestrator/install_chromium.sh where apt-get and root are
    available; elsewhere the tests using it skip with the script's one-line reason."""
    script = Path(__file__).resolve().parents[2] / "orchestrator" / "install_chromium.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        pytest.skip((lines or ["install_chromium.sh failed"])[-1])
    return lines[-1]
