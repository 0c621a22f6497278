"""What a trial still owes MLflow while the tracking store is away.

The proxy (``orchestrator.run.proxy``) keeps following its job through an outage: training needs nothing of
MLflow, and the trial directory keeps every record. The sweep's one writer (``orchestrator.track.writer``)
keeps one ``TrackingOutbox`` per trial, and each of the trial's tracking calls goes through it:
a call that fails because the store is unreachable is remembered (one log line when the outage starts, one
when it ends) and tried again on a later poll; every call is idempotent (epochs already logged are skipped,
summary metrics already there are not logged again, tags and statuses are set to values), so trying again
after a lost answer records nothing twice. At the trial's end ``deliver`` waits for the store up to a bound
(``CONVSWEEP_TRACKING_GRACE_SECONDS``, default 600 s); past it the Tune trial ends with its summary and
the records stay on disk for ``convsweep resume`` to deliver (its run is not FINISHED, so resume takes the
trial up again, finds it DONE and records it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from orchestrator.track.store import is_unreachable_error

__all__ = ["GRACE_ENV", "TrackingOutbox", "grace_seconds", "is_outage"]

# the test hook CONVSWEEP_DRIVER_FAULT (orchestrator.track.writer) kills the driver: the proxy names its pid file here
DRIVER_PID_ENV = "CONVSWEEP_DRIVER_PID_FILE"

logger = logging.getLogger(__name__)

GRACE_ENV = "CONVSWEEP_TRACKING_GRACE_SECONDS"
DEFAULT_GRACE_SECONDS = 600.0
RETRY_SECONDS = 2.0  # between attempts while the store is away: a poll every 0.25 s would only add load


def grace_seconds(env: dict[str, str]) -> float:
    """How long a finished trial waits for an unreachable store before leaving its records to ``resume``."""
    text = env.get(GRACE_ENV)
    if text is None:
        return DEFAULT_GRACE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ValueError(f"{GRACE_ENV}: not a number of seconds >= 0 (got {text!r}; allowed: e.g. 600)")
    return value


def is_outage(exc: BaseException) -> bool:
    """An error that means "the store is not there now" (retry later), not "this request is wrong"."""
    # imported here: the proxies read ``grace_seconds`` from this module and must not load MLflow
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, MlflowException) and is_unreachable_error(exc)


class TrackingOutbox:
    """Tracking calls of one trial, kept until the store takes them (see the module docstring)."""

    def __init__(self, trial_key: str, uri: str, note: Callable[[str], None] | None = None) -> None:
        self.trial_key, self.uri = trial_key, uri
        self._note = note  # also write the outage's lines here (the trial's job.log: Ray keeps worker logs)
        self.down_since: float | None = None
        self.error: BaseException | None = None  # the latest outage's
        self._pending: dict[str, Callable[[], Any]] = {}  # by name: a newer call replaces an older one
        self._next_try = 0.0

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    @property
    def due(self) -> bool:
        """Something is pending and its next attempt is due."""
        return bool(self._pending) and time.monotonic() >= self._next_try

    def call(self, name: str, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` now (after anything still pending, in order); keep it for later if the store is away."""
        self.keep(name, fn)
        return self.flush(force=True)

    def keep(self, name: str, fn: Callable[[], Any]) -> None:
        """Queue ``fn`` behind what is pending without trying it (the store is known to be away)."""
        self._pending.pop(name, None)
        self._pending[name] = fn

    def went_down(self, exc: BaseException) -> None:
        """Another trial's call found the store away: count this one's outage too, try again later."""
        self._went_down(exc)
        self._next_try = time.monotonic() + RETRY_SECONDS

    def flush(self, force: bool = False) -> bool:
        """Try what is pending (at most every ``RETRY_SECONDS`` unless ``force``); True when nothing is left."""
        if not self._pending or not force and time.monotonic() < self._next_try:
            return not self._pending
        for name, fn in list(self._pending.items()):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - only an outage is kept; anything else is raised
                if not is_outage(exc):
                    raise
                self.went_down(exc)
                return False
            del self._pending[name]
        if self.down_since is not None:
            self.say(f"MLflow at {self.uri} answers again after {time.monotonic() - self.down_since:.0f} s; "
                     f"the records kept meanwhile are in")
            self.down_since = None
        return True

    def say(self, line: str) -> None:
        logger.warning("trial %s: %s", self.trial_key, line)
        if self._note is not None:
            self._note(line)

    def deliver(self, grace: float) -> bool:
        """Wait until everything pending is in, at most ``grace`` seconds from the start of the outage."""
        while not self.flush(force=True):
            assert self.down_since is not None
            if time.monotonic() - self.down_since >= grace:
                return False
            time.sleep(RETRY_SECONDS)
        return True

    def _went_down(self, exc: BaseException) -> None:
        self.error = exc
        if self.down_since is None:
            self.down_since = time.monotonic()
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            self.say(f"MLflow at {self.uri} is unreachable ({first[:200]}); training goes on, its records wait "
                     f"in the trial directory and are sent when it answers")
