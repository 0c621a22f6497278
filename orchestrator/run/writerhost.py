"""The process that hosts the sweep's one MLflow writer (``orchestrator.track.writer``): a Ray actor of this
class, started by ``orchestrator.run.tune``; no Ray import here.

A trial worker loads this class whenever it looks the actor up (``ray.get_actor``), so the module is light: it
imports the writer, and with it MLflow, only when the actor is constructed, in the actor's own process.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WriterHost"]


class WriterHost:
    """``call(method, ...)`` runs ``TrackingWriter.method(...)``: one remote method for the whole interface."""

    def __init__(self) -> None:
        from orchestrator.track.writer import TrackingWriter

        self._writer = TrackingWriter()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._writer, method)(*args, **kwargs)
