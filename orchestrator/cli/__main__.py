"""``python -m orchestrator.cli``: what the ``convsweep`` script runs (a detached driver job runs it this way)."""

import sys

from orchestrator.cli.main import main

sys.exit(main())
