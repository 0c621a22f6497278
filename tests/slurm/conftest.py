"""The real single-host SLURM for the tests: installed and started once per session by slurm/local/.

If the Debian packages cannot be installed here, every test that needs the cluster is skipped with
install.sh's one-line reason (shown by pytest's ``-ra`` summary); a cluster that installs but does not start
is a failure, not a skip. The cluster is stopped at the end only if this session started it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[2] / "slurm" / "local"


def _run(script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(LOCAL / script)], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[dict[str, str]]:
    """Start (or reuse) the test cluster; yields {"conf": SLURM_CONF path, "dir": its state directory}."""
    install = _run("install.sh", timeout=900)
    if install.returncode != 0:
        lines = [ln for ln in install.stdout.splitlines() if ln.strip()] or [install.stderr.strip() or "no output"]
        pytest.skip(f"real SLURM unavailable: {lines[-1]}")
    if os.geteuid() != 0:
        pytest.skip("real SLURM unavailable: slurm/local/start.sh runs the daemons as root (not root here)")
    start = _run("start.sh", timeout=300)
    if start.returncode != 0:
        pytest.fail(f"slurm/local/start.sh failed:\n{start.stdout}\n{start.stderr}", pytrace=False)
    exports = [ln for ln in start.stdout.splitlines() if ln.startswith("export SLURM_CONF=")]
    conf = exports[-1].split("=", 1)[1]
    started_here = "already up" not in start.stdout
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf  # the jobs inherit it through sbatch's --export=ALL
    try:
        yield {"conf": conf, "dir": str(Path(conf).parents[1])}
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if started_here:
            _run("stop.sh", timeout=300)

