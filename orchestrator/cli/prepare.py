"""Commands that read a sweep file before anything runs: ``validate``, ``plan``, ``calibrate``; and ``names``,
the names such a file may use."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from orchestrator.cli.output import err as _err
from orchestrator.cli.output import out as _out

__all__ = ["cmd_calibrate", "cmd_names", "cmd_plan", "cmd_validate"]


def cmd_validate(args: argparse.Namespace) -> int:
    from orchestrator.run.preflight import load_sweep, validate_every_profile
    from orchestrator.spec.expand import expand

    if args.profile is None:  # the file as written and every profile in it
        spec = validate_every_profile(args.file, args.overrides)
    else:
        spec = load_sweep(args.file, args.profile, args.overrides)
    if not args.offline:
        from orchestrator.run.preflight import tracking_reachability_problems
        from orchestrator.spec.errors import ConfigError

        problems = tracking_reachability_problems(spec)
        if problems:
            raise ConfigError(problems, args.file)
    n = len(expand(spec))
    _out.print(f"{args.file}: ok ({spec.name}: {n} trial{'s' * (n != 1)})", highlight=False)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from orchestrator.run.plan import render_plan
    from orchestrator.run.preflight import load_sweep
    from orchestrator.spec.errors import ConfigError

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


def cmd_calibrate(args: argparse.Namespace) -> int:
    from orchestrator.run.cost import CALIBRATION_FILE, calibrate
    from orchestrator.run.preflight import load_sweep
    from orchestrator.spec.expand import expand

    if args.steps < 1:
        raise ValueError(f"--steps: must be >= 1 (got {args.steps})")
    spec = load_sweep(args.file, args.profile, args.overrides)
    done = calibrate(expand(spec), spec.storage.root, steps=args.steps)
    path = Path(spec.storage.root) / CALIBRATION_FILE
    _out.print(f"{spec.name}: {len(done)} calibrated model{'s' * (len(done) != 1)} in {path}; "
               f"`convsweep plan {args.file}` now prices the sweep from them", highlight=False, markup=False)
    return 0



def cmd_names(args: argparse.Namespace) -> int:
    from orchestrator.spec.names import describe

    _out.print(describe(), highlight=False, markup=False)
    return 0
