"""The one registry of layer methods and their knobs, and the checks of those knobs: plain Python, no torch.

Each method (``METHOD_REGISTRY``) has a one-line description, the layer class it builds (resolved by
``layers.create``) and the knobs it reads; each knob (``KNOB_REGISTRY``) a one-line description, its
default and its allowed values. Everything else derives from here: ``METHODS``/``METHOD_KNOBS``, the
checks of ``validate_knobs``, the layers' keyword for each knob (``layer_kwargs``), and for the
orchestrator the schema's method list (``method_names``), a CLI's help (``method_help``) and the allowed
lists of its error messages (``knob_names``). Config validation (``convsweep validate``) needs every answer
a model build would give about a knob, but not the 1-3 s and ~650 MB of importing torch; the layer modules
import these names and checks from here, so a build and a validation refuse the same values with the same
message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "C1X1_MODES", "COC_INITS", "COC_PADS", "DILATION_TABLE", "KNOB_REGISTRY", "METHODS", "METHOD_KNOBS",
    "METHOD_REGISTRY", "SIGMA_PATTERNS", "Knob", "Method", "check_coc_kernel", "knob_names", "layer_kwargs",
    "method_help", "method_names", "super_kernel_geometry", "validate_knobs",
]

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


@dataclass(frozen=True)
class Knob:
    """A method's setting. ``layer_arg``: the layer class's keyword for it when that differs from ``name``;
    ``default``: the layer's (None: the model decides, see ``layers.models``)."""

    name: str
    help: str
    default: Any
    allowed: str  # completes "<name> must be ..." in messages and "(...)" in help
    valid: Callable[[Any], bool]
    layer_arg: str | None = None


@dataclass(frozen=True)
class Method:
    """A conversion method: ``layer`` is ``"module.Class"`` inside ``layers``; ``policy_knobs`` are read by the
    conversion policy (which convs become which layer), not passed to the layer."""

    name: str
    help: str
    layer: str
    knobs: tuple[str, ...]
    policy_knobs: tuple[str, ...] = ()


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _even_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0 and value % 2 == 0


def _sigma_or_range(value: Any) -> bool:
    if _positive_number(value):
        return True
    bounds = tuple(value) if isinstance(value, (list, tuple)) else ()
    return len(bounds) == 2 and all(map(_positive_number, bounds)) and bounds[0] <= bounds[1]


def _bool_knob(name: str, help: str, default: bool) -> Knob:
    return Knob(name, help, default, "true or false", _is_bool)


_KNOBS = (
    _bool_knob("stnd", "weight-standardise the kernel the conv applies (Qiao et al.; CoC Table 1)", False),
    Knob("sigma_init", "GMConv: initial sigma of the Gaussian mask, in pixels (paper: 5; Fig. 6: 1, 5, 10)", 5.0,
         "a number > 0", _positive_number),
    Knob("sigma_pattern", "D-GMConv (the stem): what the sigma module predicts (paper Table 3)", "sigma1_rsigma",
         f"one of {SIGMA_PATTERNS}", lambda v: v in SIGMA_PATTERNS),
    Knob("sa", "CoC: kernels tiled sa x sa into one canvas", 2, "an integer >= 1", _positive_int),
    Knob("skp", "CoC: super kernel size minus the basic kernel's", 2, "an even integer >= 0 (0, 2, 4, 6, ...)",
         _even_int),
    Knob("sl", "CoC: stacked super layers", 1, "an integer >= 1", _positive_int),
    _bool_knob("skip", "CoC: add the canvas back around the super layers", True),
    _bool_knob("dilate", "CoC: dilated super kernels from the released code's table", True),
    Knob("c1x1", "CoC: 1x1 convs stay plain (false), become CoC (true) or weight-standardised ('ws')", False,
         f"one of {C1X1_MODES}", lambda v: isinstance(v, bool) or v == "ws"),
    _bool_knob("super_norm", "CoC: LayerNorm over each super conv's output (released configs)", True),
    _bool_knob("final_norm", "CoC: LayerNorm over each final kernel (released configs)", True),
    Knob("wsc", "CoC: standardise the super kernels (released configs: ResNet/HRNet yes, light models no)", None,
         "true or false", _is_bool),
    Knob("coc_pad", "CoC: kernels padding C_out to a multiple of sa^2, zeros (paper) or trainable (released)",
         "zeros", f"one of {COC_PADS}", lambda v: v in COC_PADS),
    Knob("init", "CoC: initialise as nn.Conv2d ('torch') or as the released code ('released')", "torch",
         f"one of {COC_INITS}", lambda v: v in COC_INITS),
    Knob("aconv_sigma_init", "ACONV: initial envelope width, one value or [lo, hi] spread over the filters",
         (0.1, 0.5), "a number > 0 or [lo, hi] with 0 < lo <= hi", _sigma_or_range, layer_arg="sigma_init"),
)
KNOB_REGISTRY: dict[str, Knob] = {knob.name: knob for knob in _KNOBS}

_METHODS = (
    Method("stdconv", "plain convs; with stnd, every k > 1 conv weight-standardised", "stdconv.StdConv2d",
           ("stnd",), policy_knobs=("stnd",)),
    Method("s-gmconv", "S-GMConv: every k > 1 conv masked by a learned Gaussian (Chen et al.)", "gmconv.GMConv2d",
           ("sigma_init", "stnd")),
    Method("gmconv", "GMConv: the stem a dynamic D-GMConv, every other k > 1 conv static", "gmconv.GMConv2d",
           ("sigma_init", "sigma_pattern", "stnd")),
    Method("coc", "CoC: every k > 1 conv's kernels associated by a super convolution (Zhao et al.)",
           "coc.CoCConv2d", ("sa", "skp", "sl", "skip", "dilate", "c1x1", "stnd", "super_norm", "final_norm",
                             "wsc", "coc_pad", "init"), policy_knobs=("c1x1",)),
    Method("aconv", "ACONV: every k > 1 conv with a learned Gaussian envelope per filter (Tek et al.)",
           "aconv.AdaptiveConv2d", ("aconv_sigma_init", "stnd")),
)
METHOD_REGISTRY: dict[str, Method] = {method.name: method for method in _METHODS}

# derived, for the callers that want plain data
METHODS: tuple[str, ...] = tuple(METHOD_REGISTRY)
METHOD_KNOBS: dict[str, tuple[str, ...]] = {name: method.knobs for name, method in METHOD_REGISTRY.items()}


def method_names() -> tuple[str, ...]:
    """Every method, in the registry's order (the schema's enum)."""
    return tuple(METHOD_REGISTRY)


def knob_names(method: str) -> tuple[str, ...]:
    """The knobs ``method`` reads; an unknown method raises listing the valid ones."""
    if method not in METHOD_REGISTRY:
        raise ValueError(f"method must be one of {METHODS} (got {method!r})")
    return METHOD_REGISTRY[method].knobs


def method_help() -> str:
    """Each method with its description and its knobs (description, default, allowed): a CLI's help text."""
    lines = []
    for method in METHOD_REGISTRY.values():
        lines.append(f"{method.name}: {method.help}")
        for name in method.knobs:
            knob = KNOB_REGISTRY[name]
            default = ("the model's" if knob.default is None else str(knob.default).lower()
                       if isinstance(knob.default, bool) else repr(knob.default))
            lines.append(f"  {name}: {knob.help} (default {default}; {knob.allowed})")
    return "\n".join(lines)


def layer_kwargs(method: str, knobs: dict[str, Any]) -> dict[str, Any]:
    """The layer class's keyword arguments for ``method``'s knobs: policy knobs left out, each knob under
    its ``layer_arg``, lists (from YAML) as tuples."""
    policy = METHOD_REGISTRY[method].policy_knobs
    return {KNOB_REGISTRY[k].layer_arg or k: tuple(v) if isinstance(v, list) else v
            for k, v in knobs.items() if k not in policy}


def validate_knobs(method: str, knobs: dict[str, Any]) -> None:
    """Raise a one-line ``ValueError`` for an unknown method, an unknown knob or an obviously bad value."""
    allowed = knob_names(method)
    unknown = sorted(set(knobs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown knob(s) {unknown} for method {method!r} (allowed: {allowed})")
    for name, value in knobs.items():
        knob = KNOB_REGISTRY[name]
        if not knob.valid(value):
            raise ValueError(f"{name} must be {knob.allowed} (got {value!r})")


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
