"""`plan`: the rows (key, varying knobs, seed), the GPU-hour estimate and the rich table."""

from __future__ import annotations

import pytest
from rich.console import Console

from orchestrator.config import SweepSpec
from orchestrator.expand import expand
from orchestrator.plan import Plan, plan, render_plan


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
    assert "GPU-hours: unknown (set resources.hours_per_epoch" in p.summary()


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


def test_plan_of_given_trials():
    spec = sweep()
    trials = expand(spec)[:3]
    assert plan(spec, trials).n_trials == 3


def test_evaluation_sweep_says_its_source_has_not_run_yet(tmp_path, capsys):
    from orchestrator.cli import main
    from orchestrator.trialdir import TrialDir

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
