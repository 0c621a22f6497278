"""The command line's grammar: every subcommand and its options (argparse, here only)."""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors in the one-line form of every other input error (and still exit 2)."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("convsweep").strip() or "usage"
        self.exit(2, f"convsweep: {where}: {message}; see {self.prog} --help\n")



def build_parser() -> argparse.ArgumentParser:
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

    sub.add_parser("names", help="every name a sweep file may use (methods and their knobs, models, datasets, "
                   "backends, optimisers, schedules, GPU types), each with what it is")
    def reading_runs(name: str, help: str) -> argparse.ArgumentParser:
        """A command that reads a sweep's recorded runs: from a file or a recorded sweep, from any store."""
        sp = sub.add_parser(name, help=help)
        sp.add_argument("sweep", metavar="FILE|SWEEP")
        with_root(sp)
        with_profile(sp)
        sp.add_argument("--tracking-uri", help="read runs from this MLflow URI instead of the sweep's")
        return sp

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
    sp = reading_runs("table", "the results table of a sweep (file or recorded sweep name)")
    sp.add_argument("--format", default="md", help="md (default), csv, latex or html (orchestrator.tables.render)")
    sp.add_argument("--runs", metavar="EXPORT", help="read runs from a `convsweep export` file (no MLflow)")
    sp = reading_runs("export", "write every run of a sweep (params, per-epoch metrics) to one file")
    sp.add_argument("--out", help="output file, .jsonl (default) or .csv (default: <sweep>-runs.jsonl)")
    sp = reading_runs("figure", "draw the figure of a sweep's `figure:` section (or a bar chart of its "
                  "table) as PNG, SVG and PDF")
    sp.add_argument("--out", default="figures", help="output folder (default: figures); files <sweep>.<format>")
    sp.add_argument("--runs", metavar="EXPORT", help="read runs from a `convsweep export` file (no MLflow)")
    sp = reading_runs("report", "one self-contained HTML page of a sweep (table, figure, status, "
                  "per-trial pictures, MLflow links), also logged to MLflow")
    sp.add_argument("--out", help="output file (default: <storage root>/<sweep>/report.html)")
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

