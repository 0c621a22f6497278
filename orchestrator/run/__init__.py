"""The driver: everything that runs on the login node for a sweep.

``sweepdir`` (the sweep's folder: ``SweepDir``, every path under ``<storage root>/<sweep>/``, and the sweep
record ``sweep.json``), ``state`` (the sweep's executor, live jobs, the driver's pid or job, which trials are
settled), ``driver`` (run and resume a sweep), ``session`` (one run of its pending trials: signals,
scheduler stops, outcomes), ``control`` (status, cancel and logs of a recorded sweep, from any shell),
``pool`` (the default, ``tune.proxies: threads``: the running trials followed by threads of the driver, which
asks Tune's scheduler after each epoch), ``tune`` (the only module importing Ray: that scheduler, and Tune's
runtime for ``tune.proxies: actors``; Ray's settings and the log lines it drops are in ``rayquiet``;
``writerhost`` hosts ``track.writer`` as a Ray actor), ``proxy`` (per trial: submit its job,
follow its directory; MLflow-free, its records go to the sweep's one writer), ``progress``, ``reuse`` (trials other sweeps finished) and the executors.
Before anything runs: ``preflight`` (the sweep file's checks plus the machine's: executor kind, tracking store,
MLflow server; ``load_sweep`` and ``validate_every_profile`` for the CLI and the driver), ``plan`` (the trials
and their estimated cost, as a table) and ``cost`` (device-hours from a calibration or the model's FLOPs,
counted on one image (CPU or meta device) and kept under the storage root; ``calibrate`` times real steps here).

May import: ``spec``, ``dirs``, ``track``, and ``train.job`` (the job's class, which imports torch only when it
runs). Never ``tables``.
"""
