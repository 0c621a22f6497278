"""Model builders: CIFAR ResNets, the ACONV paper's nets, and the registry wrapping torchvision/timm."""

from .registry import build_model, model_names, register_model, validate_build_args

__all__ = ["build_model", "model_names", "register_model", "validate_build_args"]
