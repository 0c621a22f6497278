"""End to end: every paper sweep runs at `--profile smoke` and its table prints with every cell filled.

Each sweep goes through the real driver (`convsweep sweep`: Ray Tune, the local submitit executor, the
trainer, MLflow in SQLite), then `convsweep table` reads it back. The rotation sweep (GMConv Table 4)
evaluates the checkpoints the smoke GMConv Table 2 trained, so that one runs first. About 45 tiny trials
(one epoch of two steps on `digits`) in all.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.spec.expand import expand
from orchestrator.run.driver import load_recorded
from orchestrator.spec.load import load_sweep
from orchestrator.tables.build import sweep_table
from orchestrator.tables.render import render

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
STEMS = [  # gmconv_table2_imagenet before gmconv_table4_rotation, which evaluates its runs
    "gmconv_table1_cifar", "gmconv_table2_imagenet", "gmconv_table4_rotation", "gmconv_table3_sigma_pattern",
    "gmconv_fig6_sigma_init", "coc_table1_imagenet", "coc_fig7_tinyimagenet", "aconv_table2_simple",
    "aconv_table3_resnet",
]
SOURCE = {"gmconv_table4_rotation": "gmconv_table2_imagenet"}


@pytest.fixture(scope="module")
def place(tmp_path_factory, ray_once):
    root = tmp_path_factory.mktemp("smoke")
    return root / "runs", f"sqlite:///{root / 'mlruns.db'}"


@pytest.fixture(scope="module")
def ray_once():
    """One Ray cluster for the module's dozen sweeps: each would otherwise start and stop its own (seconds
    each); the driver uses a running one and leaves it running."""
    import ray

    from orchestrator.run.tune import init_ray

    started = init_ray()
    yield
    if started:
        ray.shutdown()


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


# -- the pictures of the smoke runs: figures and the report (the sweeps above ran them; running a sweep again
# only skips its finished trials, so these also stand alone)
def _by_cell(uri: str, sweep, params: list[str]) -> dict[tuple[str, ...], list[float]]:
    """best_val_top1 of the sweep's FINISHED runs grouped by ``params``, straight from MLflow's API (not
    through the table code the figures use)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(sweep.experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`convsweep.sweep` = '{sweep.name}' "
                              "and attributes.status = 'FINISHED'")
    grouped: dict[tuple[str, ...], list[float]] = {}
    for run in runs:
        grouped.setdefault(tuple(run.data.params[p] for p in params), []).append(run.data.metrics["best_val_top1"])
    return grouped


def _figure_files(stem: str, root: Path, uri: str, out: Path, capsys):
    from orchestrator.tables.figures import figure_data
    from orchestrator.tables.build import sweep_table

    assert _sweep(stem, root, uri) == 0
    name = load_sweep(EXPERIMENTS / f"{stem}.yaml", "smoke", check=False).name
    sweep, source = load_recorded(name, root)
    capsys.readouterr()
    assert main(["figure", name, "--root", str(root), "--out", str(out)]) == 0
    assert str(out / f"{name}.png") in capsys.readouterr().out
    magic = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
    for fmt, head in magic.items():
        assert (out / f"{name}.{fmt}").read_bytes().startswith(head), fmt
    return sweep, figure_data(sweep_table(sweep, sweep_dir=Path(source).parent), sweep.figure)


@pytest.mark.slow
def test_gmconv_fig6_figure_is_the_runs_values(place, tmp_path, capsys):
    from statistics import mean, stdev

    from orchestrator.tables.figureplots import render_figure

    root, uri = place
    sweep, data = _figure_files("gmconv_fig6_sigma_init", root, uri, tmp_path, capsys)
    cells = _by_cell(uri, sweep, ["layer.method", "layer.sigma_init"])
    (panel,) = data.panels  # smoke: ResNet-20 on digits only
    assert panel.title == "digits, ResNet-20"
    base = cells[("stdconv", "5.0")]
    assert panel.band is not None and panel.band.label == "StdConv (None)"
    assert (panel.band.y, panel.band.err, panel.band.n) == (pytest.approx(mean(base)), pytest.approx(stdev(base)), 2)
    (series,) = panel.series
    assert series.label == "S-GMConv" and series.x == [1.0, 10.0]
    for x, y, err, n in zip(series.x, series.y, series.err, series.n):
        values = cells[("s-gmconv", str(x))]
        assert (y, err, n) == (pytest.approx(mean(values)), pytest.approx(stdev(values)), 2)
    fig = render_figure(data)  # what matplotlib was handed: the same arrays
    ax = fig.axes[0]
    drawn = [(list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines]
    assert ([1.0, 10.0], pytest.approx(series.y)) in drawn  # the means (caps are lines too, at y ± err)
    assert any(ys == [pytest.approx(panel.band.y)] * 2 for _, ys in drawn)  # the dashed "None" line


@pytest.mark.slow
def test_small_sigma_s_gmconv_concentrates_the_erf_of_the_trained_smoke_models(place):
    """Measured on the smoke sweep's trained ResNet-20s (as MLflow recorded them), not assumed: S-GMConv with
    initial sigma 1 holds 90 % of the ERF's mass in a smaller disc than StdConv, seed by seed."""
    from mlflow.tracking import MlflowClient

    root, uri = place
    assert _sweep("gmconv_fig6_sigma_init", root, uri) == 0
    sweep = load_sweep(EXPERIMENTS / "gmconv_fig6_sigma_init.yaml", "smoke", check=False)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(sweep.experiment)
    r90 = {(r.data.params["layer.method"], r.data.params["layer.sigma_init"], r.data.params["seed"]):
           r.data.metrics["erf_r90"] for r in client.search_runs([exp.experiment_id],
                                                                 f"tags.`convsweep.sweep` = '{sweep.name}'")}
    for seed in ("0", "1"):
        assert r90[("s-gmconv", "1.0", seed)] < r90[("stdconv", "5.0", seed)], r90


@pytest.mark.slow
def test_coc_fig7_figure_is_the_runs_values(place, tmp_path, capsys):
    from orchestrator.tables.figureplots import render_figure

    root, uri = place
    sweep, data = _figure_files("coc_fig7_tinyimagenet", root, uri, tmp_path, capsys)
    params = ["layer.method", "layer.sl", "layer.skip", "layer.dilate", "layer.orth", "layer.stnd", "layer.c1x1"]
    cells = _by_cell(uri, sweep, params)
    (panel,) = data.panels
    assert panel.tick_labels == ["none", "221", "222", "no_skip", "no_dilate", "orth", "stnd", "c1x1"]
    (series,) = panel.series
    smoke = sweep.zip[0]
    expected = [cells[tuple(str(smoke[p][i]) for p in params)][0] for i in range(len(smoke["layer.method"]))]
    assert series.y == pytest.approx(expected) and series.n == [1] * len(expected)
    fig = render_figure(data)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert heights == pytest.approx(series.y)
    heatmap = render_figure(dataclasses.replace(data, kind="heatmap"))  # the same data as a heatmap
    assert list(heatmap.axes[0].images[0].get_array()[0]) == pytest.approx(series.y)
    assert [t.get_text() for t in heatmap.axes[0].get_xticklabels()] == panel.tick_labels


@pytest.mark.slow
def test_report_opens_in_chromium_with_its_tables_and_images(place, tmp_path, capsys, chromium):
    import base64
    import io
    import re
    import subprocess

    import numpy as np
    from matplotlib.image import imread
    from mlflow.tracking import MlflowClient

    from orchestrator.tables.build import sweep_table

    root, uri = place
    stem = "gmconv_fig6_sigma_init"
    assert _sweep(stem, root, uri) == 0
    name = load_sweep(EXPERIMENTS / f"{stem}.yaml", "smoke", check=False).name
    sweep, source = load_recorded(name, root)
    capsys.readouterr()
    assert main(["report", name, "--root", str(root)]) == 0
    path = root / name / "report.html"
    assert str(path.resolve()) in capsys.readouterr().out
    shot = tmp_path / "report.png"
    browser = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,2000",
                              f"--screenshot={shot}", "--dump-dom", path.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    dom = browser.stdout
    assert browser.returncode == 0 and "</html>" in dom, browser.stderr[-500:]
    assert shot.read_bytes()[:4] == b"\x89PNG" and imread(shot).shape[:2] == (2000, 1400)
    trials = expand(sweep)
    # the results table and the trials table
    assert len(re.findall(r"<table\b", dom)) == 2 and "StdConv (None)" in dom
    # every picture each run holds among its MLflow artifacts, plus the figure, inlined as PNG data
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(sweep.experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`convsweep.sweep` = '{name}'")
    pictures = sum(1 for run in runs for a in client.list_artifacts(run.info.run_id, "analysis")
                   if a.path.endswith(".png"))
    assert pictures >= 2 * len(trials) + 2 * 4  # ERFs of all; masks and sigma traces of the 4 S-GMConv runs
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', dom)
    assert len(uris) == 1 + pictures
    for data in uris[:3]:
        assert np.asarray(imread(io.BytesIO(base64.b64decode(data)), format="png")).size > 0
    for run in runs:  # a link to each run in the MLflow UI
        assert f"#/experiments/{exp.experiment_id}/runs/{run.info.run_id}" in dom
    # logged to MLflow as its own run, which the sweep's table does not count
    (report_run,) = client.search_runs([exp.experiment_id], f"tags.`convsweep.report_of` = '{name}'")
    assert [a.path for a in client.list_artifacts(report_run.info.run_id)] == ["report.html"]
    table = sweep_table(sweep, sweep_dir=Path(source).parent)
    assert table.runs_used == len(trials) and table.runs_skipped == 0
