"""Expanding a sweep into trials: counts, order, zip, exclude, identity (trial_key) and flat params."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator.spec.schema import LayerSpec, SweepSpec, TrialSpec
from orchestrator.run.preflight import check_sweep
from orchestrator.spec.expand import expand, expand_with_sources
from orchestrator.spec.errors import ConfigError
from orchestrator.dirs.trialdir import TrialDir


def sweep(**fields) -> SweepSpec:
    data = {"name": "t", "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 2}}}
    data.update(fields)
    return SweepSpec.model_validate(data)


def test_grid_count_and_file_order():
    spec = sweep(grid={"model": ["resnet20", "resnet56", "resnet18_cifar"],
                       "layer.method": ["stdconv", "s-gmconv", "gmconv"],
                       "dataset.name": ["cifar10", "cifar100"]}, seeds=[0, 1, 2])
    trials = expand(spec)
    assert len(trials) == 3 * 3 * 2 * 3 == 54
    assert len({t.trial_key for t in trials}) == 54
    # first grid key varies slowest, seeds fastest
    assert [(t.model, t.layer.method, t.dataset.name, t.seed) for t in trials[:4]] == [
        ("resnet20", "stdconv", "cifar10", 0), ("resnet20", "stdconv", "cifar10", 1),
        ("resnet20", "stdconv", "cifar10", 2), ("resnet20", "stdconv", "cifar100", 0)]
    assert trials[-1].model == "resnet18_cifar" and trials[-1].layer.method == "gmconv"
    assert all(t.sweep == "t" and t.recipe.epochs == 2 for t in trials)
    assert expand(spec) == trials  # deterministic


def test_no_grid_gives_one_trial_per_seed():
    trials = expand(sweep(seeds=[5, 6]))
    assert [t.seed for t in trials] == [5, 6]


def test_zip_varies_together_and_crosses_grid():
    spec = sweep(grid={"model": ["resnet20", "resnet56"]},
                 zip=[{"layer.method": ["coc", "stdconv", "gmconv"], "layer.stnd": [True, False, False]}],
                 seeds=[0, 1])
    trials = expand(spec)
    assert len(trials) == 2 * 3 * 2
    assert {(t.layer.method, t.layer.stnd) for t in trials} == {("coc", True), ("stdconv", False),
                                                                ("gmconv", False)}
    two = expand(sweep(zip=[{"layer.method": ["coc", "gmconv"]}, {"recipe.epochs": [1, 2, 3]}]))
    assert len(two) == 2 * 3  # groups cross each other


def test_exclude_matches_every_pair_of_an_entry():
    spec = sweep(grid={"model": ["resnet20", "resnet56"], "layer.method": ["stdconv", "gmconv"]},
                 exclude=[{"model": "resnet56", "layer.method": "gmconv"}, {"model": "resnet20", "seed": 1}],
                 seeds=[0, 1])
    trials = expand(spec)
    assert len(trials) == 8 - 2 - 2
    assert not any(t.model == "resnet56" and t.layer.method == "gmconv" for t in trials)
    assert not any(t.model == "resnet20" and t.seed == 1 for t in trials)


def test_exclude_compares_typed_values():
    # the knobs are ignored by the default method (stdconv): the sweep says that is what it wants
    spec = sweep(grid={"layer.sigma_init": [1.0, 5.0], "layer.aconv_sigma_init": [[0.1, 0.5], 0.3]},
                 exclude=[{"layer.sigma_init": 5, "layer.aconv_sigma_init": [0.1, 0.5]}], allow_ignored_knobs=True)
    assert len(expand(spec)) == 3


def test_sub_section_values_merge_into_base():
    spec = sweep(base={"recipe": {"optimizer": {"lr": 0.1, "weight_decay": 5e-4}}},
                 grid={"recipe.optimizer": [{"name": "adam", "lr": 1e-3}, {"lr": 0.05}]})
    a, b = expand(spec)
    assert (a.recipe.optimizer.name, a.recipe.optimizer.lr, a.recipe.optimizer.weight_decay) == ("adam", 1e-3, 5e-4)
    assert (b.recipe.optimizer.name, b.recipe.optimizer.lr) == ("sgd", 0.05)


def test_resources_and_sources_are_carried():
    spec = sweep(grid={"layer.method": ["coc"]}, zip=[{"model": ["resnet20"]}],
                 resources={"nodes": 2, "gpus_per_node": 4})
    [(trial, sources)] = expand_with_sources(spec)
    assert trial.world_size == 8 and trial.resources.gpus_per_node == 4
    assert sources == {"layer.method": "grid.layer.method", "model": "zip[0].model", "seed": "seeds"}


@pytest.mark.parametrize("fields, fragment", [
    ({"grid": {"layer.method": ["foo"]}}, "grid.layer.method: not an allowed value (got 'foo'"),
    ({"grid": {"recipe.optimizer.lr": [0.1, -1]}}, "grid.recipe.optimizer.lr: must be > 0"),
    ({"zip": [{"layer.sa": [1, 0]}]}, "zip[0].layer.sa: must be >= 1 (got 0"),
    ({"grid": {"recipe.optimizer": [{"nam": "adam"}]}}, "grid.recipe.optimizer.nam: unknown key"),
    ({"grid": {"layer.sigma": [1]}}, "grid.layer.sigma: not a field of the trial"),
    ({"grid": {"seed": [1]}}, "grid.seed: seeds are set by the top-level `seeds` list"),
    ({"grid": {"model": []}}, "grid.model: empty list"),
    ({"grid": {"model": ["resnet20", "resnet20"]}}, "grid.model: repeated value"),
    ({"grid": {"layer.sigma_init": [5, 5.0]}}, "grid.layer.sigma_init: values that are equal once typed"),
    ({"grid": {"dataset.num_workers": [1, 2]}}, "grid.dataset.num_workers: not part of a trial's identity"),
    ({"seeds": [0, 0]}, "seeds: repeated seed"),
    ({"grid": {"layer": [{"method": "coc"}]}, "zip": [{"layer.sa": [1]}]}, "zip[0].layer.sa: varies the same"),
    ({"exclude": [{"layer.methd": "coc"}]}, "exclude[0].layer.methd: not a field"),
    ({"exclude": [{"model": "resnet20"}]}, "exclude: every trial is excluded"),
    ({"zip": [{}]}, "zip[0]: empty group"),
    ({"evaluate": {"source_sweep": "s"}, "grid": {"model": ["resnet20"]}}, "grid: an evaluation sweep"),
])
def test_expansion_errors_name_the_sweep_key(fields, fragment):
    with pytest.raises(ConfigError) as info:
        expand(sweep(**fields))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def _key_in_subprocess(data: dict) -> str:
    code = ("import json, sys; from orchestrator.spec.schema import TrialSpec; "
            "print(TrialSpec.model_validate(json.loads(sys.argv[1])).trial_key)")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(data)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_trial_key_stable_across_processes():
    trial = expand(sweep(grid={"layer.method": ["coc"]}, seeds=[3]))[0]
    assert _key_in_subprocess(trial.model_dump(mode="json")) == trial.trial_key
    assert len(trial.trial_key) == 12 and int(trial.trial_key, 16) >= 0


def test_trial_key_ignores_non_semantic_fields():
    trial = expand(sweep())[0]
    same = [
        trial.model_copy(update={"sweep": "renamed"}),
        trial.model_copy(update={"dataset": trial.dataset.model_copy(update={"root": "/elsewhere", "num_workers": 9})}),
        trial.model_copy(update={"resources": trial.resources.model_copy(
            update={"cpus_per_process": 8, "mem_gb": 64.0, "hours_per_epoch": 0.5})}),
    ]
    assert {t.trial_key for t in same} == {trial.trial_key}


def test_a_knob_added_with_its_default_keeps_every_existing_key():
    """Trials run before a schema gained a knob are found again after it (same key), unless the knob is set."""

    class WithNewKnob(TrialSpec):
        new_knob: float = 0.5

    trial = expand(sweep(grid={"layer.method": ["coc"]}, seeds=[3]))[0]
    grown = WithNewKnob.model_validate(trial.model_dump(mode="json"))
    assert grown.trial_key == trial.trial_key
    assert grown.model_copy(update={"new_knob": 0.7}).trial_key != trial.trial_key
    # a value written out equal to its default is the same trial
    explicit = trial.model_copy(update={"recipe": trial.recipe.model_copy(update={"epochs": trial.recipe.epochs})})
    assert explicit.trial_key == trial.trial_key


def test_trial_key_changes_with_semantic_fields():
    trial = expand(sweep())[0]
    changed = [
        trial.model_copy(update={"seed": 1}),
        trial.model_copy(update={"model": "resnet56"}),
        trial.model_copy(update={"layer": trial.layer.model_copy(update={"method": "gmconv"})}),
        trial.model_copy(update={"layer": trial.layer.model_copy(update={"sigma_init": 4.0})}),
        trial.model_copy(update={"recipe": trial.recipe.model_copy(
            update={"optimizer": trial.recipe.optimizer.model_copy(update={"lr": 0.2})})}),
        trial.model_copy(update={"resources": trial.resources.model_copy(update={"processes_per_node": 2})}),
        trial.model_copy(update={"dataset": trial.dataset.model_copy(update={"backend": "synthetic"})}),
    ]
    keys = {t.trial_key for t in changed}
    assert len(keys) == len(changed) and trial.trial_key not in keys


def test_flat_params_cover_every_knob():
    trial = expand(sweep(resources={"processes_per_node": 2}))[0]
    flat = trial.flat_params()
    required = ["model", "dataset.name", "dataset.backend", "layer.method", "layer.sigma_pattern",
                "layer.sigma_init", "layer.sa", "layer.skp", "layer.sl", "layer.skip", "layer.dilate",
                "layer.orth", "layer.orth_weight", "layer.stnd", "layer.c1x1", "layer.kernel_size",
                "layer.aconv_sigma_init", "recipe.optimizer.name", "recipe.optimizer.lr",
                "recipe.optimizer.momentum", "recipe.optimizer.nesterov", "recipe.optimizer.weight_decay",
                "recipe.schedule.name", "recipe.schedule.milestones", "recipe.schedule.gamma",
                "recipe.schedule.warmup_epochs", "recipe.epochs", "recipe.batch_size", "recipe.amp",
                "recipe.channels_last", "recipe.grad_clip", "recipe.label_smoothing", "seed", "world_size",
                "trial_key"]
    assert not [k for k in required if k not in flat]
    assert all(isinstance(v, str) for v in flat.values())
    assert flat["world_size"] == "2" and flat["layer.aconv_sigma_init"] == "0.1,0.5"
    # every LayerSpec field is a param, so a new knob cannot be forgotten
    assert {f"layer.{name}" for name in LayerSpec.model_fields} <= set(flat)


def test_evaluation_sweep_takes_done_runs_of_the_source(tmp_path):
    source = sweep(name="src", grid={"layer.method": ["stdconv", "gmconv"]}, seeds=[0, 1],
                   storage={"root": str(tmp_path)})
    for i, trial in enumerate(expand(source)):
        tdir = TrialDir.for_trial(tmp_path, "src", trial.trial_key)
        tdir.create()
        tdir.write_spec(trial.model_dump(mode="json"))
        if i != 3:  # trial 3 (gmconv, seed 1) never finished
            tdir.mark_done()
    spec = sweep(name="rot", storage={"root": str(tmp_path)}, resources={"gpus_per_node": 1},
                 evaluate={"source_sweep": "src", "where": {"layer.method": "gmconv"},
                           "transforms": ["rot0", "rot90"]})
    trials = expand(spec)
    assert len(trials) == 1
    [t] = trials
    assert t.sweep == "rot" and t.layer.method == "gmconv" and t.seed == 0
    assert t.transforms == ("rot0", "rot90") and t.resources.gpus_per_node == 1
    assert TrialDir(t.evaluate_source).is_done
    assert t.trial_key not in {s.trial_key for s in expand(source)}
    assert expand(spec.model_copy(update={"evaluate": spec.evaluate.model_copy(update={"where": {}})})).__len__() == 3


# -- checks against layers / pipelines / executors (the real modules) --------------------------------------
def test_check_sweep_accepts_a_valid_sweep():
    check_sweep(sweep(grid={"model": ["resnet20", "aconv_simple"],
                            "layer.method": ["stdconv", "s-gmconv", "gmconv", "coc", "aconv"]}))


@pytest.mark.parametrize("fields, fragment", [
    ({"grid": {"model": ["resnet20", "resnet21"]}}, "grid.model: unknown name (got 'resnet21'"),
    ({"base": {"dataset": {"name": "cifar11"}}}, "base.dataset.name: unknown name (got 'cifar11'"),
    ({"executor": {"kind": "kubernetes"}}, "executor.kind: unknown executor (got 'kubernetes'; allowed: "),
    ({"base": {"dataset": {"name": "cifar10", "root": "/nonexistent/cifar10"}}}, "base.dataset.root: cifar10: "),
    ({"base": {"layer": {"method": "coc", "skp": 0, "dilate": True}}}, "base.layer.dilate: invalid layer settings"),
    ({"grid": {"layer.skp": [2, 3]}, "base": {"layer": {"method": "coc"}}}, "grid.layer.skp: invalid layer"),
    ({"base": {"model": "resnet50", "layer": {"kernel_size": 5}}}, "base.layer.kernel_size: invalid layer settings"),
    # the bad value is in base: blamed there, not on the grid key that happens to vary
    ({"grid": {"layer.method": ["stdconv", "coc"]}, "base": {"layer": {"kernel_size": 4}}},
     "base.layer.kernel_size: invalid layer settings"),
    ({"grid": {"layer.sa": [1, 2]}, "base": {"layer": {"method": "coc", "skp": 3}}}, "base.layer.skp: invalid layer"),
    # a combination: the knob that varies makes the trial fail
    ({"grid": {"layer.skp": [0, 2]}, "base": {"layer": {"method": "coc", "dilate": True}}},
     "grid.layer.skp: invalid layer settings"),
])
def test_check_sweep_errors(fields, fragment):
    with pytest.raises(ConfigError) as info:
        check_sweep(sweep(**fields))
    assert fragment in str(info.value)


def test_synthetic_backend_needs_no_root():
    check_sweep(sweep(base={"dataset": {"name": "cifar10", "backend": "synthetic"}}))


def test_trialspec_is_frozen():
    trial = expand(sweep())[0]
    with pytest.raises(Exception):
        trial.seed = 3  # type: ignore[misc]
    assert isinstance(trial, TrialSpec)


def test_schema_literals_match_layers_and_pipelines():
    import typing

    import layers
    import pipelines

    from orchestrator.spec.schema import EvalTransform

    assert typing.get_args(LayerSpec.model_fields["method"].annotation) == tuple(layers.METHODS)
    assert typing.get_args(LayerSpec.model_fields["sigma_pattern"].annotation) == tuple(layers.SIGMA_PATTERNS)
    assert typing.get_args(EvalTransform) == tuple(pipelines.EVAL_TRANSFORMS)
    assert SweepSpec.model_fields["base"].default.dataset.name in pipelines.DATASETS


def test_same_mistake_in_several_models_is_reported_once():
    with pytest.raises(ConfigError) as info:
        check_sweep(sweep(grid={"model": ["resnet20", "resnet56"], "layer.skp": [2, 3]},
                          base={"layer": {"method": "coc"}}))
    assert len(info.value.problems) == 1 and info.value.key == "grid.layer.skp"


def test_knobs_a_method_ignores_are_errors_unless_the_sweep_allows_them(caplog):
    grid = {"layer.method": ["stdconv", "gmconv"], "layer.sigma_init": [1.0, 5.0]}
    with pytest.raises(ConfigError) as info:
        expand(sweep(grid=grid))
    assert str(info.value).startswith("grid.layer.sigma_init: trials ") and "method stdconv ignores sigma_init" in \
        str(info.value) and "allowed: knobs of stdconv: stnd; gmconv: sigma_init, sigma_pattern, stnd" in str(info.value)
    with caplog.at_level("WARNING", logger="orchestrator.spec.expand"):
        assert len(expand(sweep(grid=grid, allow_ignored_knobs=True))) == 4
    assert "repeat one computation" in caplog.text and "allowed by allow_ignored_knobs" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="orchestrator.spec.expand"):  # a zip pairs each method with its knobs
        expand(sweep(zip=[{"layer.method": ["stdconv", "gmconv", "gmconv"], "layer.sigma_init": [5.0, 1.0, 5.0]}]))
    assert "repeat" not in caplog.text
    with pytest.raises(ConfigError, match=r"^base.layer.sa: no trial's method reads this knob \(methods here: "
                       r"stdconv, gmconv\)"):
        expand(sweep(base={"model": "resnet20", "layer": {"sa": 3}}, grid={"layer.method": ["stdconv", "gmconv"]}))


def test_error_inside_a_union_member_is_precise():
    with pytest.raises(ConfigError) as info:
        expand(sweep(grid={"layer.aconv_sigma_init": [[0.1, -0.5]]}))
    assert str(info.value) == "grid.layer.aconv_sigma_init[1]: must be > 0.0 (got -0.5; allowed: > 0.0)"


def test_aconv_padding_and_shortcut_knobs_keep_default_keys():
    """padding/shortcut at their defaults stay out of build_knobs and of the key; set, they reach build_model."""
    import typing

    from layers.models.aconv_nets import PADDINGS, SHORTCUTS

    assert typing.get_args(LayerSpec.model_fields["padding"].annotation) == PADDINGS
    assert typing.get_args(LayerSpec.model_fields["shortcut"].annotation) == SHORTCUTS
    trial = expand(sweep(base={"model": "aconv_resnet", "layer": {"method": "aconv"}}))[0]
    assert "padding" not in trial.layer.build_knobs() and "shortcut" not in trial.layer.build_knobs()
    explicit = trial.model_copy(update={"layer": trial.layer.model_copy(
        update={"padding": "symmetric", "shortcut": "projection"})})
    assert explicit.trial_key == trial.trial_key
    released = trial.model_copy(update={"layer": trial.layer.model_copy(
        update={"padding": "tf_same", "shortcut": "released"})})
    assert released.layer.build_knobs()["padding"] == "tf_same"
    assert released.layer.build_knobs()["shortcut"] == "released"
    assert released.trial_key != trial.trial_key
    check_sweep(sweep(base={"model": "aconv_resnet", "layer": {"method": "aconv", "padding": "tf_same",
                                                               "shortcut": "released"}}))
    with pytest.raises(ConfigError, match="padding"):
        check_sweep(sweep(base={"layer": {"padding": "tf_same"}}))  # resnet20 has no padding knob


@pytest.mark.parametrize("uri", ["sqlite:///mlruns.db", "sqlite:///:memory:", "file:///tmp/mlruns", "http://mlflow:5000",
                                 "https://mlflow.example.org", "postgresql+psycopg2://u@db/mlflow", "mysql://db/m",
                                 "mssql+pyodbc://db/m", "databricks", "databricks://profile"])
def test_tracking_uris_accepted(uri):
    check_sweep(sweep(tracking={"uri": uri}), external=False)


@pytest.mark.parametrize("uri, fragment", [
    ("mlruns.db", "not a tracking URI"), ("file+x:///tmp", "not a tracking URI"), ("s3://bucket", "not a tracking URI"),
    ("http://", "an http\\(s\\) URI needs a host"),
])
def test_tracking_uris_refused(uri, fragment):
    with pytest.raises(ConfigError, match=f"^tracking.uri: {fragment}"):
        check_sweep(sweep(tracking={"uri": uri}), external=False)


def test_tracking_store_folder_is_checked_only_with_external(tmp_path):
    spec = sweep(tracking={"uri": f"sqlite:///{tmp_path}/missing/mlruns.db"})
    check_sweep(spec, external=False)  # `convsweep table --runs` reads no store
    with pytest.raises(ConfigError, match=f"the folder that would hold the store does not exist: {tmp_path}/missing"):
        check_sweep(spec)
    check_sweep(sweep(tracking={"uri": f"file://{tmp_path}/mlruns"}))  # the store itself is created by MLflow


def test_exclude_entry_overlapping_an_earlier_one_is_not_unmatched():
    spec = sweep(grid={"layer.method": ["stdconv", "gmconv", "coc"]},
                 exclude=[{"layer.method": "coc"}, {"layer.method": "coc", "seed": 0}])
    assert [t.layer.method for t in expand(spec)] == ["stdconv", "gmconv"]
