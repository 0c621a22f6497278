"""A sweep's ``Tracker`` made when first used, or ahead of that in a background thread: importing MLflow and
opening the store (on a fresh SQLite file: creating MLflow's tables, seconds) then overlaps Ray's start-up
instead of delaying the driver's first trial."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.track.tracker import Tracker

__all__ = ["LazyTracker"]

log = logging.getLogger(__name__)


class LazyTracker:
    """Stands in for ``Tracker(uri, experiment, sweep)``: every attribute is the real tracker's."""

    def __init__(self, uri: str, experiment: str, sweep: str) -> None:
        self.uri, self.sweep, self._experiment = uri, sweep, experiment
        self._lock = threading.Lock()
        self._tracker: Tracker | None = None

    def get(self) -> Tracker:
        with self._lock:  # the background thread and the driver's first use make it once
            if self._tracker is None:
                from orchestrator.track.tracker import Tracker

                self._tracker = Tracker(self.uri, self._experiment, self.sweep)
            return self._tracker

    def start_in_background(self) -> None:
        def make() -> None:
            try:
                self.get()
            except Exception as exc:  # noqa: BLE001 - the driver's own first use makes it again and raises
                log.debug("opening the tracking store ahead failed: %s", exc)

        threading.Thread(target=make, name="tracker-open", daemon=True).start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)
