"""What a trial costs before it runs: device-hours from the model's FLOPs, or from a calibration.

Three sources, the first that applies wins:
1. ``resources.hours_per_epoch``: the user's own figure (``orchestrator.run.plan`` uses it as given);
2. a calibration (``convsweep calibrate FILE``): seconds per training image of the trial's (model, method,
   knobs, input size, AMP), timed on the node where it ran and stored in ``<storage root>/calibration.json``;
3. the FLOP model: multiply-adds of one forward pass (``layers.declared_macs`` from our own models' shapes,
   without torch; else ``layers.count_params_flops`` on one image, on the CPU or, for large images, the
   ``meta`` device), x 2 FLOPs each, x 3 for a training step (forward + backward),
   over the epoch's training images, plus one forward pass over the validation images, divided by the device's peak
   throughput (``orchestrator.spec.names.DEVICES``: fp32/TF32 or AMP fp16/bf16 tensor-core peaks) times ``UTILISATION``, an assumed
   share of peak that whole training runs reach (ResNet-50 on an A100 with AMP trains at about 2,470 img/s,
   NVIDIA's published figure: 24.6 GFLOPs per image x 2,470 = 61 TFLOP/s, 19.5 % of the 312 peak).
Device-hours assume perfect scaling: a trial on 8 GPUs costs the same device-hours as on one. The FLOP model
is optimistic for small models (CIFAR- and MNIST-sized nets are bound by data loading and kernel launches,
not arithmetic): calibrate those.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.spec.names import DEVICES, Device

__all__ = ["DEVICES", "UTILISATION", "Device", "TrialCost", "calibrate", "calibration_key", "code_version",
           "forward_macs", "load_calibration", "load_counts", "save_counts", "trial_cost"]


UTILISATION = 0.2
CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class TrialCost:
    device_hours: float
    source: str  # "hours_per_epoch", "calibration (<device>)" or "FLOPs (<device>, <utilisation>)"


def calibration_key(trial: Any) -> str:
    """What determines a trial's seconds per image: model, method and knobs, input shape, AMP (not the seed)."""
    import pipelines

    info = pipelines.dataset_info(trial.dataset.name)
    return json.dumps({"model": trial.model, "method": trial.layer.method, "knobs": trial.layer.build_knobs(),
                       "input": [info.in_channels, *info.image_shape], "amp": trial.recipe.amp}, sort_keys=True)


_FLOPS: dict[str, int] = {}  # calibration key -> forward multiply-adds, for this process
FLOPS_FILE = "flops.json"  # the counts, under the storage root, for the code version that counted them


# Inputs up to this many pixels are counted on the CPU, larger ones on ``meta``. On the CPU the kernels are
# C++ and one image's arithmetic is cheap (9 CIFAR ResNets: ~0.3 s); on ``meta`` many kernels (arange, relu,
# batch norm) are Python decompositions through ``torch._refs``, whose first call imports ``torch._dynamo``
# (~1.5 s), but an ImageNet-sized forward costs nothing (on the CPU ~1 s a model).
CPU_COUNT_PIXELS = 64 * 64


def forward_macs(trial: Any) -> int:
    """Multiply-adds of one image's forward pass: worked out from the shapes of our own models
    (``layers.declared_macs``, no torch), else counted on a built model (``layers.count_params_flops``);
    cached per calibration key, ``load_counts``/``save_counts`` keep them across processes."""
    key = calibration_key(trial)
    if key not in _FLOPS:
        import pipelines
        from layers.declared_macs import declared_macs

        info = pipelines.dataset_info(trial.dataset.name)
        macs = declared_macs(trial.model, trial.layer.method, info.num_classes, info.in_channels, info.image_shape,
                             trial.layer.build_knobs())
        _FLOPS[key] = _counted_macs(trial, info) if macs is None else macs
    return _FLOPS[key]


def _counted_macs(trial: Any, info: Any) -> int:
    import math

    import torch

    import layers

    device = "cpu" if math.prod(info.image_shape) <= CPU_COUNT_PIXELS else "meta"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one image's small ops: more threads only spin (2-4x the CPU time, measured)
    try:
        model = _counting_model(trial, info, device)
        return layers.count_params_flops(model, (1, info.in_channels, *info.image_shape))[1]
    finally:
        torch.set_num_threads(threads)


_INIT_FILLS = ("normal_", "uniform_", "fill_", "zero_", "erfinv_", "clamp_", "copy_")


def _counting_model(trial: Any, info: Any, device: str) -> Any:
    """The trial's model on ``device``, its weights' initialisation (and the copies of weights into converted
    layers) skipped: only shapes matter to a count, and the fills cost about 0.2 s a model, a third of
    planning a sweep (the values left are those of ``torch.empty``)."""
    import torch
    from torch.overrides import TorchFunctionMode

    import layers

    # torch.nn.init's initialisers (kaiming_uniform_ fills every conv) reach the mode as themselves, the
    # tensor methods they call then bypassing it
    skipped = {getattr(cls, name) for cls in (torch.Tensor, torch._C.TensorBase) for name in _INIT_FILLS}
    skipped |= {f for name, f in vars(torch.nn.init).items() if name.endswith("_") and not name.startswith("_")}

    class SkipInit(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func in skipped:
                return args[0] if args else kwargs["tensor"]  # torch.nn.init passes its tensor by name
            return func(*args, **kwargs)

    with torch.device(device), SkipInit():
        return layers.build_model(trial.model, info.num_classes, trial.layer.method, in_channels=info.in_channels,
                                  **trial.layer.build_knobs())


def code_version() -> str:
    """What a count depends on besides the trial's settings: the source of ``layers`` and torch's version."""
    import layers

    digest = hashlib.sha256(importlib.metadata.version("torch").encode())
    root = Path(layers.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _saved_counts(storage_root: str | Path) -> dict[str, int]:
    try:
        data = json.loads((Path(storage_root) / FLOPS_FILE).read_text(encoding="utf-8"))
        if data.get("code") == code_version():
            return {str(k): int(v) for k, v in data["macs"].items()}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        pass  # no counts yet, or a damaged file: counted again and rewritten
    return {}


def load_counts(storage_root: str | Path) -> None:
    """Take the counts saved under ``storage_root`` by the same code version: a plan then builds no model and
    imports no torch (importing it and counting nine CIFAR models took 5 s of a 10,000-trial plan)."""
    _FLOPS.update(_saved_counts(storage_root))


def save_counts(storage_root: str | Path, keys: Iterable[str]) -> None:
    """Add the counts of ``keys`` (calibration keys this process counted) to those under ``storage_root``
    (atomically; a root nobody may write is left alone)."""
    saved = _saved_counts(storage_root)
    new = {k: _FLOPS[k] for k in keys if k in _FLOPS and k not in saved}
    if not new:
        return
    path = Path(storage_root) / FLOPS_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"code": code_version(), "macs": {**saved, **new}}, indent=1, sort_keys=True) + "\n",
                       encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # the counts are a cache: the next plan counts again


def _images(trial: Any) -> tuple[int, int]:
    import pipelines

    return pipelines.dataset_info(trial.dataset.name).nominal_sizes


def load_calibration(storage_root: str | Path) -> dict[str, dict[str, Any]]:
    from orchestrator.dirs.trialdir import read_json_file

    path = Path(storage_root) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    data = read_json_file(path, "delete it and run `convsweep calibrate FILE` again")
    return data if isinstance(data, dict) else {}


def trial_cost(trial: Any, calibration: dict[str, dict[str, Any]] | None = None) -> TrialCost | None:
    """Device-hours of ``trial`` (None when no source applies: no GPU type, no figure, no calibration)."""
    res = trial.resources
    epochs = len(trial.transforms) if trial.evaluate_source is not None else trial.recipe.epochs
    if res.hours_per_epoch is not None:
        return TrialCost(epochs * res.hours_per_epoch * max(1, res.nodes * res.gpus_per_node), "hours_per_epoch")
    train_images, val_images = _images(trial)
    evaluation = trial.evaluate_source is not None
    entry = calibration.get(calibration_key(trial)) if calibration else None
    if entry is not None:
        per_image = float(entry["seconds_per_image"])
        seconds = (val_images / 3 if evaluation else train_images + val_images / 3) * per_image * epochs
        return TrialCost(seconds / 3600, f"calibration ({entry.get('device', '?')})")
    if res.gpu_type is None:
        return None
    device = DEVICES[res.gpu_type]
    peak = (device.amp_tflops if trial.recipe.amp else device.fp32_tflops) * 1e12 * UTILISATION
    flops_fwd = 2.0 * forward_macs(trial)
    flops = epochs * (flops_fwd * val_images + (0 if evaluation else 3 * flops_fwd * train_images))
    precision = "AMP" if trial.recipe.amp else "fp32/TF32"
    return TrialCost(flops / peak / 3600, f"FLOPs ({res.gpu_type} {precision}, {UTILISATION:.0%} of peak)")


def calibrate(trials: list[Any], storage_root: str | Path, *, steps: int = 5, batch_cap: int = 32) -> dict[str, Any]:
    """Time ``steps`` training steps of each distinct calibration key among ``trials`` on this node (its GPU
    if it has one, else its CPU) and merge seconds per image into ``<storage_root>/calibration.json``.

    Batches are the trial's per-process batch, capped at ``batch_cap`` (a CPU node would take minutes per
    ImageNet step at 256); the data is random (only the shape matters for the time).
    """
    import torch
    import torch.nn.functional as F

    import layers
    import pipelines

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    done = load_calibration(storage_root)
    seen: set[str] = set()
    for trial in trials:
        key = calibration_key(trial)
        if key in seen:
            continue
        seen.add(key)
        info = pipelines.dataset_info(trial.dataset.name)
        model = layers.build_model(trial.model, info.num_classes, trial.layer.method, in_channels=info.in_channels,
                                   **trial.layer.build_knobs()).to(device).train()
        batch = min(trial.recipe.batch_size, batch_cap)
        x = torch.randn(batch, info.in_channels, *info.image_shape, device=device)
        y = torch.randint(0, info.num_classes, (batch,), device=device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        amp = cuda and trial.recipe.amp

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=amp):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        step()  # warm-up: allocations, kernels chosen
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        done[key] = {"seconds_per_image": (time.perf_counter() - start) / (steps * batch), "device": name,
                     "batch": batch, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = Path(storage_root) / CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(done, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return done
