"""MLflow: probing a tracking store (``store``), writing a trial's records (``tracker``), keeping them through an
outage (``outbox``), the sweep's one writer that makes every trial's MLflow calls (``writer``) and reading runs
back (``query``: MLflow's API for any store, ``sqlitecolumns``: the few columns a table or a reuse lookup needs
straight from a SQLite store, without MLflow; ``sweepstatus``: which of a sweep's trials finished, failed or were
stopped, for the driver, the same way), ``lazytracker`` (the driver's tracker, opened off its critical path) and
``gitcommit`` (the commit a run is tagged with).

May import: ``spec``, ``dirs`` and MLflow (lazily where a light caller only needs a URI or a tag name).
"""
