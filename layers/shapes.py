"""The learned shapes of a model's receptive-field-shaping layers, as plain arrays for pictures.

- GMConv, static (S-GMConv): the ``(k, k)`` Gaussian mask of each layer (``GMConv2d.mask``, paper Eq. 3-6)
  and its ``|sigma|``.
- GMConv, dynamic (D-GMConv): the ``(sigma1, sigma2)`` the sigma module predicts for each of the given
  images (``GMConv2d.sample_sigmas`` on the layer's real input, captured by a forward pre-hook): the
  distribution the pattern (``sigma``, ``sigma1_sigma2``, ``sigma1_rsigma``) produces over the data.
- ACONV: the RMS-normalised envelope of every filter (``AdaptiveConv2d.envelope``) and its sigma.
- CoC: the basic kernels (the trained ``weight``) and the effective kernels the conv really applies
  (``get_equivalent_kernel_bias``: super conv, LNs, skip), both ``(C_out, C_in/groups, k, k)``.

Nothing here draws; ``orchestrator.train.shapes`` does. The model's mode, gradients and the dynamic layers'
``last_sigma`` (what the per-epoch sigma log reads) are left as they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .aconv import AdaptiveConv2d
from .coc import CoCConv2d
from .gmconv import GMConv2d

__all__ = ["LearnedShapes", "learned_shapes"]


@dataclass
class LearnedShapes:
    """Per layer name: ``gmconv_masks`` ``(k, k)``, ``gmconv_sigma`` (static ``|sigma|``), ``gmconv_sigmas``
    ``(N, 2)`` with ``gmconv_patterns``, ``aconv_envelopes`` ``(C_out, k, k)`` with ``aconv_sigmas``
    ``(C_out,)``, and the CoC layer ``coc_layer`` with ``coc_basic``/``coc_effective`` ``(C_out, C_in', k, k)``."""

    gmconv_masks: dict[str, Tensor] = field(default_factory=dict)
    gmconv_sigma: dict[str, float] = field(default_factory=dict)
    gmconv_sigmas: dict[str, Tensor] = field(default_factory=dict)
    gmconv_patterns: dict[str, str] = field(default_factory=dict)
    aconv_envelopes: dict[str, Tensor] = field(default_factory=dict)
    aconv_sigmas: dict[str, Tensor] = field(default_factory=dict)
    coc_layer: str | None = None
    coc_basic: Tensor | None = None
    coc_effective: Tensor | None = None

    @property
    def empty(self) -> bool:
        return not (self.gmconv_masks or self.gmconv_sigmas or self.aconv_envelopes or self.coc_layer)


@torch.no_grad()
def learned_shapes(model: nn.Module, images: Tensor | None = None, *, coc_layer: str | None = None,
                   batch_size: int = 64) -> LearnedShapes:
    """Every learned shape of ``model`` (see the module doc); ``images (N, C, H, W)`` feed the dynamic
    GMConv layers (no sigma distribution without them). ``coc_layer``: the CoC layer whose kernels are
    kept (default: the first one); an unknown or non-CoC name raises listing the CoC layers."""
    shapes = LearnedShapes()
    modules = dict(model.named_modules())
    dynamic = {n: m for n, m in modules.items() if isinstance(m, GMConv2d) and m.dynamic}
    for name, m in modules.items():
        if isinstance(m, GMConv2d) and not m.dynamic:
            shapes.gmconv_masks[name] = m.mask().detach().cpu().float()
            shapes.gmconv_sigma[name] = float(m.sigma.detach().abs())
        elif isinstance(m, AdaptiveConv2d):
            shapes.aconv_envelopes[name] = m.envelope().detach().cpu().float()
            shapes.aconv_sigmas[name] = m.sigma.detach().cpu().float()
    cocs = [n for n, m in modules.items() if isinstance(m, CoCConv2d)]
    if coc_layer is not None and coc_layer not in cocs:
        raise ValueError(f"analysis.shapes.coc_layer: {coc_layer!r} is not a CoC layer of the model "
                         f"(allowed: {cocs[:12] or 'none: the model has no CoC layer'})")
    if cocs:
        shapes.coc_layer = coc_layer or cocs[0]
        layer = modules[shapes.coc_layer]
        shapes.coc_basic = layer.weight.detach().cpu().float().clone()
        shapes.coc_effective = layer.get_equivalent_kernel_bias()[0].detach().cpu().float()
    if dynamic and images is not None and len(images):
        shapes.gmconv_sigmas = _dynamic_sigmas(model, dynamic, images, batch_size)
        shapes.gmconv_patterns = {n: m.sigma_pattern for n, m in dynamic.items()}
    return shapes


def _dynamic_sigmas(model: nn.Module, dynamic: dict[str, GMConv2d], images: Tensor,
                    batch_size: int) -> dict[str, Tensor]:
    """``(N, 2)`` predicted ``(sigma1, sigma2)`` per dynamic layer over ``images``, in eval mode."""
    got: dict[str, list[Tensor]] = {n: [] for n in dynamic}
    kept = {n: m.last_sigma.clone() for n, m in dynamic.items()}

    def hook(name: str):
        def capture(module: GMConv2d, inputs: tuple[Tensor, ...]) -> None:
            got[name].append(torch.stack(module.sample_sigmas(inputs[0]), dim=1).cpu().float())
        return capture

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in dynamic.items()]
    was_training = model.training
    try:
        model.eval()
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        for n, m in dynamic.items():
            m.last_sigma.copy_(kept[n])
    return {n: torch.cat(v) for n, v in got.items()}
