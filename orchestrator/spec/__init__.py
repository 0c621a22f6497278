"""What a sweep is: the schema, the sweep file's loading and errors, the expansion into trials, the checks that
need nothing but the file and the registries, the table/figure specifications, and the registries of names.

Modules: ``schema`` (the trial and sweep models) over ``sections`` (the models of one section each),
``tablespec``/``figurespec`` (``figure_problems``), ``names`` (every name a sweep file may use, with a line
each), ``errors`` (``ConfigError``, ``Problem``, pydantic's errors translated, did-you-mean), ``yamlsafe`` and
``load`` (YAML -> environment -> profile -> ``--set`` -> ``SweepSpec``), ``expand`` (trials) with
``structure`` (grid/zip/exclude/seeds) and ``knobchecks`` (knobs no method reads), ``trialchecks`` (names,
data roots, layer knobs against ``layers``/``pipelines``), ``checks`` (table, tune, tracking URI, and
``sweep_problems``: all of the above). The plan, its cost and the checks that need the machine the sweep
runs on (executors, the tracking store) are in ``orchestrator.run`` (``plan``, ``cost``, ``preflight``).

May import: pydantic, yaml, ``layers``' torch-free modules (``layers.knobs``, ``layers.catalogue``),
``pipelines``' registries, and ``orchestrator.dirs``. Never torch, MLflow or Ray, nor ``run``/``train``/
``track``/``tables``, not even lazily: ``convsweep validate`` and ``plan`` load only this package (and
``run.preflight``).
"""
