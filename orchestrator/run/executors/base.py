"""The executor interface: how a trial's job reaches processes, wherever they run.

The sweep driver never knows whether a job runs as local processes or as a SLURM job: it submits a
``TrialJob`` through an ``Executor`` and watches the returned ``JobHandle``. Implementations are found by
name through the ``convsweep.executors`` entry-point group (``local`` lives in
``orchestrator.run.executors.local``, ``slurm`` in ``slurm.executor``), so the orchestrator does not import the
SLURM package and a site can add its own executor without touching this code.

An implementation is a class constructed as ``cls(folder, settings)`` where ``folder`` is the directory for
the executor's own bookkeeping (``SweepDir.jobs``: submitit folders, one per sweep) and ``settings`` is the
sweep's ``ExecutorSpec``. Besides ``submit`` every executor has ``attach(job_id)`` (the handle of a job an
earlier driver submitted, while it still runs: how a resumed trial ends a job a killed driver left behind, and
how ``convsweep cancel`` reaches jobs it did not submit), ``start_watching()`` (the driver follows the sweep's
jobs from its own process, e.g. one ``squeue`` for all of them) and ``cancel_all(handles)`` (end many of its
jobs at once, e.g. one ``scancel``); ``ExecutorBase`` gives the last two their plain defaults. Every handle has
``requeues``: how many times the scheduler started the same job again under the same id (a SLURM requeue or
preemption; a resubmission is a new job and counted by the driver).

``live_job`` is the one way from a recorded job (a trial's ``job.json``, the sweep's ``driver.json``) to the
handle of that job while it runs. ``Executor.submit_driver(argv, name=, log_path=)`` stays optional (only an
executor of a cluster can run the driver itself as a job, ``convsweep sweep --detach``).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from orchestrator.spec.schema import ExecutorSpec, ResourcesSpec

__all__ = [
    "ENTRY_POINT_GROUP", "Executor", "ExecutorBase", "JobHandle", "JobState", "available_executors", "get_executor",
    "live_job",
]  # fmt: skip

ENTRY_POINT_GROUP = "convsweep.executors"


class JobState(str, enum.Enum):
    """Where a submitted job stands; the terminal states are COMPLETED, FAILED and CANCELLED."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


@runtime_checkable
class JobHandle(Protocol):
    """A submitted job. Cheap to poll: the driver calls ``state()`` every few seconds."""

    @property
    def job_id(self) -> str: ...

    @property
    def log_path(self) -> Path: ...

    def state(self) -> JobState: ...

    def done(self) -> bool: ...

    def cancel(self) -> None: ...

    def reason(self) -> str | None:
        """One line saying why the job failed or cannot start (e.g. SLURM's reason), else None."""
        ...

    @property
    def requeues(self) -> int:
        """Restarts of this job under its id by its scheduler, as of its last poll (0 where there are none)."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Submits one job per trial, with ``resources.nodes * processes_per_node`` processes."""

    kind: str

    def submit(self, job: Callable[[], Any], *, name: str, resources: ResourcesSpec) -> JobHandle: ...

    def attach(self, job_id: str) -> JobHandle | None:
        """The handle of a job of this executor's folder an earlier process submitted, while it runs; else None."""
        ...

    def start_watching(self) -> None:
        """Make this process the one that follows the folder's jobs (the driver, which outlives the trials)."""
        ...

    def cancel_all(self, handles: list[JobHandle]) -> None:
        """End every job in ``handles`` and return once they are gone."""
        ...


class ExecutorBase:
    """The defaults of ``Executor``'s optional behaviour: nothing to watch, and each job cancelled on its own
    (all at once, since one cancel waits out its job's grace period)."""

    def start_watching(self) -> None:
        return None

    def cancel_all(self, handles: list[JobHandle]) -> None:
        threads = [threading.Thread(target=h.cancel, name=f"cancel-{h.job_id}") for h in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def live_job(executor: Executor, record: Mapping[str, Any] | None) -> JobHandle | None:
    """The handle of the job ``record`` names (``{"executor": kind, "job_id": id}``: a trial's ``job.json``, a
    detached driver's ``driver.json``) while it still runs; None without a record, for another executor's job,
    or once it has ended."""
    if not record or record.get("executor") != executor.kind or "job_id" not in record:
        return None
    handle = executor.attach(str(record["job_id"]))
    return handle if handle is not None and not handle.done() else None


def available_executors() -> tuple[str, ...]:
    return tuple(sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)))


def get_executor(settings: ExecutorSpec, folder: str | Path) -> Executor:
    """Instantiate the executor named by ``settings.kind``, keeping its bookkeeping under ``folder``."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == settings.kind]
    if not matches:
        raise ValueError(
            f"executor.kind: unknown executor {settings.kind!r}; allowed: {', '.join(available_executors())}"
        )
    cls = matches[0].load()
    return cls(Path(folder), settings)
