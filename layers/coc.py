"""Convolution of Convolution (CoC; Zhao, Li, Wu, "Convolution of Convolution: Let Kernels Spatially
Collaborate"; code: Genera1Z/ConvolutionOfConvolution, an mmcls plug-in).

The basic kernels ``W (C_out, C_in/groups, k, k)`` are grouped in runs of ``sa^2`` consecutive output
channels, each group tiled ``sa x sa`` into one ``(sa*k) x (sa*k)`` "canvas" image per input channel
(paper Sec. 3.1 steps 0-1):

    canvas[i, g, a*k + y, b*k + x] = W[g*sa^2 + a*sa + b, i, y, x]      (G = ceil(C_out / sa^2) groups)

(the released code keeps the input-channel axis first: input channels are the "batch" of the super conv).
A depthwise super conv (one ``(1, 1, sk, sk)`` kernel per group, stride 1, zero "same" padding
``(sk//2)*sd``, dilation ``sd``, no bias) is applied, then the super LayerNorm ``LN([G, sa*k, sa*k])``;
with ``skip`` the input canvas is added back (``T = LN(S * P) + P``); the canvas is cut back into kernels,
cropped to ``C_out``, normalised by the final ``LN([C_in/groups, k, k])`` per output channel, and used in the
plain ``conv2d``. ``wsc`` standardises each super kernel (unbiased std, + 1e-5). These are the released
ResNet/HRNet configs; light models (MobileNetV3, ShuffleNetV2) use the same without ``wsc``.

Decisions where paper and code are silent (also in ``extra_repr``):
- The trainable tensor stays ``weight`` in the ordinary conv layout; the canvas is a view-and-pad of it
  (a bijection of the real kernels), so a plain conv's state_dict loads directly and ``weight`` is the raw
  kernel. Kernels padded up to a multiple of ``sa^2`` are fixed zeros, not trainable (paper step 0 pads
  with zeros; the released code only supports divisible ``C_out``).
- ``sl > 1`` (not in the released code): the conv -> super-LN pair is repeated ``sl`` times, each with its
  own super kernel and LN, and one skip goes around the whole stack.
- Super kernel size: ``sk = k + skp`` without ``dilate``; with ``dilate`` the code's table ``DILATION_TABLE``
  for ``k`` in 3, 5, 7; for other kernel sizes (1, 9, 11: AlexNet's stem, ``c1x1``) the table has no entry
  and the undilated ``(k + skp, 1)`` is used.
- ``stnd`` standardises the final kernel (after the final LN).
- Super kernels use ``nn.Conv2d``'s default init (kaiming-uniform, a = sqrt(5)) as in the released code.
- Computation: ``coc_kernel`` holds the canvas input-channel-major in kernel order and applies the super
  conv as one batched matmul per group (an exact re-indexing, see ``super_conv_index``; the operator is
  built from the sk^2 taps by a small matmul with the 0/1 ``super_conv_basis``), so the super LayerNorm
  runs fused on contiguous memory and the skip add doubles as the copy back to kernels;
  ``kernels_to_canvas``/``canvas_to_kernels`` are the spatial layout above, and the tests check the two
  computations agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.common_types import _size_2_t

from .stdconv import ReparamConv2d, check_odd_square_kernel, standardize_weight

__all__ = ["DILATION_TABLE", "super_kernel_geometry", "kernels_to_canvas", "canvas_to_kernels",
           "canvas_permutation", "super_conv_index", "super_conv_basis", "grouped_canvas_matmul", "coc_kernel",
           "CoCConv2d"]

LN_EPS = 1e-5
SUPER_BASIS_MAX_NUMEL = 2**20
# (k, skp) -> (super kernel size, super dilation), from the released code, used when dilate=True.
DILATION_TABLE: dict[tuple[int, int], tuple[int, int]] = {
    (3, 2): (3, 2), (3, 4): (3, 3), (3, 6): (5, 2),
    (5, 0): (3, 3), (5, 2): (5, 2), (5, 4): (5, 3), (5, 6): (5, 4),
    (7, 0): (5, 2), (7, 2): (5, 3), (7, 4): (5, 4), (7, 6): (7, 3),
}


def super_kernel_geometry(kernel_size: int, skp: int, dilate: bool) -> tuple[int, int]:
    """``(sk, sd)``: super kernel size and dilation for a basic ``k x k`` kernel (see module docstring)."""
    if skp < 0 or skp % 2:
        raise ValueError(f"CoC: skp must be an even integer >= 0 (got {skp!r}; allowed: 0, 2, 4, 6, ...)")
    if not dilate:
        return kernel_size + skp, 1
    table_ks = sorted({k for k, _ in DILATION_TABLE})
    if kernel_size not in table_ks:
        return kernel_size + skp, 1
    allowed = sorted(s for k, s in DILATION_TABLE if k == kernel_size)
    if (kernel_size, skp) not in DILATION_TABLE:
        raise ValueError(f"CoC: with dilate=True and kernel_size={kernel_size}, skp must be one of {allowed} "
                         f"(got {skp!r}); or set dilate=False")
    return DILATION_TABLE[(kernel_size, skp)]


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
               super_basis: Tensor | None = None) -> Tensor:
    """The associated kernel CoC convolves with.

    weight ``(C_out, C_in', k, k)``; super_weights: ``sl`` tensors ``(G, 1, sk, sk)``; super_index: from
    ``super_conv_index``; super_basis: optionally ``super_conv_basis(super_index)``, then used instead of
    the index (same operator, cheaper); super_lns: ``sl`` (weight, bias) pairs, each ``(G, S^2)`` in kernel
    order, or None; final_ln: (weight, bias), each ``(C_in', k, k)``, or None. Returns
    ``(C_out, C_in', k, k)``.

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


# A leaf for torch.fx.symbolic_trace: the body branches on tensor sizes (the padding), which proxies lack.
torch.fx.wrap("coc_kernel")


class CoCConv2d(ReparamConv2d):
    """Drop-in ``nn.Conv2d`` whose kernels are spatially associated by a super convolution (CoC).

    Extra parameters: ``super_weight (sl, G, 1, sk, sk)``, ``super_ln_weight/bias (sl, G, sa*k, sa*k)``
    (when ``super_norm``), ``final_ln_weight/bias (C_in/groups, k, k)`` (when ``final_norm``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _size_2_t, stride: _size_2_t = 1,
                 padding: _size_2_t | str = 0, dilation: _size_2_t = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, sa: int = 2,
                 skp: int = 2, sl: int = 1, skip: bool = True, dilate: bool = True, stnd: bool = False,
                 super_norm: bool = True, final_norm: bool = True, wsc: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)
        k = check_odd_square_kernel(self.kernel_size, "CoCConv2d")
        if not isinstance(sa, int) or sa < 1:
            raise ValueError(f"CoCConv2d: sa must be an integer >= 1 (got {sa!r})")
        if not isinstance(sl, int) or sl < 1:
            raise ValueError(f"CoCConv2d: sl must be an integer >= 1 (got {sl!r})")
        if dilate and skp == 0 and k == 3:
            raise ValueError("CoCConv2d: dilate=True with skp=0 at kernel_size=3 is not allowed "
                             "(allowed: skp in [2, 4, 6] with dilate, or dilate=False)")
        sk, sd = super_kernel_geometry(k, skp, dilate)
        if wsc and sk * sk < 2:
            raise ValueError(f"CoCConv2d: wsc needs a super kernel with >= 2 taps (got sk={sk}; set skp > 0)")
        self.sa, self.skp, self.sl, self.skip, self.dilate = sa, skp, sl, bool(skip), bool(dilate)
        self.stnd, self.super_norm, self.final_norm, self.wsc = bool(stnd), bool(super_norm), bool(final_norm), bool(wsc)
        self.super_kernel_size, self.super_dilation = sk, sd
        self.n_groups = n_groups = math.ceil(out_channels / sa**2)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.super_weight = nn.Parameter(torch.empty(sl, n_groups, 1, sk, sk, **factory))
        for layer in range(sl):  # nn.Conv2d's default init, fan_in = sk * sk
            nn.init.kaiming_uniform_(self.super_weight[layer], a=math.sqrt(5))
        self.register_buffer("super_index", super_conv_index(sa, k, sk, sd).to(self.weight.device),
                             persistent=False)
        # The dense 0/1 basis has sk^2 * S^4 entries: kept when small (every table config up to k = 7).
        basis = (super_conv_basis(self.super_index, sk * sk, self.weight.dtype)
                 if sk * sk * (sa * k) ** 4 <= SUPER_BASIS_MAX_NUMEL else None)
        self.register_buffer("super_basis", basis, persistent=False)
        canvas_shape = (sl, n_groups, sa * k, sa * k)
        self.super_ln_weight = nn.Parameter(torch.ones(canvas_shape, **factory)) if super_norm else None
        self.super_ln_bias = nn.Parameter(torch.zeros(canvas_shape, **factory)) if super_norm else None
        kernel_shape = self.weight.shape[1:]
        self.final_ln_weight = nn.Parameter(torch.ones(kernel_shape, **factory)) if final_norm else None
        self.final_ln_bias = nn.Parameter(torch.zeros(kernel_shape, **factory)) if final_norm else None

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor | None]:
        layers = range(self.sl)
        super_lns = None
        if self.super_norm:  # (G, S, S) affine in canvas layout -> (G, S^2) in kernel order
            super_lns = [(self._kernel_order(self.super_ln_weight[i]), self._kernel_order(self.super_ln_bias[i]))
                         for i in layers]
        final_ln = (self.final_ln_weight, self.final_ln_bias) if self.final_norm else None
        kernel = coc_kernel(self.weight, [self.super_weight[i] for i in layers], sa=self.sa,
                            n_groups=self.n_groups, super_index=self.super_index, skip=self.skip,
                            super_lns=super_lns, final_ln=final_ln, wsc=self.wsc, stnd=self.stnd,
                            super_basis=self.super_basis)
        return kernel, self.bias

    def _kernel_order(self, canvas: Tensor) -> Tensor:
        """``(G, S, S)`` canvas image -> ``(G, S^2)`` in kernel order: ``x[:, canvas_permutation(sa, k)]``
        written as a permute (a strided copy, cheaper than a gather and its scatter backward)."""
        sa, k = self.sa, self.kernel_size[0]
        return canvas.reshape(self.n_groups, sa, k, sa, k).permute(0, 1, 3, 2, 4).reshape(self.n_groups, -1)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", sa={self.sa}, skp={self.skp}, sl={self.sl}, skip={self.skip}, "
                f"dilate={self.dilate}, super_kernel=({self.super_kernel_size}, dilation={self.super_dilation}), "
                f"super_norm={self.super_norm}, final_norm={self.final_norm}, wsc={self.wsc}, stnd={self.stnd}")
