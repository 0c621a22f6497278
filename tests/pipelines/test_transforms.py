"""Recipes and the GMConv Table 4 evaluation transforms (torchvision side; DALI is compared in test_dali_backend)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import pipeline_fixtures as pf
from pipelines import EVAL_TRANSFORMS, build_loader, dataset_info
from pipelines.transforms import CenterCrop, apply_eval_transform, array_transform, image_transform, normalize


@pytest.fixture(scope="module")
def square():
    rng = np.random.default_rng(0)
    return torch.from_numpy(pf.cut(pf.photos()[0], rng, (32, 32))).permute(2, 0, 1).contiguous()


def test_eval_transform_names():
    assert EVAL_TRANSFORMS == ("rot0", "rot45", "rot90", "rot135", "rot180", "flip_ud")


def test_right_angles_are_exact_counter_clockwise_rotations(square):
    assert torch.equal(apply_eval_transform(square, "rot0"), square)
    # torch.rot90 over (H, W) turns the top row into the left column: counter-clockwise as displayed.
    assert torch.equal(apply_eval_transform(square, "rot90"), torch.rot90(square, 1, dims=(-2, -1)))
    assert torch.equal(apply_eval_transform(square, "rot180"), square.flip(-1).flip(-2))
    assert torch.equal(apply_eval_transform(square, "flip_ud"), square.flip(-2))
    batch = square[None].repeat(2, 1, 1, 1)
    assert torch.equal(apply_eval_transform(batch, "rot90")[1], torch.rot90(square, 1, dims=(-2, -1)))


def test_oblique_rotations_fill_corners_black_and_turn_about_the_centre(square):
    yy, xx = np.mgrid[0:32, 0:32] - 15.5
    disc = torch.from_numpy(np.round(255 * np.exp(-(yy**2 + xx**2) / 128)).astype(np.uint8))[None]
    inner = torch.from_numpy(yy**2 + xx**2 < 12**2)
    for name in ("rot45", "rot135"):
        out = apply_eval_transform(square, name)
        assert out.shape == square.shape and out.dtype == torch.uint8
        assert (out[:, 0, 0] == 0).all() and (out[:, -1, -1] == 0).all()  # uncovered corners are black
        # A radially symmetric image is unchanged inside the inscribed circle: the pivot is the centre.
        diff = (apply_eval_transform(disc, name).float() - disc.float())[:, inner].abs()
        assert diff.max() <= 3
    # rot45 twice is rot90, up to interpolation, inside the circle the corners never reach
    twice = apply_eval_transform(apply_eval_transform(square, "rot45"), "rot45").float()
    assert (twice - torch.rot90(square, 1, dims=(-2, -1)).float())[:, inner].abs().mean() < 12
    assert (twice - square.float())[:, inner].abs().mean() > 30


@pytest.mark.parametrize("bad, split, match", [("rot30", "val", "unknown transform 'rot30'"),
                                               ("rot90", "train", "split 'val' only")])
def test_eval_transform_errors(bad, split, match):
    with pytest.raises(ValueError, match=match):
        build_loader("digits", None, split, batch_size=8, eval_transform=bad, num_workers=0)


def test_cifar_train_is_pad4_crop_and_flip(square):
    t = array_transform("cifar10", train=True)
    img = square.permute(1, 2, 0).numpy()
    padded = torch.nn.functional.pad(square, (4, 4, 4, 4))
    torch.manual_seed(0)
    shifts = set()
    for _ in range(40):
        out = t(img)
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(out, (padded[:, dy:dy + 32, dx:dx + 32].flip(-1) if f else
                                        padded[:, dy:dy + 32, dx:dx + 32]))]
        assert matches, "output is not a padded crop (optionally mirrored) of the input"
        shifts.add(matches[0])
    assert len(shifts) > 10 and {m[2] for m in shifts} == {False, True}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "digits", "cifar10", "cifar100"])
def test_array_val_and_unaugmented_train_are_identity(name, square):
    img = square.permute(1, 2, 0).numpy()
    assert torch.equal(array_transform(name, train=False)(img), square)
    if name not in ("cifar10", "cifar100"):
        assert torch.equal(array_transform(name, train=True)(img), square)


@pytest.mark.parametrize("name, padding", [("mnist", 4), ("lfw-faces", 5), ("mnist-cluttered", 8), ("cifar10", 4)])
def test_augment_overrides_the_dataset_default(name, padding):
    rng = np.random.default_rng(1)
    h, w = dataset_info(name).image_shape
    img = pf.cut(pf.photos()[1], rng, (w, h), grey=True)[..., None]
    x = torch.from_numpy(img).permute(2, 0, 1)
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    crops = {(dy, dx, f): padded[:, dy:dy + h, dx:dx + w].flip(-1) if f else padded[:, dy:dy + h, dx:dx + w]
             for dy in range(2 * padding + 1) for dx in range(2 * padding + 1) for f in (False, True)}
    on, off = array_transform(name, train=True, augment=True), array_transform(name, train=True, augment=False)
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        out = on(img)
        hits = [k for k, c in crops.items() if torch.equal(out, c)]
        assert hits, "not a padded crop (optionally mirrored) of the input"
        seen.add(hits[0])
        assert torch.equal(off(img), x)
    assert len(seen) > 10 and max(max(dy, dx) for dy, dx, _ in seen) > padding  # the full range is used
    assert torch.equal(array_transform(name, train=False, augment=None)(img), x)  # val is never augmented


def test_imagenet_val_geometry_and_half_up_centre_crop():
    img = Image.fromarray(np.arange(300 * 400 * 3, dtype=np.uint32).reshape(300, 400, 3).astype(np.uint8))
    out = image_transform("imagenet", train=False)(img)
    assert out.shape == (3, 224, 224) and out.dtype == torch.uint8
    probe = Image.fromarray(np.tile(np.arange(341, dtype=np.uint8), (256, 1)))
    assert np.asarray(CenterCrop(224)(probe))[0, 0] == 59  # (341 - 224) / 2 = 58.5 -> 59, like DALI
    tiny = image_transform("tiny-imagenet", train=True)(Image.new("RGB", (64, 64)))
    assert tiny.shape == (3, 128, 128)


def test_normalize_uses_dataset_constants():
    info = dataset_info("cifar10")
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize(x, info.mean, info.std, "cpu")
    expected = [(1 - m) / s for m, s in zip(info.mean, info.std)]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(expected), rtol=1e-5, atol=1e-5)
