"""The kernel CoC convolves with, as pure tensor functions (the math of ``layers.coc``'s ``CoCConv2d``).

Canvas layout (CoC paper Sec. 3.1, released ``Coc2d``): ``canvas[i, g, a*k + y, b*k + x] =
W[g*sa^2 + a*sa + b, i, y, x]`` (``kernels_to_canvas``/``canvas_to_kernels``, input channels first: they are
the "batch" of the super conv). ``coc_kernel`` holds the canvas input-channel-major in *kernel order* and
applies the depthwise super conv as one batched matmul per group: an exact re-indexing
(``super_conv_index``), its operator built from the ``sk^2`` taps by a small matmul with the 0/1
``super_conv_basis``, so the super LayerNorm runs fused on contiguous memory and the skip add doubles as
the copy back to kernels. Tests check it against the spatial computation (``F.conv2d`` on the canvas).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .stdconv import standardize_weight

__all__ = ["LN_EPS", "kernels_to_canvas", "canvas_to_kernels", "canvas_permutation", "super_conv_index",
           "super_conv_basis", "grouped_canvas_matmul", "coc_kernel"]

LN_EPS = 1e-5


def kernels_to_canvas(weight: Tensor, sa: int, n_groups: int) -> Tensor:
    """``(C_out, C_in', k, k)`` -> canvas ``(C_in', G, sa*k, sa*k)``, zero kernels padding ``C_out`` to
    ``G * sa^2`` (``G = n_groups = ceil(C_out / sa^2)``). Shapes come from ints, not tensor sizes, so the
    function traces with ``torch.fx``."""
    padded = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, n_groups * sa * sa - weight.shape[0]))
    return (padded.unflatten(0, (n_groups, sa, sa)).permute(3, 0, 1, 4, 2, 5)
            .flatten(2, 3).flatten(3, 4))


def canvas_to_kernels(canvas: Tensor, sa: int, out_channels: int) -> Tensor:
    """Inverse of ``kernels_to_canvas``, cropped to ``out_channels``: ``(C_in', G, sa*k, sa*k)`` -> kernels."""
    kernels = canvas.unflatten(2, (sa, -1)).unflatten(4, (sa, -1)).permute(1, 2, 4, 0, 3, 5).flatten(0, 2)
    return kernels[:out_channels]


def canvas_permutation(sa: int, kernel_size: int) -> Tensor:
    """``perm (S^2,)``, ``S = sa*k``: the flat canvas position of each element in *kernel order*
    ``r = (a*sa + b)*k^2 + y*k + x`` (kernel ``a*sa + b`` of its group, pixel ``(y, x)``)."""
    k, size = kernel_size, sa * kernel_size
    a, b, y, x = torch.meshgrid(*(torch.arange(n, device="cpu") for n in (sa, sa, k, k)), indexing="ij")
    return ((a * k + y) * size + b * k + x).flatten()


def super_conv_index(sa: int, kernel_size: int, super_kernel_size: int, super_dilation: int) -> Tensor:
    """Index map turning the depthwise "same" super conv on the canvas into one matrix per group.

    Returns ``idx (S^2, S^2)`` (int64) in kernel order (``canvas_permutation``): ``idx[p, q]`` is the
    super-kernel tap (``ty * sk + tx``) carrying canvas pixel ``q`` to ``p`` under
    ``conv2d(padding=(sk//2)*sd, dilation=sd)``, or ``sk^2`` (a zero slot) when none does. At most one tap
    links a pair, so ``A = pad(w, zero)[:, idx]`` is the exact ``(G, S^2, S^2)`` operator of the conv.
    """
    size, sk, sd = sa * kernel_size, super_kernel_size, super_dilation
    # Built on the CPU whatever the default device (e.g. "meta" for config checks), moved by the caller.
    idx = torch.full((size * size, size * size), sk * sk, dtype=torch.long, device="cpu")
    ys, xs = torch.meshgrid(torch.arange(size, device="cpu"), torch.arange(size, device="cpu"), indexing="ij")
    out_pos = (ys * size + xs).flatten()
    for ty in range(sk):
        for tx in range(sk):
            qy, qx = ys + (ty - sk // 2) * sd, xs + (tx - sk // 2) * sd
            valid = ((qy >= 0) & (qy < size) & (qx >= 0) & (qx < size)).flatten()
            idx[out_pos[valid], (qy * size + qx).flatten()[valid]] = ty * sk + tx
    perm = canvas_permutation(sa, kernel_size)
    return idx[perm][:, perm]


def super_conv_basis(super_index: Tensor, n_taps: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``basis (sk^2, S^2 * S^2)``, 0/1: ``basis[t] = (super_index == t)``, so the super conv's operator is
    ``(w.flatten(1) @ basis).view(G, S^2, S^2)``: the same numbers as the ``super_index`` gather (one tap per
    entry, the rest exact zeros), but a small matmul forward and backward instead of a gather and an
    accumulating scatter (~8x cheaper on the CPU)."""
    return (super_index.flatten() == torch.arange(n_taps, device=super_index.device)[:, None]).to(dtype)


class _GroupedCanvasMatmul(torch.autograd.Function):
    """``out[i, g] = A[g] @ x[i, g]``: ``x (C_in', G, S^2)``, ``A (G, S^2, S^2)`` -> ``(C_in', G, S^2)``.

    ``bmm`` wants the group axis first and returns ``(G, C_in', S^2)``, which would cost a transpose copy
    before and after the super LayerNorm (it reduces per input channel), forward and backward. Each group's
    ``(C_in', S^2)`` slice of the input-channel-major layout is already a BLAS matrix (leading dimension
    ``G * S^2``), so ``bmm`` reads and writes it in place through strided ``out=`` views (a backend that
    cannot use the strides copies internally: slower, same numbers). The operator is cast to ``x``'s dtype
    (under autocast the canvas stays in the weights' precision, as the LayerNorms that follow do).
    """

    @staticmethod
    def forward(ctx, x: Tensor, operator: Tensor) -> Tensor:
        ctx.operator_dtype = operator.dtype
        x, operator = x.contiguous(), operator.to(x.dtype)
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        torch.bmm(x.transpose(0, 1), operator.transpose(1, 2), out=out.transpose(0, 1))
        ctx.save_for_backward(x, operator)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, operator = ctx.saved_tensors
        grad_out = grad_out.to(x.dtype).contiguous()
        grad_x = grad_op = None
        if ctx.needs_input_grad[0]:  # grad_x[i, g] = A[g]^T @ grad_out[i, g], written in place as above
            grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
            torch.bmm(grad_out.transpose(0, 1), operator, out=grad_x.transpose(0, 1))
        if ctx.needs_input_grad[1]:  # grad_A[g] = sum_i grad_out[i, g] x[i, g]^T
            grad_op = torch.bmm(grad_out.permute(1, 2, 0), x.transpose(0, 1)).to(ctx.operator_dtype)
        return grad_x, grad_op


def grouped_canvas_matmul(x: Tensor, operator: Tensor) -> Tensor:
    """``einsum("igq,gpq->igp", x, operator)``, computed by ``_GroupedCanvasMatmul`` in eager mode and as
    the einsum itself under ``torch.compile`` (which plans its own layouts)."""
    if torch.compiler.is_compiling():
        return torch.einsum("igq,gpq->igp", x, operator.to(x.dtype))
    return _GroupedCanvasMatmul.apply(x, operator)


def coc_kernel(weight: Tensor, super_weights: Sequence[Tensor], *, sa: int, n_groups: int,
               super_index: Tensor, super_lns: Sequence[tuple[Tensor, Tensor]] | None, skip: bool,
               final_ln: tuple[Tensor, Tensor] | None, wsc: bool, stnd: bool,
               super_basis: Tensor | None = None, pad_weight: Tensor | None = None,
               super_biases: Sequence[Tensor] | None = None) -> Tensor:
    """The associated kernel CoC convolves with.

    weight ``(C_out, C_in', k, k)``; super_weights: ``sl`` tensors ``(G, 1, sk, sk)``; super_index: from
    ``super_conv_index``; super_basis: optionally ``super_conv_basis(super_index)``, then used instead of
    the index (same operator, cheaper); super_lns: ``sl`` (weight, bias) pairs, each ``(G, S^2)`` in kernel
    order, or None; final_ln: (weight, bias), each ``(C_in', k, k)``, or None. Returns
    ``(C_out, C_in', k, k)``. pad_weight: ``(G*sa^2 - C_out, C_in', k, k)`` trainable padding kernels, or
    None for zero padding; super_biases: ``sl`` tensors ``(G,)`` added after each super conv, or None.

    The canvas is held as ``(C_in', G, S^2)`` in kernel order, not as the spatial ``(C_in', G, S, S)`` image
    (``kernels_to_canvas``): the same numbers, but the super conv becomes one batched matmul per forward
    (``grouped_canvas_matmul``), the super LayerNorm runs fused on contiguous memory, and the skip add
    writes the result straight back in the weight layout, so only one layout copy remains (into the
    canvas). ``F.conv2d`` on the spatial canvas falls onto PyTorch's slow dilated/depthwise CPU paths
    (measured ~25x slower for a 512x512x3x3 layer). Tests check both computations agree.
    """
    c_out, c_in = weight.shape[0], weight.shape[1]
    kk, sa2 = weight.shape[2] * weight.shape[3], sa * sa
    n_pad = n_groups * sa2 - c_out
    if n_pad and pad_weight is not None:
        padded = torch.cat([weight, pad_weight])
    else:
        padded = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, n_pad)) if n_pad else weight
    by_kernel = padded.reshape(n_groups, sa2, c_in, kk)  # the weight layout, viewed per group
    canvas = by_kernel.permute(2, 0, 1, 3).reshape(c_in, n_groups, sa2 * kk)  # the one layout copy in
    out = canvas
    for layer, kernel in enumerate(super_weights):
        if wsc:
            kernel = standardize_weight(kernel)
        if super_basis is not None:
            operator = (kernel.flatten(1) @ super_basis.to(kernel.dtype)).view(n_groups, *super_index.shape)
        else:
            operator = F.pad(kernel.flatten(1), (0, 1))[:, super_index]  # (G, S^2, S^2)
        out = grouped_canvas_matmul(out, operator)
        if super_biases is not None:  # one bias per group: the super conv's output channel
            out = out + super_biases[layer].to(out.dtype).view(1, n_groups, 1)
        if super_lns is not None:  # LN([G, S, S]) per input channel: the trailing dims of this layout
            ln_weight, ln_bias = super_lns[layer]
            out = F.layer_norm(out, ln_weight.shape, ln_weight, ln_bias, LN_EPS)
    out = out.view(c_in, n_groups, sa2, kk).permute(1, 2, 0, 3)
    # The weight-layout operand first: the sum is allocated in its layout, so the skip add is also the copy
    # back into kernels (reshape: a view then).
    kernels = by_kernel + out if skip else out.contiguous()
    kernels = kernels.reshape(n_groups * sa2, c_in, weight.shape[2], weight.shape[3])
    if n_pad:
        kernels = kernels[:c_out]
    if final_ln is not None:
        kernels = F.layer_norm(kernels, final_ln[0].shape, final_ln[0], final_ln[1], LN_EPS)
    return standardize_weight(kernels) if stnd else kernels
