"""slurm/local/: idempotent start, stop only by recorded PID (never a foreign process), one-line install errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[2] / "slurm" / "local"
DAEMONS = {"munged": "munged", "mariadbd": "mariadbd", "slurmdbd": "slurmdbd", "slurmctld": "slurmctld",
           "slurmd-node1": "slurmd", "slurmd-node2": "slurmd"}


def run(script: Path, env: dict[str, str], user: str | None = None) -> subprocess.CompletedProcess[str]:
    if user is None:
        cmd, full_env = ["bash", str(script)], {**os.environ, **env}
    else:  # a clean environment: only what is given
        cmd, full_env = ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                         "bash", str(script)], None
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=full_env)


def recorded_pids(state_dir: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (state_dir / "pids").glob("*.pid")}


@pytest.mark.slurm
@pytest.mark.slow
def test_start_again_says_already_up_and_changes_nothing(slurm_cluster: dict[str, str]) -> None:
    state_dir = Path(slurm_cluster["dir"])
    before = recorded_pids(state_dir)
    assert before.keys() == DAEMONS.keys()
    for name, pid in before.items():
        assert Path(f"/proc/{pid}/comm").read_text().strip() == DAEMONS[name]
    again = subprocess.run(["bash", str(LOCAL / "start.sh")], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "CONVSWEEP_SLURM_DIR": str(state_dir)}, check=False)
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    assert again.stdout.strip().splitlines()[-1] == f"export SLURM_CONF={slurm_cluster['conf']}"
    assert recorded_pids(state_dir) == before
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, check=True)
    states = dict(line.split() for line in set(nodes.stdout.splitlines()))
    assert states.keys() == {"node1", "node2"}
    assert all(state in ("idle", "mix", "alloc", "comp") for state in states.values()), states  # none drained


def test_stop_never_signals_a_recycled_pid(tmp_path: Path) -> None:
    """A recorded PID now held by another program (here: sleep) is left alone."""
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "pids").mkdir()
        for name in ("slurmctld", "munged", "slurmd-node1"):
            (tmp_path / "pids" / f"{name}.pid").write_text(f"{bystander.pid}\n")
        result = run(LOCAL / "stop.sh", env={"CONVSWEEP_SLURM_DIR": str(tmp_path)})
        assert result.returncode == 0, result.stderr
        assert "nothing running" in result.stdout
        assert bystander.poll() is None  # still alive
        assert not list((tmp_path / "pids").glob("*.pid"))  # stale records dropped
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to act as nobody")
def test_install_refusal_is_one_line_with_the_reason(tmp_path: Path) -> None:
    """Where the packages are missing and apt-get cannot run (here: not root), install.sh says why in one line."""
    with tempfile.TemporaryDirectory(prefix="convsweep-install-test-") as where:
        # basic tools only: the SLURM client programs look missing; all of it readable by nobody
        work = Path(where)
        work.chmod(0o755)
        tools = work / "bin"
        tools.mkdir()
        for tool in ("bash", "uname", "id", "mkdir", "grep", "tail", "cat", "mktemp", "cp", "chmod", "rm", "mv"):
            (tools / tool).symlink_to(shutil.which(tool))
        shutil.copy(LOCAL / "install.sh", work / "install.sh")
        result = run(work / "install.sh", env={"PATH": str(tools), "CONVSWEEP_SLURM_DIR": str(work / "state")},
                     user="nobody")
    assert result.returncode != 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("install.sh: needs root to apt-get install"), result


@pytest.mark.slurm
@pytest.mark.slow
def test_job_ids_never_repeat_after_slurmctld_loses_its_state(slurm_cluster: dict[str, str], tmp_path: Path) -> None:
    """`sacct -j ID` reports the latest-submitted job of that id: a restarted slurmctld whose saved state is gone
    (the accounting database kept) must continue past every id the database has seen, not restart at 1."""
    state_dir = Path(slurm_cluster["dir"])

    def submit() -> int:
        out = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path}/%j.out", "--wrap", "true"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return int(out.split(";")[0])

    before = submit()
    for _ in range(150):  # until the accounting database holds the job's end
        sacct = subprocess.run(["sacct", "-n", "-P", "-X", "-j", str(before), "-o", "State"],
                               capture_output=True, text=True, check=True).stdout.split()
        if sacct == ["COMPLETED"]:
            break
        time.sleep(0.2)
    assert sacct == ["COMPLETED"], sacct
    ctld_pid = recorded_pids(state_dir)["slurmctld"]
    subprocess.run(["kill", "-TERM", str(ctld_pid)], check=True)
    for _ in range(100):
        if not Path(f"/proc/{ctld_pid}").exists():
            break
        time.sleep(0.2)
    shutil.rmtree(state_dir / "state" / "ctld")
    restart = subprocess.run(["bash", str(LOCAL / "start.sh")], capture_output=True, text=True, timeout=180,
                             env={**os.environ, "CONVSWEEP_SLURM_DIR": str(state_dir)}, check=False)
    assert restart.returncode == 0, restart.stderr
    assert submit() > before
