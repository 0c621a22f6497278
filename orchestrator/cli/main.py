"""``main``: parse, run one command, and turn every failure into one line and an exit code (see the
package's docstring)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import orchestrator.cli.prepare as prepare
import orchestrator.cli.results as results
import orchestrator.cli.sweeps as sweeps
from orchestrator.cli.output import err as _err
from orchestrator.cli.parser import build_parser

__all__ = ["main"]

_COMMANDS = {
    "names": prepare.cmd_names, "validate": prepare.cmd_validate, "plan": prepare.cmd_plan, "calibrate": prepare.cmd_calibrate,
    "sweep": sweeps.cmd_sweep, "status": sweeps.cmd_status, "resume": sweeps.cmd_resume, "cancel": sweeps.cmd_cancel,
    "logs": sweeps.cmd_logs, "table": results.cmd_table, "export": results.cmd_export, "figure": results.cmd_figure,
    "report": results.cmd_report,
}  # fmt: skip


def _subject(args: argparse.Namespace) -> str:
    """What an error is about: the sweep file or recorded sweep the command was given."""
    return str(getattr(args, "file", None) or getattr(args, "sweep", None) or args.command)


def _error_line(exc: ValueError, args: argparse.Namespace) -> str:
    """``convsweep: <FILE or SWEEP>: <what is wrong>; <what to do>``, from a library error's first line."""
    from orchestrator.spec.errors import ConfigError

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
    args = build_parser().parse_args(argv)
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

