"""Layer knobs the sweep sets that its trials' methods ignore: a knob no trial reads, or trials that differ only
in knobs their method ignores (the same computation run twice). Which method reads which knob comes from
``layers.knobs.METHOD_KNOBS`` (torch-free).
"""

from __future__ import annotations

from typing import Any

from orchestrator.spec.errors import Problem
from orchestrator.spec.schema import LayerSpec, SweepSpec, TrialSpec
from orchestrator.spec.structure import canon
from orchestrator.spec.trialchecks import Pairs, blame

__all__ = ["ignored_knob_problems"]


def _method_knobs() -> dict[str, frozenset[str]]:
    """LayerSpec fields that only some methods read (from ``layers.knobs.METHOD_KNOBS``), -> those methods."""
    from layers.knobs import METHOD_KNOBS

    every = set.intersection(*(set(knobs) for knobs in METHOD_KNOBS.values()))
    fields = set(LayerSpec.model_fields) - every - {"init"}  # init is also a model's knob (layers.catalogue)
    return {f: frozenset(m for m, knobs in METHOD_KNOBS.items() if f in knobs) for f in sorted(fields)
            if any(f in knobs for knobs in METHOD_KNOBS.values())}


def _uses(layer: LayerSpec, field: str, by_method: dict[str, frozenset[str]]) -> bool:
    if field == "orth_weight":
        return layer.orth
    return field not in by_method or layer.method in by_method[field]


def ignored_knob_problems(spec: SweepSpec, pairs: Pairs) -> list[Problem]:
    """Layer knobs the user set that no trial's method reads, and trials repeating another's computation.

    A method-specific knob (``sigma_init``: the GMConv methods) written in ``base.layer`` or varied by a grid
    or zip key must be read by at least one trial; a knob some trials read and others ignore is fine unless
    two trials then differ only in it (a grid ``layer.sigma_init`` crossed with method ``stdconv``).
    """
    from layers.knobs import METHOD_KNOBS

    by_method = _method_knobs()
    trials = [t for t, _ in pairs]
    methods = sorted({t.layer.method for t in trials}, key=list(METHOD_KNOBS).index)
    allowed = "; ".join(f"{m}: {', '.join(k for k in METHOD_KNOBS[m] if k in LayerSpec.model_fields)}"
                        for m in methods)
    written = {f"layer.{f}": f"base.layer.{f}" for f in spec.base.layer.model_fields_set}
    written.update({key: f"grid.{key}" for key in spec.grid if key.startswith("layer.")})
    written.update({key: f"zip[{i}].{key}" for i, group in enumerate(spec.zip) for key in group
                    if key.startswith("layer.")})
    problems, unused = [], set()
    for path, key in written.items():
        field = path.removeprefix("layer.")
        if field in LayerSpec.model_fields and not any(_uses(t.layer, field, by_method) for t in trials):
            unused.add(field)
            value = _get_path(spec, key)
            problems.append(Problem(key, f"no trial's method reads this knob (methods here: {', '.join(methods)}); "
                                    "remove it, or set allow_ignored_knobs: true", value,
                                    f"knobs of {allowed}" + ("; orth_weight with orth: true"
                                                             if field == "orth_weight" else "")))
    seen: dict[str, TrialSpec] = {}
    for trial, sources in pairs:
        data = trial.model_dump(mode="json", exclude={"layer"})
        data["layer"] = {f: v for f, v in trial.layer.model_dump(mode="json").items()
                         if _uses(trial.layer, f, by_method)}
        first = seen.setdefault(canon(data), trial)
        if first is trial:
            continue
        ignored = sorted(f for f in LayerSpec.model_fields if f not in unused
                         and getattr(first.layer, f) != getattr(trial.layer, f))
        if not ignored:
            continue  # they repeat through a knob no trial reads: said above
        keys = sorted({blame(f"layer.{f}", sources) for f in ignored})
        problems.append(Problem(keys[0], f"trials {first.trial_key} and {trial.trial_key} repeat one "
                                f"computation: method {trial.layer.method} ignores {', '.join(ignored)}; drop the "
                                "repeats with a zip group or exclude, or set allow_ignored_knobs: true",
                                allowed=f"knobs of {allowed}"))
        break  # one example says enough: the rest repeat for the same reason
    return problems


def _get_path(spec: SweepSpec, key: str) -> Any:
    if key.startswith("base."):
        return getattr(spec.base.layer, key.rsplit(".", 1)[1])
    if key.startswith("grid."):
        return spec.grid[key[len("grid."):]]
    index, _, dotted = key[len("zip["):].partition("].")
    return spec.zip[int(index)][dotted]
