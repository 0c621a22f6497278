"""``convsweep``: the command line, the one place with argparse. Parses, calls the library, prints.

Exit codes: 0 success, 1 a trial failed, 2 bad input or state (one line on stderr,
``convsweep: <FILE or SWEEP>: <what is wrong>; <what to do>``; nothing is submitted or recorded), 3 an
unexpected error (one line on stderr naming a log file that holds the traceback), 130 the sweep was interrupted
(`convsweep resume` continues it).

Modules: ``parser`` (the grammar), ``prepare`` (validate, plan, calibrate), ``sweeps`` (sweep, resume,
status, cancel, logs), ``results`` (table, export, figure, report), ``main`` (dispatch and the error lines),
``output`` (the consoles). It may import every package of ``orchestrator``, each only inside the command
that needs it, so ``validate`` and ``table`` stay light.
"""

from orchestrator.cli.main import main

__all__ = ["main"]
