"""What runs on a compute node: one process of one trial, found through its trial directory.

``job`` (the callable an executor runs) -> ``trainer`` (the epoch loop: train, validate, checkpoint, record)
or ``evaluate`` (evaluation trials: a finished trial's weights under test-time transforms). Around the loop:
``build`` (the spec's model and loaders), ``validation`` (top-1/top-5/loss over a split, all-reduced),
``resume`` (what a checkpoint holds, how a restart resumes, ``best.pt``), ``checkpoint`` (atomic, checksummed
files), ``distributed`` (the process group and the few collectives), ``optim`` and ``schedules``, ``faults``
(``CONVSWEEP_FAULT``, the crashes and sleeps tests inject), and the opt-in analyses ``analysis`` (ERF) and
``shapes`` (learned shapes), drawn by ``orchestrator.plots``.

May import: torch, ``layers``, ``pipelines``, ``spec``, ``dirs``, ``plots``. Never ``run``, ``track`` or
``tables``: a job talks to the driver only through its trial directory.
"""
