"""The papers' tables and figures from recorded runs: building a table (``build``), rendering it (``render``),
statistics, exports, figures, plots and the HTML report.

May import: ``spec``, ``dirs``, ``track``; matplotlib for the figures. Never ``run`` or ``train``.
"""
