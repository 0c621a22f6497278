"""Checksums of checkpoints and the verdict on a checkpoint file, without torch: ``convsweep status`` and
``table`` judge checkpoints without importing it (except to load a checkpoint that has no checksum).

The checksum of ``x.pt`` is ``x.pt.sha256``: lines ``sha256 <hex>`` and ``size <bytes>``. It names no file,
as it is renamed together with its checkpoint (``orchestrator.train.checkpoint`` writes and rotates both).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["HashingWriter", "checkpoint_epoch", "checksum_path", "damage", "move_checkpoint", "read_checkpoint",
           "recorded_checksum", "sha256_of", "write_checksum"]

log = logging.getLogger(__name__)

# What a damaged or truncated file raises from torch.load (an empty file: EOFError; a cut zip: RuntimeError).
_UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError)


def checksum_path(checkpoint: Path) -> Path:
    """Where the checksum of ``checkpoint`` lives."""
    return checkpoint.with_name(checkpoint.name + ".sha256")


class HashingWriter:
    """A file that hashes what is written to it, so the checksum costs no second read of the checkpoint."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def write_checksum(path: Path, digest: str, size: int) -> None:
    """Write the checksum of ``path`` atomically (temporary file, fsync, rename)."""
    target = checksum_path(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"sha256 {digest}\nsize {size}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def recorded_checksum(path: Path) -> tuple[str, int | None] | None:
    """(sha256, size) recorded beside ``path``; None without a readable record."""
    try:
        text = checksum_path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    fields = dict(line.split(None, 1) for line in text.splitlines() if len(line.split()) == 2)
    digest, size = fields.get("sha256", ""), fields.get("size", "")
    if len(digest) != 64:
        return None
    return digest, int(size) if size.isdigit() else None


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def move_checkpoint(source: Path, target: Path) -> None:
    """Rename a checkpoint together with its checksum (the checksum first, as ``save_checkpoint`` rotates)."""
    checksum_path(target).unlink(missing_ok=True)
    if checksum_path(source).exists():
        os.replace(checksum_path(source), checksum_path(target))
    os.replace(source, target)


def damage(path: Path, *, deep: bool = True) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted (a phrase: "is missing", ...), or None when it is intact.

    ``deep=False`` compares only the size with the recorded one (a stat: cheap enough for a table over
    thousands of trials; it catches truncation, not flipped bytes); ``deep=True`` compares the sha256 and
    loads a checkpoint that has no checksum.
    """
    if not path.exists():
        return "is missing"
    recorded = recorded_checksum(path)
    if recorded is not None:
        digest, size = recorded
        actual = path.stat().st_size
        if size is not None and actual != size:
            return f"is {actual} bytes where its checksum says {size}"
        if deep and sha256_of(path) != digest:
            return "disagrees with its checksum"
        return None
    if not deep:
        return None
    return None if checkpoint_epoch(path, quiet=True) is not None else "is unreadable"


def checkpoint_epoch(path: Path, *, quiet: bool = False) -> int | None:
    """The epoch of the trial checkpoint at ``path``; None when it is absent or damaged (``quiet``: say nothing)."""
    state = _read_trial_checkpoint(path, quiet=quiet)
    return None if state is None else int(state["epoch"])


def _read_trial_checkpoint(path: Path, *, quiet: bool = False) -> dict[str, Any] | None:
    if not path.exists():
        return None
    warn = log.debug if quiet else log.warning
    recorded = recorded_checksum(path)
    if recorded is not None and sha256_of(path) != recorded[0]:
        warn("checkpoint %s disagrees with its checksum %s; trying the previous one", path, checksum_path(path))
        return None
    try:
        state = read_checkpoint(path)
    except _UNREADABLE as exc:
        warn("checkpoint %s is unreadable (%s: %s); trying the previous one", path, type(exc).__name__, exc)
        return None
    if not isinstance(state, dict) or "epoch" not in state:
        warn("checkpoint %s is not a trial checkpoint; trying the previous one", path)
        return None
    return state


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint file on the CPU with ``weights_only=True`` (torch is imported here: only a checkpoint
    without a checksum, or a resume, is ever read)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
