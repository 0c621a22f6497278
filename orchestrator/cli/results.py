"""Commands that read a sweep's recorded runs: ``table``, ``export``, ``figure``, ``report``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from orchestrator.cli.output import out as _out

__all__ = ["cmd_export", "cmd_figure", "cmd_report", "cmd_table", "load_any", "table_text"]


def load_any(name: str, root: str, profile: str | None = None, overrides: Sequence[str] = ()
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


def table_text(spec: object, source: str | None, fmt: str, tracking_uri: str | None = None,
                runs_file: str | None = None) -> str:
    from orchestrator.tables.build import sweep_table
    from orchestrator.tables.render import render

    sweep_dir = Path(source).parent if source else None
    if runs_file is not None:
        from orchestrator.tables.export import read_export
        from orchestrator.tables.build import sweep_table_from_export

        return render(sweep_table_from_export(spec, read_export(runs_file), sweep_dir=sweep_dir), fmt)
    return render(sweep_table(spec, sweep_dir=sweep_dir, tracking_uri=tracking_uri), fmt)


def _require_store_of(spec: object, name: str, uri: str | None) -> None:
    from orchestrator.track.store import require_store

    uri = uri or spec.tracking.uri
    require_store(uri, name, "start it (or fix it), or read another store with --tracking-uri; `convsweep table "
                  "--runs FILE` reads an export without MLflow")


def cmd_table(args: argparse.Namespace) -> int:
    from orchestrator.tables.render import FORMATS

    if args.format not in FORMATS:
        raise ValueError(f"--format: unknown table format (got {args.format!r}; allowed: {', '.join(FORMATS)})")
    if args.runs is not None and args.tracking_uri is not None:
        raise ValueError(f"--runs: reads the runs from {args.runs}, so --tracking-uri does not apply (got both; "
                         f"allowed: one of them)")
    spec, source = load_any(args.sweep, args.root, args.profile, args.overrides)
    if args.runs is None:
        _require_store_of(spec, args.sweep, args.tracking_uri)
    _out.print(table_text(spec, source, args.format, args.tracking_uri, args.runs), highlight=False, markup=False)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from orchestrator.tables.export import export_sweep

    spec, _ = load_any(args.sweep, args.root, args.profile, args.overrides)
    _require_store_of(spec, args.sweep, args.tracking_uri)
    path, n = export_sweep(spec, args.out or f"{spec.name}-runs.jsonl", tracking_uri=args.tracking_uri)
    _out.print(f"sweep {spec.name}: {n} run{'s' * (n != 1)} written to {path}", highlight=False, markup=False)
    return 0


def cmd_figure(args: argparse.Namespace) -> int:
    from orchestrator.tables.figures import sweep_figure

    if args.runs is not None and args.tracking_uri is not None:
        raise ValueError(f"--runs: reads the runs from {args.runs}, so --tracking-uri does not apply (got both; "
                         f"allowed: one of them)")
    spec, source = load_any(args.sweep, args.root, args.profile, args.overrides)
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


def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.tables.report import write_report
    from orchestrator.run.sweepdir import SweepDir

    spec, source = load_any(args.sweep, args.root, args.profile, args.overrides)
    out = args.out or SweepDir.of(spec).report
    try:
        path, run_id = write_report(spec, out, sweep_dir=Path(source).parent if source else None,
                                    tracking_uri=args.tracking_uri, ui_url=args.mlflow_ui, log=not args.no_log)
    except ValueError as exc:
        raise ValueError(f"{source or spec.name}: {exc}") from exc
    _out.print(f"report of {spec.name}: {path.resolve()}" + (f" (MLflow run {run_id}, artifact report.html)"
                                                            if run_id else ""), highlight=False, markup=False)
    return 0

