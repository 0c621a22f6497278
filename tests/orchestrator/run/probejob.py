"""A job for test_tune.py, not a trainer: built in the trial's proxy (a Ray Tune worker), it records which
modules that worker has loaded; run, it writes a few epochs, a summary and DONE without importing torch.

The proxy builds it instead of ``TrialJob`` when ``CONVSWEEP_TRIAL_JOB=probejob:ProbeJob``; it is pickled by
value, so the job process needs only the package.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])

PROXY_MODULES = "proxy_modules.json"
EPOCHS = 3


class ProbeJob:
    def __init__(self, trial_dir: str) -> None:
        self.trial_dir = trial_dir
        (Path(trial_dir) / PROXY_MODULES).write_text(json.dumps(sorted(sys.modules)))

    def __call__(self) -> dict[str, float]:
        from orchestrator.dirs.trialdir import TrialDir

        td = TrialDir(self.trial_dir)
        for epoch in range(1, EPOCHS + 1):
            td.append_metrics({"epoch": epoch, "train_loss": 1.0 / epoch, "val_top1": 10.0 * epoch, "lr": 0.1,
                               "epoch_seconds": 0.1})
        summary = {"best_val_top1": 10.0 * EPOCHS, "final_val_top1": 10.0 * EPOCHS, "epochs": EPOCHS}
        td.write_summary(summary)
        td.mark_done()
        return summary


class SlowProbeJob(ProbeJob):
    """``ProbeJob`` at a pace (``PACE_SECONDS`` after each epoch) with a val_top1 that falls with the trial's
    seed, so a scheduler's verdicts are known in advance; a stop finds its job still running."""

    PACE_SECONDS = 1.5

    def __call__(self) -> dict[str, float]:
        import time

        from orchestrator.dirs.trialdir import TrialDir

        td = TrialDir(self.trial_dir)
        seed = int(json.loads((Path(self.trial_dir) / "spec.json").read_text())["seed"])
        done = {int(r["epoch"]) for r in td.iter_metrics()}
        for epoch in range(1, EPOCHS + 1):
            if epoch not in done:
                td.append_metrics({"epoch": epoch, "val_top1": 10.0 * epoch - seed, "lr": 0.1})
            time.sleep(self.PACE_SECONDS)
        summary = {"best_val_top1": 10.0 * EPOCHS - seed, "final_val_top1": 10.0 * EPOCHS - seed, "epochs": EPOCHS}
        td.write_summary(summary)
        td.mark_done()
        return summary


class FailOnceProbeJob(ProbeJob):
    """``ProbeJob`` whose first attempt fails after epoch 1 (a marker file remembers it); the retry goes on from
    epoch 2, as a trainer resumes from its checkpoint."""

    def __call__(self) -> dict[str, float]:
        from orchestrator.dirs.trialdir import TrialDir

        td, marker = TrialDir(self.trial_dir), Path(self.trial_dir) / "FAILED_ONCE"
        done = {int(r["epoch"]) for r in td.iter_metrics()}
        for epoch in range(1, EPOCHS + 1):
            if epoch in done:
                continue
            td.append_metrics({"epoch": epoch, "train_loss": 1.0 / epoch, "val_top1": 10.0 * epoch, "lr": 0.1})
            if not marker.exists():
                marker.write_text("")
                raise RuntimeError("the first attempt fails after epoch 1")
        summary = {"best_val_top1": 10.0 * EPOCHS, "final_val_top1": 10.0 * EPOCHS, "epochs": EPOCHS}
        td.write_summary(summary)
        td.mark_done()
        return summary
