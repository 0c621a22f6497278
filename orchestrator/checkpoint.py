"""Trial checkpoints: atomic writes, a rotated previous copy, plain data only, and RNG state as tensors.

A checkpoint is a dict of plain data and tensors (state_dicts, ints, floats, strings, lists, the resolved spec
as a dict, the MLflow run id) so that it loads with ``torch.load(weights_only=True)``: nothing in it can run
code, and it stays readable when our classes change. It is written to a temporary file, fsynced, and moved
into place with ``os.replace``; the previous ``last.pt`` becomes ``prev.pt`` first. A reader therefore sees
either a whole ``last.pt`` or (in the instant between the two renames, or when ``last.pt`` was damaged by
something outside our control) a whole ``prev.pt``, and ``load_checkpoint`` falls back to the latter.

Each checkpoint has a checksum beside it (``last.pt.sha256``: lines ``sha256 <hex>`` and ``size <bytes>``;
it names no file, as it moves with its checkpoint), written atomically after the checkpoint itself: a file whose bytes disagree with
its checksum (a disk or copy that truncated or flipped it, even where ``torch.load`` would still succeed) is
damaged, and so is one ``torch.load`` cannot read. A checkpoint without a checksum (a crash between the
checkpoint's rename and its checksum's, or a checkpoint from before checksums) counts as intact when it
loads. The checksum is rotated to ``prev.pt.sha256`` *before* its checkpoint, so no crash leaves a checksum
beside a checkpoint it does not describe except as a mismatch of ``prev.pt`` while ``last.pt`` is whole.

The best epoch's weights (``best.pt``, rotated to ``best_prev.pt``) are kept the same way, for evaluation
only (no optimiser state): a reader asks ``load_checkpoint`` for the epoch it expects, so a file left one
best epoch ahead or behind by a crash is never taken for it.

RNG states: ``rng_state()`` captures Python's ``random``, NumPy's legacy global generator, torch's CPU
generator and every CUDA device's generator, converted to tensors and lists.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "checkpoint_epoch", "checksum_path", "damage", "load_checkpoint", "move_checkpoint", "read_checkpoint", "rng_state",
    "save_checkpoint", "set_rng_state",
]

log = logging.getLogger(__name__)

# What a damaged or truncated file raises from torch.load (an empty file: EOFError; a cut zip: RuntimeError).
_UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError)


def rng_state() -> dict[str, Any]:
    """This process's generator states as plain data (tensors, ints, lists)."""
    version, internal, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state()`` captured (CUDA states only when the device count matches)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def checksum_path(checkpoint: Path) -> Path:
    """Where the checksum of ``checkpoint`` lives."""
    return checkpoint.with_name(checkpoint.name + ".sha256")


class _HashingWriter:
    """A file that hashes what is written to it, so the checksum costs no second read of the checkpoint."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def save_checkpoint(state: dict[str, Any], last: Path, prev: Path) -> None:
    """Write ``state`` to ``last`` atomically, keeping the previous ``last`` as ``prev``; checksums beside both."""
    last.parent.mkdir(parents=True, exist_ok=True)
    tmp = last.with_name(f".{last.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        writer = _HashingWriter(f)
        torch.save(state, writer)  # type: ignore[arg-type]  # torch.save takes any object with write/flush
        f.flush()
        os.fsync(f.fileno())
    # order matters (see the module docstring): checksum, checkpoint, then the new checksum
    if checksum_path(last).exists():
        os.replace(checksum_path(last), checksum_path(prev))
    if last.exists():
        os.replace(last, prev)
    os.replace(tmp, last)
    _write_checksum(last, writer.sha.hexdigest(), writer.size)
    _fsync_dir(last.parent)


def move_checkpoint(source: Path, target: Path) -> None:
    """Rename a checkpoint together with its checksum (the checksum first, as ``save_checkpoint`` rotates)."""
    checksum_path(target).unlink(missing_ok=True)
    if checksum_path(source).exists():
        os.replace(checksum_path(source), checksum_path(target))
    os.replace(source, target)


def _write_checksum(path: Path, digest: str, size: int) -> None:
    target = checksum_path(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"sha256 {digest}\nsize {size}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def _recorded_checksum(path: Path) -> tuple[str, int | None] | None:
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


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def damage(path: Path, *, deep: bool = True) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted, or None when it is intact.

    ``deep=False`` compares only the size with the recorded one (a stat: cheap enough for a table over
    thousands of trials; catches truncation, not flipped bytes); ``deep=True`` compares the sha256 and, for a
    checkpoint without a checksum, loads it.
    """
    if not path.exists():
        return "missing"
    recorded = _recorded_checksum(path)
    if recorded is not None:
        digest, size = recorded
        actual = path.stat().st_size
        if size is not None and actual != size:
            return f"{actual} bytes, its checksum file says {size}"
        if deep and _sha256(path) != digest:
            return "its bytes disagree with its checksum"
        return None
    if not deep:
        return None
    return None if _read_trial_checkpoint(path) is not None else "unreadable"


def _fsync_dir(directory: Path) -> None:
    # Makes the renames durable on a crash of the node (not only of the process).
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint file on the CPU with ``weights_only=True``."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(last: Path, prev: Path, *, epoch: int | None = None) -> dict[str, Any] | None:
    """The newest readable checkpoint: ``last``, else ``prev``; None when neither exists or is readable.

    ``epoch``: only a checkpoint of that epoch will do (a best-epoch file must match the recorded best epoch).
    """
    for path in (last, prev):
        state = _read_trial_checkpoint(path)
        if state is None:
            continue
        if epoch is not None and int(state["epoch"]) != epoch:
            log.info("checkpoint %s holds epoch %d, not %d; trying the previous one", path, state["epoch"], epoch)
            continue
        log.info("loaded checkpoint %s (epoch %d)", path, state["epoch"])
        return state
    return None


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch of the trial checkpoint at ``path``; None when it is absent or unreadable."""
    state = _read_trial_checkpoint(path)
    return None if state is None else int(state["epoch"])


def _read_trial_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    recorded = _recorded_checksum(path)
    if recorded is not None and _sha256(path) != recorded[0]:
        log.warning("checkpoint %s disagrees with its checksum %s; trying the previous one", path, checksum_path(path))
        return None
    try:
        state = read_checkpoint(path)
    except _UNREADABLE as exc:
        log.warning("checkpoint %s is unreadable (%s: %s); trying the previous one", path, type(exc).__name__, exc)
        return None
    if not isinstance(state, dict) or "epoch" not in state:
        log.warning("checkpoint %s is not a trial checkpoint; trying the previous one", path)
        return None
    return state
