"""What each registry model accepts and which conv kernels it holds: plain Python, no torch.

``layers.models.registry`` builds the models; this module answers, without building (or importing torch),
every question a build would refuse a knob for: the model's name, its ``kernel_size`` and architecture knobs,
the method's knobs (``layers.knobs``) and the CoC checks that depend on the size of each converted kernel.
``tests/layers/test_catalogue.py`` holds the declared kernels to those of the built models, and the verdicts
of ``check_build`` to those of ``build_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .knobs import COC_INITS, KNOB_REGISTRY, check_coc_kernel, validate_knobs

__all__ = ["ARCH_KNOBS", "MODEL_NAMES", "PADDINGS", "SHORTCUTS", "ModelFacts", "check_build", "declare_model",
           "model_facts", "model_names", "validate_build_args"]

# the ACONV nets: TF's 'same' padding of the authors' Keras code, and the released ResNet's shortcut
PADDINGS = ("symmetric", "tf_same")
SHORTCUTS = ("projection", "released")

# Architecture knobs a model may declare (None or absent = the builder's default), with their checks.
ARCH_KNOBS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "blocks_per_stage": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "dropout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
                "a number in [0, 1)"),
    # "torch" (PyTorch's default init) is the default; "released" only for models registered with a
    # ``released_init`` (so the key says which models have one), and for method "coc" on any model: the CoC
    # layers' own released init (layers.coc)
    "init": (lambda v: v in COC_INITS, f"one of {', '.join(map(repr, COC_INITS))}"),
    "padding": (lambda v: v in PADDINGS, f"one of {', '.join(map(repr, PADDINGS))}"),
    "shortcut": (lambda v: v in SHORTCUTS, f"one of {', '.join(map(repr, SHORTCUTS))}"),
}

KERNEL_KNOB = "k"  # in ``ModelFacts.kernels``: the model's ``kernel_size`` knob (default 3)


@dataclass(frozen=True)
class ModelFacts:
    """A registry model as config validation sees it. ``kernels``: the square sizes of its convs in the order
    they first appear, as a build meets them (``"k"`` for the ``kernel_size`` knob); None when unknown (a model registered at run time): then only a build
    can tell whether a CoC setting fits every kernel."""

    name: str
    kernel_size_knob: bool = False
    coc_wsc: bool = True  # CoC's released configs standardise super kernels on ResNet-like models only
    arch_knobs: tuple[str, ...] = ()
    kernels: tuple[int | str, ...] | None = None

    def kernel_sizes(self, kernel_size: int | None) -> tuple[int, ...] | None:
        if self.kernels is None:
            return None
        k = 3 if kernel_size is None else kernel_size
        return tuple(dict.fromkeys(k if s == KERNEL_KNOB else int(s) for s in self.kernels))


_FACTS: dict[str, ModelFacts] = {}


def declare_model(facts: ModelFacts) -> None:
    """Add a model (``register_model`` does, for models registered at run time); a conflicting repeat raises."""
    unknown = set(facts.arch_knobs) - set(ARCH_KNOBS)
    if unknown:
        raise ValueError(f"register_model: unknown arch knob(s) {sorted(unknown)} (allowed: {sorted(ARCH_KNOBS)})")
    known = _FACTS.get(facts.name)
    if known is not None and known != facts:
        raise ValueError(f"register_model: {facts.name!r} is declared as {known} (got {facts})")
    _FACTS[facts.name] = facts


for _facts in (
    ModelFacts("resnet20", kernel_size_knob=True, kernels=(KERNEL_KNOB,)),
    ModelFacts("resnet56", kernel_size_knob=True, kernels=(KERNEL_KNOB,)),
    ModelFacts("resnet18_cifar", kernel_size_knob=True, kernels=(KERNEL_KNOB, 1)),
    ModelFacts("aconv_simple", kernel_size_knob=True, arch_knobs=("dropout", "padding", "init"),
               kernels=(KERNEL_KNOB,)),
    ModelFacts("aconv_resnet", kernel_size_knob=True,
               arch_knobs=("blocks_per_stage", "dropout", "padding", "shortcut", "init"), kernels=(KERNEL_KNOB, 1)),
    ModelFacts("resnet18", kernels=(7, 3, 1)),
    ModelFacts("resnet50", kernels=(7, 1, 3)),
    ModelFacts("alexnet", kernels=(11, 5, 3)),
    ModelFacts("mobilenet_v2", coc_wsc=False, kernels=(3, 1)),
    ModelFacts("shufflenet_v2_x1_0", coc_wsc=False, kernels=(3, 1)),
    ModelFacts("mobilenet_v3_small", coc_wsc=False, kernels=(3, 1, 5)),
    ModelFacts("hrnet_w18_small", kernels=(3, 1)),
    ModelFacts("hrnet_w18_small_v2", kernels=(3, 1)),
    ModelFacts("hrnet_w18", kernels=(3, 1)),
):
    declare_model(_facts)



def model_names() -> tuple[str, ...]:
    """Every model declared so far, built-ins first: read at call time, so a model ``register_model`` adds
    after import is listed (the schema's allowed models, the expansion's check)."""
    return tuple(_FACTS)


def __getattr__(name: str) -> Any:
    # MODEL_NAMES: a live view for the callers of the old constant (a tuple frozen at import left out every
    # model registered later); new code calls model_names()
    if name == "MODEL_NAMES":
        return model_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_facts(name: str) -> ModelFacts:
    if name not in _FACTS:
        raise ValueError(f"model must be one of {model_names()} (got {name!r})")
    return _FACTS[name]


def validate_build_args(name: str, num_classes: int, method: str = "stdconv", *, in_channels: int = 3,
                        **knobs: Any) -> None:
    """The checks ``build_model`` does before building anything (cheap; for config validation)."""
    facts = model_facts(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1 (got {num_classes!r})")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be an integer >= 1 (got {in_channels!r})")
    kernel_size = knobs.pop("kernel_size", None)
    if kernel_size is not None:
        kernel_models = tuple(n for n, f in _FACTS.items() if f.kernel_size_knob)
        if not facts.kernel_size_knob:
            raise ValueError(f"kernel_size applies only to models {kernel_models} (got kernel_size="
                             f"{kernel_size!r} for model {name!r}; allowed: None)")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 1 or None (got {kernel_size!r})")
        if method == "aconv" and kernel_size == 1:
            raise ValueError("kernel_size must be odd and square, >= 3 for method 'aconv' (got 1; allowed: "
                             "3, 5, 7, ...): ACONV has no envelope on a 1x1 kernel")
    for knob, (valid, allowed) in ARCH_KNOBS.items():
        value = knobs.pop(knob, None)
        if value is None:
            continue
        coc_init = knob == "init" and method == "coc"
        if knob not in facts.arch_knobs and not coc_init:
            models = tuple(n for n, f in _FACTS.items() if knob in f.arch_knobs)
            also = " or to method 'coc'" if knob == "init" else ""
            raise ValueError(f"{knob} applies only to models {models}{also} (got {knob}={value!r} for model "
                             f"{name!r}; allowed: None)")
        if not valid(value):
            raise ValueError(f"{knob} must be {allowed} or None (got {value!r})")
    validate_knobs(method, knobs)


def check_build(name: str, num_classes: int, method: str = "stdconv", *, in_channels: int = 3,
                **knobs: Any) -> bool:
    """Raise the ``ValueError`` that ``build_model`` would, without building; False when only a build can
    tell (a model whose kernels are not declared), True when the settings were checked in full."""
    validate_build_args(name, num_classes, method, in_channels=in_channels, **knobs)
    if method != "coc":
        return True  # the other variants take any odd square kernel > 1, and convert_model skips the rest
    sizes = model_facts(name).kernel_sizes(knobs.get("kernel_size"))
    if sizes is None:
        return False
    wsc = knobs.get("wsc", model_facts(name).coc_wsc)
    skp, dilate, c1x1 = (knobs.get(k, KNOB_REGISTRY[k].default) for k in ("skp", "dilate", "c1x1"))
    for k in sizes:
        if k % 2 == 0 or (k == 1 and c1x1 is not True):
            continue  # convert_model leaves these convs plain (or weight-standardises a 1x1)
        check_coc_kernel(k, skp=skp, dilate=dilate, wsc=wsc)
    return True


def check_or_build(name: str, num_classes: int, method: str = "stdconv", *, in_channels: int = 3,
                   **knobs: Any) -> None:
    """Raise the ``ValueError`` that ``build_model`` would. Only a model the catalogue cannot judge (registered
    at run time, kernels not declared) is built, on the meta device: torch is imported here and only then, so
    a caller checking the catalogued models stays torch-free."""
    import sys

    if check_build(name, num_classes, method, in_channels=in_channels, **knobs):
        return
    # Registering a model at run time loaded the registry (and torch): build through it, never load it here.
    registry = sys.modules.get("layers.models.registry")
    if registry is None:
        return
    import torch

    with torch.device("meta"):
        registry.build_model(name, num_classes, method, in_channels=in_channels, **knobs)
