"""dali-cpu against pytorch on the same folders; DALI sharding, resumption, corrupt files.

How close the backends are, and why: both decode with libjpeg-turbo (identical pixels, checked below) and
crop the same window (half-up centre offset on both); what differs is the resize filter (DALI's antialiased
linear vs Pillow's bilinear with a widened support), ~0.5 grey levels on average. In normalised units
(1 grey level = 1/(255 * 0.225) ~ 0.017) we measured a mean |diff| of ~0.008 and a max of ~0.3 at sharp
edges; the tests allow mean 0.02, per-image mean 0.03, max 0.6 (1.2 along the cut edge of the oblique rotations)
and per-channel means within 0.01.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pipelines import EVAL_TRANSFORMS, CorruptImageError, build_loader



def collect(loader):
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


def both(name, root, split, **kw):
    kw.setdefault("batch_size", 4)
    torch_out = collect(build_loader(name, root, split, backend="pytorch", num_workers=0, **kw))
    dali_loader = build_loader(name, root, split, backend="dali-cpu", num_workers=2, **kw)
    assert dali_loader.backend == "dali-cpu"
    return torch_out, collect(dali_loader), dali_loader


def assert_close_images(a, b, max_diff=0.6):
    diff = (a - b).abs()
    assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
    assert diff.mean() < 0.02 and diff.mean(dim=(1, 2, 3)).max() < 0.03 and diff.max() < max_diff
    assert (a.mean(dim=(0, 2, 3)) - b.mean(dim=(0, 2, 3))).abs().max() < 0.01


@pytest.mark.parametrize("name, fixture", [("imagenet", "imagenet_root"), ("tiny-imagenet", "tiny_root")])
def test_val_outputs_agree_with_pytorch(request, name, fixture):
    root = request.getfixturevalue(fixture)[0]
    (xt, yt), (xd, yd), loader = both(name, root, "val")
    torch_loader = build_loader(name, root, "val", batch_size=4, backend="pytorch")
    assert loader.classes == torch_loader.classes  # same class-to-index mapping
    assert torch.equal(yt, yd) and yd.dtype == torch.int64
    assert len(loader) == len(torch_loader) and loader.num_samples == torch_loader.num_samples == len(yd)
    assert_close_images(xt, xd)


@pytest.fixture(scope="module")
def plain_val(imagenet_root):
    return collect(build_loader("imagenet", imagenet_root[0], "val", batch_size=4, backend="dali-cpu"))[0]


@pytest.mark.parametrize("transform", EVAL_TRANSFORMS)
def test_eval_transforms_agree_with_pytorch(imagenet_root, plain_val, transform):
    root = imagenet_root[0]
    (xt, _), (xd, _), _ = both("imagenet", root, "val", batch_size=8, eval_transform=transform)
    # Oblique rotations: single pixels along the cut edge blend with the black fill differently (~0.8).
    assert_close_images(xt, xd, max_diff=1.2 if transform in ("rot45", "rot135") else 0.6)
    if transform != "rot0":
        assert (xd - plain_val).abs().mean() > 0.3  # the transform did something


def test_train_fused_path_shapes_order_and_randomness(imagenet_root):
    root = imagenet_root[0]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    lo, hi = (-mean / std).min(), ((1 - mean) / std).max()
    loader = build_loader("imagenet", root, "train", batch_size=5, backend="dali-cpu", seed=3)
    reference = build_loader("imagenet", root, "train", batch_size=5, backend="pytorch", seed=3, num_workers=0)
    epochs = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        reference.set_epoch(epoch)
        x, y = collect(loader)
        assert x.shape == (24, 3, 224, 224) and x.dtype == torch.float32
        assert lo - 1e-4 <= x.min() and x.max() <= hi + 1e-4
        assert torch.equal(y, collect(reference)[1])  # the same plan: same label order as pytorch
        epochs.append((x, y))
    assert not torch.equal(epochs[0][1], epochs[1][1])
    loader.set_epoch(0)
    again = collect(loader)
    assert torch.equal(again[1], epochs[0][1]) and torch.equal(again[0], epochs[0][0])  # seeded augmentation


def test_train_without_augmentation_is_the_val_geometry_on_both_backends(imagenet_root):
    """`augment=False` (the sweep's dataset.augment) trains on resize + centre crop, in torch and in DALI."""
    from pipelines.datasets import load_split
    from pipelines.readers.folders import read_image_file
    from pipelines.transforms import image_transform, normalize

    root = imagenet_root[0]
    (xt, yt), (xd, yd), dali_loader = both("imagenet", root, "train", augment=False, seed=1)
    assert torch.equal(yt, yd)
    assert_close_images(xt, xd)
    paths = load_split("imagenet", root, "train").paths
    order = np.concatenate(dali_loader.plan.batches(0))
    val_geometry = torch.stack([image_transform("imagenet", train=False)(read_image_file(paths[i])) for i in order])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert torch.equal(xt, normalize(val_geometry, mean, std, "cpu"))
    augmented = collect(build_loader("imagenet", root, "train", batch_size=4, backend="dali-cpu", seed=1))[0]
    assert (augmented - xd).abs().mean() > 0.3  # the default (augmented) path differs


@pytest.mark.parametrize("ws", [2, 3])
def test_sharding_val_exact_and_train_covering(imagenet_root, ws):
    root = imagenet_root[0]
    single_x, single_y = collect(build_loader("imagenet", root, "val", batch_size=4, backend="dali-cpu"))
    xs, ys = [], []
    train_labels, train_lengths = [], set()
    for rank in range(ws):
        val = build_loader("imagenet", root, "val", batch_size=4, backend="dali-cpu", rank=rank, world_size=ws)
        x, y = collect(val)
        assert len(y) == val.num_samples
        xs.append(x)
        ys.append(y)
        train = build_loader("imagenet", root, "train", batch_size=4, backend="dali-cpu", rank=rank,
                             world_size=ws, seed=1)
        batches = list(train)
        train_lengths.add(len(batches))
        labels = torch.cat([b[1] for b in batches])
        assert set(labels.tolist()) == {0, 1, 2}  # every shard sees every class
        train_labels.append(labels)
    assert torch.equal(torch.cat(ys), single_y) and torch.equal(torch.cat(xs), single_x)  # exactly once
    assert len(train_lengths) == 1
    assert sorted(torch.cat(train_labels).tolist()) == [0] * 8 + [1] * 8 + [2] * 8


def test_resume_inside_an_epoch_and_abandoned_epochs(imagenet_root):
    root = imagenet_root[0]
    kw = dict(batch_size=4, backend="dali-cpu", seed=2)
    full = build_loader("imagenet", root, "train", **kw)
    full.set_epoch(1)
    reference = [y for _, y in full]
    partial = build_loader("imagenet", root, "train", **kw)
    partial.set_epoch(1)
    for k, _ in enumerate(partial):
        if k == 1:
            break  # abandon the epoch after two batches, as max_steps_per_epoch does
    state = partial.state_dict()
    assert state == {"epoch": 1, "batches_done": 2}
    resumed = build_loader("imagenet", root, "train", **kw)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip([y for _, y in resumed], reference[2:], strict=True))
    assert [y for _, y in partial] and len(list(partial)) == len(reference)  # a fresh pass after abandoning


def test_corrupt_jpeg_fails_naming_the_file(tmp_path):
    import pipeline_fixtures as pf

    written = pf.write_imagefolder(str(tmp_path), classes=2, train_per_class=4, val_per_class=4, size=(96, 72))
    bad = written["train"][5][0]
    data = open(bad, "rb").read()
    open(bad, "wb").write(data[: len(data) // 2])
    for split, batch_size in (("train", 2), ("val", 3)):
        loader = build_loader("imagenet", str(tmp_path), split, batch_size=batch_size, backend="dali-cpu")
        if split == "val":
            assert len(list(loader)) == len(loader)  # the broken file is not in val
            continue
        with pytest.raises(CorruptImageError, match=os.path.basename(bad)):
            list(loader)


def test_decoders_agree_bit_for_bit(imagenet_root):
    """Both backends decode with libjpeg-turbo: the decoded pixels are identical (the base of the tolerance)."""
    from nvidia.dali import fn, pipeline_def, types
    from PIL import Image

    path = imagenet_root[1]["val"][0][0]

    @pipeline_def
    def decode():
        jpegs, _ = fn.readers.file(files=[path])
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)

    pipe = decode(batch_size=1, num_threads=1, device_id=None)
    pipe.build()
    dali_pixels = np.array(pipe.run()[0].as_tensor())[0]
    np.testing.assert_array_equal(dali_pixels, np.asarray(Image.open(path).convert("RGB")))
