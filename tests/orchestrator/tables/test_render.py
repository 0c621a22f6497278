"""Rendering: the papers' other published columns, their marks (bold best, significance asterisk) and per-
dataset Params where datasets differ, built from run records directly (no MLflow needed for the layout)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.track.query import RunRecord
from orchestrator.tables.pivot import build_table
from orchestrator.tables.render import render
from orchestrator.spec.tablespec import TableSpec

REFERENCE = """dataset,method,best_kernel,mean,std,max,t,p
fashion-mnist,stdconv,7,93.31,6e-4,93.38,6.16,2.7e-4
fashion-mnist,aconv,7,93.84,2e-3,94.12,6.16,2.7e-4
"""


def _runs() -> list[RunRecord]:
    runs = []
    for method, k, accs, params in (("stdconv", 7, [93.1, 93.2, 93.0], 11_173_962.0),
                                    ("aconv", 7, [93.9, 94.1, 93.8], 11_173_962.0),
                                    ("stdconv", 3, [92.0, 92.4, 92.1], 11_220_132.0),
                                    ("aconv", 3, [92.1, 92.3, 92.2], 11_220_132.0)):
        for seed, acc in enumerate(accs):
            runs.append(RunRecord(f"{method}{k}{seed}", "FINISHED", "s", {
                "layer.method": method, "layer.kernel_size": str(k), "dataset.name": "fashion-mnist",
                "seed": str(seed)}, {"best_val_top1": acc, "folded_params": params}))
    return runs


def _spec(**kw: object) -> TableSpec:
    base: dict = dict(
        rows=["layer.method", "layer.kernel_size"], columns=["dataset.name"],
        metrics=[{"name": "val_top1", "reduce": "best", "label": "acc"}], aggregate=["mean", "std", "max", "n"],
        reference={"file": "ref.csv", "values": {"acc": "mean"}, "extra": {"std": "std", "max": "max", "p": "p"},
                   "match": {"layer.method": "method", "layer.kernel_size": "best_kernel", "dataset.name": "dataset"}},
        baseline={"layer.method": "stdconv"}, test="student", marks={"best": True, "significance": 0.05},
    )
    base.update(kw)
    return TableSpec.model_validate(base)


def test_published_extra_columns_marks_and_significance(tmp_path: Path) -> None:
    (tmp_path / "ref.csv").write_text(REFERENCE)
    table = build_table(_spec(), _runs(), sweep="s", reference_dir=tmp_path)
    md = render(table, "md")
    header = next(line for line in md.splitlines() if line.startswith("| layer.method"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[2:] == ["fashion-mnist", "fashion-mnist max", "fashion-mnist paper", "fashion-mnist paper std",
                        "fashion-mnist paper max", "fashion-mnist paper p", "fashion-mnist Δpaper",
                        "fashion-mnist Δbase", "fashion-mnist t", "fashion-mnist p"]
    rows = {tuple(c.strip() for c in line.strip("|").split("|"))[:2]: [c.strip() for c in line.strip("|").split("|")]
            for line in md.splitlines() if line.startswith("| ") and not line.startswith("| layer")}
    aconv7, aconv3 = rows[("aconv", "7")], rows[("aconv", "3")]
    # the paper's printed columns on the row of its best kernel only, with the asterisk of p < 0.05
    assert aconv7[4:8] == ["93.84", "2e-3", "94.12", "2.7e-4*"]
    assert aconv3[4:8] == ["", "", "", ""]
    # ours: the best mean of the column in bold, our own p starred when significant (3 vs 3 runs, Student)
    assert aconv7[2].startswith("**93.93 ±") and not rows[("stdconv", "7")][2].startswith("**")
    assert aconv7[-1].endswith("*") and not aconv3[-1].endswith("*")
    assert "\\textbf{93.93" in render(table, "latex") and "<b>93.93" in render(table, "html")
    assert "**" not in render(table, "csv") and "*" not in render(table, "csv").split("\n", 1)[1].replace("e-", "")


def test_params_printed_per_dataset_only_where_the_datasets_differ(tmp_path: Path) -> None:
    (tmp_path / "ref.csv").write_text(REFERENCE)
    runs = _runs()
    for r in list(runs):  # the same models on CIFAR-10 and CIFAR-100: the 100-way classifier is larger
        params = {**r.params, "dataset.name": "cifar100"}
        extra = 46_170.0 if r.params["layer.kernel_size"] == "7" else 0.0
        runs.append(RunRecord(r.run_id + "c", "FINISHED", "s", params,
                              {**r.metrics, "folded_params": r.metrics["folded_params"] + extra}))
    spec = _spec(extra_metrics=[{"name": "folded_params", "scale": 1e-6, "label": "Params (M)", "digits": 2}],
                 marks={}, labels={"dataset.name": {"fashion-mnist": "CIFAR-10", "cifar100": "CIFAR-100"}})
    md = render(build_table(spec, runs, sweep="s", reference_dir=tmp_path), "md")
    line7 = next(line for line in md.splitlines() if line.startswith("| aconv | 7 |"))
    line3 = next(line for line in md.splitlines() if line.startswith("| aconv | 3 |"))
    assert "| 11.17 (CIFAR-10), 11.22 (CIFAR-100) |" in line7
    assert "| 11.22 |" in line3 and "CIFAR-100)" not in line3


def test_best_within_bolds_the_best_of_each_row_group(tmp_path: Path) -> None:
    (tmp_path / "ref.csv").write_text(REFERENCE)
    md = render(build_table(_spec(marks={"best": True, "best_within": ["layer.kernel_size"]}), _runs(), sweep="s",
                            reference_dir=tmp_path), "md")
    bold = sorted(tuple(c.strip() for c in line.strip("|").split("|"))[:2] for line in md.splitlines()
                  if line.startswith("| ") and "| **" in line)
    assert bold == [("aconv", "3"), ("aconv", "7")]  # k=3: 92.20 beats 92.17; k=7: 93.93 beats 93.10
