"""convsweep's orchestrator: sweep files -> trials -> Ray Tune -> DDP jobs -> MLflow -> the papers' tables.

What belongs here: the sweep schema (``config``) and its loading (``sweepfile``), trial expansion
(``expand``), the trial directory contract (``trialdir``), the executor interface (``executors``) and the
local executor, the DDP trainer and the job callable, MLflow tracking, the Ray Tune driver (the only module
importing ray), the tables, and the thin ``convsweep`` CLI. It uses ``layers`` and ``pipelines``; it reaches
``slurm`` only through the ``convsweep.executors`` entry points.
"""
