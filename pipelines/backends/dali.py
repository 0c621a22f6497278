"""The `dali-cpu` and `dali-gpu` backends: one NVIDIA DALI graph for the JPEG datasets, on either device.

`image_graph` is the pure processing function (decode, crop, resize, flip, normalise); `image_pipeline` is
the thin `@pipeline_def` around it whose input is `fn.external_source` fed from the shared `ShardPlan`
(sharding.py): the encoded bytes of each planned batch are read here and decoded by DALI's threads. The
only difference between the two devices is `decoder_device`: "mixed" (nvJPEG, then every op on the GPU,
`device_id` = the CUDA device) or "cpu" (libjpeg-turbo, CPU ops, `device_id=None`).

Why external_source rather than `fn.readers.file`: the reader's shards are contiguous ranges in its own
order, its shuffling depends on how many epochs the pipeline has run rather than on `set_epoch`, and its
epoch order differs from the torchvision backend's. Feeding from the plan gives both backends the same
shards in the same order, exact validation shards, and resumption at any batch (Loader.state_dict), which
is what DALI's own reader checkpointing (`enable_checkpointing=True`, `pipe.checkpoint()`; it works with
readers on CPU in DALI 2.4) would provide.

Train: `fn.decoders.image_random_crop` (the fused decode + RandomResizedCrop: scale (0.08, 1), ratio
(3/4, 4/3)), resize to S x S, random horizontal mirror, normalise to float CHW. Val, and train when the
sweep turns augmentation off (`augment=False`, as in transforms.py): decode, resize the shorter side to R
(antialiased linear), centre crop S, the Table 4 transform if any, normalise.

A pipeline is built per epoch (~0.15 s on CPU) with a seed from (seed, epoch, rank): abandoning an epoch
early just drops it. A file DALI cannot decode ends the epoch with `CorruptImageError` naming the file
(found by decoding the candidate batch's files with Pillow); nothing is skipped.

DALI is imported lazily; without it `import_dali()` raises ImportError naming `nvidia-dali-cuda120`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..datasets import dataset_entry
from ..readers.folders import CorruptImageError, FileSplit, read_image_file
from ..sharding import ShardPlan
from ..transforms import EVAL_ANGLES, augments
from .base import Loader

__all__ = ["DaliLoader", "import_dali", "image_graph", "build_image_pipeline"]

PREFETCH_QUEUE_DEPTH = 2


def import_dali():
    """Return (fn, types, pipeline_def) or raise ImportError saying what to install."""
    try:
        from nvidia.dali import fn, pipeline_def, types
    except ImportError as e:
        raise ImportError("backends 'dali-cpu'/'dali-gpu' need NVIDIA DALI: pip install nvidia-dali-cuda120 "
                          "(or the nvidia-dali wheel matching your CUDA), or use backend 'pytorch'") from e
    return fn, types, pipeline_def


def image_graph(jpegs, *, train: bool, decoder_device: str, size: int, val_resize: int,
                mean: tuple[float, ...], std: tuple[float, ...], eval_transform: str | None):
    """Encoded images -> float32 (3, size, size) normalised; the ops follow the decoder's device."""
    fn, types, _ = import_dali()
    norm = dict(dtype=types.FLOAT, output_layout="CHW", mean=[m * 255.0 for m in mean],
                std=[s * 255.0 for s in std])
    # nvJPEG's buffers grow on demand; the paddings (NVIDIA's ImageNet values) avoid regrowing.
    mixed = dict(device_memory_padding=211_025_920, host_memory_padding=140_544_512) if decoder_device == "mixed" \
        else {}
    if train:
        images = fn.decoders.image_random_crop(jpegs, device=decoder_device, output_type=types.RGB,
                                               random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3],
                                               num_attempts=10, **mixed)
        images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_LINEAR, antialias=True)
        return fn.crop_mirror_normalize(images, mirror=fn.random.coin_flip(probability=0.5), **norm)
    images = fn.decoders.image(jpegs, device=decoder_device, output_type=types.RGB, **mixed)
    images = fn.resize(images, resize_shorter=val_resize, interp_type=types.INTERP_LINEAR, antialias=True)
    if eval_transform in (None, "rot0"):
        return fn.crop_mirror_normalize(images, crop=(size, size), **norm)
    images = fn.crop(images, crop=(size, size))
    if eval_transform == "flip_ud":
        images = fn.flip(images, horizontal=0, vertical=1)
    else:
        # Counter-clockwise as displayed, like torchvision's (a test compares the two).
        images = fn.rotate(images, angle=EVAL_ANGLES[eval_transform], keep_size=True, fill_value=0,
                           interp_type=types.INTERP_LINEAR)
    return fn.crop_mirror_normalize(images, **norm)


def build_image_pipeline(source, *, train: bool, decoder_device: str, size: int, val_resize: int,
                         mean: tuple[float, ...], std: tuple[float, ...], eval_transform: str | None,
                         batch_size: int, num_threads: int, device_id: int | None, seed: int):
    """The `@pipeline_def` wrapper: external_source(source) -> (images, labels)."""
    fn, types, pipeline_def = import_dali()

    @pipeline_def(enable_conditionals=False)
    def image_pipeline():
        jpegs, labels = fn.external_source(source=source, num_outputs=2, batch=True,
                                           dtype=[types.UINT8, types.INT64])
        return image_graph(jpegs, train=train, decoder_device=decoder_device, size=size, val_resize=val_resize,
                           mean=mean, std=std, eval_transform=eval_transform), labels

    return image_pipeline(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                          prefetch_queue_depth=PREFETCH_QUEUE_DEPTH)


class DaliLoader(Loader):
    def __init__(self, name: str, data: FileSplit, plan: ShardPlan, *, train: bool, device: torch.device,
                 num_threads: int, seed: int, eval_transform: str | None, mean: tuple[float, ...],
                 std: tuple[float, ...], augment: bool | None = None) -> None:
        import_dali()
        super().__init__(plan, device)
        self.gpu = device.type == "cuda"
        self.backend = "dali-gpu" if self.gpu else "dali-cpu"
        self.data, self.train, self.num_threads, self.seed = data, train, num_threads, seed
        # the graph's `train` selects the augmented path only: the plan (shuffling) is the loader's
        self.graph = dict(train=augments(name, train, augment), decoder_device="mixed" if self.gpu else "cpu",
                          size=dataset_entry(name).info.image_size, val_resize=dataset_entry(name).val_resize, mean=mean, std=std,
                          eval_transform=eval_transform)
        self.classes = data.classes

    def _device_id(self) -> int | None:
        if not self.gpu:
            return None
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def _read(self, batches: list[np.ndarray]):
        for batch in batches:
            yield ([np.fromfile(self.data.paths[i], dtype=np.uint8) for i in batch],
                   np.ascontiguousarray(self.data.labels[batch]))

    def _iter_batches(self, batches: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not batches:
            return
        seed = int(np.random.default_rng([self.seed, self.epoch, self.plan.rank]).integers(2**31))
        pipe = build_image_pipeline(self._read(batches), batch_size=self.plan.batch_size,
                                    num_threads=self.num_threads, device_id=self._device_id(), seed=seed,
                                    **self.graph)
        pipe.build()
        for k in range(len(batches)):
            try:
                outputs = pipe.run()
            except RuntimeError as e:
                raise self._explain(e, batches[k:k + PREFETCH_QUEUE_DEPTH + 1]) from e
            yield self._to_torch(outputs, pipe.exec_dynamic)

    def _to_torch(self, outputs, zero_copy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from nvidia.dali.plugin.pytorch import feed_ndarray

        images, labels = (o.as_tensor() for o in outputs)
        if zero_copy:
            # The dynamic executor keeps the buffer alive for as long as the DLPack capsule refers to it.
            with self.device if self.gpu else torch.device("cpu"):
                x = torch.from_dlpack(images)
        else:
            x = torch.empty(images.shape(), dtype=torch.float32, device=self.device if self.gpu else "cpu")
            stream = torch.cuda.current_stream(self.device) if self.gpu else None
            feed_ndarray(images, x, cuda_stream=stream)
        y = torch.from_numpy(np.array(labels, dtype=np.int64).reshape(-1))
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _explain(self, error: RuntimeError, candidates: list[np.ndarray]) -> Exception:
        for batch in candidates:
            for i in batch:
                try:
                    read_image_file(self.data.paths[i])
                except CorruptImageError as bad:
                    return CorruptImageError(f"{bad} (DALI: {_dali_reason(error)})")
        return error


def _dali_reason(error: RuntimeError) -> str:
    """The informative line of DALI's multi-line pipeline error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for key in ("Failed to decode", "Error in"):
        for line in lines:
            if line.startswith(key):
                return line.rstrip(" :,")
    return lines[0] if lines else type(error).__name__
