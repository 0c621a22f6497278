"""Commands that run or act on a sweep: ``sweep`` (foreground or ``--detach``), ``resume``, ``status``,
``cancel``, ``logs``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

from orchestrator.cli.output import err as _err
from orchestrator.cli.output import out as _out
from orchestrator.cli.results import table_text as _table_text

__all__ = ["cmd_cancel", "cmd_logs", "cmd_resume", "cmd_status", "cmd_sweep", "print_result"]


def _detach(args: argparse.Namespace) -> int:
    """Submit the driver itself as a small CPU job of the sweep's executor (SLURM), recorded in driver.json."""
    from orchestrator.run.executors.base import get_executor
    from orchestrator.run.driver import _record, prepare_sweep
    from orchestrator.run.state import driver_job, record_driver_job
    from orchestrator.run.sweepdir import SweepDir

    spec = prepare_sweep(args.file, args.profile, args.overrides, args.executor)
    executor = get_executor(spec.executor, SweepDir.of(spec).jobs)
    submit_driver = getattr(executor, "submit_driver", None)
    if submit_driver is None:
        raise ValueError(f"--detach: executor {spec.executor.kind} cannot run the driver as a job (got executor "
                         f"{spec.executor.kind}; allowed: slurm); run it in the foreground or under nohup/tmux")
    running = driver_job(spec)
    if running is not None:
        raise ValueError(f"--detach: sweep {spec.name} already has a driver job (got job {running.job_id}; "
                         f"allowed: one driver; `convsweep cancel {spec.name}` ends it)")
    source = str(Path(args.file).resolve())
    _record(spec, source)  # `status`, `cancel` and `resume` know the sweep from now on
    argv = [sys.executable, "-m", "orchestrator.cli", "sweep", source, "--no-progress"]
    argv += ["--profile", args.profile] if args.profile else []
    argv += [f"--set={o}" for o in args.overrides] + ["--executor", spec.executor.kind]
    argv += ["--no-reuse"] if args.no_reuse else []
    # the log lives under the executor's folder: that is where `attach` accepts a job as this sweep's
    log_path = SweepDir.of(spec).driver_log
    handle = submit_driver(argv, name=f"{spec.name}-driver", log_path=log_path)
    record_driver_job(spec, spec.executor.kind, handle.job_id, str(handle.log_path))
    _out.print(f"sweep {spec.name}: driver submitted as job {handle.job_id}; log: {handle.log_path}\n"
               f"follow it with: convsweep status {spec.name} --root {spec.storage.root}", highlight=False)
    return 0


def print_result(result: object) -> int:
    from orchestrator.run.driver import SweepResult

    assert isinstance(result, SweepResult)
    spec = result.sweep
    ran = len(result.finished) + len(result.failed) + len(result.stopped) + len(result.interrupted)
    halted = [f"{len(result.interrupted)} interrupted"] * bool(result.interrupted)
    halted += [f"{len(result.not_started)} not started"] * bool(result.not_started)
    halted = halted or ["interrupted"] * result.halted
    reused = f", {len(result.reused)} reused from {', '.join(sorted(set(result.reused.values())))}" if result.reused else ""
    _out.print(f"sweep {spec.name}: {result.total} trials; {len(result.skipped)} already finished{reused}, {ran} run now: "
               f"{len(result.finished)} finished, {len(result.stopped)} stopped early, {len(result.failed)} failed"
               + (f", {', '.join(halted)} (convsweep resume {spec.name} --root {spec.storage.root} continues "
                  f"{'them' if len(result.interrupted) + len(result.not_started) > 1 else 'it'})"
                  if halted else ""), highlight=False)
    if result.restored:
        _out.print("resumed from Ray Tune's saved experiment state", highlight=False)
    for key, why in result.rerun.items():
        _out.print(f"  run again {key}: {why}", highlight=False, markup=False)
    for key, error in result.failed.items():
        _err.print(f"  FAILED {key}: {error} (convsweep logs {spec.name} {key} --root {spec.storage.root})",
                   highlight=False)
    if spec.table is not None:
        _out.print(_table_text(spec, result.source_file, "md"), highlight=False, markup=False)
    if spec.tracking.uri.startswith(("sqlite:", "file:")) or "://" not in spec.tracking.uri:
        _out.print(f"MLflow: mlflow ui --backend-store-uri {spec.tracking.uri}  (experiment {spec.experiment!r})",
                   highlight=False, markup=False)
    else:
        _out.print(f"MLflow: {spec.tracking.uri} (experiment {spec.experiment!r})", highlight=False, markup=False)
    return 1 if not result.ok else 130 if result.halted else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from orchestrator.run.driver import run_sweep

    if args.detach:
        return _detach(args)
    result = run_sweep(args.file, args.profile, args.overrides, args.executor,
                       show_progress=not args.no_progress and _err.is_terminal, reuse=not args.no_reuse)
    return print_result(result)


def cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.run.driver import resume_sweep

    result = resume_sweep(args.sweep, root=args.root, restart_errored=args.restart_errored,
                          show_progress=not args.no_progress and _err.is_terminal, reuse=not args.no_reuse)
    return print_result(result)


def cmd_status(args: argparse.Namespace) -> int:
    from orchestrator.run.control import status_rows
    from orchestrator.run.state import driver_job
    from orchestrator.run.sweepdir import load_recorded

    rows = status_rows(args.sweep, args.root)
    spec = load_recorded(args.sweep, args.root)[0]
    undelivered = _undelivered(spec, [r.trial_key for r in rows if r.state == "done"])
    table = Table(title=f"{args.sweep}")
    for col in ("trial_key", "trial", "state", "epoch", "eta"):
        table.add_column(col)
    for r in rows:
        eta = "" if r.eta_seconds is None else f"{r.eta_seconds / 60:.1f} min"
        table.add_row(r.trial_key, r.label, r.state, f"{r.epoch}/{r.epochs}", eta)
    _out.print(table)
    for r in rows:
        if r.note:  # below the table: a reason is too long for a column
            _out.print(f"  {r.state} {r.trial_key}: {r.note}", highlight=False, markup=False)
    states = ("done", "running", "failed", "inconsistent", "interrupted", "pending")
    root = "" if args.root == "runs" else f" --root {args.root}"
    counts = {s: sum(r.state == s for r in rows) for s in states}
    _out.print(", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "inconsistent")
               + (f" (`convsweep resume {args.sweep}{root}` runs the inconsistent ones again)"
                  * bool(counts["inconsistent"])),
               highlight=False)
    if undelivered:
        _out.print(f"{len(undelivered)} done trial{'s' * (len(undelivered) != 1)} not FINISHED in MLflow yet "
                   f"(its records wait in the trial directory): `convsweep resume {spec.name} --root "
                   f"{spec.storage.root}` delivers them once no driver runs", highlight=False, markup=False)
    driver = driver_job(spec)  # a detached driver (sweep --detach)
    if driver is not None:
        _out.print(f"driver: job {driver.job_id} {driver.state().value.lower()}; log: {driver.log_path}",
                   highlight=False)
    return 0


def _undelivered(spec: object, done_keys: list[str]) -> list[str]:
    """Trials DONE on disk whose MLflow run is not FINISHED: a driver gave up on an unreachable store."""
    from orchestrator.track.tracker import Tracker
    from orchestrator.track.store import require_store

    require_store(spec.tracking.uri, spec.name, "start it again (or fix it); `convsweep status` reads it")
    runs = Tracker(spec.tracking.uri, spec.experiment, spec.name).status_by_key()
    return [k for k in done_keys if k not in runs or runs[k].info.status != "FINISHED"]


def cmd_cancel(args: argparse.Namespace) -> int:
    from orchestrator.run.control import cancel_sweep

    ended = cancel_sweep(args.sweep, args.root)
    _out.print(f"sweep {args.sweep}: driver stopped; {ended} job{'s' * (ended != 1)} ended", highlight=False)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from orchestrator.run.control import trial_log

    sys.stdout.write(trial_log(args.sweep, args.root, args.trial).read_text(encoding="utf-8", errors="replace"))
    return 0
