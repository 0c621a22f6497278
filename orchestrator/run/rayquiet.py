"""Ray's settings and the log lines of Ray's that the driver drops; no Ray import (``orchestrator.run.tune``
applies them when it starts Ray)."""

from __future__ import annotations

import logging

__all__ = ["RAY_ENV", "RAY_TUNE_LOGGER", "DropRayAdvice", "SignalWarningFilter", "quiet_ray_advice"]

# Quiet, local, no token file in ~/.ray, no usage reporting; Tune's strict metric check off
# (evaluation epochs may lack the metric when eval_every > 1).
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    # each reported epoch carries a checkpoint: a snapshot every `num_to_keep` of them is intended
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    # SIGINT/SIGTERM are the driver's (orchestrator.run.driver): it cancels the jobs first, then stops Tune through
    # the SIGUSR1 handler Tune installs while it runs
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}


class DropRayAdvice(logging.Filter):
    """Ray's own way on after an interruption (``Tuner.restore(path=..., trainable=...)``, "Trials did not
    complete: [...]"; ``ray/tune/tune.py``) is not the user's: the driver prints ``convsweep resume`` and counts
    the trials itself (``orchestrator.cli``)."""

    _ADVICE = ("Resume experiment with:", "Resume training with:", "Trials did not complete")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self._ADVICE)


RAY_TUNE_LOGGER = "ray.tune.tune"  # where tune.run logs them (Ray 2.x), whatever logging Ray configures


def quiet_ray_advice() -> None:
    logger_ = logging.getLogger(RAY_TUNE_LOGGER)
    if not any(isinstance(f, DropRayAdvice) for f in logger_.filters):
        logger_.addFilter(DropRayAdvice())


class SignalWarningFilter(logging.Filter):
    """Drops Ray's warning that a ``ray.init`` off the main thread sets no SIGTERM handler: the driver's
    signals are its own (``orchestrator.run.driver``), Ray's handler would only be replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")
