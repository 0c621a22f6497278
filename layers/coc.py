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
- Computation: ``coc_kernel`` holds the canvas in kernel order and applies the super conv as one batched
  matmul (an exact re-indexing, see ``super_conv_index``); ``kernels_to_canvas``/``canvas_to_kernels`` are
  the spatial layout above, and the tests check the two computations agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.common_types import _size_2_t

from .stdconv import ReparamConv2d, check_odd_square_kernel, standardize_weight

__all__ = ["DILATION_TABLE", "super_kernel_geometry", "kernels_to_canvas", "canvas_to_kernels",
           "canvas_permutation", "super_conv_index", "coc_kernel", "CoCConv2d"]

LN_EPS = 1e-5
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


def _canvas_layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``LayerNorm([G, S, S])`` per input channel on ``x (G, C_in', S^2)``; weight/bias ``(G, S^2)``.

    One transpose copy into the fused LayerNorm is ~3x cheaper than reducing over the strided dims."""
    return F.layer_norm(x.transpose(0, 1), weight.shape, weight, bias, LN_EPS).transpose(0, 1)


def coc_kernel(weight: Tensor, super_weights: Sequence[Tensor], *, sa: int, n_groups: int,
               super_index: Tensor, super_lns: Sequence[tuple[Tensor, Tensor]] | None, skip: bool,
               final_ln: tuple[Tensor, Tensor] | None, wsc: bool, stnd: bool) -> Tensor:
    """The associated kernel CoC convolves with.

    weight ``(C_out, C_in', k, k)``; super_weights: ``sl`` tensors ``(G, 1, sk, sk)``; super_index: from
    ``super_conv_index``; super_lns: ``sl`` (weight, bias) pairs, each ``(G, S^2)`` in kernel order, or
    None; final_ln: (weight, bias), each ``(C_in', k, k)``, or None. Returns ``(C_out, C_in', k, k)``.

    The canvas is held as ``(G, C_in', S^2)`` in kernel order, not as the spatial ``(C_in', G, S, S)`` image
    (``kernels_to_canvas``): the same numbers, but the super conv becomes one batched matmul per forward
    and only two layout copies remain; ``F.conv2d`` on the spatial canvas falls onto PyTorch's slow
    dilated/depthwise CPU paths (measured ~25x slower for a 512x512x3x3 layer). Tests check both agree.
    """
    padded = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, n_groups * sa * sa - weight.shape[0]))
    canvas = padded.unflatten(0, (n_groups, sa * sa)).flatten(3).transpose(1, 2).flatten(2)
    out = canvas
    for layer, kernel in enumerate(super_weights):
        if wsc:
            kernel = standardize_weight(kernel)
        operator = F.pad(kernel.flatten(1), (0, 1))[:, super_index]  # (G, S^2, S^2)
        out = torch.matmul(out, operator.transpose(1, 2))
        if super_lns is not None:
            out = _canvas_layer_norm(out, *super_lns[layer])
    if skip:
        out = out + canvas
    kernels = out.unflatten(2, (sa * sa, -1)).transpose(1, 2).flatten(0, 1)[: weight.shape[0]].view_as(weight)
    if final_ln is not None:
        kernels = F.layer_norm(kernels, final_ln[0].shape, final_ln[0], final_ln[1], LN_EPS)
    return standardize_weight(kernels) if stnd else kernels


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
        self.register_buffer("canvas_perm", canvas_permutation(sa, k).to(self.weight.device), persistent=False)
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
            super_lns = [(self.super_ln_weight[i].flatten(1)[:, self.canvas_perm],
                          self.super_ln_bias[i].flatten(1)[:, self.canvas_perm]) for i in layers]
        final_ln = (self.final_ln_weight, self.final_ln_bias) if self.final_norm else None
        kernel = coc_kernel(self.weight, [self.super_weight[i] for i in layers], sa=self.sa,
                            n_groups=self.n_groups, super_index=self.super_index, skip=self.skip,
                            super_lns=super_lns, final_ln=final_ln, wsc=self.wsc, stnd=self.stnd)
        return kernel, self.bias

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", sa={self.sa}, skp={self.skp}, sl={self.sl}, skip={self.skip}, "
                f"dilate={self.dilate}, super_kernel=({self.super_kernel_size}, dilation={self.super_dilation}), "
                f"super_norm={self.super_norm}, final_norm={self.final_norm}, wsc={self.wsc}, stnd={self.stnd}")
