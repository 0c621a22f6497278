"""``convsweep``: the command line, the one module with argparse. Parses, calls the library, prints.

Exit codes: 0 success, 1 a trial failed, 2 bad input or state (one line on stderr,
``convsweep: <FILE or SWEEP>: <what is wrong>; <what to do>``; nothing is submitted or recorded), 3 an
unexpected error (one line on stderr naming a log file that holds the traceback), 130 the sweep was interrupted
(`convsweep resume` continues it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

__all__ = ["main"]

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="convsweep", description="Sweeps of receptive-field-shaping convs.",
        epilog="exit codes: 0 success; 1 a trial failed; 2 bad input or state (one line: \"convsweep: FILE or "
               "SWEEP: what is wrong; what to do\"; nothing submitted); 3 unexpected error (one line naming a log "
               "with the traceback); 130 interrupted (convsweep resume continues)")
    p.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    sub = p.add_subparsers(dest="command", required=True)

    def with_profile(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--profile", help="a profile of the sweep file (e.g. smoke, paper)")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted key (value read as YAML); repeatable")

    def with_root(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--root", default="runs", help="storage root the sweep was run with (default: runs)")

    sp = sub.add_parser("validate", help="check a sweep file")
    sp.add_argument("file")
    with_profile(sp)
    sp.add_argument("--offline", action="store_true", help="do not check that the MLflow server answers")
    sp = sub.add_parser("plan", help="print the expanded trials and a GPU-hour estimate")
    sp.add_argument("file")
    with_profile(sp)
    sp.add_argument("--no-reuse", action="store_true",
                    help="price every trial, even those finished in another sweep of the tracking store")
    sp = sub.add_parser("calibrate", help="time a few training steps of each distinct model of a sweep on this "
                        "node; `plan` then prices the sweep from them")
    sp.add_argument("file")
    with_profile(sp)
    sp.add_argument("--steps", type=int, default=5, help="timed steps per model (after one warm-up step)")
    sp = sub.add_parser("sweep", help="run a sweep (trials already FINISHED are skipped)")
    sp.add_argument("file")
    with_profile(sp)
    sp.add_argument("--executor", help="override executor.kind (local, slurm)")
    sp.add_argument("--detach", action="store_true", help="run the driver in the background (slurm only)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    sp.add_argument("--no-reuse", action="store_true",
                    help="train every trial here, even those finished in another sweep of the tracking store")
    sp = sub.add_parser("status", help="done / running / failed trials of a sweep, epochs, ETA")
    sp.add_argument("sweep")
    with_root(sp)
    sp = sub.add_parser("resume", help="continue an interrupted sweep from its checkpoints")
    sp.add_argument("sweep")
    with_root(sp)
    sp.add_argument("--restart-errored", action="store_true", help="run errored trials again")
    sp.add_argument("--no-progress", action="store_true")
    sp.add_argument("--no-reuse", action="store_true", help="as for sweep")
    sp = sub.add_parser("table", help="the results table of a sweep (file or recorded sweep name)")
    sp.add_argument("sweep", metavar="FILE|SWEEP")
    with_root(sp)
    with_profile(sp)
    sp.add_argument("--format", default="md", choices=("md", "csv", "latex", "html"))
    sp.add_argument("--tracking-uri", help="read runs from this MLflow URI instead of the sweep's")
    sp.add_argument("--runs", metavar="EXPORT", help="read runs from a `convsweep export` file (no MLflow)")
    sp = sub.add_parser("export", help="write every run of a sweep (params, per-epoch metrics) to one file")
    sp.add_argument("sweep", metavar="FILE|SWEEP")
    with_root(sp)
    with_profile(sp)
    sp.add_argument("--out", help="output file, .jsonl (default) or .csv (default: <sweep>-runs.jsonl)")
    sp.add_argument("--tracking-uri", help="read runs from this MLflow URI instead of the sweep's")
    sp = sub.add_parser("figure", help="draw the figure of a sweep's `figure:` section (or a bar chart of its "
                        "table) as PNG, SVG and PDF")
    sp.add_argument("sweep", metavar="FILE|SWEEP")
    with_root(sp)
    with_profile(sp)
    sp.add_argument("--out", default="figures", help="output folder (default: figures); files <sweep>.<format>")
    sp.add_argument("--tracking-uri", help="read runs from this MLflow URI instead of the sweep's")
    sp.add_argument("--runs", metavar="EXPORT", help="read runs from a `convsweep export` file (no MLflow)")
    sp = sub.add_parser("report", help="one self-contained HTML page of a sweep (table, figure, status, "
                        "per-trial pictures, MLflow links), also logged to MLflow")
    sp.add_argument("sweep", metavar="FILE|SWEEP")
    with_root(sp)
    with_profile(sp)
    sp.add_argument("--out", help="output file (default: <storage root>/<sweep>/report.html)")
    sp.add_argument("--tracking-uri", help="read runs from this MLflow URI instead of the sweep's")
    sp.add_argument("--mlflow-ui", help="the MLflow UI's address for the run links (default: the tracking "
                    "server, or http://127.0.0.1:5000 as `mlflow ui` serves)")
    sp.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    sp = sub.add_parser("cancel", help="stop a sweep's driver and end its running jobs")
    sp.add_argument("sweep")
    with_root(sp)
    sp = sub.add_parser("logs", help="print a trial's job log")
    sp.add_argument("sweep")
    sp.add_argument("trial", help="trial key (or a unique prefix)")
    with_root(sp)
    return p


def _load_any(name: str, root: str, profile: str | None = None, overrides: Sequence[str] = ()
              ) -> tuple[object, str | None]:
    """A sweep from a sweep file, or recorded under the storage root by an earlier `convsweep sweep`.

    A file is read up to its schema only (no data roots, model builds, executors or trial expansion): the
    table needs the spec, and must print on a machine without the data and without importing torch.
    """
    from orchestrator.spec.load import load_sweep

    if Path(name).is_file():
        return load_sweep(name, profile, overrides, check=False, trials=False), str(Path(name).resolve())
    if profile is not None or overrides:
        raise ValueError(f"--profile/--set: apply to a sweep FILE, not to the recorded sweep {name!r} "
                         f"(got profile={profile!r}, set={list(overrides)!r}; allowed: a sweep file path)")
    from orchestrator.run.sweepdir import load_recorded

    return load_recorded(name, root)


def _table_text(spec: object, source: str | None, fmt: str, tracking_uri: str | None = None,
                runs_file: str | None = None) -> str:
    from orchestrator.tables.build import render, sweep_table

    sweep_dir = Path(source).parent if source else None
    if runs_file is not None:
        from orchestrator.tables.export import read_export
        from orchestrator.tables.build import sweep_table_from_export

        return render(sweep_table_from_export(spec, read_export(runs_file), sweep_dir=sweep_dir), fmt)
    return render(sweep_table(spec, sweep_dir=sweep_dir, tracking_uri=tracking_uri), fmt)


def _cmd_validate(args: argparse.Namespace) -> int:
    from orchestrator.spec.checks import validate_every_profile
    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_sweep

    if args.profile is None:  # the file as written and every profile in it
        spec = validate_every_profile(args.file, args.overrides)
    else:
        spec = load_sweep(args.file, args.profile, args.overrides)
    if not args.offline:
        from orchestrator.spec.checks import tracking_reachability_problems
        from orchestrator.spec.load import ConfigError

        problems = tracking_reachability_problems(spec)
        if problems:
            raise ConfigError(problems, args.file)
    n = len(expand(spec))
    _out.print(f"{args.file}: ok ({spec.name}: {n} trial{'s' * (n != 1)})", highlight=False)
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from orchestrator.spec.plan import render_plan
    from orchestrator.spec.load import ConfigError, load_sweep

    try:
        spec = load_sweep(args.file, args.profile, args.overrides)
    except ConfigError as exc:
        # planning needs no data: missing roots are a warning here (every other check passed, or it would
        # be among the problems), and an error for `sweep`
        if not all(p.key.endswith("dataset.root") for p in exc.problems):
            raise
        _err.print(f"warning: {str(exc).splitlines()[0]} (`plan` goes on; `sweep` needs the data)",
                   highlight=False, markup=False)
        spec = load_sweep(args.file, args.profile, args.overrides, check=False)
    from orchestrator.spec.expand import expand

    trials = expand(spec)
    reused = {} if args.no_reuse else _reused_trials(args.file, spec, trials)
    _out.print(render_plan(spec, trials, reused))
    return 0


def _reused_trials(file: str, spec: Any, trials: list[Any]) -> dict[str, str]:
    """Trial key -> the other sweep of the tracking store it finished in (``orchestrator.run.reuse``)."""
    from orchestrator.run.reuse import find_sources

    try:
        return {key: run.sweep for key, run in find_sources(spec, trials).items()}
    except Exception as exc:  # the plan does not depend on the store: say why reuse is not shown
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _err.print(f"warning: {file}: trials reused from other sweeps not shown (tracking store "
                   f"{spec.tracking.uri}: {reason})", highlight=False, markup=False)
        return {}


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from orchestrator.spec.cost import CALIBRATION_FILE, calibrate
    from orchestrator.spec.expand import expand
    from orchestrator.spec.load import load_sweep

    if args.steps < 1:
        raise ValueError(f"--steps: must be >= 1 (got {args.steps})")
    spec = load_sweep(args.file, args.profile, args.overrides)
    done = calibrate(expand(spec), spec.storage.root, steps=args.steps)
    path = Path(spec.storage.root) / CALIBRATION_FILE
    _out.print(f"{spec.name}: {len(done)} calibrated model{'s' * (len(done) != 1)} in {path}; "
               f"`convsweep plan {args.file}` now prices the sweep from them", highlight=False, markup=False)
    return 0


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


def _print_result(result: object) -> int:
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


def _cmd_sweep(args: argparse.Namespace) -> int:
    from orchestrator.run.driver import run_sweep

    if args.detach:
        return _detach(args)
    result = run_sweep(args.file, args.profile, args.overrides, args.executor,
                       show_progress=not args.no_progress and _err.is_terminal, reuse=not args.no_reuse)
    return _print_result(result)


def _cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.run.driver import resume_sweep

    result = resume_sweep(args.sweep, root=args.root, restart_errored=args.restart_errored,
                          show_progress=not args.no_progress and _err.is_terminal, reuse=not args.no_reuse)
    return _print_result(result)


def _cmd_status(args: argparse.Namespace) -> int:
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


def _require_store_of(spec: object, name: str, uri: str | None) -> None:
    from orchestrator.track.store import require_store

    uri = uri or spec.tracking.uri
    require_store(uri, name, "start it (or fix it), or read another store with --tracking-uri; `convsweep table "
                  "--runs FILE` reads an export without MLflow")


def _cmd_table(args: argparse.Namespace) -> int:
    if args.runs is not None and args.tracking_uri is not None:
        raise ValueError(f"--runs: reads the runs from {args.runs}, so --tracking-uri does not apply (got both; "
                         f"allowed: one of them)")
    spec, source = _load_any(args.sweep, args.root, args.profile, args.overrides)
    if args.runs is None:
        _require_store_of(spec, args.sweep, args.tracking_uri)
    _out.print(_table_text(spec, source, args.format, args.tracking_uri, args.runs), highlight=False, markup=False)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from orchestrator.tables.export import export_sweep

    spec, _ = _load_any(args.sweep, args.root, args.profile, args.overrides)
    _require_store_of(spec, args.sweep, args.tracking_uri)
    path, n = export_sweep(spec, args.out or f"{spec.name}-runs.jsonl", tracking_uri=args.tracking_uri)
    _out.print(f"sweep {spec.name}: {n} run{'s' * (n != 1)} written to {path}", highlight=False, markup=False)
    return 0


def _cmd_figure(args: argparse.Namespace) -> int:
    from orchestrator.tables.figures import sweep_figure

    if args.runs is not None and args.tracking_uri is not None:
        raise ValueError(f"--runs: reads the runs from {args.runs}, so --tracking-uri does not apply (got both; "
                         f"allowed: one of them)")
    spec, source = _load_any(args.sweep, args.root, args.profile, args.overrides)
    runs = None
    if args.runs is not None:
        from orchestrator.tables.export import read_export

        runs = read_export(args.runs)
    try:
        _, paths = sweep_figure(spec, args.out, sweep_dir=Path(source).parent if source else None,
                                tracking_uri=args.tracking_uri, runs=runs)
    except ValueError as exc:  # name the file the bad figure/table key is in
        raise ValueError(f"{source or spec.name}: {exc}") from exc
    _out.print(f"figure of {spec.name}: " + ", ".join(str(p) for p in paths), highlight=False, markup=False)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.tables.report import write_report
    from orchestrator.run.sweepdir import SweepDir

    spec, source = _load_any(args.sweep, args.root, args.profile, args.overrides)
    out = args.out or SweepDir.of(spec).report
    try:
        path, run_id = write_report(spec, out, sweep_dir=Path(source).parent if source else None,
                                    tracking_uri=args.tracking_uri, ui_url=args.mlflow_ui, log=not args.no_log)
    except ValueError as exc:
        raise ValueError(f"{source or spec.name}: {exc}") from exc
    _out.print(f"report of {spec.name}: {path.resolve()}" + (f" (MLflow run {run_id}, artifact report.html)"
                                                            if run_id else ""), highlight=False, markup=False)
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from orchestrator.run.control import cancel_sweep

    ended = cancel_sweep(args.sweep, args.root)
    _out.print(f"sweep {args.sweep}: driver stopped; {ended} job{'s' * (ended != 1)} ended", highlight=False)
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from orchestrator.run.control import trial_log

    sys.stdout.write(trial_log(args.sweep, args.root, args.trial).read_text(encoding="utf-8", errors="replace"))
    return 0


_COMMANDS = {
    "validate": _cmd_validate, "plan": _cmd_plan, "calibrate": _cmd_calibrate, "sweep": _cmd_sweep,
    "status": _cmd_status, "resume": _cmd_resume, "table": _cmd_table, "export": _cmd_export,
    "figure": _cmd_figure, "report": _cmd_report, "cancel": _cmd_cancel, "logs": _cmd_logs,
}  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors in the one-line form of every other input error (and still exit 2)."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("convsweep").strip() or "usage"
        self.exit(2, f"convsweep: {where}: {message}; see {self.prog} --help\n")


def _subject(args: argparse.Namespace) -> str:
    """What an error is about: the sweep file or recorded sweep the command was given."""
    return str(getattr(args, "file", None) or getattr(args, "sweep", None) or args.command)


def _error_line(exc: ValueError, args: argparse.Namespace) -> str:
    """``convsweep: <FILE or SWEEP>: <what is wrong>; <what to do>``, from a library error's first line."""
    from orchestrator.spec.load import ConfigError

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text.startswith("convsweep: "):  # already the whole line (trackingstore.StoreUnreachable)
        return text
    subject = _subject(args)
    if isinstance(exc, ConfigError) and exc.file is not None:
        where = exc.file
        text = text.removeprefix(f"{exc.file}: ")
        todo = f"fix it, then check with: convsweep validate {exc.file}"
    else:
        where = subject
        text = text.removeprefix(f"{subject}: ").removeprefix("SWEEP: ")  # the line names it already
        todo = f"see convsweep {args.command} --help"
    # most library messages already end in what to do ("...; run convsweep sweep FILE again"): keep theirs
    said = "; " in text.split("(")[0] or "allowed:" in text or " run " in text or "`convsweep" in text
    return f"convsweep: {where}: {text}" + ("" if said and not isinstance(exc, ConfigError) else f"; {todo}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # MLflow configures its own loggers on import (announcing database migrations at INFO)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        return _COMMANDS[args.command](args)
    except ValueError as exc:  # ConfigError is a ValueError: one line, nothing submitted
        _err.print(_error_line(exc, args), highlight=False, markup=False)
        return 2
    except OSError as exc:  # a path the user gave (or the state under it) that cannot be read or written
        what = f"{exc.strerror or type(exc).__name__}" + (f": {exc.filename}" if exc.filename else "")
        _err.print(f"convsweep: {_subject(args)}: {what}; check that path and its permissions",
                   highlight=False, markup=False)
        return 2
    except KeyboardInterrupt:
        _err.print("interrupted: `convsweep resume` continues the sweep", highlight=False)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: one line and the traceback kept in a file
        from orchestrator.track.store import is_unreachable_error

        if not is_unreachable_error(exc):
            return _unexpected(args, exc)
        _err.print(_unreachable_line(args, exc), highlight=False, markup=False)  # it went away after the probe
        return 2


def _unreachable_line(args: argparse.Namespace, exc: BaseException) -> str:
    import re

    from orchestrator.track.store import advice

    url = re.search(r"API request to (\S+?)/api/", str(exc))
    uri = url.group(1) if url else "the tracking URI"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = "connection refused" if "refused" in str(exc).lower() else (lines[-1][:120] if lines else "no answer")
    return f"convsweep: {_subject(args)}: MLflow at {uri} is unreachable ({reason}); {advice(uri)}"


def _unexpected(args: argparse.Namespace, exc: BaseException) -> int:
    log_path = _write_traceback(args.command)
    first = str(exc).splitlines()[0] if str(exc) else ""
    _err.print(f"convsweep: {_subject(args)}: unexpected {type(exc).__name__} in `convsweep {args.command}`"
               + (f": {first}" if first else "") + f"; please report it with the traceback in {log_path}",
               highlight=False, markup=False)
    return 3


def _write_traceback(command: str) -> str:
    """Save the current exception's traceback where the user can find it; its path, or "<stderr>"."""
    import tempfile
    import time
    import traceback

    text = f"convsweep {command}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n{traceback.format_exc()}"
    try:
        fd, path = tempfile.mkstemp(prefix=f"convsweep-{command}-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    except OSError:
        sys.stderr.write(text)
        return "<stderr>"


if __name__ == "__main__":
    sys.exit(main())
