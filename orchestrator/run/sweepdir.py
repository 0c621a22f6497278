"""The sweep's folder, ``<storage root>/<sweep>/``: every path in it (``SweepDir``) and the sweep record.

Layout::

    sweep.json      the resolved sweep, stored at submission (``record_sweep``); ``resume``, ``status``,
                    ``cancel``, ``logs`` and ``table SWEEP`` find a sweep by name through it
    driver.pid      "<pid> <host>" of the driver while it runs
    driver.json     {"executor": kind, "job_id": id, "log_path": ...} of a driver run as a job (``--detach``)
    STOPPING        written when the sweep is being stopped, before any job is cancelled: no proxy submits more
    jobs/           the executor's own folder (submitit files, SLURM's watcher); ``jobs/driver.log`` is a detached
                    driver's log (there, because an executor accepts only jobs whose log is in its folder)
    tune/           Ray Tune's experiment state (tune.proxies: actors; what ``resume`` restores)
    report.html     ``convsweep report``'s default output
    <trial key>/    one ``TrialDir`` per trial (a symlink into another sweep's folder for a reused trial)

Kept apart from ``orchestrator.run.driver`` (which imports MLflow and Ray) so that reading it costs only the
schema import.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from orchestrator.dirs.trialdir import TrialDir, atomic_write_text, read_json_file
from orchestrator.spec.schema import SweepSpec

__all__ = ["SWEEP_FILE", "SweepDir", "load_recorded", "record_sweep", "sweep_dir"]

SWEEP_FILE = "sweep.json"


class SweepDir:
    """Every path of one sweep's folder (see the module docstring); nothing is created until written."""

    def __init__(self, storage_root: str | os.PathLike[str], name: str) -> None:
        self.root = Path(storage_root)
        self.name = name
        self.path = self.root / name

    @classmethod
    def of(cls, sweep: SweepSpec) -> SweepDir:
        return cls(sweep.storage.root, sweep.name)

    def __repr__(self) -> str:
        return f"SweepDir({str(self.path)!r})"

    @property
    def record(self) -> Path:
        return self.path / SWEEP_FILE

    @property
    def driver_pid(self) -> Path:
        return self.path / "driver.pid"

    @property
    def driver_job(self) -> Path:
        return self.path / "driver.json"

    @property
    def stopping(self) -> Path:
        return self.path / "STOPPING"

    @property
    def jobs(self) -> Path:
        return self.path / "jobs"

    @property
    def driver_log(self) -> Path:
        return self.jobs / "driver.log"

    @property
    def tune(self) -> Path:
        return self.path / "tune"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def trial_link(self, trial_key: str) -> Path:
        """The trial's entry in this folder, unresolved: a symlink when the trial is reused from another sweep."""
        return self.path / trial_key

    def trial(self, trial_key: str) -> TrialDir:
        """The trial's directory (``TrialDir`` resolves a reused trial's link into the sweep that trained it)."""
        return TrialDir(self.trial_link(trial_key))

    def trials(self) -> list[TrialDir]:
        """The trial directories present (those holding a ``spec.json``), sorted by key."""
        if not self.path.is_dir():
            return []
        return [TrialDir(p) for p in sorted(self.path.iterdir(), key=lambda p: p.name)
                if p.is_dir() and (p / "spec.json").exists()]


def sweep_dir(sweep: SweepSpec) -> Path:
    """``SweepDir.of(sweep).path``."""
    return SweepDir.of(sweep).path


def record_sweep(spec: SweepSpec, source_file: str | None) -> None:
    # what the user set, not the defaults: read back, the spec must know which knobs were written (a layer knob
    # no trial reads is an error only when written, ``orchestrator.spec.checks.ignored_knob_problems``)
    data = {"spec": spec.model_dump(mode="json", exclude_unset=True), "source_file": source_file}
    atomic_write_text(SweepDir.of(spec).record, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_recorded(name: str | os.PathLike[str], root: str | os.PathLike[str] = "runs") -> tuple[SweepSpec, str | None]:
    """The sweep recorded at submission: ``name`` is a sweep name under ``root``, or a sweep directory."""
    candidates = [Path(name) / SWEEP_FILE, SweepDir(root, str(name)).record]
    for path in candidates:
        if path.is_file():
            return _read_record(path.resolve())
    folder = next((p.parent for p in candidates if p.parent.is_dir()), None)
    if folder is not None:
        # the driver records the sweep after validating it: a kill in its first seconds leaves the folder only
        raise ValueError(f"SWEEP: {folder} holds no {SWEEP_FILE}: the sweep was stopped before it was recorded; "
                         f"run `convsweep sweep FILE` again (finished trials are skipped)")
    raise ValueError(
        f"SWEEP: no recorded sweep {str(name)!r} (looked for {candidates[1]}); pass --root <storage root> "
        "or the sweep's directory, or start it with `convsweep sweep FILE`"
    )


def _read_record(path: Path) -> tuple[SweepSpec, str | None]:
    remedy = "run `convsweep sweep FILE` again to record it (finished trials are skipped)"
    data = read_json_file(path, remedy)
    try:
        spec = SweepSpec.model_validate(data["spec"])
        source = data.get("source_file")
    except (KeyError, TypeError, ValidationError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path}: not a sweep record ({type(exc).__name__}: {first}); {remedy}") from None
    return spec, source
