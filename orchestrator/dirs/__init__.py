"""The folders on disk that a job and the driver share: a trial's directory (``trialdir``) and the checksums
beside its checkpoints and the reading of a checkpoint (``checksum``). The contract between the two sides lives here, so both import it and
neither imports the other. The sweep's folder around the trial directories (the sweep record, ``jobs/``,
``STOPPING``, Tune's state) is the driver's alone: ``orchestrator.run.sweepdir.SweepDir``.

May import: the standard library only (torch lazily, inside ``read_checkpoint``).
"""
