"""ShardPlan: disjoint covering shards, equal train batch counts, exact val shards, deterministic order."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.sharding import ShardPlan


def plans(n, bs, ws, shuffle, seed=0):
    return [ShardPlan(n, bs, rank=r, world_size=ws, seed=seed, shuffle=shuffle) for r in range(ws)]


@pytest.mark.parametrize("ws", [1, 2, 3])
@pytest.mark.parametrize("n, bs", [(100, 8), (97, 8), (1437, 64), (10, 4), (24, 8)])
def test_train_shards_cover_every_sample_once_with_equal_batch_counts(n, bs, ws):
    ps = plans(n, bs, ws, shuffle=True)
    for epoch in (0, 1):
        per_rank = [p.batches(epoch) for p in ps]
        assert len({len(b) for b in per_rank}) == 1 == len({len(p) for p in ps})
        assert [len(b) for b in per_rank] == [len(p) for p in ps]
        assert all(len(batch) > 0 and len(batch) <= bs for b in per_rank for batch in b)
        seen = np.concatenate([np.concatenate(b) for b in per_rank])
        assert [sum(map(len, b)) for b in per_rank] == [p.num_samples for p in ps]
        remainder = n % (ws * bs)
        if remainder == 0 or remainder >= ws:
            assert sorted(seen.tolist()) == list(range(n))  # each sample in exactly one shard
        else:  # documented corner: fewer leftover samples than ranks sit this epoch out
            assert len(seen) == len(set(seen.tolist())) == n - remainder


def test_train_corner_case_drops_fewer_than_world_size():
    ps = plans(65, 16, 3, shuffle=True)  # 65 = 1 round of 48 + 17 -> 5 or 6 each; 49 = 48 + 1 -> drop 1
    assert [p.num_samples for p in ps] == [22, 22, 21]
    ps = plans(49, 16, 3, shuffle=True)
    assert [p.num_samples for p in ps] == [16, 16, 16] and [len(p) for p in ps] == [1, 1, 1]


def test_every_train_shard_sees_every_class():
    labels = np.repeat(np.arange(10), 30)  # sorted by class, like a folder listing
    for ws in (2, 3):
        for p in plans(len(labels), 16, ws, shuffle=True):
            for epoch in range(3):
                assert set(labels[np.concatenate(p.batches(epoch))].tolist()) == set(range(10))


@pytest.mark.parametrize("ws", [1, 2, 3])
@pytest.mark.parametrize("n", [15, 16, 100, 101])
def test_val_shards_are_exact_and_contiguous(n, ws):
    ps = plans(n, 4, ws, shuffle=False)
    shards = [np.concatenate(p.batches(0)) for p in ps]
    assert np.concatenate(shards).tolist() == list(range(n))  # no padding, no duplicates, file order
    assert [len(s) for s in shards] == [p.num_samples for p in ps]
    assert max(len(p) for p in ps) - min(len(p) for p in ps) <= 1
    assert all((np.diff(s) == 1).all() for s in shards)
    assert ps[0].batches(0)[0].tolist() == ps[0].batches(5)[0].tolist()  # val order ignores the epoch


def test_same_seed_same_order_different_epoch_or_seed_different_order():
    a, b = ShardPlan(500, 32, seed=7, shuffle=True), ShardPlan(500, 32, seed=7, shuffle=True)
    assert all((x == y).all() for x, y in zip(a.batches(3), b.batches(3)))
    assert not (a.order(3) == a.order(4)).all()
    assert not (a.order(3) == ShardPlan(500, 32, seed=8, shuffle=True).order(3)).all()
    assert sorted(a.order(3).tolist()) == list(range(500))


@pytest.mark.parametrize("kwargs, match", [
    (dict(rank=2, world_size=2), "rank: must be in"), (dict(world_size=0), "world_size: must be >= 1"),
    (dict(batch_size=0), "batch_size"), (dict(num_items=2, world_size=3), "at least as many samples")])
def test_bad_plan_arguments(kwargs, match):
    args = dict(num_items=10, batch_size=4, rank=0, world_size=1)
    args.update(kwargs)
    n, bs = args.pop("num_items"), args.pop("batch_size")
    with pytest.raises(ValueError, match=match):
        ShardPlan(n, bs, shuffle=True, **args)
