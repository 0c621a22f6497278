"""Where this process sits in a trial's DDP job, as one frozen value; plus the few collectives the trainer uses.

``setup_distributed()`` works out rank and world size from, in order: submitit's job environment (the
``local`` executor's ``tasks_per_node`` processes and SLURM jobs alike, multi-node included), torchrun's
variables, or nothing (a single process). With more than one process it initialises the default process
group over ``env://`` (gloo on CPU, nccl on CUDA). That process group, the ``MASTER_*``/``RANK`` variables
submitit exports for ``env://`` and, on CUDA, the current device are the only global state it touches;
``teardown_distributed()`` undoes the process group.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "setup_distributed",
    "teardown_distributed",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: str  # "cpu" or "cuda:<index>" (the local rank's GPU)
    backend: str | None  # "gloo" | "nccl"; None for a single process (no process group)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _from_environment() -> tuple[int, int, int, str]:
    """(rank, local_rank, world_size, source) of this process."""
    if os.environ.get("SUBMITIT_EXECUTOR"):
        import submitit

        # overwrite=True: a requeued or nested job may inherit a parent's variables; submitit's are the truth
        env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        return env.rank, env.local_rank, env.world_size, "submitit"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        return rank, int(os.environ.get("LOCAL_RANK", rank)), world, "torchrun"
    return 0, 0, 1, "single"


def setup_distributed(timeout_s: float = 600.0) -> DistInfo:
    """Describe this process and, when there are several, join the default process group."""
    rank, local_rank, world_size, source = _from_environment()
    if torch.cuda.is_available():
        # All of the node's GPUs are visible (set_cuda_visible_devices=False): rank i takes GPU i. Where the
        # scheduler binds one GPU per task instead, each task sees a single device 0.
        index = local_rank % torch.cuda.device_count()
        device = f"cuda:{index}"
        torch.cuda.set_device(index)  # nccl needs it; each rank owns one GPU
    else:
        device = "cpu"
    backend = None
    if world_size > 1:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(
                backend,
                init_method="env://",
                rank=rank,
                world_size=world_size,
                timeout=datetime.timedelta(seconds=timeout_s),
            )
            # Every rank has connected before any may leave: a rank that tears down while a peer is still
            # connecting makes the peer's init fail ("Connection closed by peer").
            dist.barrier(device_ids=[torch.cuda.current_device()] if backend == "nccl" else None)
    info = DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device, backend=backend)
    log.info("distributed setup from %s: %s", source, info)
    return info


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.is_distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few numbers over all ranks (float64, so image counts stay exact)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    if info.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running stats drift apart in the last DDP step)."""
    if not info.is_distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
