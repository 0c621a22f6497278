"""The commit of the code that drives a sweep (a tag of every run); stdlib only, so the driver can ask before
MLflow is imported."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["git_commit"]


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the code that drives the sweep ("unknown" outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10,
                             check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
