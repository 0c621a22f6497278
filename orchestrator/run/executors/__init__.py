"""Where a trial's job runs: the executor protocol, its defaults (``ExecutorBase``), the one way from a recorded
job to its live handle (``live_job``) and the entry-point registry (``base``); the local executor (``local``)
and its warm start, which forks each rank from a process that has imported torch: the driver side and entry
point (``warmstart``), the fork server (``warmserver``) and the per-rank client (``warmclient``). SLURM's
executor lives in ``slurm/`` and is found through the ``convsweep.executors`` entry points.

May import: ``spec`` (the executor settings), the standard library, submitit and psutil. The warm
server imports the trainer's modules by name when it starts (``warmserver.PRELOADED_MODULES``), never at import.
"""
