"""Re-parameterisation: replace every foldable conv variant by the plain ``nn.Conv2d`` it equals.

Each foldable layer (``ReparamConv2d`` subclasses: ``StdConv2d``, static ``GMConv2d``, ``CoCConv2d``,
``AdaptiveConv2d``) computes its kernel with ``get_equivalent_kernel_bias()`` and builds the plain conv
with ``fold()``; this module only walks the model. A dynamic ``GMConv2d`` (D-GMConv) depends on its input
and stays. Every variant's kernel is independent of train/eval mode (its norms are LayerNorms), so the
folded model equals the training-form model in eval mode (tested to 1e-5 of the output scale).
"""

from __future__ import annotations

import copy

from torch import nn

from ._reparam import ReparamConv2d

__all__ = ["reparameterize_model"]


def reparameterize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return ``model`` (a deep copy unless ``inplace``) with every foldable layer replaced by ``fold()``."""
    if not inplace:
        model = copy.deepcopy(model)
    if isinstance(model, ReparamConv2d) and model.foldable:
        return model.fold()
    for name, module in list(model.named_modules()):
        if isinstance(module, ReparamConv2d) and module.foldable:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.fold())
    return model
