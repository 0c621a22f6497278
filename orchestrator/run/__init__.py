"""The driver: a sweep's folder (``sweepdir``), the Ray Tune loop (``tune``, the only module importing Ray), the
per-trial proxy that submits a job and follows its directory (``proxy``), the executors, reuse of trials other
sweeps finished, and the commands that act on a running or recorded sweep (status, cancel, resume).
Before anything runs: ``preflight`` (the sweep file's checks plus the machine's: executor kind, tracking store,
MLflow server; ``load_sweep`` and ``validate_every_profile`` for the CLI and the driver), ``plan`` (the trials
and their estimated cost, as a table) and ``cost`` (device-hours from a calibration or the model's FLOPs,
counted on the meta device and kept under the storage root; ``calibrate`` times real steps here).

May import: ``spec``, ``dirs``, ``track``, and ``train.job`` (the job's class, which imports torch only when it
runs). Never ``tables``.
"""
