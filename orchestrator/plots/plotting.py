"""matplotlib for convsweep's pictures, imported only when something is drawn (the driver and the jobs
start no slower) and on the Agg backend: jobs and drivers run without a display. No torch here, so
``convsweep figure`` and ``convsweep report`` draw on a machine without it."""

from __future__ import annotations

from typing import Any

__all__ = ["pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
