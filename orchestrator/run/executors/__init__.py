"""Where a trial's job runs: the executor protocol and its entry-point registry (``base``), the local executor
(``local``) and its warm-start fork server (``warmstart``). SLURM's executor lives in ``slurm/`` and is found
through the ``convsweep.executors`` entry points."""
