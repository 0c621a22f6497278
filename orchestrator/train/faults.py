"""Fault injection for tests, from the environment variable ``CONVSWEEP_FAULT`` (``;``-separated), acted on by
the trainer after each epoch's checkpoint and metrics line:

``crash:epoch=N`` raises ``InjectedFault`` after epoch N on every attempt; ``crash_once:epoch=N`` only on the
first attempt (rank 0 leaves the marker file ``FAULT_CRASHED_ONCE`` in the trial directory to remember it);
``sleep:seconds=S`` sleeps S seconds after every epoch (a slow trial, for the driver's tests).

The variable reaches a job through its environment, so tests of the driver, the executors and SLURM set it
around a whole sweep; a job without it pays one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CRASH_ONCE_MARKER", "FAULT_ENV", "Fault", "FaultPlan", "InjectedFault", "parse_faults"]

FAULT_ENV = "CONVSWEEP_FAULT"
CRASH_ONCE_MARKER = "FAULT_CRASHED_ONCE"

_ARGUMENT = {"crash": "epoch", "crash_once": "epoch", "sleep": "seconds"}


class InjectedFault(RuntimeError):
    """The crash ``CONVSWEEP_FAULT`` asked for."""


@dataclass(frozen=True)
class Fault:
    kind: str  # crash | crash_once | sleep
    value: float  # the epoch for crashes, seconds for sleep


def parse_faults(text: str | None) -> tuple[Fault, ...]:
    """Parse ``CONVSWEEP_FAULT``; a malformed value is a ValueError naming it."""
    faults = []
    for item in filter(None, (part.strip() for part in (text or "").split(";"))):
        kind, _, arg = item.partition(":")
        key, _, value = arg.partition("=")
        expected = _ARGUMENT.get(kind)
        try:
            number = int(value) if expected == "epoch" else float(value)
        except ValueError:
            number = None
        if expected is None or key != expected or number is None or number < 0:
            raise ValueError(
                f"{FAULT_ENV}: bad fault {item!r}; allowed: crash:epoch=N, crash_once:epoch=N, sleep:seconds=S"
            )
        faults.append(Fault(kind, number))
    return tuple(faults)


class FaultPlan:
    """The faults one attempt of one trial acts on, on one rank."""

    def __init__(self, faults: tuple[Fault, ...], trial_path: Path, *, is_main: bool) -> None:
        self.faults, self.trial_path, self.is_main = faults, trial_path, is_main
        # Every rank decides about crash_once now, before rank 0 can leave the marker behind.
        self.crash_once_armed = not (trial_path / CRASH_ONCE_MARKER).exists()

    @classmethod
    def from_env(cls, trial_path: Path, *, is_main: bool, environ: Mapping[str, str] | None = None) -> FaultPlan:
        env = os.environ if environ is None else environ
        return cls(parse_faults(env.get(FAULT_ENV)), trial_path, is_main=is_main)

    def after_epoch(self, epoch: int) -> None:
        """Sleep or raise as asked, once epoch ``epoch`` is checkpointed and recorded."""
        for fault in self.faults:
            if fault.kind == "sleep":
                time.sleep(fault.value)
            elif fault.value == epoch and (fault.kind == "crash" or self.crash_once_armed):
                if self.is_main and fault.kind == "crash_once":
                    (self.trial_path / CRASH_ONCE_MARKER).touch()
                raise InjectedFault(f"{FAULT_ENV}: injected {fault.kind} after epoch {epoch}")
