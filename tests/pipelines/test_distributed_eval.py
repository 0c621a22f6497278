"""Distributed top-1 equals single-process top-1: two real processes over torch.distributed (gloo).

Each rank evaluates its validation shard with the same fixed model and all-reduces (correct, seen); the
sums must equal the single-process counts exactly, for the pytorch and dali-cpu backends. The ranks also
check that their train loaders have the same number of batches (DDP would hang otherwise).
"""

from __future__ import annotations

import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipelines import build_loader

CASES = [("imagenet", "pytorch", 4), ("imagenet", "dali-cpu", 3), ("digits", "pytorch", 64)]


def fixed_model(in_channels: int = 3, classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 8, 5, stride=4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, classes)).eval()


@torch.no_grad()
def count_correct(loader) -> tuple[int, int]:
    model = fixed_model()
    correct = seen = 0
    for images, labels in loader:
        correct += int((model(images).argmax(1) == labels).sum())
        seen += len(labels)
    return correct, seen


def root_for(name: str, roots: dict) -> str | None:
    return roots.get(name)


def _worker(rank: int, world_size: int, roots: dict, rendezvous: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        results = {}
        for name, backend, bs in CASES:
            val = build_loader(name, root_for(name, roots), "val", batch_size=bs, backend=backend, rank=rank,
                               world_size=world_size, num_workers=1 if backend.startswith("dali") else 0)
            correct, seen = count_correct(val)
            assert seen == val.num_samples
            totals = torch.tensor([correct, seen], dtype=torch.int64)
            dist.all_reduce(totals)
            train = build_loader(name, root_for(name, roots), "train", batch_size=bs, backend=backend, rank=rank,
                                 world_size=world_size, num_workers=0 if backend == "pytorch" else 1)
            lengths = [None] * world_size
            dist.all_gather_object(lengths, (len(train), sum(len(y) for _, y in train)))
            results[f"{name}/{backend}"] = {"totals": totals.tolist(), "train": lengths, "shard": seen}
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def test_distributed_top1_equals_single_process(tmp_path, imagenet_root):
    roots = {"imagenet": imagenet_root[0]}
    single = {f"{name}/{backend}": count_correct(build_loader(name, root_for(name, roots), "val", batch_size=bs,
                                                              backend=backend, num_workers=1))
              for name, backend, bs in CASES}
    # fork: the ranks inherit the imported torch/DALI/scikit-learn instead of re-importing them (~30 s on
    # a loaded 2-core machine with spawn); gloo and DALI pipelines are created after the fork.
    mp.start_processes(_worker, args=(2, roots, str(tmp_path / "rdzv"), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for name, backend, bs in CASES:
        key = f"{name}/{backend}"
        correct, seen = single[key]
        assert ranks[0][key]["totals"] == ranks[1][key]["totals"] == [correct, seen], key
        assert ranks[0][key]["shard"] + ranks[1][key]["shard"] == seen  # nothing padded, nothing twice
        assert 0 < correct < seen  # a model that is neither always right nor always wrong
        (len0, n0), (len1, n1) = ranks[0][key]["train"]
        assert len0 == len1 and n0 + n1 <= len(build_loader(name, root_for(name, roots), "train", batch_size=bs,
                                                            backend="pytorch", num_workers=0).plan.order(0))
