"""Effective receptive field (ERF; Luo, Li, Urtasun, Zemel, "Understanding the Effective Receptive Field in
Deep Convolutional Neural Networks", NeurIPS 2016): how much each input pixel moves the centre unit of a
chosen stage.

``effective_receptive_field(model, stage, images)``: the gradient of the sum over channels of the stage's
centre output unit with respect to the input, its magnitude summed over input channels and averaged over
the images: an ``(H, W)`` map. The paper seeds the backward pass with a one-hot at the centre unit (all
channels), which is what summing the centre unit's channels does. BatchNorm is used as in evaluation (its
running statistics), so the map is a property of the model, not of the batch.

``erf_radii(erf_map, fractions)``: the radius (in input pixels, from the centre unit's input position) of the
smallest centred disc holding each fraction of the map's mass; with ``theoretical_receptive_field`` (the
stage's receptive field from kernel sizes, strides and dilations) it gives the scalar summaries that tables
can show.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["effective_receptive_field", "erf_radii", "theoretical_receptive_field"]


def effective_receptive_field(model: nn.Module, stage: str, images: Tensor) -> Tensor:
    """ERF map ``(H, W)`` of module ``stage`` (a name of ``model.named_modules()``) over ``images (N, C, H, W)``.

    The model is run in eval mode on a copy of the input that requires grad; its parameters get no gradient
    and its mode is restored afterwards.
    """
    modules = dict(model.named_modules())
    if stage not in modules:
        names = [n for n in modules if n]
        raise ValueError(f"stage: {stage!r} is not a module of the model (allowed, e.g.: {names[:8]} ...)")
    if images.dim() != 4 or images.shape[0] < 1:
        raise ValueError(f"images: expected (N, C, H, W) with N >= 1 (got shape {tuple(images.shape)})")
    captured: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        captured.append(output)

    was_training = model.training
    needs_grad = [p.requires_grad for p in model.parameters()]
    handle = modules[stage].register_forward_hook(keep)
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        x = images.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            model(x)
            if not captured or captured[0].dim() != 4:
                raise ValueError(f"stage: {stage!r} does not output a (N, C, H, W) feature map")
            out = captured[0]
            centre = out[:, :, out.shape[2] // 2, out.shape[3] // 2]  # (N, C)
            (grad,) = torch.autograd.grad(centre.sum(), x)
    finally:
        handle.remove()
        model.train(was_training)
        for p, flag in zip(model.parameters(), needs_grad):
            p.requires_grad_(flag)
    return grad.abs().sum(dim=1).mean(dim=0)


def erf_radii(erf_map: Tensor, fractions: Sequence[float] = (0.5, 0.9),
              centre: tuple[float, float] | None = None) -> list[float]:
    """Radius of the smallest disc around ``centre`` (default: the map's centre) holding each fraction of the mass.

    Radii are measured on the pixel grid; a fraction reached within the centre pixel gives 0.
    """
    h, w = erf_map.shape
    cy, cx = centre if centre is not None else ((h - 1) / 2, (w - 1) / 2)
    ys = torch.arange(h, dtype=torch.float64).view(-1, 1) - cy
    xs = torch.arange(w, dtype=torch.float64).view(1, -1) - cx
    dist = (ys**2 + xs**2).sqrt().flatten()
    mass = erf_map.detach().to(torch.float64).flatten()
    total = mass.sum()
    if not total > 0:
        return [float("nan")] * len(fractions)
    order = torch.argsort(dist, stable=True)
    cumulative = torch.cumsum(mass[order], 0) / total
    radii = []
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"fractions: each must be in (0, 1] (got {f!r})")
        index = int(torch.searchsorted(cumulative, torch.tensor(f, dtype=torch.float64) - 1e-12))
        radii.append(float(dist[order][min(index, len(order) - 1)]))
    return radii


def theoretical_receptive_field(model: nn.Module, stage: str) -> int:
    """Side of the theoretical receptive field of ``stage``'s units: the convs and pools met in module order
    up to and including ``stage`` (a chain, as in the registry's plain nets; parallel branches such as
    residual shortcuts do not widen it beyond their main path, so this is the main path's value)."""
    named = list(model.named_modules())
    inside = [i for i, (n, _) in enumerate(named) if n == stage or n.startswith(stage + ".")]
    if not inside or stage == "":
        raise ValueError(f"stage: {stage!r} is not a module of the model")
    rf, jump = 1, 1
    for name, m in named[: inside[-1] + 1]:  # pre-order: the stage's own modules come right after it
        k = s = d = None
        if isinstance(m, nn.Conv2d):
            k, s, d = m.kernel_size[0], m.stride[0], m.dilation[0]
            if k == 1 and s > 1 and name.endswith(("downsample.0", "shortcut")):
                k = None  # a strided 1x1 shortcut runs beside the main path, which already counts the stride
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            d = getattr(m, "dilation", 1)
            d = d if isinstance(d, int) else d[0]
        if k is not None:
            rf += (k - 1) * d * jump
            jump *= s
    return rf
