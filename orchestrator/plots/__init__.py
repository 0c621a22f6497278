"""The pictures both a job and the tables draw: ``plotting`` (matplotlib's pyplot on the Agg backend, imported
only when something is drawn), ``erfplot`` (an effective receptive field map) and ``shapeplots`` (the learned
shapes: masks, sigmas, envelopes, CoC kernels, sigma traces).

Drawing only: the arrays come measured (``orchestrator.train.analysis``, ``orchestrator.train.shapes``) and are
drawn as they are. May import: numpy, matplotlib, and ``layers``' types (for annotations only). Nothing else of
ours, and no torch at import: ``convsweep figure`` and ``report`` draw on a machine without it, and a job
(``train``) and the tables both import this package without importing each other.
"""
