"""The committed results (experiments/results/) are what their exports say: each rendered table is re-rendered
from its committed export with `convsweep table FILE --profile P --runs EXPORT` and must be identical, so no
number in a committed table can have been edited by hand. No MLflow store and no data are needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.tables.export import read_export
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_sweep

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
RESULTS = EXPERIMENTS / "results"
# <sweep file stem>.<profile>.runs.jsonl beside <sweep file stem>.<profile>.table.md
EXPORTS = sorted(RESULTS.glob("*.runs.jsonl"))


def test_there_are_committed_results():
    assert EXPORTS, f"no *.runs.jsonl under {RESULTS}"


def _source(export: Path) -> tuple[Path, str, Path]:
    stem, profile = export.name[: -len(".runs.jsonl")].rsplit(".", 1)
    return EXPERIMENTS / f"{stem}.yaml", profile, export.with_name(f"{stem}.{profile}.table.md")


@pytest.mark.parametrize("export", EXPORTS, ids=[e.name for e in EXPORTS])
def test_committed_table_is_rerendered_identically(export, capsys):
    sweep_file, profile, table = _source(export)
    assert main(["table", str(sweep_file), "--profile", profile, "--runs", str(export), "--format", "md"]) == 0
    assert capsys.readouterr().out == table.read_text(encoding="utf-8")


@pytest.mark.parametrize("export", EXPORTS, ids=[e.name for e in EXPORTS])
def test_export_holds_every_planned_trial_finished_with_its_epochs(export):
    sweep_file, profile, _ = _source(export)
    spec = load_sweep(sweep_file, profile, check=False)
    runs = read_export(export)
    planned = expand(spec)
    assert len(runs) == len(planned) and all(r.status == "FINISHED" and r.sweep == spec.name for r in runs)
    # the layout of every planned trial is in the export (keys may differ where a later default changed)
    layout = sorted((t.layer.method, t.layer.kernel_size, t.seed) for t in planned)
    assert sorted((r.params["layer.method"], int(r.params["layer.kernel_size"]), int(r.seed)) for r in runs) == layout
    for r in runs:
        assert re.fullmatch(r"[0-9a-f]{40}", r.git_commit), r.git_commit
        assert [s for s, _ in r.history["val_top1"]] == list(range(1, spec.base.recipe.epochs + 1))
        assert r.metrics["best_val_top1"] == max(v for _, v in r.history["val_top1"])
