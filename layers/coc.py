"""Convolution of Convolution (CoC; Zhao, Li, Wu, "Convolution of Convolution: Let Kernels Spatially
Collaborate"; code: Genera1Z/ConvolutionOfConvolution, an mmcls plug-in).

The basic kernels ``W (C_out, C_in/groups, k, k)`` are grouped in runs of ``sa^2`` consecutive output
channels, each group tiled ``sa x sa`` into one ``(sa*k) x (sa*k)`` "canvas" image per input channel
(paper Sec. 3.1 steps 0-1):

    canvas[i, g, a*k + y, b*k + x] = W[g*sa^2 + a*sa + b, i, y, x]      (G = ceil(C_out / sa^2) groups)

(the released code keeps the input-channel axis first: input channels are the "batch" of the super conv).
A depthwise super conv (one ``(1, 1, sk, sk)`` kernel per group, stride 1, zero "same" padding
``(sk//2)*sd``, dilation ``sd``) is applied, then the super LayerNorm ``LN([G, sa*k, sa*k])``;
with ``skip`` the input canvas is added back (``T = LN(S * P) + P``); the canvas is cut back into kernels,
cropped to ``C_out``, normalised by the final ``LN([C_in/groups, k, k])`` per output channel, and used in the
plain ``conv2d``. ``wsc`` standardises each super kernel (unbiased std, + 1e-5). These are the released
ResNet/HRNet configs; light models (MobileNetV3, ShuffleNetV2) use the same without ``wsc``.

Matching the released code (``Coc2d`` with mmcv's ``ConvModule`` as the super conv):
- Padding kernels (``C_out`` not a multiple of ``sa^2``): ``coc_pad="trainable"`` is the released code,
  whose trainable canvas covers the ``G*sa^2 - C_out`` extra kernels too (initialised with the rest, cropped
  after the super conv); they live in their own parameter ``pad_weight`` so that ``weight`` keeps the plain
  conv layout and loads from a plain conv's state_dict. ``coc_pad="zeros"`` (default) is the paper's step 0:
  fixed zero kernels.
- Super-conv bias: the super conv has a trainable bias exactly when it has no norm after it; in the released
  code that happens with ``wsc`` and no super norm (``ConvModule``'s ``bias='auto'``), so ``super_bias``
  ``(sl, G)`` exists iff ``wsc and not super_norm``.
- ``init="released"``: basic kernels (and padding kernels, and the conv bias) uniform in
  ``+-1/sqrt(G*sa^2 * k*k)``: the released code runs ``kaiming_uniform_(a=sqrt(5))`` on its canvas
  parameter ``(C_in/groups, G, sa*k, sa*k)``, whose fan-in is ``G*sa^2*k*k`` (``C_out`` padded, not
  ``C_in``). Super kernels as mmcv's ``kaiming_init`` (normal, ``fan_out``, relu; ``fan_out = G*sk*sk``
  for the ``(G, 1, sk, sk)`` weight) and super bias zero: drawn so by ``ConvModule.init_weights``, and again
  the same way by the ResNet/HRNet/MobileNetV3 backbones' ``init_weights`` (which never reach the basic
  kernels: ``Coc2d`` is no ``nn.Conv2d``). ``init="torch"`` (default) is ``nn.Conv2d``'s default for every
  kernel (kaiming-uniform, a = sqrt(5), own fan-in): *not* the released init (e.g. for a ``(128, 64, 3, 3)``
  layer at ``sa = 2`` the basic kernels' std is 0.024 vs 0.017 released, the super kernels' 0.192 vs 0.083).
  Not reproduced: ShuffleNetV2's backbone ``init_weights`` re-draws every ``nn.Conv2d``, super convs included,
  from ``N(0, std 1/weight.shape[1])``, i.e. std 1 for the depthwise super kernels (0.01 inside the stem
  ``conv1``); that is a model-level init, not the layer's.

Decisions where paper and code are silent (also in ``extra_repr``):
- The trainable tensor stays ``weight`` in the ordinary conv layout; the canvas is a view-and-pad of it
  (a bijection of the real kernels), so a plain conv's state_dict loads directly and ``weight`` is the raw
  kernel.
- ``stnd`` standardises the final kernel (after the final LN).
- Computation: ``layers.coc_kernel`` (pure functions; the super conv as one batched matmul per group).
Extensions beyond the released code's argument domain (it asserts ``sa > 1``, ``k != 1``, ``k`` in
3, 5, 7 with ``dilate`` and ``skp > 0`` with ``dilate``); a layer lists the ones it uses in
``released_extensions`` and ``extra_repr``:
- ``sa = 1`` (one kernel per canvas: a per-kernel super conv).
- ``k = 1`` (the paper's reading of ``c1x1``: 1x1 convs become CoC); with ``dilate`` the undilated
  ``(1 + skp, 1)`` super kernel is used, as the released code's ``dilat`` switch does for 1x1 kernels.
- ``dilate`` with ``k`` outside 3, 5, 7 (AlexNet's 11x11 stem, 9x9): no table entry, the undilated
  ``(k + skp, 1)`` is used.
- ``skp = 0`` with ``dilate`` at ``k`` = 5, 7: the table's column for 0 (``(3, 3)``, ``(5, 2)``), which the
  released code holds but never reaches.
- ``sl > 1``: the conv -> super-LN pair is repeated ``sl`` times, each with its own super kernel and LN, and
  one skip goes around the whole stack.
- ``stnd`` together with ``final_norm`` (the released final step is either standardisation or a norm).
- ``super_norm=False`` with ``wsc=False`` (the released super conv always has a norm without ``wsc``): no
  super bias then.
"""

from __future__ import annotations

import math

import torch
import torch.fx
from torch import Tensor, nn
from torch.nn.common_types import _size_2_t

from ._reparam import ReparamConv2d, check_odd_square_kernel
from .coc_kernel import coc_kernel, super_conv_basis, super_conv_index
from .knobs import COC_INITS, COC_PADS, check_coc_kernel

__all__ = ["released_extensions", "CoCConv2d"]

SUPER_BASIS_MAX_NUMEL = 2**20


def released_extensions(kernel_size: int, *, sa: int, skp: int, sl: int, dilate: bool, stnd: bool,
                        super_norm: bool, final_norm: bool, wsc: bool) -> tuple[str, ...]:
    """The settings of a CoC layer that the released ``Coc2d`` refuses or cannot express (module
    docstring), one short label each; empty inside the released domain."""
    found = []
    if sa == 1:
        found.append("sa=1")
    if kernel_size == 1:
        found.append("k=1")
    elif dilate and kernel_size not in (3, 5, 7):
        found.append(f"dilate at k={kernel_size}")
    if dilate and skp == 0 and kernel_size != 1:
        found.append("skp=0 with dilate")
    if sl > 1:
        found.append(f"sl={sl}")
    if stnd and final_norm:
        found.append("stnd with final_norm")
    if not super_norm and not wsc:
        found.append("no super norm without wsc")
    return tuple(found)


# A leaf for torch.fx.symbolic_trace: the body branches on tensor sizes (the padding), which proxies lack.
torch.fx.wrap("coc_kernel")


class CoCConv2d(ReparamConv2d):
    """Drop-in ``nn.Conv2d`` whose kernels are spatially associated by a super convolution (CoC).

    Extra parameters: ``super_weight (sl, G, 1, sk, sk)``, ``super_ln_weight/bias (sl, G, sa*k, sa*k)``
    (when ``super_norm``), ``super_bias (sl, G)`` (when ``wsc`` and not ``super_norm``),
    ``final_ln_weight/bias (C_in/groups, k, k)`` (when ``final_norm``), ``pad_weight
    (G*sa^2 - C_out, C_in/groups, k, k)`` (when ``coc_pad="trainable"`` and ``C_out`` is not a multiple of
    ``sa^2``). ``coc_pad``: ``COC_PADS``; ``init``: ``COC_INITS`` (module docstring).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _size_2_t, stride: _size_2_t = 1,
                 padding: _size_2_t | str = 0, dilation: _size_2_t = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, sa: int = 2,
                 skp: int = 2, sl: int = 1, skip: bool = True, dilate: bool = True, stnd: bool = False,
                 super_norm: bool = True, final_norm: bool = True, wsc: bool = True, coc_pad: str = "zeros",
                 init: str = "torch", device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)
        k = check_odd_square_kernel(self.kernel_size, "CoCConv2d")
        if not isinstance(sa, int) or sa < 1:
            raise ValueError(f"CoCConv2d: sa must be an integer >= 1 (got {sa!r})")
        if not isinstance(sl, int) or sl < 1:
            raise ValueError(f"CoCConv2d: sl must be an integer >= 1 (got {sl!r})")
        if coc_pad not in COC_PADS:
            raise ValueError(f"CoCConv2d: coc_pad must be one of {COC_PADS} (got {coc_pad!r})")
        if init not in COC_INITS:
            raise ValueError(f"CoCConv2d: init must be one of {COC_INITS} (got {init!r})")
        sk, sd = check_coc_kernel(k, skp=skp, dilate=dilate, wsc=wsc)
        self.sa, self.skp, self.sl, self.skip, self.dilate = sa, skp, sl, bool(skip), bool(dilate)
        self.stnd, self.super_norm, self.final_norm, self.wsc = bool(stnd), bool(super_norm), bool(final_norm), bool(wsc)
        self.coc_pad, self.init = coc_pad, init
        self.released_extensions = released_extensions(k, sa=sa, skp=skp, sl=sl, dilate=self.dilate,
                                                        stnd=self.stnd, super_norm=self.super_norm,
                                                        final_norm=self.final_norm, wsc=self.wsc)
        self.super_kernel_size, self.super_dilation = sk, sd
        self.n_groups = n_groups = math.ceil(out_channels / sa**2)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.super_weight = nn.Parameter(torch.empty(sl, n_groups, 1, sk, sk, **factory))
        n_pad = n_groups * sa * sa - out_channels
        self.pad_weight = (nn.Parameter(torch.empty(n_pad, *self.weight.shape[1:], **factory))
                           if coc_pad == "trainable" and n_pad else None)
        # mmcv's ConvModule gives a conv a bias when no norm follows it (bias='auto')
        self.super_bias = (nn.Parameter(torch.empty(sl, n_groups, **factory))
                           if self.wsc and not self.super_norm else None)
        canvas_size = (sa * k) ** 2
        self.register_buffer("super_index", torch.empty(canvas_size, canvas_size, dtype=torch.long,
                                                        device=self.weight.device), persistent=False)
        # The dense 0/1 basis has sk^2 * S^4 entries: kept when small (every table config up to k = 7).
        basis = (torch.empty(sk * sk, canvas_size * canvas_size, **factory)
                 if sk * sk * canvas_size**2 <= SUPER_BASIS_MAX_NUMEL else None)
        self.register_buffer("super_basis", basis, persistent=False)
        canvas_shape = (sl, n_groups, sa * k, sa * k)
        self.super_ln_weight = nn.Parameter(torch.empty(canvas_shape, **factory)) if super_norm else None
        self.super_ln_bias = nn.Parameter(torch.empty(canvas_shape, **factory)) if super_norm else None
        kernel_shape = self.weight.shape[1:]
        self.final_ln_weight = nn.Parameter(torch.empty(kernel_shape, **factory)) if final_norm else None
        self.final_ln_bias = nn.Parameter(torch.empty(kernel_shape, **factory)) if final_norm else None
        self._variant_built = True
        self.reset_variant()

    @torch.no_grad()
    def reset_variant(self) -> None:
        """Super kernels, padding kernels and super bias as ``nn.Conv2d``'s default (``init="torch"``) or as
        the released code (``init="released"``, ``reset_released_``), the norms' ones and zeros, and the
        super conv's index and basis."""
        for layer in range(self.sl):  # nn.Conv2d's default init, fan_in = sk * sk
            nn.init.kaiming_uniform_(self.super_weight[layer], a=math.sqrt(5))
        if self.pad_weight is not None:  # like the real kernels: nn.Conv2d's default
            nn.init.kaiming_uniform_(self.pad_weight, a=math.sqrt(5))
        if self.super_bias is not None:
            bound = 1 / self.super_kernel_size  # nn.Conv2d's default: 1 / sqrt(fan_in), fan_in = sk * sk
            nn.init.uniform_(self.super_bias, -bound, bound)
        for ln_weight, ln_bias in ((self.super_ln_weight, self.super_ln_bias),
                                   (self.final_ln_weight, self.final_ln_bias)):
            if ln_weight is not None:
                nn.init.ones_(ln_weight)
                nn.init.zeros_(ln_bias)
        sk = self.super_kernel_size
        self.super_index.copy_(super_conv_index(self.sa, self.kernel_size[0], sk, self.super_dilation))
        if self.super_basis is not None:
            self.super_basis.copy_(super_conv_basis(self.super_index, sk * sk, self.super_basis.dtype))
        if self.init == "released":
            self.reset_released_()

    @torch.no_grad()
    def reset_released_(self) -> None:
        """Initialise the kernels as the released code does (module docstring): basic, padding kernels and
        conv bias uniform in ``+-1/sqrt(G*sa^2*k*k)``; super kernels kaiming-normal (fan_out, relu); super
        bias zero. The norms keep their ones and zeros."""
        bound = 1 / math.sqrt(self.n_groups * self.sa**2 * self.weight[0, 0].numel())
        for p in (self.weight, self.pad_weight, self.bias):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)
        for layer in range(self.sl):  # fan_out of a (G, 1, sk, sk) weight: G * sk * sk
            nn.init.kaiming_normal_(self.super_weight[layer], mode="fan_out", nonlinearity="relu")
        if self.super_bias is not None:
            nn.init.zeros_(self.super_bias)

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
                            super_basis=self.super_basis, pad_weight=self.pad_weight,
                            super_biases=None if self.super_bias is None else [self.super_bias[i] for i in layers])
        return kernel, self.bias

    def _kernel_order(self, canvas: Tensor) -> Tensor:
        """``(G, S, S)`` canvas image -> ``(G, S^2)`` in kernel order: ``x[:, canvas_permutation(sa, k)]``
        written as a permute (a strided copy, cheaper than a gather and its scatter backward)."""
        sa, k = self.sa, self.kernel_size[0]
        return canvas.reshape(self.n_groups, sa, k, sa, k).permute(0, 1, 3, 2, 4).reshape(self.n_groups, -1)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", sa={self.sa}, skp={self.skp}, sl={self.sl}, skip={self.skip}, "
                f"dilate={self.dilate}, super_kernel=({self.super_kernel_size}, dilation={self.super_dilation}), "
                f"super_norm={self.super_norm}, final_norm={self.final_norm}, wsc={self.wsc}, stnd={self.stnd}, "
                f"coc_pad={self.coc_pad}, init={self.init}"
                + (f", released_extensions={list(self.released_extensions)}" if self.released_extensions else ""))
