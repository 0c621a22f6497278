"""Receptive-field-shaping convolution layers and the models that use them (pure PyTorch).

Variants (all subclass ``nn.Conv2d``, so they load a plain conv's state_dict and keep its signature):
``GMConv2d`` (static S-GMConv / dynamic D-GMConv, Chen et al.), ``CoCConv2d`` (Zhao et al.),
``AdaptiveConv2d`` (ACONV, Tek et al.), ``StdConv2d`` (weight standardisation, Qiao et al.).
``convert_model`` swaps convs by policy, ``reparameterize_model`` folds every foldable layer into a plain
conv, ``build_model`` = registry builder + ``convert_model``. ``effective_receptive_field`` measures what all
three change: how far from a unit's centre the input still moves it (``layers/erf.py``).

Compilation: every variant traces with ``torch.fx.symbolic_trace`` and runs under ``torch.compile``
(CPU, inductor) with outputs equal to eager mode; both are covered by ``tests/layers/test_compile.py``.
"""

from .aconv import AdaptiveConv2d, clamp_adaptive_sigmas
from .coc import CoCConv2d
from .convert import METHOD_KNOBS, METHODS, ConversionReport, convert_model
from .erf import effective_receptive_field, erf_radii, theoretical_receptive_field
from .fold import reparameterize_model
from .gmconv import SIGMA_PATTERNS, GMConv2d
from .models import MODEL_NAMES, build_model, register_model, validate_build_args
from .orth import orth_loss
from .shapes import LearnedShapes, learned_shapes
from .stdconv import StdConv2d
from .summary import count_params_flops, sigma_summary

__all__ = [
    "GMConv2d", "CoCConv2d", "AdaptiveConv2d", "StdConv2d", "orth_loss", "convert_model",
    "reparameterize_model", "build_model", "MODEL_NAMES", "METHODS", "METHOD_KNOBS", "SIGMA_PATTERNS",
    "clamp_adaptive_sigmas", "sigma_summary", "count_params_flops", "ConversionReport", "register_model",
    "validate_build_args", "effective_receptive_field", "erf_radii", "theoretical_receptive_field",
    "LearnedShapes", "learned_shapes",
]
