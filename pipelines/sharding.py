"""Which sample indices each rank reads, batch by batch, in each epoch: one definition for every backend.

The DALI graph is fed from this plan through `fn.external_source` and the torchvision `DataLoader` through a
batch sampler, so both backends see the same shards in the same order, and a resumed epoch can start at any
batch without touching the skipped files.

Train (`shuffle=True`): all ranks draw the same permutation of the N samples from (seed, epoch) with
numpy's PCG64, so the order is the same for the same seed and epoch and changes with the epoch. The
permutation is cut into rounds of `world_size * batch_size`; in round b rank r takes the b-th batch-sized
slice at position r. The remainder R (fewer than one round) is spread over the ranks as one last batch
each, sizes differing by at most one. Every rank therefore gets the same number of batches (DDP never waits
on a rank that ran out) and every sample lands in exactly one rank's batches, except when 0 < R <
world_size: then no rank can get a non-empty last batch and those R samples sit out this epoch (a
different R next epoch, as the permutation changes).

Val (`shuffle=False`): rank r reads the contiguous range [r*N//W, (r+1)*N//W) in file order, in batches
with a partial last one. The shards are disjoint, cover every sample exactly once and nothing is padded,
so summing correct counts over ranks gives exactly the single-process accuracy. Batch counts may differ by
one across ranks (evaluation has no collective per batch).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ShardPlan"]


class ShardPlan:
    """Batches of sample indices for one rank; `batches(epoch)` is a pure function of the arguments."""

    def __init__(self, num_items: int, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool) -> None:
        if world_size < 1:
            raise ValueError(f"world_size: must be >= 1 (got {world_size!r})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: must be in [0, {world_size}) (got {rank!r})")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1 (got {batch_size!r})")
        if num_items < world_size:
            raise ValueError(f"world_size: {world_size} ranks need at least as many samples (dataset has {num_items})")
        self.num_items, self.batch_size = num_items, batch_size
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        if shuffle:
            self._rounds, remainder = divmod(num_items, world_size * batch_size)
            per_rank = remainder // world_size
            # Ranks below `extra` get one more sample in the last batch, unless nobody gets any.
            self._tail = 0 if per_rank == 0 else per_rank + (rank < remainder % world_size)
            self._tail_start = self._rounds * world_size * batch_size
            if per_rank:
                self._tail_start += rank * per_rank + min(rank, remainder % world_size)
            self.num_samples = self._rounds * batch_size + self._tail
        else:
            self._start = rank * num_items // world_size
            self._stop = (rank + 1) * num_items // world_size
            self.num_samples = self._stop - self._start

    def __len__(self) -> int:
        if self.shuffle:
            return self._rounds + (self._tail > 0)
        return -(-self.num_samples // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The global sample order of `epoch` (identical on every rank)."""
        if not self.shuffle:
            return np.arange(self.num_items, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_items).astype(np.int64)

    def batches(self, epoch: int) -> list[np.ndarray]:
        order = self.order(epoch)
        bs, ws, r = self.batch_size, self.world_size, self.rank
        if not self.shuffle:
            shard = order[self._start:self._stop]
            return [shard[i:i + bs] for i in range(0, len(shard), bs)]
        out = [order[(b * ws + r) * bs:(b * ws + r + 1) * bs] for b in range(self._rounds)]
        if self._tail:
            out.append(order[self._tail_start:self._tail_start + self._tail])
        return out
