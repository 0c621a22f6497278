"""`convsweep sweep FILE --executor slurm --detach` on the real local SLURM: the driver itself runs as a small CPU
job (recorded under the sweep's directory), `convsweep status` sees it from another shell, and `convsweep
cancel` ends the driver job and every trial job (nothing of the sweep left in squeue)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from slurm_helpers import squeue_ids, wait_until
from test_slurm_sweep import cli, first_with_epoch, job_id, sacct, trial_dirs, write_sweep

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]


def test_detached_driver_runs_as_a_job_and_cancel_ends_everything(tmp_path: Path) -> None:
    name = "slurm-detach"
    sweep = write_sweep(tmp_path, name, ["stdconv"], epochs=3)
    runs = tmp_path / "runs"
    detach = cli("sweep", str(sweep), "--executor", "slurm", "--detach", root=tmp_path, fault="sleep:seconds=60")
    assert detach.returncode == 0, detach.stdout + detach.stderr
    record = json.loads((runs / name / "driver.json").read_text())
    driver = record["job_id"]
    try:
        assert record["executor"] == "slurm" and f"job {driver}" in detach.stdout
        listed = subprocess.run(["squeue", "--noheader", "--jobs", driver, "--format", "%j"], capture_output=True,
                                text=True, check=True).stdout.split()
        assert listed == [f"{name}-driver"]  # a real SLURM job
        trial = wait_until(lambda: first_with_epoch(tmp_path, name, 1), 300, "the detached sweep's first epoch")
        status = cli("status", name, "--root", str(runs), root=tmp_path)
        assert status.returncode == 0, status.stderr
        assert f"driver: job {driver} running" in status.stdout and "1 running" in status.stdout, status.stdout
        assert job_id(trial) in squeue_ids()
        refused = cli("sweep", str(sweep), "--executor", "slurm", "--detach", root=tmp_path)
        assert refused.returncode == 2 and f"job {driver}" in refused.stderr  # one driver per sweep

        cancel = cli("cancel", name, "--root", str(runs), root=tmp_path)
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert not {driver, job_id(trial)} & squeue_ids()  # the driver job and the trial's job are gone
    finally:  # never leave a job behind, whatever failed
        if ({driver} | {job_id(t) for t in trial_dirs(tmp_path, name)}) & squeue_ids():
            cli("cancel", name, "--root", str(runs), root=tmp_path)
    assert sacct(driver, "JobName")[-1] == f"{name}-driver"
    assert sacct(driver, "State")[-1] in ("CANCELLED", "COMPLETED")
    assert sacct(job_id(trial), "State")[-1] == "CANCELLED"
    assert not (trial / "DONE").exists()
    assert "driver: job" not in cli("status", name, "--root", str(runs), root=tmp_path).stdout
