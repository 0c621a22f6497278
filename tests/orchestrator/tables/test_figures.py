"""`figure:` sections are checked against the table they draw: one line naming the file, the key and the
allowed values, exit code 2, nothing drawn (the figures of real runs are tested on the smoke sweeps in
tests/experiments/test_smoke_sweeps.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main

QUICKSTART = str(Path(__file__).resolve().parents[3] / "experiments" / "quickstart.yaml")


@pytest.mark.parametrize("override, key, allowed", [
    ("figure.x=[layer.sigma]", "figure.x[0]", "allowed: layer.method"),
    ("figure.metric=top5", "figure.metric", "allowed: top1"),
    ("figure.ticks=[{when: {model: resnet20}, label: r}]", "figure.ticks[0].when", "allowed: layer.method"),
    ("figure.kind=pie", "figure.kind", "allowed: line, bar, heatmap"),
])
def test_bad_figure_key_is_one_line_exit_2_and_draws_nothing(override: str, key: str, allowed: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["figure", QUICKSTART, f"--set={override}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "quickstart.yaml" in err and key in err and allowed in err, err
    assert list(tmp_path.iterdir()) == []


def test_validate_checks_the_figure_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", QUICKSTART, "--profile", "smoke", "--set=figure.panels=[dataset]"]) == 2
    err = capsys.readouterr().err
    assert "quickstart.yaml" in err and "figure.panels[0]" in err and "'dataset'" in err, err
