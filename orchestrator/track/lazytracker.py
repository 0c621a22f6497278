"""A sweep's ``Tracker`` made when first used: the driver reads a SQLite store without MLflow
(``sweepstatus``), so it imports MLflow (3-4 s) only after Tune, unless it links a reused trial or the store is
a server."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.track.tracker import Tracker

__all__ = ["LazyTracker"]


class LazyTracker:
    """Stands in for ``Tracker(uri, experiment, sweep)``: every attribute is the real tracker's."""

    def __init__(self, uri: str, experiment: str, sweep: str) -> None:
        self.uri, self.sweep, self._experiment = uri, sweep, experiment
        self._lock = threading.Lock()
        self._tracker: Tracker | None = None

    def get(self) -> Tracker:
        with self._lock:  # made once, also when the session's threads (ASHA stops) ask first
            if self._tracker is None:
                from orchestrator.track.tracker import Tracker

                self._tracker = Tracker(self.uri, self._experiment, self.sweep)
            return self._tracker

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)
