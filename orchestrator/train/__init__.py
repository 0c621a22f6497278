"""What runs on a compute node: the job callable (``job``), the DDP trainer, evaluation, checkpoints, the
process group, optimisers, schedules and the per-epoch analyses (ERF, learned shapes).

May import: torch, ``layers``, ``pipelines``, ``spec``, ``dirs``. Never ``run``, ``track`` or ``tables``: a job
talks to the driver only through its trial directory.
"""
