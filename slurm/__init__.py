"""convsweep on SLURM: the ``slurm`` executor and a real single-host test cluster.

``slurm.executor.SlurmExecutor`` submits each trial as one submitit job (registered as ``slurm`` in the
``convsweep.executors`` entry-point group, so the orchestrator never imports this package directly) and hands
back a ``slurm.handle.SlurmJobHandle`` per job; ``slurm.watcher`` asks SLURM about all of a sweep's jobs with
one ``squeue`` per interval, and every handle reads that snapshot; ``slurm.params`` maps a sweep's
``resources`` and ``executor.slurm`` sections to sbatch settings; ``slurm.queries`` reads jobs' states from
``squeue``/``scontrol``/``sacct``. ``slurm/local/`` holds the scripts that install, start and stop a real
SLURM on loopback (munge, MariaDB + slurmdbd, slurmctld, two slurmd with fake GPUs) for the tests.
"""
