"""The sweep record: the resolved sweep stored at submission as ``<storage root>/<sweep>/sweep.json``.

``resume``, ``status``, ``cancel``, ``logs`` and ``table SWEEP`` find a sweep by name through it. Kept apart
from ``orchestrator.run.driver`` (which imports MLflow and Ray) so that reading it costs only the schema import.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from orchestrator.spec.schema import SweepSpec
from orchestrator.dirs.trialdir import atomic_write_text, read_json_file

__all__ = ["SWEEP_FILE", "load_recorded", "record_sweep", "sweep_dir"]

SWEEP_FILE = "sweep.json"


def sweep_dir(sweep: SweepSpec) -> Path:
    return Path(sweep.storage.root) / sweep.name


def record_sweep(spec: SweepSpec, source_file: str | None) -> None:
    # what the user set, not the defaults: read back, the spec must know which knobs were written (a layer knob
    # no trial reads is an error only when written, ``orchestrator.spec.checks.ignored_knob_problems``)
    data = {"spec": spec.model_dump(mode="json", exclude_unset=True), "source_file": source_file}
    atomic_write_text(sweep_dir(spec) / SWEEP_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_recorded(name: str | os.PathLike[str], root: str | os.PathLike[str] = "runs") -> tuple[SweepSpec, str | None]:
    """The sweep recorded at submission: ``name`` is a sweep name under ``root``, or a sweep directory."""
    candidates = [Path(name) / SWEEP_FILE, Path(root) / str(name) / SWEEP_FILE]
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
