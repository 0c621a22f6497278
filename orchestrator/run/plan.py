"""What a sweep will run, before it runs: one row per trial (key, the knobs that vary, seed) and the cost.

The cost is an estimate in GPU-hours (``orchestrator.run.cost``): the user's ``resources.hours_per_epoch`` x
epochs x GPUs held when set; else a calibration (`convsweep calibrate FILE`) of seconds per image on the
node that ran it; else the model's FLOPs over the epochs' images at an assumed share of the peak of
``resources.gpu_type``. Without any of them the estimate is reported as unknown rather than guessed. A
CPU-only trial holds no GPU: its cost is shown as trial-hours. An evaluation trial trains nothing: it is one
forward pass over the validation images per transform. A trial finished in another sweep of the tracking store
(``orchestrator.run.reuse``) is marked "reused from <sweep>" and costs nothing. An evaluation sweep whose source sweep has no finished run yet has no trials: its plan
says so instead of pricing nothing. ``render_plan`` builds a ``rich`` table; printing it is the CLI's job.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rich.table import Table
from rich.text import Text

from orchestrator.spec.schema import SweepSpec, TrialSpec
from orchestrator.run.cost import calibration_key, load_calibration, load_counts, save_counts, trial_cost
from orchestrator.spec.expand import expand
from orchestrator.dirs.trialdir import TrialDir

__all__ = ["Plan", "PlanRow", "plan", "render_plan"]

# Flat params that identify rather than configure a trial: never shown as "varying knobs".
_NOT_KNOBS = frozenset({"trial_key", "seed", "sweep", "evaluate_source"})


@dataclass(frozen=True)
class PlanRow:
    trial_key: str
    knobs: dict[str, str]  # only the knobs that differ between the sweep's trials
    seed: int
    world_size: int
    epochs: int  # epochs to train (evaluation trials: passes, one per transform)
    gpus: int  # GPUs the trial's job holds
    gpu_hours: float | None  # None: no estimate (no hours_per_epoch, calibration or gpu_type)
    trial_hours: float | None = None  # the trial's wall-clock hours, when estimated
    cost_source: str = ""  # which estimate (orchestrator.run.cost.TrialCost.source)
    reused_from: str | None = None  # finished in this other sweep of the store: not trained again, costs nothing


@dataclass(frozen=True)
class Plan:
    sweep: str
    rows: tuple[PlanRow, ...]
    varying: tuple[str, ...]  # dotted knob names that differ between trials, in flat_params order
    gpu_hours: float | None
    trial_hours: float | None  # sum of the trials' wall-clock hours (run one at a time)
    max_concurrent_trials: int
    no_trials_because: str | None = None  # an evaluation sweep without trials: why, and when they appear

    @property
    def n_trials(self) -> int:
        return len(self.rows)

    def summary(self) -> str:
        """One line: trials, epochs, GPU-hours (or why they are unknown, or why there are no trials yet)."""
        if not self.rows and self.no_trials_because:
            return self.no_trials_because
        epochs = sum(r.epochs for r in self.rows if r.reused_from is None)
        parts = [f"{self.n_trials} trial{'s' * (self.n_trials != 1)}", f"{epochs} epochs in total"]
        reused = [r.reused_from for r in self.rows if r.reused_from is not None]
        if reused:
            parts[-1] += (f" ({len(reused)} trial{'s' * (len(reused) != 1)} reused from "
                          f"{', '.join(sorted(set(reused)))}: not trained again; --no-reuse trains them)")
        sources = ", ".join(sorted({r.cost_source for r in self.rows if r.cost_source}))
        if self.gpu_hours is None:
            parts.append("GPU-hours: unknown (set resources.gpu_type, run `convsweep calibrate FILE`, or set "
                         "resources.hours_per_epoch)")
        elif not any(r.gpus for r in self.rows):
            parts.append(f"GPU-hours: 0 (CPU-only trials; {self.trial_hours:.1f} trial-hours)")
        else:
            wall = self.trial_hours / max(1, min(self.max_concurrent_trials, self.n_trials))
            parts.append(f"GPU-hours: {self.gpu_hours:.1f} (at least {wall:.1f} h wall-clock with "
                         f"{self.max_concurrent_trials} concurrent trials)")
        if self.gpu_hours is not None and sources:
            parts.append(f"estimated from {sources}")
        return "; ".join(parts)


def _epochs(trial: TrialSpec) -> int:
    return len(trial.transforms) if trial.evaluate_source is not None else trial.recipe.epochs


def plan(sweep: SweepSpec, trials: list[TrialSpec] | None = None, reused: dict[str, str] | None = None) -> Plan:
    """The plan of ``sweep`` (its trials expanded unless given); ``reused``: trial key -> the sweep it finished
    in (``orchestrator.run.reuse``), priced at nothing."""
    reused = reused or {}
    trials = expand(sweep) if trials is None else trials
    flats = [{k: v for k, v in t.flat_params().items() if k not in _NOT_KNOBS} for t in trials]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    varying = tuple(k for k in keys if len({flat.get(k) for flat in flats}) > 1)
    rows = []
    calibration = load_calibration(sweep.storage.root)
    # the FLOP estimate's counts: read from the storage root, the new ones written back (``run.cost``)
    counted = {(t.model, t.dataset.name, t.layer, t.recipe.amp): t for t in trials
               if t.resources.gpu_type and t.resources.hours_per_epoch is None}
    if counted:
        load_counts(sweep.storage.root)
    for trial, flat in zip(trials, flats):
        res = trial.resources
        gpus = res.nodes * res.gpus_per_node
        source = reused.get(trial.trial_key)
        cost = trial_cost(trial, calibration)
        if source is not None and cost is not None:
            cost = replace(cost, device_hours=0.0)
        # device-hours spread over the GPUs held (perfect scaling); a CPU-only trial holds one process
        wall = None if cost is None else cost.device_hours / max(1, gpus)
        rows.append(PlanRow(trial_key=trial.trial_key, knobs={k: flat.get(k, "") for k in varying}, seed=trial.seed,
                            world_size=trial.world_size, epochs=_epochs(trial), gpus=gpus,
                            gpu_hours=None if cost is None else (cost.device_hours if gpus else 0.0),
                            trial_hours=0.0 if source is not None else wall,
                            cost_source="" if cost is None else cost.source, reused_from=source))
    if counted:
        save_counts(sweep.storage.root, [calibration_key(t) for t in counted.values()])
    known = all(r.gpu_hours is not None or r.reused_from is not None for r in rows)
    trial_hours = sum(r.trial_hours or 0.0 for r in rows) if known else None
    return Plan(sweep=sweep.name, rows=tuple(rows), varying=varying,
                gpu_hours=sum(r.gpu_hours or 0.0 for r in rows) if known else None,
                trial_hours=trial_hours, max_concurrent_trials=sweep.tune.max_concurrent_trials,
                no_trials_because=_why_no_evaluation_trials(sweep) if sweep.evaluate and not rows else None)


def _why_no_evaluation_trials(sweep: SweepSpec) -> str:
    # An evaluation sweep's trials are found, not expanded: "0 trials, CPU-only" would read as a finished plan.
    assert sweep.evaluate is not None
    source = sweep.evaluate.source_sweep
    folder = Path(sweep.storage.root) / source
    done = sum(TrialDir(p).is_done for p in folder.iterdir()) if folder.is_dir() else 0
    if not done:
        return (f"0 trials yet: the source sweep {source!r} has no finished runs in {folder}; its evaluation "
                f"trials appear once it has (run {source!r} first, with the same storage.root)")
    return (f"0 trials: none of the {done} finished runs of the source sweep {source!r} in {folder} matches "
            f"evaluate.where {sweep.evaluate.where}")


# Past this many rows rich's table (which measures every cell, ~2 ms a row here) is the slowest part of
# planning a big sweep: 10,000 trials took ~25 s to print. Longer plans are laid out as plain aligned text.
RICH_TABLE_MAX_ROWS = 500


def render_plan(sweep: SweepSpec | Plan, trials: list[TrialSpec] | None = None,
                reused: dict[str, str] | None = None) -> Table | Text:
    """The plan as a table: #, trial key, each varying knob, seed, world size, epochs, GPU-hours (or the sweep a
    trial is reused from)."""
    p = sweep if isinstance(sweep, Plan) else plan(sweep, trials, reused)
    title = f"{p.sweep}: {p.n_trials} trial{'s' * (p.n_trials != 1)}"
    header = ["#", "trial_key", *p.varying, "seed", "world", "epochs", "GPU-h"]
    right = [True, False, *(False for _ in p.varying), True, True, True, True]
    rows = [[str(i), row.trial_key, *(str(row.knobs[k]) for k in p.varying), str(row.seed), str(row.world_size),
             str(row.epochs), _gpu_hours(row)] for i, row in enumerate(p.rows)]
    if len(rows) > RICH_TABLE_MAX_ROWS:
        return _plain_table(title, header, right, rows, p.summary())
    table = Table(title=title, caption=p.summary())
    for name, justify_right in zip(header, right):
        table.add_column(name, justify="right" if justify_right else "left", no_wrap=name == "trial_key")
    for cells in rows:
        table.add_row(*cells)
    return table


def _gpu_hours(row: PlanRow) -> str:
    if row.reused_from is not None:
        return f"reused from {row.reused_from}"
    return "?" if row.gpu_hours is None else f"{row.gpu_hours:.2f}"


def _plain_table(title: str, header: list[str], right: list[bool], rows: list[list[str]], caption: str) -> Text:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    lines = [title, line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows), caption]
    return Text("\n".join(lines), no_wrap=True, overflow="ignore")
