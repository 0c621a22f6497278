"""The trial directory's job record (job.json): written by the driver, read by any later driver or CLI."""

from __future__ import annotations

from pathlib import Path

from orchestrator.dirs.trialdir import TrialDir


def test_job_record_round_trip(tmp_path: Path) -> None:
    td = TrialDir(tmp_path / "t")
    td.create()
    assert td.job_path == td.path / "job.json" and td.read_job() is None
    td.write_job("slurm", "42", log_path="/x/42_0_log.out")
    assert td.read_job() == {"executor": "slurm", "job_id": "42", "log_path": "/x/42_0_log.out"}
    td.write_job("local", 77)  # the latest job replaces the previous record
    assert td.read_job() == {"executor": "local", "job_id": "77"}
    assert not list(td.path.glob(".job.json.tmp*"))  # written atomically
