"""Model read-outs for logging and the papers' table columns: sigma values, parameter and FLOP counts."""

from __future__ import annotations

import torch
from torch import nn

from .aconv import AdaptiveConv2d
from .gmconv import GMConv2d
from .macs import count_macs

__all__ = ["sigma_summary", "count_params_flops"]


def sigma_summary(model: nn.Module) -> dict[str, float]:
    """Flat ``{key: value}`` of every learned sigma, for logging; empty without GMConv/ACONV layers.

    Static GMConv: ``"gmconv.<name>"`` = ``|sigma|`` (the mask depends on ``sigma^2``); dynamic GMConv:
    ``"gmconv.<name>.sigma1"``/``".sigma2"`` = batch means of the latest forward; ACONV:
    ``"aconv.<name>.mean"``, ``".min"``, ``".max"`` over the layer's filters.
    """
    out: dict[str, float] = {}
    for name, module in model.named_modules():
        if isinstance(module, GMConv2d):
            if module.dynamic:
                out[f"gmconv.{name}.sigma1"] = float(module.last_sigma[0])
                out[f"gmconv.{name}.sigma2"] = float(module.last_sigma[1])
            else:
                out[f"gmconv.{name}"] = float(module.sigma.detach().abs())
        elif isinstance(module, AdaptiveConv2d):
            sigma = module.sigma.detach()
            out.update({f"aconv.{name}.mean": float(sigma.mean()), f"aconv.{name}.min": float(sigma.min()),
                        f"aconv.{name}.max": float(sigma.max())})
    return out


def count_params_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> tuple[int, int]:
    """``(parameters, FLOPs)`` of one eval-mode forward on zeros of ``input_shape``.

    FLOPs are multiply-adds as the papers count them: those of the convolutions and matrix products, by
    ``torch.utils.flop_counter.FlopCounterMode``'s formulas halved (it counts 2 per multiply-add), without
    its import of ``torch._dynamo`` (``layers.macs``). Works on the ``meta`` device (no arithmetic is done
    there), which makes full-resolution counts of large models cheap.
    """
    params = sum(p.numel() for p in model.parameters())
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        macs = count_macs(model, torch.zeros(input_shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return params, macs
