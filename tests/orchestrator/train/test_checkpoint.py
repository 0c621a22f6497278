"""Atomic checkpoints, their checksums, weights_only loading, the fallback to prev.pt, and RNG state round trips."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.train.checkpoint import (checkpoint_epoch, checksum_path, damage, load_checkpoint, move_checkpoint,
                                     read_checkpoint, rng_state, save_checkpoint, set_rng_state)


def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "checkpoints" / "last.pt", tmp_path / "checkpoints" / "prev.pt"


def state(epoch: int) -> dict:
    return {"epoch": epoch, "model": {"w": torch.full((3,), float(epoch))}, "spec": {"model": "resnet20"},
            "rng": rng_state(), "mlflow_run_id": "abc", "best_val_top1": None}


def test_save_rotates_last_to_prev_and_leaves_no_temporary(tmp_path: Path) -> None:
    last, prev = paths(tmp_path)
    save_checkpoint(state(1), last, prev)
    assert last.exists() and not prev.exists()
    save_checkpoint(state(2), last, prev)
    assert read_checkpoint(last)["epoch"] == 2
    assert read_checkpoint(prev)["epoch"] == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt", "last.pt.sha256", "prev.pt", "prev.pt.sha256"]
    assert damage(last) is None and damage(prev) is None


def test_loads_with_weights_only_and_plain_data(tmp_path: Path) -> None:
    last, prev = paths(tmp_path)
    save_checkpoint(state(3), last, prev)
    loaded = torch.load(last, weights_only=True)
    assert loaded["mlflow_run_id"] == "abc" and loaded["spec"] == {"model": "resnet20"}
    assert torch.equal(loaded["model"]["w"], torch.full((3,), 3.0))


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_torn_last_falls_back_to_prev(tmp_path: Path, damage: str) -> None:
    last, prev = paths(tmp_path)
    save_checkpoint(state(1), last, prev)
    save_checkpoint(state(2), last, prev)
    data = last.read_bytes()
    last.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\x80\x02garbage" * 50}[damage])
    loaded = load_checkpoint(last, prev)
    assert loaded is not None and loaded["epoch"] == 1


def test_missing_last_uses_prev_and_nothing_gives_none(tmp_path: Path) -> None:
    last, prev = paths(tmp_path)
    assert load_checkpoint(last, prev) is None
    save_checkpoint(state(1), last, prev)
    save_checkpoint(state(2), last, prev)
    last.unlink()  # the instant between the two renames
    assert load_checkpoint(last, prev)["epoch"] == 1
    prev.write_bytes(b"")
    assert load_checkpoint(last, prev) is None


def test_a_wanted_epoch_skips_checkpoints_of_other_epochs(tmp_path: Path) -> None:
    # best.pt/best_prev.pt: a file a crash left one best epoch ahead must not be taken for the best epoch
    best, prev_best = tmp_path / "best.pt", tmp_path / "best_prev.pt"
    assert checkpoint_epoch(best) is None
    save_checkpoint(state(2), best, prev_best)
    save_checkpoint(state(5), best, prev_best)
    assert (checkpoint_epoch(best), checkpoint_epoch(prev_best)) == (5, 2)
    assert load_checkpoint(best, prev_best)["epoch"] == 5
    assert load_checkpoint(best, prev_best, epoch=2)["epoch"] == 2
    assert load_checkpoint(best, prev_best, epoch=3) is None
    best.write_bytes(b"")
    assert checkpoint_epoch(best) is None and load_checkpoint(best, prev_best, epoch=5) is None


def test_rng_state_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    last, prev = paths(tmp_path)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leave a cached gaussian in numpy's state
    save_checkpoint({"epoch": 1, "rng": rng_state()}, last, prev)
    expected = (random.random(), np.random.rand(3).tolist(), np.random.normal(), torch.rand(3).tolist())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(last, prev)["rng"])
    assert (random.random(), np.random.rand(3).tolist(), np.random.normal(), torch.rand(3).tolist()) == expected


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a tensor's bytes: torch.load still reads the file
    path.write_bytes(bytes(data))


def test_flipped_bytes_that_still_load_are_caught_by_the_checksum(tmp_path: Path) -> None:
    last, prev = paths(tmp_path)
    save_checkpoint(state(1), last, prev)
    save_checkpoint(state(2), last, prev)
    _flip_a_byte(last)
    assert read_checkpoint(last)["epoch"] == 2  # nothing but the checksum tells
    assert damage(last) == "disagrees with its checksum"
    assert damage(last, deep=False) is None  # the size still agrees: only the deep check reads the bytes
    assert load_checkpoint(last, prev)["epoch"] == 1 and checkpoint_epoch(last) is None


def test_truncation_is_seen_from_the_size_alone(tmp_path: Path) -> None:
    last, prev = paths(tmp_path)
    save_checkpoint(state(1), last, prev)
    data = last.read_bytes()
    last.write_bytes(data[:-100])
    assert damage(last, deep=False) == f"is {len(data) - 100} bytes where its checksum says {len(data)}"
    assert load_checkpoint(last, prev) is None  # no previous checkpoint: the trial starts from scratch
    assert damage(prev) == "is missing"


def test_every_crash_point_of_a_save_leaves_the_newest_whole_checkpoint_loadable(tmp_path: Path) -> None:
    # save_checkpoint's steps: checksum last -> prev, last -> prev, new file -> last, new checksum
    last, prev = paths(tmp_path)
    save_checkpoint(state(1), last, prev)
    save_checkpoint(state(2), last, prev)
    checksum_path(last).replace(checksum_path(prev))  # crash after the first step
    assert damage(last) is None and damage(prev) == "disagrees with its checksum"
    assert load_checkpoint(last, prev)["epoch"] == 2
    last.replace(prev)  # ... after the second
    assert load_checkpoint(last, prev)["epoch"] == 2
    save_checkpoint(state(3), last, prev)
    checksum_path(last).unlink()  # ... after the third (or a checkpoint from before checksums)
    assert damage(last) is None and load_checkpoint(last, prev)["epoch"] == 3
    last.write_bytes(last.read_bytes()[:200])
    assert damage(last) == "is unreadable" and load_checkpoint(last, prev)["epoch"] == 2


def test_move_checkpoint_takes_its_checksum_along(tmp_path: Path) -> None:
    best, prev_best = tmp_path / "best.pt", tmp_path / "best_prev.pt"
    save_checkpoint(state(1), best, prev_best)
    save_checkpoint(state(2), best, prev_best)
    move_checkpoint(prev_best, best)
    assert damage(best) is None and checkpoint_epoch(best) == 1
    assert not prev_best.exists() and not checksum_path(prev_best).exists()
