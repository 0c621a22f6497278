"""The sections of the sweep schema: one frozen pydantic model per concern (layer, dataset, optimiser,
schedule, recipe, resources, executor, tune, tracking, storage, evaluation, analyses). ``orchestrator.spec.schema``
assembles them into the trial and the sweep.

Every model forbids unknown keys so that a misspelt knob is an error instead of a silently ignored setting.
The enums of names come from their registries (``orchestrator.spec.names``): the allowed values an error
lists are the registry's.

Defaults follow the papers (GMConv Sec. 3: sigma 5, sigma1_rsigma; CoC Sec. 4.1: sa=2, skp=2, sl=1, skip,
dilate; ACONV Sec. 3.3: sigma in [0.1, 0.5]; OCNN weight 0.1).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from layers.knobs import COC_INITS, COC_PADS, SIGMA_PATTERNS
from layers.catalogue import PADDINGS, SHORTCUTS
from orchestrator.spec import names
from orchestrator.spec.figurespec import ShapesSpec

__all__ = [
    "AnalysisSpec",
    "DatasetSpec",
    "ErfSpec",
    "EvaluateSpec",
    "ExecutorSpec",
    "LayerSpec",
    "OptimizerSpec",
    "RecipeSpec",
    "ResourcesSpec",
    "ScheduleSpec",
    "SlurmSpec",
    "StorageSpec",
    "TrackingSpec",
    "TuneSpec",
]

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]

EvalTransform = Literal["rot0", "rot45", "rot90", "rot135", "rot180", "flip_ud"]
EvalCheckpoint = Literal["last", "best"]
# The enums of names, from their registries (a tuple subscript spreads into the Literal's values).
LayerMethod = Literal[tuple(names.layer_methods())]  # type: ignore[valid-type]
Backend = Literal[names.backends()]  # type: ignore[valid-type]
OptimizerName = Literal[tuple(names.OPTIMIZERS)]  # type: ignore[valid-type]
ScheduleName = Literal[tuple(names.SCHEDULES)]  # type: ignore[valid-type]
GpuType = Literal[tuple(names.DEVICES)]  # type: ignore[valid-type]


class _Frozen(BaseModel):
    # no NaN or infinity anywhere: `lr: .inf` is YAML for a float, and no knob means it
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LayerSpec(_Frozen):
    """Which conv variant replaces the model's convs, and its knobs (all recorded as MLflow params)."""

    method: LayerMethod = "stdconv"
    # GMConv
    sigma_init: PositiveFloat = 5.0
    sigma_pattern: Literal[SIGMA_PATTERNS] = "sigma1_rsigma"  # type: ignore[valid-type]
    # CoC
    sa: PositiveInt = 2
    skp: Annotated[int, Field(ge=0)] = 2
    sl: PositiveInt = 1
    skip: bool = True
    dilate: bool = True
    # 1x1 convs: false = plain (the released configs), true = CoC (the paper's reading, Fig. 7), "ws" =
    # weight-standardised (the released code's c1x1_ws)
    c1x1: bool | Literal["ws"] = False
    # kernels padding C_out to a multiple of sa^2: fixed zeros (paper) or trainable (released code)
    coc_pad: Literal[COC_PADS] = "zeros"  # type: ignore[valid-type]
    # weight standardisation and the OCNN regulariser, usable with any method (CoC Table 1)
    stnd: bool = False
    orth: bool = False
    orth_weight: PositiveFloat = 0.1
    # ACONV: one float, or (lo, hi) spread over the filters
    aconv_sigma_init: PositiveFloat | tuple[PositiveFloat, PositiveFloat] = (0.1, 0.5)
    # None keeps the model's own kernel size (ACONV sweeps 3/5/7/9)
    kernel_size: PositiveInt | None = None
    # Architecture knobs of the models that have them (None = the model's default): residual blocks per
    # stage of aconv_resnet (ACONV Table 1: 1/1/3/2/2), dropout of aconv_simple/aconv_resnet (0.5 / 0).
    blocks_per_stage: PositiveInt | None = None
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = None
    # Initialisation: PyTorch's defaults, or the authors' released code's (models that have one: the ACONV
    # nets, see layers.models.aconv_nets.released_init_; method coc on any model: the CoC layers' own, see
    # layers.coc)
    init: Literal[COC_INITS] = "torch"  # type: ignore[valid-type]
    # The ACONV nets' padding: "tf_same" pads as the authors' Keras padding='same' (asymmetric on strided
    # convs over even sides); and aconv_resnet's shortcut where the shape changes: a 1x1 projection, or the
    # released resnet_s.py's subsampled input concatenated with itself (see layers.models.aconv_nets).
    padding: Literal[PADDINGS] = "symmetric"  # type: ignore[valid-type]
    shortcut: Literal[SHORTCUTS] = "projection"  # type: ignore[valid-type]

    def build_knobs(self) -> dict[str, Any]:
        """Keyword arguments for ``layers.build_model`` that apply to this method."""
        knobs: dict[str, Any] = {"stnd": self.stnd}
        if self.method in ("s-gmconv", "gmconv"):
            knobs.update(sigma_init=self.sigma_init)
        if self.method == "gmconv":
            knobs.update(sigma_pattern=self.sigma_pattern)
        if self.method == "coc":
            knobs.update(sa=self.sa, skp=self.skp, sl=self.sl, skip=self.skip, dilate=self.dilate, c1x1=self.c1x1)
            if self.coc_pad != "zeros":  # only when set: the knobs of trials run before it stay the same
                knobs.update(coc_pad=self.coc_pad)
        if self.method == "aconv":
            knobs.update(aconv_sigma_init=self.aconv_sigma_init)
        if self.kernel_size is not None:
            knobs.update(kernel_size=self.kernel_size)
        if self.blocks_per_stage is not None:
            knobs.update(blocks_per_stage=self.blocks_per_stage)
        if self.dropout is not None:
            knobs.update(dropout=self.dropout)
        if self.init != "torch":
            knobs.update(init=self.init)
        if self.padding != "symmetric":
            knobs.update(padding=self.padding)
        if self.shortcut != "projection":
            knobs.update(shortcut=self.shortcut)
        return knobs


class DatasetSpec(_Frozen):
    name: str = "digits"
    root: str | None = None
    backend: Backend = "auto"
    num_workers: Annotated[int, Field(ge=0)] = 2
    # train-split augmentation on/off; None = the dataset's default (pipelines.dataset_info(name).augment)
    augment: bool | None = None


class OptimizerSpec(_Frozen):
    name: OptimizerName = "sgd"
    lr: PositiveFloat = 0.1
    momentum: NonNegativeFloat = 0.9
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 1e-4
    # torchvision-style split: no decay on normalisation layers' parameters (chosen by module type)
    no_bn_weight_decay: bool = False


class ScheduleSpec(_Frozen):
    """Learning-rate schedules of the three papers.

    ``exponential`` multiplies by ``gamma`` every epoch (MobileNetV2 in GMConv: set ``gamma: 0.98``, the
    default 0.1 would divide the lr tenfold each epoch); ``step``/``multistep`` multiply by ``gamma`` at
    ``step_size`` multiples / ``milestones`` (x0.1 or x0.2 in the papers); ``poly`` decays to ``end_lr`` with
    ``power``; ``onecycle`` rises from ``end_lr`` to ``lr`` at mid-training and falls back (ACONV ResNet:
    ``end_lr: 0.001``). Step-shaped schedules change at epoch boundaries, poly and one-cycle every step.
    ``plateau`` multiplies the lr by ``gamma`` when the validation loss has not improved for more than
    ``patience`` evaluations, never below ``end_lr`` (ACONV simple net: ``gamma: 0.9, patience: 10``;
    otherwise torch's ReduceLROnPlateau with its defaults).
    A warm-up lasts ``warmup_epochs`` epochs or ``warmup_iters`` optimiser steps (not both), shaped by
    ``warmup``: ``linear`` ramps up, ``constant`` runs at ``warmup_ratio`` x the schedule's lr (mmcv's
    ``warmup='constant'``, whose default ratio is 0.1: CoC's released light-model configs).
    """

    name: ScheduleName = "constant"
    milestones: tuple[PositiveInt, ...] = ()

    @field_validator("milestones")
    @classmethod
    def _milestones_increase(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"milestones must be strictly increasing epochs (got {list(value)}; allowed: e.g. "
                             f"{sorted(set(value))})")
        return value
    step_size: PositiveInt = 30
    gamma: PositiveFloat = 0.1
    power: PositiveFloat = 0.9
    end_lr: NonNegativeFloat = 0.0
    warmup_epochs: Annotated[int, Field(ge=0)] = 0
    warmup_iters: Annotated[int, Field(ge=0)] = 0
    warmup: Literal["linear", "constant"] = "linear"
    warmup_ratio: Annotated[float, Field(gt=0, le=1)] = 0.1  # constant warm-up only
    patience: Annotated[int, Field(ge=0)] = 10  # plateau: evaluations without improvement before a cut

    @field_validator("warmup_iters")
    @classmethod
    def _one_warmup_length(cls, value: int, info: ValidationInfo) -> int:
        if value and info.data.get("warmup_epochs"):
            raise ValueError(f"set warmup_epochs or warmup_iters, not both (got warmup_epochs="
                             f"{info.data['warmup_epochs']}, warmup_iters={value})")
        return value


class RecipeSpec(_Frozen):
    optimizer: OptimizerSpec = OptimizerSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    epochs: PositiveInt = 1
    batch_size: PositiveInt = 128  # per process
    amp: bool = False  # honoured on CUDA only
    channels_last: bool = False  # honoured on CUDA only
    grad_clip: PositiveFloat | None = None  # clip by value (ACONV uses 1.0)
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    max_steps_per_epoch: PositiveInt | None = None  # cap for smoke runs and benchmarks


class ResourcesSpec(_Frozen):
    nodes: PositiveInt = 1
    gpus_per_node: Annotated[int, Field(ge=0)] = 0
    processes_per_node: PositiveInt | None = None  # default: one per GPU, or one on a CPU-only node
    cpus_per_process: PositiveInt = 1
    mem_gb: PositiveFloat | None = None
    hours_per_epoch: PositiveFloat | None = None  # for `convsweep plan`'s GPU-hour estimate (wins if set)
    # the GPU model, for `plan`'s estimate from the model's FLOPs (orchestrator.spec.names.DEVICES)
    gpu_type: GpuType | None = None

    @property
    def tasks_per_node(self) -> int:
        return self.processes_per_node or max(self.gpus_per_node, 1)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node


class SlurmSpec(_Frozen):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time: str = "01:00:00"
    mem: str | None = None
    cpus_per_task: PositiveInt | None = None
    additional_parameters: dict[str, str | int] = {}
    # How often the sweep's one SLURM watcher asks squeue about all of its jobs (slurm/watcher.py); it polls
    # every second only while a job starts, ends or is being cancelled.
    poll_seconds: PositiveFloat = 15.0


class LocalSpec(_Frozen):
    # Fork each rank from a process that has imported torch and the trainer (orchestrator/run/executors/warmstart.py):
    # ~3 s less per rank; false starts every rank as a fresh interpreter.
    warm_start: bool = True


class ExecutorSpec(_Frozen):
    kind: str = "local"
    local: LocalSpec = LocalSpec()
    slurm: SlurmSpec = SlurmSpec()


class TuneSpec(_Frozen):
    max_concurrent_trials: PositiveInt = 2
    scheduler: Literal["fifo", "asha"] = "fifo"
    metric: str = "val_top1"
    mode: Literal["max", "min"] = "max"
    grace_period: PositiveInt = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 2
    max_failures: Annotated[int, Field(ge=0)] = 1
    # Where each running trial's proxy lives: a thread of the driver, Tune's scheduler asked directly (a few MB
    # per running trial, no Ray process; orchestrator.run.pool), or a Ray actor under Tune's runtime (Tuner.fit,
    # a restorable Tune experiment; a Ray worker costs ~120 MB of the driver's node per running trial).
    proxies: Literal["threads", "actors"] = "threads"


class TrackingSpec(_Frozen):
    uri: str = "sqlite:///mlruns.db"
    experiment: str | None = None  # default: the sweep's name


class StorageSpec(_Frozen):
    root: str = "runs"  # trial directories: <root>/<sweep>/<trial_key>/; shared filesystem on a cluster


class EvaluateSpec(_Frozen):
    """An evaluation sweep: re-evaluates the checkpoints of another sweep's FINISHED runs."""

    source_sweep: Name
    where: dict[str, Any] = {}
    transforms: tuple[EvalTransform, ...] = ("rot0",)
    # which weights of each source run: its final epoch's, or its best epoch's by val_top1 (the weights
    # behind a table's best top-1, as GMConv Table 4's Rotate 0 equals Table 2's top-1)
    checkpoint: EvalCheckpoint = "last"


class ErfSpec(_Frozen):
    """The effective receptive field of one stage (orchestrator.train.analysis)."""

    stage: str  # a module name of the built model, e.g. "layers.2" (resnet20) or "layer4" (resnet18)
    images: PositiveInt = 64  # validation images averaged


class AnalysisSpec(_Frozen):
    """Analyses of the trained model recorded at the end of a trial (none by default)."""

    erf: ErfSpec | None = None
    shapes: ShapesSpec | None = None  # GMConv masks and sigmas, ACONV envelopes, CoC kernels (orchestrator.train.shapes)
