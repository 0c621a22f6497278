"""Model builders: CIFAR ResNets, the ACONV paper's nets, and the registry wrapping torchvision/timm."""

from .registry import MODEL_NAMES, build_model, register_model, validate_build_args

__all__ = ["MODEL_NAMES", "build_model", "register_model", "validate_build_args"]
