"""Every paper sweep in experiments/ validates, plans the paper's trial count and lines up with its reference.

Paper counts, derived from the papers (not from the files):
- GMConv Table 1: ResNet-20/56/18 x StdConv/S-GMConv/GMConv x CIFAR-10/100 x 3 runs = 54 (Sec. 4.2).
- GMConv Table 2: MobileNetV2, ResNet-18/50, AlexNet x 3 methods x 1 run = 12.
- GMConv Table 3: ResNet-18/50, AlexNet x (StdConv + GMConv with 3 sigma patterns) = 12.
- GMConv Table 4: the 3 trained AlexNets of Table 2, each evaluated under 6 transforms = 3 trials.
- GMConv Fig. 6: ResNet-20/56/18 x (StdConv + S-GMConv at sigma 1/5/10) x CIFAR-10/100 x 3 runs = 72.
- CoC Table 1: its 20 rows, one run each = 20.
- CoC Fig. 7: ResNet-18 and ShuffleNetV2 x 12 settings (our reading of the plot) = 24.
- ACONV Tables 2-3: 5 datasets (MNIST, MNIST-cluttered, CIFAR-10, Fashion, LFW-Faces) x kernel 3/5/7/9 x
  conv/aconv x 5 repeats = 200 each.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.spec.expand import expand
from orchestrator.run.preflight import load_sweep  # the file checks and the machine checks: all a sweep needs
from orchestrator.tables.build import expected_layout
from orchestrator.tables.pivot import build_table
from orchestrator.tables.render import render
from orchestrator.dirs.trialdir import TrialDir

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
PAPER_COUNTS = {
    "gmconv_table1_cifar": 3 * 3 * 2 * 3,
    "gmconv_table2_imagenet": 4 * 3,
    "gmconv_table3_sigma_pattern": 3 * 4,
    "gmconv_table4_rotation": 3,
    "gmconv_fig6_sigma_init": 3 * 4 * 2 * 3,
    "coc_table1_imagenet": 20,
    "coc_fig7_tinyimagenet": 2 * 12,
    "aconv_table2_simple": 5 * 4 * 2 * 5,
    "aconv_table3_resnet": 5 * 4 * 2 * 5,
}
# cells of the paper layout that carry a published number (rows x columns x metrics the papers print)
PUBLISHED_CELLS = {
    "gmconv_table1_cifar": 18, "gmconv_table2_imagenet": 24, "gmconv_table3_sigma_pattern": 12,
    "gmconv_table4_rotation": 18, "coc_table1_imagenet": 20,
    # Fig. 6 is a plot; Table 1 prints its StdConv ("None") and sigma-5 points: 2 per model and dataset
    "gmconv_fig6_sigma_init": 12,
    "coc_fig7_tinyimagenet": 0,
    "aconv_table2_simple": 10, "aconv_table3_resnet": 10,  # conv and aconv at the best kernel, 5 datasets
}
SMOKE_MAX_TRIALS = 8
EVALUATION = "gmconv_table4_rotation"


def _file(stem: str) -> Path:
    return EXPERIMENTS / f"{stem}.yaml"


def test_every_paper_sweep_is_counted():
    stems = {p.stem for p in EXPERIMENTS.glob("*.yaml")} - {"quickstart"}
    assert stems == set(PAPER_COUNTS)


@pytest.fixture(scope="session")
def data_roots(tmp_path_factory):
    """Folders in each dataset's on-disk layout (names only: validation never decodes a file)."""
    from pipelines.readers.arrays import CIFAR_FILES, IDX_FILES

    base = tmp_path_factory.mktemp("data")
    roots = {}
    for name, var in (("imagenet", "IMAGENET_ROOT"),):
        for split in ("train", "val"):
            (base / name / split / "n01440764").mkdir(parents=True)
            (base / name / split / "n01440764" / "a.JPEG").write_bytes(b"")
        roots[var] = base / name
    tiny = base / "tiny"
    (tiny / "train" / "n01443537" / "images").mkdir(parents=True)
    (tiny / "val" / "images").mkdir(parents=True)
    (tiny / "val" / "val_annotations.txt").write_text("")
    roots["TINY_IMAGENET_ROOT"] = tiny
    for name, var in (("cifar10", "CIFAR10_ROOT"), ("cifar100", "CIFAR100_ROOT")):
        _, train, test, meta, _, _ = CIFAR_FILES[name]
        (base / name).mkdir()
        for f in [*train, *test, meta]:
            (base / name / f).write_bytes(b"")
        roots[var] = base / name
    for name, var in (("mnist", "MNIST_ROOT"), ("fashion-mnist", "FASHION_MNIST_ROOT")):
        (base / name).mkdir()
        for f in (f for pair in IDX_FILES.values() for f in pair):
            (base / name / f).write_bytes(b"")
        roots[var] = base / name
    (base / "clutter").mkdir()
    (base / "clutter" / "mnist_cluttered_60.npz").write_bytes(b"")
    roots["MNIST_CLUTTERED_ROOT"] = base / "clutter"
    (base / "lfw_home" / "lfw_funneled" / "Aaron_Peirsol").mkdir(parents=True)
    (base / "lfw_home" / "lfw_funneled" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg").write_bytes(b"")
    roots["LFW_ROOT"] = base / "lfw_home"
    return {k: str(v) for k, v in roots.items()}


@pytest.fixture
def paper_env(data_roots, monkeypatch):
    for var, path in data_roots.items():
        monkeypatch.setenv(var, path)
    return data_roots


@pytest.fixture(scope="session")
def table2_done(tmp_path_factory):
    """A storage root holding Table 2's 12 trials as finished (spec.json + DONE), for the evaluation sweep."""
    root = tmp_path_factory.mktemp("storage")
    sweep = load_sweep(_file("gmconv_table2_imagenet"), "paper", check=False)
    for trial in expand(sweep):
        tdir = TrialDir.for_trial(root, sweep.name, trial.trial_key)
        tdir.create()
        tdir.write_spec(trial.model_dump(mode="json"))
        tdir.mark_done()
    return root


def _paper_sweep(stem: str, storage: Path, check: bool = False):
    overrides = [f"storage.root={storage}"] if stem == EVALUATION else []
    return load_sweep(_file(stem), "paper", overrides, check=check)


@pytest.mark.parametrize("stem", sorted(PAPER_COUNTS))
def test_paper_profile_validates_and_plans_the_paper_count(stem, paper_env, table2_done, capsys):
    # `convsweep plan` runs the full check (names, data roots, every layer built on the meta device)
    args = ["plan", str(_file(stem)), "--profile", "paper"]
    args += [f"--set=storage.root={table2_done}"] if stem == EVALUATION else []
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(rf"\b{PAPER_COUNTS[stem]} trials\b", out), out[-400:]


def test_rotation_sweep_evaluates_the_table2_alexnets(paper_env, table2_done):
    trials = expand(_paper_sweep(EVALUATION, table2_done))
    assert {t.model for t in trials} == {"alexnet"}
    assert sorted(t.layer.method for t in trials) == ["gmconv", "s-gmconv", "stdconv"]
    assert all(t.transforms == ("rot0", "rot45", "rot90", "rot135", "rot180", "flip_ud") for t in trials)
    assert all(t.evaluate_source and Path(t.evaluate_source).parent.name == "gmconv-table2-imagenet" for t in trials)
    # the paper's Rotate 0 equals Table 2's best top-1: the best epoch's weights are the ones rotated
    assert all(t.evaluate_checkpoint == "best" for t in trials)


def test_unset_data_root_names_the_variable(monkeypatch):
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)
    with pytest.raises(ValueError, match="CIFAR10_ROOT"):
        load_sweep(_file("gmconv_table1_cifar"), "paper")


@pytest.mark.parametrize("stem", sorted(PAPER_COUNTS))
def test_reference_lines_up_with_the_paper_layout(stem, paper_env, table2_done):
    """With no runs yet, every paper cell is missing, and exactly the published cells carry their number."""
    sweep = _paper_sweep(stem, table2_done)
    expected = [t.flat_params() for t in expand(sweep)]
    assert len(expected) == PAPER_COUNTS[stem]
    table = build_table(sweep.table, [], sweep=sweep.name, expected=expected, reference_dir=EXPERIMENTS)
    n_cells = len({(tuple(p[k] for k in sweep.table.rows), tuple(p[k] for k in sweep.table.columns))
                   for p in expected}) * len(sweep.table.metrics)
    assert len(table.cells) == n_cells and table.missing == n_cells
    published = [c for c in table.cells.values() if c.published is not None]
    assert len(published) == PUBLISHED_CELLS[stem]
    for row in table.row_keys:  # the Params/FLOPs columns find their published figures for every row
        for extra in sweep.table.extra_metrics:
            assert (row, extra.header) in table.published_extras
    assert "missing" in render(table, "md")


@pytest.mark.parametrize("stem", sorted(PAPER_COUNTS))
def test_smoke_profile_is_small_and_keeps_the_layout(stem, tmp_path):
    overrides = [f"storage.root={tmp_path}"]
    sweep = load_sweep(_file(stem), "smoke", overrides)
    assert sweep.table is not None and sweep.resources.gpus_per_node == 0
    if stem == EVALUATION:
        assert sweep.evaluate is not None and sweep.evaluate.where == {"model": "resnet20"}
        return
    trials = expand(sweep)
    assert 2 <= len(trials) <= SMOKE_MAX_TRIALS
    assert {t.dataset.name for t in trials} == {"digits"}
    assert all(t.recipe.epochs == 1 and t.recipe.max_steps_per_epoch == 2 for t in trials)
    paper_methods = {t.layer.method for t in expand(load_sweep(_file(stem), "paper", overrides, check=False))}
    assert {t.layer.method for t in trials} == paper_methods  # the same layer methods as the paper
    if sweep.table.test == "welch":  # std and the t-test need repeats
        assert len(sweep.seeds) >= 2
    for t in trials:
        params = t.flat_params()
        assert all(k in params for k in [*sweep.table.rows, *sweep.table.columns])


@pytest.mark.parametrize("stem", sorted(set(PAPER_COUNTS) - {EVALUATION}))
def test_expected_layout_shortcut_equals_the_full_expansion(stem):
    """`convsweep table` expands one seed and repeats it; that must equal every trial's flat params."""
    for profile in ("paper", "smoke"):
        sweep = load_sweep(_file(stem), profile, check=False)
        keys = [*sweep.table.rows, *sweep.table.columns]
        full = sorted(tuple(t.flat_params()[k] for k in keys) for t in expand(sweep))
        assert sorted(tuple(p[k] for k in keys) for p in expected_layout(sweep)) == full


def test_aconv_sweeps_pad_and_shortcut_as_the_released_keras_code():
    """Table 3 pads as TF's 'same' (its downsampling convs have stride 2); Table 2's convs all have stride 1,
    where 'same' is the symmetric padding, so it keeps the default; Table 3's paper profile uses resnet_s.py's
    weightless shortcut."""
    for profile in ("paper", "smoke"):
        trials = expand(load_sweep(_file("aconv_table3_resnet"), profile, check=False))
        assert {t.layer.padding for t in trials} == {"tf_same"}
        trials = expand(load_sweep(_file("aconv_table2_simple"), profile, check=False))
        assert {t.layer.padding for t in trials} == {"symmetric"}
    paper = expand(load_sweep(_file("aconv_table3_resnet"), "paper", check=False))
    assert {t.layer.shortcut for t in paper} == {"released"}
    assert all(t.layer.build_knobs()["shortcut"] == "released" for t in paper)


def test_coc_table1_runs_the_released_hrnet18s_and_light_recipe():
    """HRNet18-s is timm's hrnet_w18_small_v2 (configs/hrnet18s); the light models follow the released
    *-b128x8-linearlr_bn_nowd configs: lr 0.5 at a global batch of 1024, poly power 1 to 0 per iteration,
    constant warm-up of 5,000 iterations at 0.1 x, no weight decay on norm layers."""
    sweep = load_sweep(_file("coc_table1_imagenet"), "paper", check=False)
    trials = expand(sweep)
    assert {t.model for t in trials} >= {"hrnet_w18_small_v2"} and "hrnet_w18_small" not in {t.model for t in trials}
    reference = (EXPERIMENTS / sweep.table.reference.file).read_text()
    assert reference.count(",hrnet_w18_small_v2,") == 5 and ",hrnet_w18_small," not in reference
    light = [t for t in trials if t.model in ("shufflenet_v2_x1_0", "mobilenet_v3_small")]
    assert len(light) == 4
    for t in light:
        opt, sched = t.recipe.optimizer, t.recipe.schedule
        assert (opt.lr, opt.weight_decay, opt.nesterov, opt.no_bn_weight_decay) == (0.5, 4e-5, False, True)
        assert t.recipe.batch_size * t.world_size == 1024
        assert (sched.name, sched.power, sched.end_lr) == ("poly", 1.0, 0.0)
        assert (sched.warmup, sched.warmup_iters, sched.warmup_ratio, sched.warmup_epochs) == ("constant", 5000, 0.1, 0)
        assert t.recipe.epochs == 300
    heavy = [t for t in trials if t not in light]
    assert all(t.recipe.schedule.warmup_iters == 0 and not t.recipe.optimizer.no_bn_weight_decay for t in heavy)
    assert {t.layer.orth_weight for t in trials} == {0.1}
    header = _file("coc_table1_imagenet").read_text().split("\nname:")[0]
    assert "orth_weight 0.1" in header and "5,000" in header


def test_gmconv_fig6_figure_marks_table1s_numbers_in_the_papers_panel_order(paper_env, table2_done):
    """The paper layout before any run: six panels (CIFAR-10 then CIFAR-100, ResNet-20/56/18 each), no means
    yet, and the published points where GMConv Table 1 gives them: the StdConv band and S-GMConv at sigma 5."""
    from orchestrator.tables.figures import figure_data

    sweep = _paper_sweep("gmconv_fig6_sigma_init", table2_done)
    table = build_table(sweep.table, [], sweep=sweep.name, expected=[t.flat_params() for t in expand(sweep)],
                        reference_dir=EXPERIMENTS)
    data = figure_data(table, sweep.figure)
    assert [p.title for p in data.panels] == [f"{d}, {m}" for d in ("CIFAR-10", "CIFAR-100")
                                              for m in ("ResNet-20", "ResNet-56", "ResNet-18")]
    first = data.panels[0]
    assert first.band is not None and first.band.published == 91.58 and first.band.n == 0
    (series,) = first.series
    assert series.x == [1.0, 5.0, 10.0] and series.published == [None, 91.85, None]
    assert data.panels[-1].band.published == 77.78 and data.panels[-1].series[0].published[1] == 78.03
