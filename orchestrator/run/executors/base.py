"""The executor interface: how a trial's job reaches processes, wherever they run.

The sweep driver never knows whether a job runs as local processes or as a SLURM job: it submits a
``TrialJob`` through an ``Executor`` and watches the returned ``JobHandle``. Implementations are found by
name through the ``convsweep.executors`` entry-point group (``local`` lives in
``orchestrator.run.executors.local``, ``slurm`` in ``slurm.executor``), so the orchestrator does not import the
SLURM package and a site can add its own executor without touching this code.

An implementation is a class constructed as ``cls(folder, settings)`` where ``folder`` is the directory for
the executor's own bookkeeping (submitit folders, one per sweep) and ``settings`` is the sweep's
``ExecutorSpec``.

Optional extras, looked up with ``getattr`` by the driver: ``JobHandle.requeues`` (how many times the
scheduler started the same job again under the same id, e.g. a SLURM requeue or preemption; a resubmission is a
new job and counted by the driver), ``Executor.attach(job_id)`` (the handle of a job an earlier driver submitted,
while it still runs) and ``Executor.submit_driver(argv, name=, log_path=)`` (run the sweep driver itself as a
job, for ``convsweep sweep --detach``) and ``Executor.cancel_all(handles)`` (end many of its jobs at once, e.g. one
``scancel``) and ``Executor.start_watching()`` (the driver follows the sweep's jobs from its own process).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from orchestrator.spec.schema import ExecutorSpec, ResourcesSpec

__all__ = [
    "ENTRY_POINT_GROUP", "Executor", "JobHandle", "JobState", "available_executors", "get_executor", "requeues_of",
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


def requeues_of(handle: object) -> int:
    """``handle.requeues`` (optional: restarts of the same job by its scheduler, as of its last poll), else 0."""
    value = getattr(handle, "requeues", 0)
    return int(value) if isinstance(value, int) else 0


@runtime_checkable
class Executor(Protocol):
    """Submits one job per trial, with ``resources.nodes * processes_per_node`` processes."""

    kind: str

    def submit(self, job: Callable[[], Any], *, name: str, resources: ResourcesSpec) -> JobHandle: ...


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
