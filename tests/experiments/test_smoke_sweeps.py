"""End to end: every paper sweep runs at `--profile smoke` and its table prints with every cell filled.

Each sweep goes through the real driver (`convsweep sweep`: Ray Tune, the local submitit executor, the
trainer, MLflow in SQLite), then `convsweep table` reads it back. The rotation sweep (GMConv Table 4)
evaluates the checkpoints the smoke GMConv Table 2 trained, so that one runs first. About 45 tiny trials
(one epoch of two steps on `digits`) in all.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.expand import expand
from orchestrator.sweep import load_recorded
from orchestrator.sweepfile import load_sweep
from orchestrator.tables import render, sweep_table

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
STEMS = [  # gmconv_table2_imagenet before gmconv_table4_rotation, which evaluates its runs
    "gmconv_table1_cifar", "gmconv_table2_imagenet", "gmconv_table4_rotation", "gmconv_table3_sigma_pattern",
    "gmconv_fig6_sigma_init", "coc_table1_imagenet", "coc_fig7_tinyimagenet", "aconv_table2_simple",
    "aconv_table3_resnet",
]
SOURCE = {"gmconv_table4_rotation": "gmconv_table2_imagenet"}


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    return root / "runs", f"sqlite:///{root / 'mlruns.db'}"


def _sweep(stem: str, root: Path, uri: str) -> int:
    return main(["sweep", str(EXPERIMENTS / f"{stem}.yaml"), "--profile", "smoke", "--no-progress",
                 f"--set=storage.root={root}", f"--set=tracking.uri={uri}"])


def test_every_experiment_is_smoked():
    assert set(STEMS) == {p.stem for p in EXPERIMENTS.glob("*.yaml")} - {"quickstart"}


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_smoke_sweep_fills_its_table(stem, place, capsys, monkeypatch):
    root, uri = place
    monkeypatch.delenv("CONVSWEEP_FAULT", raising=False)
    if stem in SOURCE:
        assert _sweep(SOURCE[stem], root, uri) == 0  # already finished trials are skipped
    assert _sweep(stem, root, uri) == 0
    name = load_sweep(EXPERIMENTS / f"{stem}.yaml", "smoke", check=False).name
    sweep, source = load_recorded(name, root)
    table = sweep_table(sweep, sweep_dir=Path(source).parent)
    n_trials = len(expand(sweep))
    assert n_trials >= 2 and table.runs_used == n_trials and table.runs_skipped == 0
    assert table.missing == 0
    for cell in table.cells.values():
        assert cell.summary.n == (cell.expected_n or 1) and not math.isnan(cell.summary.mean)
        if cell.summary.n >= 2:
            assert not math.isnan(cell.summary.std)
    for row in table.row_keys:
        for extra in sweep.table.extra_metrics:
            assert (row, extra.header) in table.extras
    capsys.readouterr()
    assert main(["table", name, "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "missing (" not in out and f"{n_trials} runs; 0 of {len(table.cells)} cells missing" in out
    assert render(table, "md").strip() in out.strip()
