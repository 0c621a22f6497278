"""The trial directory: its job record (job.json), written by the driver and read by any later driver or CLI, and
which folders bear out a finish."""

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


def test_which_folders_bear_out_a_finish(tmp_path: Path) -> None:
    from orchestrator.train.checkpoint import save_checkpoint

    td = TrialDir(tmp_path / "t")
    td.create()
    assert td.contradiction() == "no DONE marker; no summary.json"
    td.summary_path.write_text("{\"best")
    td.mark_done()
    assert td.contradiction() == "summary.json is not a readable summary"
    td.write_summary({"epochs": 2})
    assert td.contradiction() is None  # checkpoints cleaned up after the sweep: the result stands
    save_checkpoint({"epoch": 1}, td.last_checkpoint, td.prev_checkpoint)
    save_checkpoint({"epoch": 2}, td.last_checkpoint, td.prev_checkpoint)
    td.last_checkpoint.rename(td.prev_checkpoint)  # the instant between save_checkpoint's two renames
    assert td.contradiction() == "checkpoints/prev.pt disagrees with its checksum"
    assert td.contradiction(deep=False) is None and td.contradiction(trains=False) is None
