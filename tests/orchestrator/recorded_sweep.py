"""Test set-up shared by the orchestrator tests: a sweep recorded as the driver records it, with a trial
directory (holding its spec) for every trial, before any job ran."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import SweepSpec
from orchestrator.expand import expand
from orchestrator.sweep import _record, prepare_sweep
from orchestrator.trialdir import TrialDir


def record_trial_dirs(sweep_file: Path) -> tuple[SweepSpec, list[TrialDir]]:
    """The prepared sweep of ``sweep_file``, recorded, and its trials' directories in expansion order."""
    spec = prepare_sweep(sweep_file)
    _record(spec, None)
    dirs = []
    for trial in expand(spec):
        td = TrialDir.for_trial(spec.storage.root, spec.name, trial.trial_key)
        td.create()
        td.write_spec(trial.model_dump(mode="json"))
        dirs.append(td)
    return spec, dirs
