"""What a sweep is: the schema, the sweep file's loading and errors, the expansion into trials, the checks that
need nothing but the file, the plan and its cost, and the table/figure specifications.

May import: pydantic, yaml, rich, ``layers``' torch-free modules (``layers.knobs``, ``layers.catalogue``),
``pipelines``' registries, and ``orchestrator.dirs``. Never torch, MLflow or Ray, nor ``run``/``train``/
``track``/``tables``: ``convsweep validate`` and ``plan`` load only this package.
"""
