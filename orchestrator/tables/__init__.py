"""The papers' tables and figures from recorded runs.

- ``table``: a regenerated table as data (``Table``, ``Cell``, ``canon``); ``stats``: per-cell statistics and
  t-tests; ``reference``: the published numbers of a table's reference CSV.
- ``pivot``: runs grouped into a table's cells (``build_table``); ``build``: a sweep's table from its MLflow
  store or an export file (``sweep_table``), the runs read through ``orchestrator.track.query``.
- ``render``: a table as md, csv, latex or html text; ``export``: a sweep's runs as one portable file.
- ``figuredata``: a figure's arrays; ``figures``: those arrays from a table; ``figureplots``: drawing them
  (through ``orchestrator.plots``, which the job's analyses share); ``report``: the one-page HTML report of a
  sweep.

Import direction inside: table <- {pivot, render, figures}, figuredata <- {figures, figureplots}, pivot <- build.
May import: ``spec``, ``dirs``, ``track``, ``plots``. Never ``run`` or ``train``.
"""
