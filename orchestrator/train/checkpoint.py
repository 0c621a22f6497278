"""Trial checkpoints: atomic writes, a rotated previous copy, plain data only, and RNG state as tensors.

A checkpoint is a dict of plain data and tensors (state_dicts, ints, floats, strings, lists, the resolved spec
as a dict, the MLflow run id) so that it loads with ``torch.load(weights_only=True)``: nothing in it can run
code, and it stays readable when our classes change. It is written to a temporary file, fsynced, and moved
into place with ``os.replace``; the previous ``last.pt`` becomes ``prev.pt`` first. A reader therefore sees
either a whole ``last.pt`` or (in the instant between the two renames, or when ``last.pt`` was damaged by
something outside our control) a whole ``prev.pt``, and ``load_checkpoint`` falls back to the latter.

Each checkpoint has a checksum beside it (``last.pt.sha256``, ``orchestrator.dirs.checksum``), written atomically
after the checkpoint itself: a file whose bytes disagree with its checksum (a disk or copy that truncated or
flipped it, even where ``torch.load`` would still succeed) is damaged, and so is one ``torch.load`` cannot
read. A checkpoint without a checksum (a crash between the
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

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

# reading a checkpoint is the trial directory's (the driver judges checkpoints too); re-exported for the trainer
from orchestrator.dirs.checksum import (HashingWriter, _read_trial_checkpoint, checkpoint_epoch, checksum_path, damage,
                                        move_checkpoint, read_checkpoint, write_checksum)

__all__ = [
    "checkpoint_epoch", "checksum_path", "damage", "load_checkpoint", "move_checkpoint", "read_checkpoint", "rng_state",
    "save_checkpoint", "set_rng_state",
]

log = logging.getLogger(__name__)


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


def save_checkpoint(state: dict[str, Any], last: Path, prev: Path) -> None:
    """Write ``state`` to ``last`` atomically, keeping the previous ``last`` as ``prev``; checksums beside both."""
    last.parent.mkdir(parents=True, exist_ok=True)
    tmp = last.with_name(f".{last.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        writer = HashingWriter(f)
        torch.save(state, writer)  # type: ignore[arg-type]  # torch.save takes any object with write/flush
        f.flush()
        os.fsync(f.fileno())
    # order matters (see the module docstring): checksum, checkpoint, then the new checksum
    if checksum_path(last).exists():
        os.replace(checksum_path(last), checksum_path(prev))
    if last.exists():
        os.replace(last, prev)
    os.replace(tmp, last)
    write_checksum(last, writer.sha.hexdigest(), writer.size)
    _fsync_dir(last.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the renames durable on a crash of the node (not only of the process).
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
