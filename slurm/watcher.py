"""One SLURM watcher per sweep: a single ``squeue --me`` (and, for jobs slurmctld has forgotten, one ``sacct``)
per interval for all of the sweep's jobs, however many there are.

Polling each job on its own (``scontrol show job`` every few seconds per job) is ~100 RPCs/s to slurmctld at
200 concurrent trials, which cluster admins forbid. Here the jobs' handles read a shared snapshot instead.

The handles of one sweep live in many processes (each Ray Tune trial runs its proxy in a Ray worker; ``convsweep
cancel`` is another process), so the snapshot is a file in the executor's folder, ``.watch/snapshot.json``,
written atomically. Exactly one process polls: the one holding an exclusive ``flock`` on ``.watch/lock``. The
lock dies with its process, so when the poller goes away (a Ray worker ended, the driver was killed) the next
handle that finds the snapshot stale takes over. A job is watched once its id is registered
(``.watch/jobs/<id>``) until SLURM reports it ended.

The interval is ``executor.slurm.poll_seconds`` (default 15 s). It is shorter (``FAST_INTERVAL_S``) only while
a cancel is under way (``hurry``: ``cancel`` waits until the jobs' processes are gone). Polling faster while
jobs start or end was tried and dropped: a sweep of short trials always has one starting, so the rate grew
with the number of trials again. A trial's end does not wait for the watcher (the proxy sees the trial
directory's DONE); tests that need SLURM's view sooner set a short interval.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path

from slurm.queries import JobInfo, SlurmQueryError, run_slurm_command, sacct_jobs, squeue_jobs

__all__ = ["FAST_INTERVAL_S", "SlurmWatcher", "watcher_for"]

logger = logging.getLogger(__name__)

FAST_INTERVAL_S = 1.0
_HURRY_S = 10.0  # after a cancel was asked for, poll fast this long
_ENDED = frozenset({"COMPLETED", "CANCELLED", "REVOKED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                    "BOOT_FAIL", "DEADLINE", "PREEMPTED"})  # fmt: skip
_IDLE_EXIT_S = 60.0  # a poller with nothing to watch this long stops and frees the lock
_FORGET_S = 600.0  # an ended job is dropped from the snapshot this long after it was first seen ended
_UNKNOWN_AFTER_S = 5.0  # a registered job neither squeue nor sacct lists is reported unknown after this


def _ended(info: JobInfo) -> bool:
    return info.state in _ENDED


class SlurmWatcher:
    """The shared view of one folder's jobs; ``lookup`` is a file read, ``calls`` counts SLURM commands run
    by this process's poller (by command name)."""

    def __init__(self, folder: Path, interval: float) -> None:
        self.dir = Path(folder) / ".watch"
        self.interval = interval
        self.calls: collections.Counter[str] = collections.Counter()
        self._jobs_dir = self.dir / "jobs"
        self._snapshot_path = self.dir / "snapshot.json"
        self._hurry_path = self.dir / "hurry"
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._cached: tuple[float, dict[str, object]] = (-1.0, {"jobs": {}, "unknown": [], "ended_at": {}})
        self._persistent = False  # a poller that stops when idle frees the lock for whoever registers next

    def __repr__(self) -> str:
        return f"SlurmWatcher(dir={str(self.dir)!r}, interval={self.interval})"

    # -- the handles' side ---------------------------------------------------------------------------------
    def register(self, job_id: str) -> None:
        """Watch ``job_id`` from now until it ends (from the next poll on)."""
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        try:  # an existing entry keeps its time (the registration's age decides when a job is "unknown")
            os.close(os.open(self._jobs_dir / job_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            pass
        self._ensure_polling()
        self._wake.set()

    def lookup(self, job_id: str) -> tuple[bool, JobInfo | None]:
        """``(seen, info)``: ``seen`` is False while no poll has looked at the job yet; then ``info`` is what
        SLURM says, or None when neither slurmctld nor accounting knows the job."""
        snapshot = self._read()
        taken = float(snapshot.get("taken", 0.0))  # type: ignore[arg-type]
        if time.time() - taken > 2 * self.interval + 5:  # nobody polls (the poller's process ended)
            self._ensure_polling()
        jobs: dict[str, dict[str, object]] = snapshot["jobs"]  # type: ignore[assignment]
        if job_id in jobs:
            return True, JobInfo(**jobs[job_id])  # type: ignore[arg-type]
        return job_id in snapshot["unknown"], None  # type: ignore[operator]

    def hurry(self) -> None:
        """Poll fast for a while (a cancel is under way), whichever process polls."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._hurry_path.touch()
        self._wake.set()

    def cancel(self, job_ids: list[str], wait_s: float) -> list[str]:
        """End ``job_ids`` with one ``scancel`` and wait until SLURM lists none of them as pending, running or
        completing (their processes are gone); returns the ids still not ended after ``wait_s``."""
        ids = [j for j in job_ids if j.isdigit()]
        if not ids:
            return []
        for job_id in ids:
            self.register(job_id)
        self.calls["scancel"] += 1
        proc = run_slurm_command(["scancel", *ids])
        if proc.returncode != 0 and "already completing or completed" not in proc.stderr:
            logger.warning("scancel %s: %s", " ".join(ids), proc.stderr.strip())
        deadline = time.monotonic() + wait_s
        left = ids
        while True:
            self.hurry()
            left = [j for j in left if not self._gone(j)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def _gone(self, job_id: str) -> bool:
        seen, info = self.lookup(job_id)
        return seen and (info is None or _ended(info))

    # -- the poller's side ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Poll from this process if no other does, and keep polling while it lives (the driver calls this:
        it outlives the trials' workers, whose poller would end with them)."""
        self._persistent = True
        self._ensure_polling()

    def _ensure_polling(self) -> None:
        with self._mutex:
            if self._thread is not None and self._thread.is_alive():
                return
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process polls
                os.close(fd)
                return
            self._thread = threading.Thread(target=self._run, args=(fd,), name=f"slurm-watch-{self.dir.parent.name}",
                                            daemon=True)
            self._thread.start()

    def _run(self, fd: int) -> None:
        idle_since: float | None = None
        try:
            while True:
                polled_at = time.monotonic()
                if self._poll_once():
                    idle_since = None
                else:
                    idle_since = idle_since or polled_at
                    if polled_at - idle_since > _IDLE_EXIT_S and not self._persistent:
                        return
                self._sleep(polled_at)
        except Exception:  # a poller must never die silently: the next handle's stale check takes over
            logger.exception("SLURM watcher for %s stopped", self.dir)
        finally:
            with self._mutex:
                self._thread = None
                os.close(fd)  # frees the lock

    def _sleep(self, polled_at: float) -> None:
        """Until the next poll: the interval, or ``FAST_INTERVAL_S`` while a cancel is under way (checked each
        step: a cancel asked for in another process counts too)."""
        floor = min(FAST_INTERVAL_S, self.interval)
        while True:
            elapsed = time.monotonic() - polled_at
            if elapsed >= self.interval or (elapsed >= floor and self._fast()):
                return
            self._wake.wait(floor - elapsed if elapsed < floor else min(floor, self.interval - elapsed))
            self._wake.clear()

    def _fast(self) -> bool:
        try:
            return time.time() - self._hurry_path.stat().st_mtime < _HURRY_S
        except FileNotFoundError:
            return False

    def _registered(self) -> dict[str, float]:
        try:
            entries = list(os.scandir(self._jobs_dir))
        except FileNotFoundError:
            return {}
        registered = {}
        for entry in entries:
            try:
                registered[entry.name] = entry.stat().st_mtime
            except FileNotFoundError:
                continue
        return registered

    def _poll_once(self) -> dict[str, float]:
        """One squeue (and at most one sacct) for every registered job not yet ended; returns those live."""
        previous = self._read()
        jobs: dict[str, dict[str, object]] = dict(previous["jobs"])  # type: ignore[arg-type]
        ended_at: dict[str, float] = dict(previous.get("ended_at", {}))  # type: ignore[arg-type]
        registered = self._registered()
        now = time.time()
        for job_id, when in list(ended_at.items()):  # forget jobs ended long ago
            if now - when > _FORGET_S:
                jobs.pop(job_id, None)
                ended_at.pop(job_id)
                (self._jobs_dir / job_id).unlink(missing_ok=True)
                registered.pop(job_id, None)
        live = {j: t for j, t in registered.items() if j not in ended_at}
        unknown: list[str] = []
        if live:
            try:
                self.calls["squeue"] += 1
                listed = squeue_jobs()
                missing = [j for j in live if j not in listed]
                if missing:
                    self.calls["sacct"] += 1
                    listed.update(sacct_jobs(missing))
            except SlurmQueryError as exc:  # a slow or restarting controller: keep the last snapshot
                logger.warning("SLURM jobs' states unknown for now (%s)", exc)
                return live
            for job_id in live:
                info = listed.get(job_id)
                if info is None:
                    if now - live[job_id] > _UNKNOWN_AFTER_S:
                        unknown.append(job_id)
                    continue
                jobs[job_id] = dataclasses.asdict(info)
                if _ended(info):
                    ended_at[job_id] = now
        self._write({"taken": now, "jobs": jobs, "unknown": unknown, "ended_at": ended_at})
        return {j: t for j, t in live.items() if j not in ended_at}

    # -- the snapshot file ---------------------------------------------------------------------------------
    def _read(self) -> dict[str, object]:
        try:
            mtime = self._snapshot_path.stat().st_mtime_ns
        except FileNotFoundError:
            return self._cached[1]
        if mtime != self._cached[0]:
            try:
                data = json.loads(self._snapshot_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # replaced while read: the next read sees the new one
                return self._cached[1]
            self._cached = (mtime, data)
        return self._cached[1]

    def _write(self, data: dict[str, object]) -> None:
        tmp = self._snapshot_path.with_name(f"snapshot.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self._snapshot_path)


_WATCHERS: dict[Path, SlurmWatcher] = {}
_WATCHERS_LOCK = threading.Lock()


def watcher_for(folder: Path, interval: float) -> SlurmWatcher:
    """This process's watcher of ``folder`` (one per folder: every executor of a sweep shares it); the
    shortest interval asked for wins."""
    key = Path(folder).resolve()
    with _WATCHERS_LOCK:
        watcher = _WATCHERS.get(key)
        if watcher is None:
            watcher = _WATCHERS[key] = SlurmWatcher(key, interval)
        watcher.interval = min(watcher.interval, interval)
        return watcher
