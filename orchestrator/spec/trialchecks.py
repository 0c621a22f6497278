"""Checks of each trial against the registries it names: model, layer method and dataset names, data roots,
and each distinct layer-knob combination (``layers.catalogue``, without building a model or importing torch).

Each returns ``Problem``s whose key is the one the user wrote: ``blame`` maps a trial path to the grid/zip key
that set it, else to ``base.<path>``.
"""

from __future__ import annotations

import re

from orchestrator.spec import names
from orchestrator.spec.errors import Problem
from orchestrator.spec.schema import LayerSpec, TrialSpec
from orchestrator.spec.structure import canon

__all__ = ["Pairs", "blame", "layer_problems", "name_problems", "root_problems"]

Pairs = list[tuple[TrialSpec, dict[str, str]]]


def blame(path: str, sources: dict[str, str]) -> str:
    """The sweep-file key that set trial path ``path``: its grid/zip key (or a parent's), else ``base.<path>``."""
    for varied, source in sources.items():
        if path == varied or path.startswith(varied + "."):
            return source + path[len(varied):]
    return f"base.{path}"


def name_problems(pairs: Pairs) -> list[Problem]:
    """Models and datasets named in the live registries (a model or dataset registered at run time counts);
    methods, backends and the other enums are the schema's, from the same registries (``spec.names``)."""
    models, datasets = names.model_names(), tuple(names.datasets())
    problems = []
    for trial, sources in pairs:
        for path, value, allowed in (("model", trial.model, models), ("dataset.name", trial.dataset.name, datasets)):
            if value not in allowed:
                problems.append(Problem(blame(path, sources), "unknown name", value,
                                        ", ".join(allowed)))
    return problems


def root_problems(pairs: Pairs) -> list[Problem]:
    import pipelines

    problems, seen = [], set()
    for trial, sources in pairs:
        ds = trial.dataset
        if ds.name == "digits" or ds.backend == "synthetic" or (ds.name, ds.root) in seen:
            continue  # digits ships with scikit-learn; synthetic data needs no files
        seen.add((ds.name, ds.root))
        try:
            pipelines.check_root(ds.name, ds.root)
        except ValueError as exc:
            problems.append(Problem(blame("dataset.root", sources), f"{ds.name}: {exc}"))  # quotes the root
    return problems


_KNOB_PATHS = {"model": "model", **{name: f"layer.{name}" for name in LayerSpec.model_fields}}
_SUBJECT_RE = re.compile(r"(?<![\w.])(\w+) (?:must|applies)\b")


def _layer_key(message: str, sources: dict[str, str]) -> str:
    """The key to blame for a layer-build error: the knob the message is about, where the user wrote it.

    ``layers`` words its errors "<knob> must be ..." (or "<knob> applies only to ..."): that knob's value is
    the bad one, whether it came from base or from a grid key that happens to vary something else.
    """
    subject = _SUBJECT_RE.search(message)
    if subject and subject.group(1) in _KNOB_PATHS:
        return blame(_KNOB_PATHS[subject.group(1)], sources)
    named = sorted((m.start(), path) for name, path in _KNOB_PATHS.items()
                   for m in [re.search(rf"(?<![\w.]){re.escape(name)}\b", message)] if m)
    if named:
        # a combination (dilate with skp at kernel_size): the named knob that varies is what makes it fail
        varied = [path for _, path in named if blame(path, sources) != f"base.{path}"]
        return blame((varied or [named[0][1]])[0], sources)
    varied = [p for p in sources if p == "model" or p.startswith("layer")]
    return sources[varied[0]] if varied else "base.layer"


def layer_problems(pairs: Pairs) -> list[Problem]:
    """Check each distinct (model, classes, method, knobs) once, without building (``layers.catalogue``).

    Only a model registered at run time, whose kernels the catalogue does not know, is built, on the meta
    device, by ``layers.catalogue.check_or_build``; the models a sweep file can name are all in the catalogue,
    so validation never imports torch.
    """
    import pipelines
    from layers.catalogue import check_or_build

    problems, seen, said = [], set(), set()
    for trial, sources in pairs:
        knobs = trial.layer.build_knobs()
        ident = (trial.model, trial.dataset.name, trial.layer.method, canon(knobs))
        if ident in seen:
            continue
        seen.add(ident)
        info = pipelines.dataset_info(trial.dataset.name)
        args = (trial.model, info.num_classes, trial.layer.method)
        try:
            check_or_build(*args, in_channels=info.in_channels, **knobs)
        except ValueError as exc:
            key = _layer_key(str(exc), sources)
            if (key, str(exc)) in said:
                continue  # the same mistake in another model: once is enough
            said.add((key, str(exc)))
            where = f"model {trial.model}, method {trial.layer.method}"
            problems.append(Problem(key, f"invalid layer settings ({where}): {exc}"))  # layers quotes the value
    return problems
