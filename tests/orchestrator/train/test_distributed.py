"""setup_distributed from each environment, and distributed evaluation counting every image once."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import cloudpickle
import pytest
import submitit
import torch
import torch.distributed as dist

import pipelines
from orchestrator.train.distributed import (
    DistInfo,
    all_reduce_sum,
    broadcast_buffers,
    setup_distributed,
    teardown_distributed,
)
from orchestrator.train.validation import evaluate_model

cloudpickle.register_pickle_by_value(sys.modules[__name__])


pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIST_VARS = ("SUBMITIT_EXECUTOR", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
BATCH = 64  # the val split is not a multiple of 2 x 64: the two shards differ in size


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_single_process_without_any_launcher(clean_env: pytest.MonkeyPatch) -> None:
    info = setup_distributed()
    assert info == DistInfo(rank=0, local_rank=0, world_size=1, device="cpu", backend=None)
    assert info.is_main and not info.is_distributed and not dist.is_initialized()
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.rank = 1  # type: ignore[misc]
    assert all_reduce_sum([1.0, 2.5], info) == [1.0, 2.5]
    teardown_distributed()  # a no-op without a process group


def test_torchrun_variables_single_rank(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RANK", "0")
    clean_env.setenv("WORLD_SIZE", "1")
    clean_env.setenv("LOCAL_RANK", "0")
    assert setup_distributed() == DistInfo(0, 0, 1, "cpu", None)


def fixed_model() -> torch.nn.Module:
    """A random linear classifier: its predictions vary with the image, unlike an untrained ResNet's."""
    torch.manual_seed(11)
    info = pipelines.dataset_info("digits")
    size = info.in_channels * info.image_size**2
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size, info.num_classes)).eval()


def rank_job() -> dict:
    """Inside a submitit task: join the group, check collectives, evaluate a fixed model on this rank's shard."""
    torch.set_num_threads(1)
    info = setup_distributed()
    try:
        model = fixed_model()
        marker = torch.nn.Module()
        marker.register_buffer("value", torch.full((2,), float(info.rank + 1)))
        broadcast_buffers(marker, info)
        loader = pipelines.build_loader("digits", None, "val", batch_size=BATCH, backend="pytorch", rank=info.rank,
                                        world_size=info.world_size, num_workers=0)
        result = evaluate_model(model, loader, info)
        return {"info": info, "sum": all_reduce_sum([info.rank + 1.0], info), "buffer": marker.value.tolist(),
                "shard": loader.num_samples, "result": result, "initialized": dist.is_initialized()}
    finally:
        teardown_distributed()


@pytest.mark.slow
def test_two_tasks_via_submitit_and_eval_counts_every_image_once(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    executor = submitit.LocalExecutor(folder=tmp_path)
    executor.update_parameters(tasks_per_node=2, timeout_min=10)
    results = sorted(executor.submit(rank_job).results(), key=lambda r: r["info"].rank)

    assert [r["info"] for r in results] == [DistInfo(0, 0, 2, "cpu", "gloo"), DistInfo(1, 1, 2, "cpu", "gloo")]
    assert all(r["initialized"] for r in results)
    assert [r["sum"] for r in results] == [[3.0], [3.0]]
    assert [r["buffer"] for r in results] == [[1.0, 1.0], [1.0, 1.0]]  # rank 0's buffer everywhere

    single_loader = pipelines.build_loader("digits", None, "val", batch_size=BATCH, backend="pytorch", num_workers=0)
    model = fixed_model()
    single = evaluate_model(model, single_loader, DistInfo(0, 0, 1, "cpu", None))
    with torch.no_grad():
        predicted = torch.cat([model(images).argmax(1) for images, _ in single_loader])
    assert len(predicted.unique()) >= 5 and 0 < single["top1"] < single["top5"] < 100
    shards = [r["shard"] for r in results]
    assert single["count"] == sum(shards) == single_loader.num_samples
    for r in results:
        assert r["result"]["count"] == single["count"]
        assert r["result"]["top1"] == pytest.approx(single["top1"])
        assert r["result"]["top5"] == pytest.approx(single["top5"])
