"""A load generator for bench_scale.py, not a trainer: a job that follows the trial-directory protocol (one
metrics line per "epoch", a summary, DONE) without importing torch, so that what is measured is the driver.

The driver's proxies submit it instead of ``TrialJob`` when ``CONVSWEEP_TRIAL_JOB=scale_loadjob:LoadJob``;
it is pickled by value (cloudpickle), so the job process needs only ``orchestrator.dirs.trialdir`` importable.
Each epoch lasts ``CONVSWEEP_LOADJOB_EPOCH_S`` seconds (default 2).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class LoadJob:
    def __init__(self, trial_dir: str) -> None:
        self.trial_dir = trial_dir

    def __call__(self) -> dict[str, float]:
        from orchestrator.dirs.trialdir import TrialDir

        td = TrialDir(self.trial_dir)
        spec = json.loads(td.spec_path.read_text())
        epochs = int(spec["recipe"]["epochs"])
        epoch_s = float(os.environ.get("CONVSWEEP_LOADJOB_EPOCH_S", "2"))
        rng = random.Random(spec.get("seed", 0))
        accuracies = []
        for epoch in range(1, epochs + 1):
            time.sleep(epoch_s)
            accuracies.append(50 + 10 * epoch + rng.gauss(0, 1))
            td.append_metrics({"epoch": epoch, "train_loss": 2.0 / epoch, "val_top1": accuracies[-1],
                               "val_top5": accuracies[-1] + 20, "lr": 0.1, "epoch_seconds": epoch_s})
        summary = {"best_val_top1": max(accuracies), "final_val_top1": accuracies[-1], "epochs": epochs}
        td.write_summary(summary)
        td.mark_done()
        return summary
