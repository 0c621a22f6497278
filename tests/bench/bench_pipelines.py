"""Throughput of the training pipelines on ImageNet-sized JPEGs, measured side by side in one run.

    .venv/bin/python tests/bench/bench_pipelines.py [--images 2000] [--rounds 3] [--batch-size 64]

Writes >= 2,000 JPEGs of 500x375 (random windows of the photos scikit-learn and scikit-image ship, as an
ImageFolder of 8 classes) into a temporary folder, then times full training epochs of
- dali-cpu: build_loader(..., backend="dali-cpu", num_workers=2): the fused decoders.image_random_crop path,
- pytorch:  build_loader(..., backend="pytorch", num_workers=2): Pillow + RandomResizedCrop in 2 workers,
- ceiling:  a bare Pillow decode + RandomResizedCrop(224) loop in 2 processes, nothing else,
in alternating order over several rounds, and prints the median images/s and the ratios against the goals
(dali-cpu >= 1.15x pytorch and >= 70% of the ceiling). Both loaders include normalisation to float32 CHW.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pipelines"))

import pipeline_fixtures as pf  # noqa: E402
from pipelines import build_loader  # noqa: E402


def make_jpegs(root: str, count: int, classes: int = 8, size: tuple[int, int] = (500, 375)) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        c = i % classes
        d = os.path.join(root, "train", f"n{c:08d}")
        os.makedirs(d, exist_ok=True)
        os.makedirs(os.path.join(root, "val", f"n{c:08d}"), exist_ok=True)
        path = os.path.join(d, f"{i:06d}.JPEG")
        Image.fromarray(pf.cut(pf.photos()[c], rng, size)).save(path, quality=90)
        paths.append(path)
    for c in range(classes):  # the val split only has to exist for the ImageNet layout check
        Image.new("RGB", size).save(os.path.join(root, "val", f"n{c:08d}", "x.JPEG"))
    return paths


def time_loader(root: str, backend: str, batch_size: int, epoch: int) -> float:
    loader = build_loader("imagenet", root, "train", batch_size=batch_size, backend=backend, num_workers=2)
    loader.set_epoch(epoch)
    start = time.perf_counter()
    seen = sum(len(labels) for _, labels in loader)
    return seen / (time.perf_counter() - start)


def _ceiling_worker(paths: list[str]) -> int:
    from torchvision import transforms as T

    crop = T.RandomResizedCrop(224)
    for p in paths:
        with Image.open(p) as img:
            crop(img.convert("RGB"))
    return len(paths)


def time_ceiling(paths: list[str], pool) -> float:
    start = time.perf_counter()
    seen = sum(pool.map(_ceiling_worker, [paths[0::2], paths[1::2]]))
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--root", default=None, help="reuse/keep the JPEG folder here")
    args = parser.parse_args(argv)
    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-pipelines-")
        root = tmp.name
    train_dir = os.path.join(root, "train")
    if os.path.isdir(train_dir):
        paths = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(train_dir) for f in fs)
    else:
        t = time.perf_counter()
        paths = make_jpegs(root, args.images)
        print(f"wrote {len(paths)} JPEGs of 500x375 in {time.perf_counter() - t:.1f} s to {root}")
    print(f"{len(paths)} images, batch {args.batch_size}, 2 threads/workers/processes, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    ctx = mp.get_context("fork")
    results: dict[str, list[float]] = {"dali-cpu": [], "pytorch": [], "ceiling": []}
    with ctx.Pool(2) as pool:
        _ceiling_worker(paths[:16])  # warm the page cache and imports once
        time_loader(root, "dali-cpu", args.batch_size, 99)
        for r in range(args.rounds):
            order = ["dali-cpu", "pytorch", "ceiling"] if r % 2 == 0 else ["ceiling", "pytorch", "dali-cpu"]
            for name in order:
                rate = time_ceiling(paths, pool) if name == "ceiling" else time_loader(root, name, args.batch_size, r)
                results[name].append(rate)
                print(f"round {r + 1}: {name:9s} {rate:8.0f} img/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print("\nmedian images/s: " + ", ".join(f"{k} {v:.0f}" for k, v in med.items()))
    vs_torch, vs_ceiling = med["dali-cpu"] / med["pytorch"], med["dali-cpu"] / med["ceiling"]
    print(f"dali-cpu / pytorch = {vs_torch:.2f}x (goal >= 1.15): {'met' if vs_torch >= 1.15 else 'NOT met'}")
    print(f"dali-cpu / ceiling = {vs_ceiling:.0%} (goal >= 70%): {'met' if vs_ceiling >= 0.70 else 'NOT met'}")
    print(f"pytorch  / ceiling = {med['pytorch'] / med['ceiling']:.0%}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
