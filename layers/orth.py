"""The OCNN orthogonality regulariser (Wang et al., "Orthogonal Convolutional Neural Networks", CVPR 2020),
the ``orth`` option of the CoC paper (its ref. [35]; absent from CoC's released code).

For a ``k > 1`` conv with kernel ``K (C_out, C_in/g, k, k)``: ``||conv2d(K, K, stride, padding) - I||_F``
where ``I`` is the identity between output channels at the centre tap (OCNN's ``deconv_orth_dist``), with
``padding = k//2`` rounded down to a multiple of the stride so that the centre tap *is* the zero shift
(OCNN's code pads 1 at stride 2, which puts its identity target at shift +1: a decision of ours); for a
``1x1`` conv ``||W W^T - I||_F`` on the smaller Gram matrix (OCNN's ``orth_dist``). Norms are not squared.
Grouped convs are regularised within each group (a depthwise filter only against itself), batched in
one grouped conv. The stem (the first conv in module order, the first applied to the input in every
registry model) is excluded. The kernel regularised is the one the layer convolves with:
``get_equivalent_kernel_bias()`` for the foldable variants, the raw ``weight`` for a dynamic GMConv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._reparam import ReparamConv2d

__all__ = ["conv_orth_distance", "gram_orth_distance", "orth_loss"]


def conv_orth_distance(kernel: Tensor, stride: int, groups: int = 1) -> Tensor:
    """OCNN distance of a ``k > 1`` kernel ``(C_out, C_in/groups, k, k)``; 0-dim."""
    c_out, c_in, k, _ = kernel.shape
    per_group = c_out // groups
    # Group j's filters as the "batch" x (C_in/g) input: out[a, j*n + b] = corr(K_j[a], K_j[b]).
    inputs = kernel.view(groups, per_group, c_in, k, k).transpose(0, 1).reshape(per_group, groups * c_in, k, k)
    padding = (k // 2 // stride) * stride
    out = F.conv2d(inputs, kernel, stride=stride, padding=padding, groups=groups)
    target = torch.zeros_like(out)
    centre = padding // stride
    eye = torch.eye(per_group, dtype=out.dtype, device=out.device).repeat(1, groups)
    target[:, :, centre, centre] = eye
    return torch.linalg.vector_norm(out - target)


def gram_orth_distance(weight: Tensor, groups: int = 1) -> Tensor:
    """OCNN distance ``||W W^T - I||_F`` of a 1x1 kernel, per group, on the smaller Gram matrix."""
    mats = weight.reshape(groups, weight.shape[0] // groups, -1)
    if mats.shape[1] > mats.shape[2]:
        mats = mats.transpose(1, 2)
    gram = mats @ mats.transpose(1, 2)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return torch.linalg.vector_norm(gram - eye)


def orth_loss(model: nn.Module, weight: float = 0.1) -> Tensor:
    """``weight * sum`` of the OCNN distances over every conv but the stem; 0-dim tensor."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("orth_loss: model has no nn.Conv2d layers (got 0 convs)")
    total = convs[0].weight.new_zeros(())
    for conv in convs[1:]:
        kernel = conv.get_equivalent_kernel_bias()[0] if isinstance(conv, ReparamConv2d) and conv.foldable \
            else conv.weight
        if kernel.shape[-1] == 1 and kernel.shape[-2] == 1:
            total = total + gram_orth_distance(kernel, conv.groups)
        else:
            total = total + conv_orth_distance(kernel, conv.stride[0], conv.groups)
    return weight * total
