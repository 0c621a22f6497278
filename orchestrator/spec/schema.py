"""The sweep file's schema: typed, frozen pydantic models parsed once at the YAML boundary.

Everything inside convsweep receives these objects, never raw dicts. ``TrainBase`` is the ``base`` section,
``TrialSpec`` one resolved trial (its ``trial_key`` a hash of its semantic fields), ``SweepSpec`` the file;
the sections they hold are in ``orchestrator.spec.sections`` (re-exported here). Loading a file (YAML,
environment expansion, profiles, ``--set`` overrides, one-line errors) lives in ``orchestrator.spec.load``;
expanding a sweep into trials in ``orchestrator.spec.expand``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from orchestrator.spec.figurespec import FigureSpec
from orchestrator.spec.sections import (
    AnalysisSpec, DatasetSpec, ErfSpec, EvalCheckpoint, EvalTransform, EvaluateSpec, ExecutorSpec, LayerSpec,
    LocalSpec, Name, OptimizerSpec, PositiveInt, RecipeSpec, ResourcesSpec, ScheduleSpec, SlurmSpec, StorageSpec,
    TrackingSpec, TuneSpec, _Frozen,
)
from orchestrator.spec.tablespec import TableSpec

__all__ = [
    "NON_SEMANTIC_FIELDS", "AnalysisSpec", "DatasetSpec", "ErfSpec", "EvaluateSpec", "ExecutorSpec", "LayerSpec",
    "LocalSpec", "OptimizerSpec", "RecipeSpec", "ResourcesSpec", "ScheduleSpec", "SlurmSpec", "StorageSpec",
    "SweepSpec", "TrackingSpec", "TrainBase", "TrialSpec", "TuneSpec",
]


class TrainBase(_Frozen):
    """Everything a trial needs except its seed and sweep: the `base` section, before grid values."""

    model: str = "resnet20"
    dataset: DatasetSpec = DatasetSpec()
    layer: LayerSpec = LayerSpec()
    recipe: RecipeSpec = RecipeSpec()
    eval_every: PositiveInt = 1
    analysis: AnalysisSpec = AnalysisSpec()


# Fields that do not change what a trial computes: excluded from its identity, so moving a data root or
# changing worker counts re-uses the trial instead of starting it again.
NON_SEMANTIC_FIELDS: tuple[str, ...] = (
    "sweep",
    "dataset.root",
    "dataset.num_workers",
    "resources.cpus_per_process",
    "resources.mem_gb",
    "resources.hours_per_epoch",
    "resources.gpu_type",
    # analyses read the model, they do not train it: asking for one keeps the trials already run
    "analysis",
)


def _without_empty(data: dict[str, Any]) -> dict[str, Any]:
    """Drop sections left empty (all defaults, or only non-semantic fields), recursively."""
    kept = {k: _without_empty(v) if isinstance(v, dict) else v for k, v in data.items()}
    return {k: v for k, v in kept.items() if v != {}}


class TrialSpec(TrainBase):
    """One fully resolved trial; its identity is a hash of its semantic fields."""

    sweep: Name
    seed: int = 0
    resources: ResourcesSpec = ResourcesSpec()
    evaluate_source: str | None = None  # trial dir of the run an evaluation trial re-evaluates
    transforms: tuple[EvalTransform, ...] = ()
    # "last" stays the default: a default is left out of the trial key, so the evaluation trials run
    # before this knob existed keep their keys (and they did evaluate the last checkpoint)
    evaluate_checkpoint: EvalCheckpoint = "last"

    @property
    def world_size(self) -> int:
        return self.resources.world_size

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> TrialSpec:
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("trial_key", None)  # the copy's fields may differ: its key is computed afresh
        return copied

    # Cached: the plan of a 10,000-trial sweep asked each trial for its key four times (expansion, the
    # duplicate check, flat_params, the plan's row), a model dump and a sha256 each. The model is frozen, so
    # only model_copy(update=...) can change what the key hashes.
    @functools.cached_property
    def trial_key(self) -> str:
        # Fields at their default value are left out: a knob added later with a default that keeps today's
        # behaviour does not re-key the trials already run (their runs and checkpoints are still found).
        # The flip side: changing a default changes what a trial computes under the same key, so a default
        # is never changed in place; a new behaviour gets a new value.
        data = self.model_dump(mode="json", exclude_defaults=True)
        for dotted in NON_SEMANTIC_FIELDS:
            *parents, leaf = dotted.split(".")
            node = data
            for part in parents:
                node = node.get(part, {})
            node.pop(leaf, None)
        data = _without_empty(data)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def flat_params(self) -> dict[str, str]:
        """Every resolved knob by dotted key, as MLflow params (values as strings)."""
        flat: dict[str, str] = {}
        _flatten("", self.model_dump(mode="json"), flat)
        flat["world_size"] = str(self.world_size)
        flat["trial_key"] = self.trial_key
        return flat


def _flatten(prefix: str, data: dict[str, Any], out: dict[str, str]) -> None:
    # one call per mapping, not per value: a plan flattens every one of 10,000 trials
    for key, value in data.items():
        if isinstance(value, dict):
            _flatten(f"{prefix}{key}.", value, out)
        elif isinstance(value, list):  # JSON mode: tuples are lists
            out[prefix + key] = ",".join(str(v) for v in value)
        else:
            out[prefix + key] = str(value)


class SweepSpec(_Frozen):
    name: Name
    description: str = ""
    tracking: TrackingSpec = TrackingSpec()
    storage: StorageSpec = StorageSpec()
    base: TrainBase = TrainBase()
    grid: dict[str, list[Any]] = {}
    zip: list[dict[str, list[Any]]] = []
    exclude: list[dict[str, Any]] = []
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    resources: ResourcesSpec = ResourcesSpec()
    executor: ExecutorSpec = ExecutorSpec()
    tune: TuneSpec = TuneSpec()
    profiles: dict[str, dict[str, Any]] = {}
    evaluate: EvaluateSpec | None = None
    table: TableSpec | None = None
    # A layer knob no trial's method uses (base.layer.sigma_init with only coc trials), or trials that differ
    # only in knobs their method ignores (grid sigma_init x method stdconv: the same computation run again),
    # is an error: the user meant it to change something. true turns both into one warning.
    allow_ignored_knobs: bool = False
    figure: FigureSpec | None = None  # `convsweep figure`: a view of the table (orchestrator.tables.figures)

    # A field validator (not a model one) so the error's location is `zip`, which the one-line error names.
    @field_validator("zip")
    @classmethod
    def _zip_lengths_match(cls, groups: list[dict[str, list[Any]]]) -> list[dict[str, list[Any]]]:
        for i, group in enumerate(groups):
            lengths = {key: len(values) for key, values in group.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"group {i}: lists must have equal lengths (got lengths {lengths})")
        return groups

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name
