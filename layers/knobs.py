"""The methods, their knobs and the checks of those knobs: plain Python, no torch.

Config validation (``convsweep validate``) needs every answer a model build would give about a knob, but
not the 1-3 s and ~650 MB of importing torch; the layer modules import these names and checks from here, so
a build and a validation refuse the same values with the same message.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "C1X1_MODES", "COC_INITS", "COC_PADS", "DILATION_TABLE", "METHODS", "METHOD_KNOBS", "SIGMA_PATTERNS",
    "check_coc_kernel", "super_kernel_geometry", "validate_knobs",
]

METHODS: tuple[str, ...] = ("stdconv", "s-gmconv", "gmconv", "coc", "aconv")
METHOD_KNOBS: dict[str, tuple[str, ...]] = {
    "stdconv": ("stnd",),
    "s-gmconv": ("sigma_init", "stnd"),
    "gmconv": ("sigma_init", "sigma_pattern", "stnd"),
    "coc": ("sa", "skp", "sl", "skip", "dilate", "c1x1", "stnd", "super_norm", "final_norm", "wsc", "coc_pad",
            "init"),
    "aconv": ("aconv_sigma_init", "stnd"),
}
SIGMA_PATTERNS: tuple[str, ...] = ("sigma", "sigma1_sigma2", "sigma1_rsigma")
# CoC's c1x1: 1x1 convs stay plain, become CoC (paper) or weight-standardised (released ``c1x1_ws``)
C1X1_MODES: tuple[bool | str, ...] = (False, True, "ws")
# Kernels padding C_out up to a multiple of sa^2: fixed zeros (paper step 0) or trainable (released code).
COC_PADS: tuple[str, ...] = ("zeros", "trainable")
# nn.Conv2d's default init, or the released code's (layers.coc's docstring).
COC_INITS: tuple[str, ...] = ("torch", "released")
# (k, skp) -> (super kernel size, super dilation), from the released code, used when dilate=True.
DILATION_TABLE: dict[tuple[int, int], tuple[int, int]] = {
    (3, 2): (3, 2), (3, 4): (3, 3), (3, 6): (5, 2),
    (5, 0): (3, 3), (5, 2): (5, 2), (5, 4): (5, 3), (5, 6): (5, 4),
    (7, 0): (5, 2), (7, 2): (5, 3), (7, 4): (5, 4), (7, 6): (7, 3),
}


def super_kernel_geometry(kernel_size: int, skp: int, dilate: bool) -> tuple[int, int]:
    """``(sk, sd)``: super kernel size and dilation for a basic ``k x k`` kernel (see layers.coc)."""
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


def check_coc_kernel(kernel_size: int, *, skp: int, dilate: bool, wsc: bool) -> tuple[int, int]:
    """The CoC layer's checks that depend on the basic kernel's size; ``(sk, sd)`` when they pass."""
    if dilate and skp == 0 and kernel_size == 3:
        raise ValueError("CoCConv2d: dilate=True with skp=0 at kernel_size=3 is not allowed "
                         "(allowed: skp in [2, 4, 6] with dilate, or dilate=False)")
    sk, sd = super_kernel_geometry(kernel_size, skp, dilate)
    if wsc and sk * sk < 2:
        raise ValueError(f"CoCConv2d: wsc needs a super kernel with >= 2 taps (got sk={sk}; set skp > 0)")
    return sk, sd


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def validate_knobs(method: str, knobs: dict[str, Any]) -> None:
    """Raise a one-line ``ValueError`` for an unknown method, an unknown knob or an obviously bad value."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} (got {method!r})")
    unknown = sorted(set(knobs) - set(METHOD_KNOBS[method]))
    if unknown:
        raise ValueError(f"unknown knob(s) {unknown} for method {method!r} (allowed: {METHOD_KNOBS[method]})")
    if "sigma_pattern" in knobs and knobs["sigma_pattern"] not in SIGMA_PATTERNS:
        raise ValueError(f"sigma_pattern must be one of {SIGMA_PATTERNS} (got {knobs['sigma_pattern']!r})")
    for name in ("sa", "sl"):
        if name in knobs and (not isinstance(knobs[name], int) or knobs[name] < 1):
            raise ValueError(f"{name} must be an integer >= 1 (got {knobs[name]!r})")
    if "skp" in knobs and (not isinstance(knobs["skp"], int) or knobs["skp"] < 0 or knobs["skp"] % 2):
        raise ValueError(f"skp must be an even integer >= 0 (got {knobs['skp']!r}; allowed: 0, 2, 4, 6, ...)")
    if "c1x1" in knobs and not (isinstance(knobs["c1x1"], bool) or knobs["c1x1"] == "ws"):
        raise ValueError(f"c1x1 must be one of {C1X1_MODES} (got {knobs['c1x1']!r})")
    if "coc_pad" in knobs and knobs["coc_pad"] not in COC_PADS:
        raise ValueError(f"coc_pad must be one of {COC_PADS} (got {knobs['coc_pad']!r})")
    if "init" in knobs and knobs["init"] not in COC_INITS:
        raise ValueError(f"init must be one of {COC_INITS} (got {knobs['init']!r})")
    if "sigma_init" in knobs and not _positive_number(knobs["sigma_init"]):
        raise ValueError(f"sigma_init must be a number > 0 (got {knobs['sigma_init']!r})")
    value = knobs.get("aconv_sigma_init")
    if value is not None and not _positive_number(value):
        bounds = tuple(value) if isinstance(value, (list, tuple)) else ()
        if len(bounds) != 2 or not all(map(_positive_number, bounds)) or bounds[0] > bounds[1]:
            raise ValueError(f"aconv_sigma_init must be a number > 0 or [lo, hi] with 0 < lo <= hi "
                             f"(got {value!r})")
