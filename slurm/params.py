"""From a sweep's ``resources`` and ``executor.slurm`` sections to submitit's ``SlurmExecutor`` parameters.

One trial is one job of ``nodes x tasks_per_node`` processes: ``resources`` says what the trial needs
(nodes, GPUs and processes per node, CPUs per process, memory), ``executor.slurm`` where and how it runs on
this cluster (partition, account, qos, constraint, time, and any other sbatch option under
``additional_parameters``). ``executor.slurm.cpus_per_task``/``mem`` win over ``resources`` when both are set.

``additional_parameters`` keys are sbatch's long options (``exclude``, ``mail-type``, ``reservation``; ``_``
and ``-`` are the same); a key is refused with the list of valid ones if sbatch does not know it, or if it is
one of the settings this module derives itself (then the error names the sweep key to use instead). A value
``""`` gives a bare flag (``requeue: ""`` -> ``--requeue``).
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
from typing import Any

from submitit.slurm.slurm import _get_default_parameters

from orchestrator.spec.schema import ResourcesSpec, SlurmSpec

__all__ = ["MANAGED_OPTIONS", "PREEMPT_SIGNAL", "sbatch_options", "slurm_parameters", "time_to_minutes"]

# The signal SLURM sends ``signal_delay_s`` before the time limit; submitit's handler then calls the job's
# ``checkpoint()`` and requeues it. Pinned (not read from SUBMITIT_PREEMPT_SIGNAL) so that a SIGTERM, which
# both ``scancel`` and a preemption send, never turns a cancel into a requeue.
PREEMPT_SIGNAL = "USR2"

# sbatch options derived here, and the sweep key that sets each instead.
MANAGED_OPTIONS: dict[str, str] = {
    "job-name": "(the trial's name)",
    "nodes": "resources.nodes",
    "ntasks-per-node": "resources.processes_per_node",
    "ntasks": "resources.nodes and resources.processes_per_node",
    "gpus-per-node": "resources.gpus_per_node",
    "cpus-per-task": "executor.slurm.cpus_per_task or resources.cpus_per_process",
    "mem": "executor.slurm.mem or resources.mem_gb",
    "time": "executor.slurm.time",
    "partition": "executor.slurm.partition",
    "account": "executor.slurm.account",
    "qos": "executor.slurm.qos",
    "constraint": "executor.slurm.constraint",
    "output": "(submitit's log files)",
    "error": "(submitit's log files)",
    "open-mode": "(always append, so a requeued job keeps its log)",
    "signal": "additional_parameters.signal_delay_s",
    "array": "(one job per trial)",
    "wrap": "(submitit's batch script)",
    "parsable": "(submitit reads sbatch's output)",
}

# submitit parameters that are not sbatch options but may be set through additional_parameters.
_SUBMITIT_ONLY = {"signal_delay_s", "setup", "teardown", "srun_args"}

_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def time_to_minutes(text: str) -> int:
    """SLURM's time formats (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) in whole minutes, rounded up.

    submitit needs minutes: it derives the job's "has it timed out" test from them.
    """
    m = _TIME.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f"executor.slurm.time: not a SLURM time limit (got {text!r}; allowed: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S)"
        )
    d, a, b, c = (int(v) if v is not None else None for v in m.group("d", "a", "b", "c"))
    if d is not None:  # D-H[:M[:S]]
        seconds = ((d * 24 + a) * 60 + (b or 0)) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        seconds = (a * 60 + b) * 60 + c  # type: ignore[operator]
    elif b is not None:  # M:S
        seconds = a * 60 + b
    else:  # M
        seconds = a * 60
    if seconds <= 0:
        raise ValueError(f"executor.slurm.time: must be positive (got {text!r}; allowed: a positive time limit)")
    return math.ceil(seconds / 60)


@functools.lru_cache(maxsize=4)
def _sbatch_help(sbatch: str, slurm_conf: str | None) -> str:
    proc = subprocess.run([sbatch, "--help"], capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0 or "--nodes" not in proc.stdout:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"executor.kind: slurm: `sbatch --help` failed, is SLURM configured here? ({last})")
    return proc.stdout


def sbatch_options() -> frozenset[str]:
    """The long options this cluster's sbatch accepts (from ``sbatch --help``), e.g. ``exclude``."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ValueError("executor.kind: slurm needs SLURM's sbatch on PATH (got none found; allowed: local, or a SLURM login node)")
    text = _sbatch_help(sbatch, os.environ.get("SLURM_CONF"))
    return frozenset(re.findall(r"--([a-z][a-z0-9-]*)", text)) - {"help", "usage", "version"}


def _additional(extra: dict[str, str | int], known: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``additional_parameters`` into submitit parameters and raw sbatch options, refusing unknown keys."""
    submitit_params = set(_get_default_parameters())
    direct: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for key, value in extra.items():
        option = key.replace("_", "-")
        if option in MANAGED_OPTIONS:
            raise ValueError(
                f"executor.slurm.additional_parameters.{key}: set by convsweep (got {value!r}; "
                f"allowed: use {MANAGED_OPTIONS[option]} instead)"
            )
        underscored = key.replace("-", "_")
        if underscored in _SUBMITIT_ONLY or (underscored in submitit_params and option in known):
            direct[underscored] = True if value == "" else value
        elif option in known:
            raw[option] = True if value == "" else value
        else:
            allowed = sorted((known | {k.replace("_", "-") for k in _SUBMITIT_ONLY}) - set(MANAGED_OPTIONS))
            raise ValueError(
                f"executor.slurm.additional_parameters: unknown sbatch option {key!r} (got {value!r}; "
                f"allowed: {', '.join(allowed)})"
            )
    return direct, raw


def slurm_parameters(
    settings: SlurmSpec, resources: ResourcesSpec, *, name: str, known_options: frozenset[str] | None = None
) -> dict[str, Any]:
    """The keyword arguments for ``submitit.SlurmExecutor.update_parameters`` for one trial's job.

    ``known_options`` (sbatch's long options) defaults to asking this cluster's sbatch.
    """
    known = sbatch_options() if known_options is None else known_options
    direct, raw = _additional(settings.additional_parameters, known)
    params: dict[str, Any] = {
        "job_name": name,
        "nodes": resources.nodes,
        "ntasks_per_node": resources.tasks_per_node,
        "cpus_per_task": settings.cpus_per_task or resources.cpus_per_process,
        "time": time_to_minutes(settings.time),
        "stderr_to_stdout": True,
    }
    if resources.gpus_per_node:
        params["gpus_per_node"] = resources.gpus_per_node
    if settings.mem is not None:
        params["mem"] = settings.mem
    elif resources.mem_gb is not None:
        params["mem"] = f"{math.ceil(resources.mem_gb * 1024)}M"
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(settings, key) is not None:
            params[key] = getattr(settings, key)
    params.update(direct)
    delay = int(params.pop("signal_delay_s", 90))
    # submitit writes --signal from its own module-level setting; this pins it (see PREEMPT_SIGNAL).
    raw["signal"] = f"{PREEMPT_SIGNAL}@{delay}"
    params["additional_parameters"] = raw
    return params
