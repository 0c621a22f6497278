"""MLflow: probing a tracking store (``store``), writing a trial's records (``tracker``), keeping them through an
outage (``outbox``) and reading runs back (``query``).

May import: ``spec``, ``dirs`` and MLflow (lazily where a light caller only needs a URI or a tag name).
"""
