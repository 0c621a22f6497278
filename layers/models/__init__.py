"""Model builders and the model registry (torch side): CIFAR ResNets, the ACONV paper's nets, the
torchvision/timm models, and ``build_model`` = a registered builder + ``layers.convert_model``.

What belongs here: a builder per model (plain convs, random init) and its registration; what the layers do
to it belongs to ``layers.convert``. It may import torch and ``layers``' own modules; torchvision and timm
only inside the builders that need them. The facts config validation needs without torch (names, kernel
sizes, architecture knobs) live in ``layers.catalogue``, which ``register_model`` keeps in step.
"""

from .registry import build_model, model_names, register_model, validate_build_args

__all__ = ["build_model", "model_names", "register_model", "validate_build_args"]
