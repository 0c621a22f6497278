"""`plan`: the rows (key, varying knobs, seed), the GPU-hour estimate and the rich table."""

from __future__ import annotations

import pytest
from rich.console import Console

from orchestrator.spec.schema import SweepSpec
from orchestrator.spec.expand import expand
from orchestrator.run.plan import Plan, plan, render_plan
from orchestrator.spec.load import load_sweep


def sweep(**fields) -> SweepSpec:
    data = {"name": "p", "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 3}},
            "grid": {"model": ["resnet20", "resnet56"], "layer.method": ["stdconv", "gmconv"]}, "seeds": [0, 1]}
    data.update(fields)
    return SweepSpec.model_validate(data)


def test_rows_follow_expansion_with_varying_knobs_only():
    spec = sweep()
    p = plan(spec)
    trials = expand(spec)
    assert p.n_trials == 8
    assert [r.trial_key for r in p.rows] == [t.trial_key for t in trials]
    assert p.varying == ("model", "layer.method")  # seed has its own column; nothing else differs
    assert p.rows[2].knobs == {"model": "resnet20", "layer.method": "gmconv"} and p.rows[2].seed == 0
    assert all(r.epochs == 3 and r.world_size == 1 for r in p.rows)


def test_zip_knobs_and_sub_sections_show_as_leaves():
    p = plan(sweep(grid={}, zip=[{"recipe.optimizer": [{"lr": 0.1}, {"lr": 0.2, "name": "adam"}]}], seeds=[0]))
    assert p.varying == ("recipe.optimizer.name", "recipe.optimizer.lr")


def test_gpu_hours_unknown_without_hours_per_epoch():
    p = plan(sweep())
    assert p.gpu_hours is None and all(r.gpu_hours is None for r in p.rows)
    assert "GPU-hours: unknown (set resources.gpu_type, run `convsweep calibrate FILE`, or set" in p.summary()


def test_gpu_hours_are_epochs_times_hours_times_gpus():
    p = plan(sweep(resources={"nodes": 2, "gpus_per_node": 4, "hours_per_epoch": 0.5},
                   tune={"max_concurrent_trials": 4}))
    assert p.rows[0].gpus == 8 and p.rows[0].world_size == 8
    assert p.rows[0].gpu_hours == pytest.approx(3 * 0.5 * 8)
    assert p.gpu_hours == pytest.approx(8 * 3 * 0.5 * 8)
    assert p.trial_hours == pytest.approx(8 * 3 * 0.5)
    assert "GPU-hours: 96.0" in p.summary() and "3.0 h wall-clock with 4 concurrent" in p.summary()


def test_cpu_only_sweep_costs_no_gpu_hours():
    p = plan(sweep(resources={"processes_per_node": 2, "hours_per_epoch": 0.1}))
    assert p.gpu_hours == 0 and p.rows[0].world_size == 2
    assert "GPU-hours: 0 (CPU-only trials" in p.summary()


def test_render_plan_table():
    spec = sweep()
    table = render_plan(spec)
    headers = [c.header for c in table.columns]
    assert headers == ["#", "trial_key", "model", "layer.method", "seed", "world", "epochs", "GPU-h"]
    assert table.row_count == 8
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    assert expand(spec)[0].trial_key in text and "8 trials" in text and "unknown" in text
    assert render_plan(plan(spec)).row_count == 8  # a precomputed Plan renders the same
    assert isinstance(plan(spec), Plan)


def test_a_long_plan_is_plain_aligned_text_with_every_trial():
    """Past RICH_TABLE_MAX_ROWS rows the plan is laid out without rich's per-cell measuring (10,000 rows took
    ~25 s to print): the same columns, one line per trial, the summary last."""
    from orchestrator.run.plan import RICH_TABLE_MAX_ROWS

    spec = sweep(seeds=list(range(RICH_TABLE_MAX_ROWS // 4 + 1)))
    p = plan(spec)
    assert p.n_trials > RICH_TABLE_MAX_ROWS
    console = Console(record=True, width=300)
    console.print(render_plan(p))
    lines = console.export_text().splitlines()
    assert lines[0] == f"p: {p.n_trials} trials" and lines[-1] == p.summary()
    assert lines[1].split() == ["#", "trial_key", "model", "layer.method", "seed", "world", "epochs", "GPU-h"]
    body = lines[3:-1]
    assert [line.split()[:2] for line in body] == [[str(i), r.trial_key] for i, r in enumerate(p.rows)]
    assert body[-1].split()[2:] == ["resnet56", "gmconv", str(p.rows[-1].seed), "1", "3", "?"]
    assert len({line.index(r.trial_key) for line, r in zip(body, p.rows)}) == 1  # the columns line up


def test_plan_of_given_trials():
    spec = sweep()
    trials = expand(spec)[:3]
    assert plan(spec, trials).n_trials == 3


def test_evaluation_sweep_says_its_source_has_not_run_yet(tmp_path, capsys):
    from orchestrator.cli import main
    from orchestrator.dirs.trialdir import TrialDir

    (tmp_path / "rot.yaml").write_text(
        f"name: rot\nstorage: {{root: {tmp_path}}}\nresources: {{gpus_per_node: 1}}\n"
        "evaluate: {source_sweep: table2, where: {model: alexnet}, checkpoint: best}\n")
    assert main(["plan", str(tmp_path / "rot.yaml")]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps the caption
    assert "the source sweep 'table2' has no finished runs" in out and "trials appear once it has" in out
    assert "CPU-only" not in out and "GPU-hours" not in out

    # a finished source run that evaluate.where leaves out: the plan names the filter instead
    spec = SweepSpec.model_validate({"name": "rot", "storage": {"root": str(tmp_path)},
                                     "evaluate": {"source_sweep": "table2", "where": {"model": "alexnet"}}})
    source = SweepSpec.model_validate({"name": "table2", "storage": {"root": str(tmp_path)}})
    [trial] = expand(source)
    done = TrialDir.for_trial(tmp_path, "table2", trial.trial_key)
    done.create()
    done.write_spec(trial.model_dump(mode="json"))
    done.mark_done()
    assert plan(spec).summary().startswith("0 trials: none of the 1 finished runs of the source sweep 'table2'")


def test_flop_estimate_of_resnet50_on_a100_is_within_2x_of_nvidias_throughput(tmp_path):
    """ResNet-50 at 224, A100 with AMP, 90 epochs of ImageNet: NVIDIA's published 2,470 img/s per A100 gives
    90 x 1,281,167 / 2,470 / 3,600 = 13.0 A100-hours; the FLOP model must land within a factor of 2."""
    spec = SweepSpec.model_validate({
        "name": "r50", "storage": {"root": str(tmp_path)}, "base": {"model": "resnet50", "dataset": {"name": "imagenet"},
                                "recipe": {"epochs": 90, "amp": True}},
        "resources": {"nodes": 1, "gpus_per_node": 8, "gpu_type": "A100"}})
    p = plan(spec)
    published = 90 * 1_281_167 / 2_470 / 3_600
    assert published / 2 <= p.gpu_hours <= published * 2, p.gpu_hours
    assert p.rows[0].trial_hours == pytest.approx(p.gpu_hours / 8)
    assert "estimated from FLOPs (A100 AMP, 20% of peak)" in p.summary()
    fp32 = plan(spec.model_copy(update={"base": spec.base.model_copy(update={
        "recipe": spec.base.recipe.model_copy(update={"amp": False})})}))
    assert fp32.gpu_hours == pytest.approx(2 * p.gpu_hours)  # TF32 peak is half the fp16 one on an A100


def test_calibration_on_this_node_is_preferred(tmp_path, capsys):
    """`convsweep calibrate FILE` times real steps of each distinct model here (CPU) and `plan` then prices
    the sweep from seconds per image: 1,437 digits training images + the validation pass per epoch."""
    import json

    import yaml

    from orchestrator.cli import main
    from orchestrator.run.cost import CALIBRATION_FILE, calibration_key

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "cal", "storage": {"root": str(tmp_path / "runs")},
        "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 2, "batch_size": 8}},
        "grid": {"layer.method": ["stdconv", "s-gmconv"]}, "seeds": [0, 1],
        "resources": {"gpu_type": "V100", "gpus_per_node": 1}}))
    assert main(["calibrate", str(path), "--steps", "1"]) == 0
    assert "2 calibrated models" in capsys.readouterr().out
    data = json.loads((tmp_path / "runs" / CALIBRATION_FILE).read_text())
    spec = load_sweep(path)
    trials = expand(spec)
    per_image = data[calibration_key(trials[0])]["seconds_per_image"]
    assert per_image > 0 and data[calibration_key(trials[0])]["device"] == "cpu"
    p = plan(spec, trials)
    assert p.rows[0].gpu_hours == pytest.approx(2 * (1_437 + 360 / 3) * per_image / 3600)
    assert "estimated from calibration (cpu)" in p.summary()


def test_gpu_type_does_not_change_a_trials_key():
    """gpu_type only prices the plan: trials recorded before it was set keep their keys."""
    keys = [t.trial_key for t in expand(sweep(resources={"gpus_per_node": 1}))]
    assert [t.trial_key for t in expand(sweep(resources={"gpus_per_node": 1, "gpu_type": "H100"}))] == keys


def test_the_plan_hashes_each_trial_key_once(monkeypatch):
    """A trial's key (a sha256 of its semantic fields) is computed once per trial, however many steps ask for
    it: planning 10,000 trials hashed each four times (expansion, duplicate check, flat_params, the row)."""
    import orchestrator.spec.expand
    import orchestrator.spec.schema as schema

    calls = []
    real = schema.hashlib.sha256
    monkeypatch.setattr(schema.hashlib, "sha256", lambda data=b"": calls.append(1) or real(data))
    monkeypatch.setattr(orchestrator.spec.expand, "_EXPANDED", {})
    spec = sweep(grid={"layer.method": ["stdconv", "gmconv"]}, seeds=[0, 1, 2])
    p = plan(spec)
    assert p.n_trials == 6 and len({r.trial_key for r in p.rows}) == 6
    assert len(calls) == 6
    trial = expand(spec)[0]
    assert trial.model_copy(update={"seed": 9}).trial_key != trial.trial_key  # a copy's key is its own


def test_flop_counts_are_kept_under_the_storage_root_for_the_next_plan(tmp_path):
    """The first plan with a gpu_type builds each distinct model that layers.declared_macs does not know (CoC)
    to count its FLOPs (torch imported: seconds); it keeps the counts under the storage root, keyed by the
    code version, so the next plan of the sweep imports no torch and prices it the same."""
    import json
    import subprocess
    import sys

    import yaml

    from orchestrator.run.cost import FLOPS_FILE, code_version

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "flops", "storage": {"root": str(tmp_path / "runs")},
        "base": {"model": "resnet20", "dataset": {"name": "cifar10", "backend": "synthetic"}},
        "grid": {"layer.method": ["stdconv", "coc"]}, "seeds": [0, 1],  # CoC's count needs a built model
        "resources": {"gpu_type": "A100", "gpus_per_node": 1}}))
    first = plan(load_sweep(path))
    saved = json.loads((tmp_path / "runs" / FLOPS_FILE).read_text())
    assert saved["code"] == code_version() and len(saved["macs"]) == 2
    code = ("import sys; from orchestrator.run.plan import plan; from orchestrator.spec.load import load_sweep; "
            f"p = plan(load_sweep({str(path)!r})); print(p.gpu_hours); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [repr(first.gpu_hours), "False"]
    saved["code"] = "another version"  # counts of other code are not trusted: counted again
    (tmp_path / "runs" / FLOPS_FILE).write_text(json.dumps(saved))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [repr(first.gpu_hours), "True"]
