"""Progress of a running sweep on the terminal: trials done / total, epochs done / total, ETA (rich).

Fed by the Tune callback in ``orchestrator.run.tune`` (one call per reported epoch and per finished trial). The
ETA comes from rich's speed estimate over epochs, so trials that already finished before a resume count as
done without skewing it. Written to stderr, leaving stdout to the results table.
"""

from __future__ import annotations

from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["ProgressSink", "SweepProgress"]


class ProgressSink(Protocol):
    """What ``orchestrator.run.tune`` tells about a running sweep (``SweepProgress`` is one)."""

    def epoch(self, key: str, epoch: int, record: dict[str, Any]) -> None: ...
    def trial_end(self, key: str, ok: bool) -> None: ...


class SweepProgress:
    """Two bars, trials and epochs, plus the latest metric of the sweep."""

    def __init__(self, total_trials: int, total_epochs: int, *, done_trials: int = 0,
                 epochs_seen: dict[str, int] | None = None, metric: str = "val_top1",
                 console: Console | None = None, enabled: bool = True) -> None:
        """``epochs_seen``: epochs already in each trial's directory (finished or resumable trials)."""
        self.metric = metric
        self._epochs_seen = dict(epochs_seen or {})
        done_epochs = sum(self._epochs_seen.values())
        self._progress = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self._trials = self._progress.add_task("trials", total=total_trials, completed=done_trials, note="")
        self._epochs = self._progress.add_task("epochs", total=total_epochs, completed=done_epochs, note="")

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def epoch(self, key: str, epoch: int, record: dict[str, Any]) -> None:
        # A trial re-run from its checkpoints re-reports epochs already counted: they do not advance.
        before = self._epochs_seen.get(key, 0)
        self._epochs_seen[key] = max(before, epoch)
        advance = max(0, epoch - before)
        note = f"{key} ep{epoch}"
        if isinstance(record.get(self.metric), (int, float)):
            note += f" {self.metric}={record[self.metric]:.2f}"
        self._progress.update(self._epochs, advance=advance, note=note)

    def trial_end(self, key: str, ok: bool) -> None:
        self._progress.update(self._trials, advance=1, note=f"{key} {'done' if ok else 'FAILED'}")

    @property
    def trials_done(self) -> int:
        return int(self._progress.tasks[self._trials].completed)

    @property
    def epochs_done(self) -> int:
        return int(self._progress.tasks[self._epochs].completed)
