"""convsweep's orchestrator: sweep files -> trials -> Ray Tune -> DDP jobs -> MLflow -> the papers' tables.

The packages follow the path of one sweep, each importing only those before it (``tests/test_layout.py``):

- ``dirs``: the trial directory, the contract between a job and the driver (stdlib only);
- ``spec``: what a sweep is: the schema, loading a sweep file, its errors, the expansion into trials, the checks
  that need nothing but the file, the registries of names (no torch, MLflow or Ray);
- ``track``: MLflow: probing a store, writing a trial's records, keeping them through an outage, reading runs;
- ``plots``: matplotlib drawing shared by the job's analyses and the figures;
- ``train``: what runs on a compute node: the job, the DDP trainer, evaluation, checkpoints, optimisers, schedules;
- ``run``: the driver: preflight checks, the plan and its cost, the trials followed by its threads under Ray
  Tune's scheduler (or by Tune's runtime; ``run.tune`` is the only module importing Ray), the per-trial proxy,
  the executors, reuse, and status/cancel of a recorded sweep;
- ``tables``: the papers' tables, figures, exports and the HTML report from recorded runs;
- ``cli``: the ``convsweep`` command line, on top of all of them.

It uses ``layers`` and ``pipelines``; it reaches ``slurm`` only through the ``convsweep.executors`` entry points.
"""
