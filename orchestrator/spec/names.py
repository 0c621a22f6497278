"""Every name a sweep file may use, one registry per kind, each name with one line saying what it is.

The schema's enums (``orchestrator.spec.sections``), the errors' allowed lists and ``describe()`` (the CLI's
list of names) all read these, so a name added here is accepted, listed and explained at once; the torch
side (``orchestrator.train.optim``, ``orchestrator.train.schedules``) maps the same names to builders, and
a test holds the two to the same set. Names owned by another package come from its live registry:
layer methods from ``layers.knobs``, models from ``layers`` (with the ones registered at run time), datasets
and loader backends from ``pipelines``. Plain Python: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEVICES", "OPTIMIZERS", "SCHEDULES", "Device", "backends", "datasets", "describe", "layer_methods",
    "model_names",
]

OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD with momentum (nesterov: true for Nesterov's); the papers' CIFAR and ImageNet recipes",
    "adam": "Adam with torch's betas; weight_decay is an L2 term in the gradient",
    "adamw": "AdamW: Adam with weight decay decoupled from the gradient",
}

SCHEDULES: dict[str, str] = {
    "constant": "the base lr throughout",
    "step": "x gamma every step_size epochs (GMConv ResNets: /10 every 30)",
    "multistep": "x gamma at each of milestones (CIFAR ResNets: /10 at 80 and 120)",
    "exponential": "x gamma every epoch (GMConv MobileNetV2: 0.98)",
    "poly": "down to end_lr as (1 - t/T) ** power, every step (CoC: power 0.9)",
    "onecycle": "linear from end_lr up to lr at mid-training and back, every step (ACONV ResNet)",
    "cosine": "half a cosine from lr down to end_lr, per epoch",
    "plateau": "x gamma after more than patience evaluations without a lower val loss (ACONV simple net)",
}


@dataclass(frozen=True)
class Device:
    """A GPU's dense peak throughput, for ``plan``'s FLOP estimate (``orchestrator.run.cost``)."""

    fp32_tflops: float  # dense fp32 (TF32 tensor cores where the device has them: what torch uses by default)
    amp_tflops: float  # dense fp16/bf16 tensor cores

    def describe(self) -> str:
        return f"{self.fp32_tflops:g} TFLOP/s fp32/TF32, {self.amp_tflops:g} AMP (dense peaks)"


DEVICES: dict[str, Device] = {
    "V100": Device(fp32_tflops=15.7, amp_tflops=125.0),
    "A100": Device(fp32_tflops=156.0, amp_tflops=312.0),
    "H100": Device(fp32_tflops=494.7, amp_tflops=989.4),
    "L40S": Device(fp32_tflops=183.0, amp_tflops=362.1),
}


def layer_methods() -> dict[str, str]:
    """The conv variants ``layer.method`` may name, each with what it is and the knobs it reads (``layers.knobs``;
    ``layers.method_help()`` describes each knob)."""
    from layers.knobs import METHOD_REGISTRY

    return {name: f"{m.help}; knobs: {', '.join(m.knobs)}" for name, m in METHOD_REGISTRY.items()}


def model_names() -> tuple[str, ...]:
    """Every model ``layers.build_model`` can build now, read at call time from ``layers.catalogue`` (which a
    model registered at run time joins), so it holds the built-ins and any registered since."""
    from layers.catalogue import model_names as declared

    return declared()


def datasets() -> dict[str, str]:
    """The datasets ``pipelines`` reads (with any added by ``pipelines.register_dataset``), each with its shape."""
    import pipelines

    out = {}
    for name in pipelines.DATASETS:
        info = pipelines.dataset_info(name)
        out[name] = f"{info.num_classes} classes, {info.in_channels}x{info.image_shape[0]}x{info.image_shape[1]}"
    return out


def backends() -> tuple[str, ...]:
    """The loader backends ``dataset.backend`` may name (``auto`` picks one per dataset and device)."""
    from pipelines.backends import BACKENDS

    return BACKENDS


def describe() -> str:
    """Every kind of name with its names, one per line with its description where there is one (the CLI's
    ``convsweep names``)."""
    sections: list[tuple[str, dict[str, str]]] = [
        ("layer.method", layer_methods()),
        ("model", dict.fromkeys(model_names(), "")),
        ("dataset.name", datasets()),
        ("dataset.backend", dict.fromkeys(backends(), "")),
        ("recipe.optimizer.name", OPTIMIZERS),
        ("recipe.schedule.name", SCHEDULES),
        ("resources.gpu_type", {name: device.describe() for name, device in DEVICES.items()}),
    ]
    lines = []
    for key, names in sections:
        lines.append(f"{key}:")
        width = max(len(n) for n in names)
        lines += [f"  {n.ljust(width)}  {text}".rstrip() for n, text in names.items()]
    from layers.knobs import method_help

    lines.append("layer knobs, by method (what each knob does, its default and allowed values):")
    lines += [f"  {line}" for line in method_help().splitlines()]
    return "\n".join(lines)
