"""The driver: a sweep's folder (``sweepdir``), the Ray Tune loop (``tune``, the only module importing Ray;
Ray's settings and the log lines it drops are in ``rayquiet``), the per-trial proxy that submits a job and
follows its directory (``proxy``; MLflow-free, its records go to ``track.writer``), the executors, reuse of
trials other sweeps finished, and the commands that act on a running or recorded sweep (status, cancel, resume).

May import: ``spec``, ``dirs``, ``track``, and ``train.job`` (the job's class, which imports torch only when it
runs). Never ``tables``.
"""
