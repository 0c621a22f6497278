"""The callable an executor runs: one process of one trial, found entirely through its trial directory.

``TrialJob(trial_dir)`` is all that is pickled and shipped to the compute node (a path string), so a job
resubmitted after a timeout or preemption (``checkpoint()``) or by ``convsweep resume`` starts from the trial
directory's files, never from pickled state: the spec from ``spec.json``, the weights and position from
``checkpoints/last.pt``. Each process logs to ``<trial_dir>/job.log`` with its rank in every line, and to
stderr, which submitit keeps in its own per-task log files.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import submitit

from orchestrator.spec.schema import TrialSpec
from orchestrator.dirs.trialdir import TrialDir

__all__ = ["TrialJob"]

log = logging.getLogger(__name__)


class TrialJob(submitit.helpers.Checkpointable):
    """Run one process of the trial in ``trial_dir`` (training, or evaluation when the spec says so)."""

    def __init__(self, trial_dir: str) -> None:
        self.trial_dir = str(trial_dir)

    def __repr__(self) -> str:
        return f"TrialJob({self.trial_dir!r})"

    def __call__(self) -> dict[str, Any]:
        # torch, the models and the data pipelines are imported here, in the job process: the driver, which
        # only builds and pickles TrialJobs, never pays for them.
        import torch

        from orchestrator.train.distributed import setup_distributed, teardown_distributed

        trial_dir = TrialDir(self.trial_dir)
        if trial_dir.is_done:  # a resubmission after the end: nothing to do
            return trial_dir.read_summary() or {}
        try:
            spec = TrialSpec.model_validate(trial_dir.read_spec())
            dist = setup_distributed()
        except Exception:
            # Before any rank is known: every process may write FAILED; they all write the same kind of text.
            trial_dir.mark_failed(traceback.format_exc())
            raise
        handlers, level = _attach_log_handlers(trial_dir, dist.rank)
        try:
            log.info("trial %s (%s) on %s", spec.trial_key, "evaluate" if spec.evaluate_source else "train", dist)
            if dist.device == "cpu":
                torch.set_num_threads(spec.resources.cpus_per_process)
            if spec.evaluate_source is not None:
                from orchestrator.train.evaluate import evaluate

                return evaluate(spec, dist, trial_dir)
            from orchestrator.train.trainer import train

            return train(spec, dist, trial_dir)
        finally:
            teardown_distributed()
            _detach_log_handlers(handlers, level)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Requeue (timeout, preemption): a fresh job on the same directory resumes from its last checkpoint."""
        return submitit.helpers.DelayedSubmission(TrialJob(self.trial_dir))


def _attach_log_handlers(trial_dir: TrialDir, rank: int) -> tuple[list[logging.Handler], int]:
    formatter = logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s")
    trial_dir.path.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(trial_dir.log_path), logging.StreamHandler(sys.stderr)]
    root = logging.getLogger()
    level = root.level
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if level > logging.INFO or level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # library warnings (torch, DALI) land in job.log too
    return handlers, level


def _detach_log_handlers(handlers: list[logging.Handler], level: int) -> None:
    logging.captureWarnings(False)
    root = logging.getLogger()
    root.setLevel(level)
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
