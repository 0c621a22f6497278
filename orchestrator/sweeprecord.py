"""The sweep record: the resolved sweep stored at submission as ``<storage root>/<sweep>/sweep.json``.

``resume``, ``status``, ``cancel``, ``logs`` and ``table SWEEP`` find a sweep by name through it. Kept apart
from ``orchestrator.sweep`` (which imports MLflow and Ray) so that reading it costs only the schema import.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestrator.config import SweepSpec
from orchestrator.trialdir import atomic_write_text

__all__ = ["SWEEP_FILE", "load_recorded", "record_sweep", "sweep_dir"]

SWEEP_FILE = "sweep.json"


def sweep_dir(sweep: SweepSpec) -> Path:
    return Path(sweep.storage.root) / sweep.name


def record_sweep(spec: SweepSpec, source_file: str | None) -> None:
    data = {"spec": spec.model_dump(mode="json"), "source_file": source_file}
    atomic_write_text(sweep_dir(spec) / SWEEP_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_recorded(name: str | os.PathLike[str], root: str | os.PathLike[str] = "runs") -> tuple[SweepSpec, str | None]:
    """The sweep recorded at submission: ``name`` is a sweep name under ``root``, or a sweep directory."""
    candidates = [Path(name) / SWEEP_FILE, Path(root) / str(name) / SWEEP_FILE]
    for path in candidates:
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return SweepSpec.model_validate(data["spec"]), data.get("source_file")
    raise ValueError(
        f"SWEEP: no recorded sweep {str(name)!r} (looked for {candidates[1]}); pass --root <storage root> "
        "or the sweep's directory"
    )
