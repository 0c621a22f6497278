"""Receptive-field-shaping convolution layers and the models that use them (pure PyTorch).

What belongs here: the conv variants as drop-in ``nn.Conv2d`` replacements, their exact
re-parameterisation into a plain conv, the conversion of a model's convs, the registries (methods and their
knobs, models) and the read-outs of the layers (sigmas, parameter/FLOP counts, ERF, learned shapes). FLOPs
are counted on a built model (``count_params_flops``, by ``macs``) or, for our own models, worked out from
their shapes without torch (``declared_macs``, which a plan uses).
What it may import: torch (lazily: ``import layers`` itself imports none), torchvision and timm (only inside
the builders that need them), and nothing of ours (not ``orchestrator``, not ``pipelines``). The registries
``knobs`` (methods and knobs) and ``catalogue`` (models) are plain Python, so config validation gets every
answer a build would give without torch (about 650 MB and 1-3 s); every other name loads its module on
first use.

Variants (all subclass ``nn.Conv2d``, so they load a plain conv's state_dict and keep its signature):
``GMConv2d`` (static S-GMConv / dynamic D-GMConv, Chen et al.; ``gmconv``), ``CoCConv2d`` (Zhao et al.;
``coc``, its kernel math in ``coc_kernel``), ``AdaptiveConv2d`` (ACONV, Tek et al.; ``aconv``),
``StdConv2d`` (weight standardisation, Qiao et al.; ``stdconv``), on the foldable base ``ReparamConv2d``
(``_reparam``); ``orth_loss`` is the OCNN regulariser (``orth``). Each fills its tensors in
``reset_parameters``, so a ``meta`` build + ``to_empty`` + a reset per module equals a direct build.
``create_conv2d`` turns a method name into its layer (``create``), ``convert_model`` swaps a model's convs by
the method's policy (``convert``), ``reparameterize_model`` folds every foldable layer into a plain conv
(``fold``), ``build_model`` = registry builder + ``convert_model`` (``models/``).
``effective_receptive_field`` measures what all three change: how far from a unit's centre the input
still moves it (``erf``).

Compilation: every variant traces with ``torch.fx.symbolic_trace`` and runs under ``torch.compile``
(CPU, inductor) with outputs equal to eager mode; both are covered by ``tests/layers/test_compile.py``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# torch-free: config validation reads these without importing torch (about 650 MB and 1-3 s)
from .catalogue import model_names, validate_build_args
from .knobs import METHOD_KNOBS, METHODS, SIGMA_PATTERNS, knob_names, method_help, method_names

# everything else is imported on first use, from the module that defines it
_LAZY = {
    "AdaptiveConv2d": "aconv", "clamp_adaptive_sigmas": "aconv", "CoCConv2d": "coc", "ConversionReport": "convert",
    "convert_model": "convert", "create_conv2d": "create", "effective_receptive_field": "erf", "erf_radii": "erf",
    "theoretical_receptive_field": "erf", "reparameterize_model": "fold", "GMConv2d": "gmconv",
    "build_model": "models", "register_model": "models", "orth_loss": "orth", "ReparamConv2d": "_reparam",
    "StdConv2d": "stdconv", "count_params_flops": "summary", "sigma_summary": "summary", "LearnedShapes": "shapes",
    "learned_shapes": "shapes", "count_macs": "macs", "declared_macs": "declared_macs",
}


def __getattr__(name: str) -> Any:
    if name == "MODEL_NAMES":  # live, never cached: register_model may add a model at any time
        return model_names()
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GMConv2d", "CoCConv2d", "AdaptiveConv2d", "StdConv2d", "ReparamConv2d", "orth_loss", "convert_model",
    "reparameterize_model", "build_model", "MODEL_NAMES", "METHODS", "METHOD_KNOBS", "SIGMA_PATTERNS",
    "clamp_adaptive_sigmas", "sigma_summary", "count_params_flops", "ConversionReport", "register_model",
    "validate_build_args", "effective_receptive_field", "erf_radii", "theoretical_receptive_field",
    "LearnedShapes", "learned_shapes", "create_conv2d", "model_names", "method_names", "method_help",
    "knob_names", "count_macs", "declared_macs",
]
