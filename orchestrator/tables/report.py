"""``convsweep report SWEEP``: one self-contained HTML page of a sweep, to mail to a colleague.

It holds the table with the published values (``orchestrator.tables.build``, the same query as ``convsweep
table``), the figure (``orchestrator.tables.figures``), every trial's status and headline metrics with a link to its
run in the MLflow UI, and each run's pictures (ERF maps, learned shapes) taken from its MLflow artifacts.
Every image is inlined as a ``data:`` URI, so the file needs nothing beside it.

Where it is kept in MLflow (the choice): a run of its own in the sweep's experiment, named
``report: <sweep>`` and tagged ``convsweep.report_of = <sweep>``, holding ``report.html`` as its artifact;
writing the report again re-uses that run and replaces the file. It is deliberately *not* tagged
``convsweep.sweep``: tables, status, export and resume count the trial runs by that tag, and a report is
not a trial. (MLflow has no experiment-level artifacts, so a run is the place an artifact can live.)
"""

from __future__ import annotations

import base64
import io
import math
import os
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

from orchestrator.plots.shapeplots import SHAPE_PICTURES

__all__ = ["REPORT_TAG", "build_report", "log_report", "write_report"]

REPORT_TAG = "convsweep.report_of"
TRIAL_PICTURES = ("erf_init.png", "erf.png", *SHAPE_PICTURES)
HEADLINE_METRICS = ("best_val_top1", "final_val_top1", "erf_r90", "folded_params")
STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #bbb;padding:2px 6px;font-size:12px}caption{font-weight:bold;text-align:left}
img{max-width:100%;margin:4px;border:1px solid #eee}.trial{margin:1em 0;padding:.5em;border-top:2px solid #ccc}
.pics img{max-height:260px}.FINISHED{color:#080}.FAILED{color:#b00}.RUNNING{color:#06b}"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str) -> str:
    return f'<img src="{_data_uri(png)}" alt="{escape(alt)}" title="{escape(alt)}">'


def ui_base(tracking_uri: str, ui_url: str | None) -> str:
    """Where the MLflow UI is: given, the tracking server itself, or `mlflow ui`'s default address."""
    if ui_url:
        return ui_url.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return "http://127.0.0.1:5000"


def _figure_png(sweep: Any, table: Any) -> tuple[bytes, Any]:
    from orchestrator.tables.figureplots import render_figure
    from orchestrator.tables.figures import figure_data
    from orchestrator.plots.plotting import pyplot

    data = figure_data(table, sweep.figure)
    fig = render_figure(data)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        pyplot().close(fig)
    return buffer.getvalue(), data


def _run_pictures(client: Any, run_id: str) -> dict[str, bytes]:
    """The run's ERF and shape pictures, read from its MLflow artifacts (``analysis/``)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per picture otherwise
    names = {Path(a.path).name for a in client.list_artifacts(run_id, "analysis") if not a.is_dir}
    wanted = [n for n in TRIAL_PICTURES if n in names]
    if not wanted:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        got = {}
        for name in wanted:
            local = client.download_artifacts(run_id, f"analysis/{name}", tmp)
            got[name] = Path(local).read_bytes()
        return got


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def build_report(sweep: Any, *, sweep_dir: str | Path | None = None, tracking_uri: str | None = None,
                 ui_url: str | None = None) -> str:
    """The report's HTML text (see the module doc)."""
    from orchestrator.spec.expand import expand
    from orchestrator.tables.build import sweep_table
    from orchestrator.tables.render import render
    from orchestrator.track.tracker import Tracker

    from mlflow.tracking import MlflowClient

    uri = tracking_uri or sweep.tracking.uri
    if MlflowClient(uri).get_experiment_by_name(sweep.experiment) is None:
        raise ValueError(f"experiment: no MLflow experiment named {sweep.experiment!r} at {uri} (got sweep "
                         f"{sweep.name!r}; has the sweep run yet? allowed: a sweep run with `convsweep sweep`)")
    tracker = Tracker(uri, sweep.experiment, sweep.name)
    runs = tracker.status_by_key()
    base = ui_base(uri, ui_url)
    layout = [*sweep.table.rows, *sweep.table.columns] if sweep.table else ["layer.method"]
    parts = [f"<h1>{escape(sweep.name)}</h1>", f"<p>{escape(sweep.description)}</p>" if sweep.description else "",
             f"<p>Written {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from MLflow <code>{escape(uri)}</code>, "
             f"experiment <code>{escape(sweep.experiment)}</code>; MLflow UI at <a href=\"{escape(base)}\">"
             f"{escape(base)}</a>.</p>"]
    trials = expand(sweep)
    counts: dict[str, int] = {}
    for trial in trials:
        status = runs[trial.trial_key].info.status if trial.trial_key in runs else "NOT STARTED"
        counts[status] = counts.get(status, 0) + 1
    parts.append("<h2>Status</h2><p>" + escape(", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
                 + f" of {len(trials)} trials") + "</p>")
    if sweep.table is not None:
        table = sweep_table(sweep, sweep_dir=sweep_dir, tracking_uri=uri)
        parts += ["<h2>Table</h2>", render(table, "html")]
        png, _ = _figure_png(sweep, table)
        parts += ["<h2>Figure</h2>", f'<div class="figure">{_img(png, "figure: " + sweep.name)}</div>']
    parts.append("<h2>Trials</h2>")
    head = ["trial", *layout, "seed", "status", *HEADLINE_METRICS, "MLflow run"]
    rows = []
    sections = []
    for trial in trials:
        params = trial.flat_params()
        run = runs.get(trial.trial_key)
        status = run.info.status if run is not None else "NOT STARTED"
        metrics = run.data.metrics if run is not None else {}
        link = ""
        if run is not None:
            href = f"{base}/#/experiments/{tracker.experiment_id}/runs/{run.info.run_id}"
            link = f'<a href="{escape(href)}">{escape(run.info.run_id[:8])}</a>'
        cells = [f'<a href="#t-{trial.trial_key}">{trial.trial_key}</a>',
                 *(escape(params.get(p, "")) for p in layout), str(trial.seed),
                 f'<span class="{escape(status)}">{escape(status)}</span>',
                 *(_fmt(metrics.get(m)) for m in HEADLINE_METRICS), link]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        pictures = _run_pictures(tracker.client, run.info.run_id) if run is not None else {}
        label = ", ".join(f"{p}={params.get(p, '')}" for p in layout) + f", seed {trial.seed}"
        sections.append(f'<div class="trial" id="t-{trial.trial_key}"><h3>{escape(trial.trial_key)}: '
                        f"{escape(label)} ({escape(status)}) {link}</h3>"
                        + ('<div class="pics">' + "".join(_img(png, f"{trial.trial_key} {name}")
                                                          for name, png in pictures.items()) + "</div>"
                           if pictures else "<p>no pictures recorded (analysis: erf/shapes not asked for)</p>")
                        + "</div>")
    parts.append("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
                 + "".join(rows) + "</tbody></table>")
    parts.append("<h2>Pictures per trial</h2>" + "".join(sections))
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(sweep.name)} report"
            f"</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def log_report(sweep: Any, path: Path, *, tracking_uri: str | None = None) -> str:
    """Log ``path`` as ``report.html`` of the sweep's report run (created once, re-used); returns its id."""
    from orchestrator.track.tracker import Tracker

    tracker = Tracker(tracking_uri or sweep.tracking.uri, sweep.experiment, sweep.name)
    client = tracker.client
    found = client.search_runs([tracker.experiment_id], f"tags.`{REPORT_TAG}` = '{sweep.name}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        run = client.create_run(tracker.experiment_id, run_name=f"report: {sweep.name}",
                                tags={REPORT_TAG: sweep.name, "convsweep.kind": "report"})
        run_id = run.info.run_id
    client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    return run_id


def write_report(sweep: Any, out: str | Path, *, sweep_dir: str | Path | None = None,
                 tracking_uri: str | None = None, ui_url: str | None = None, log: bool = True
                 ) -> tuple[Path, str | None]:
    """Write the report to ``out`` (a file ``report.html`` is logged under that name) and, with ``log``,
    into MLflow; returns the path and the report run's id."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(sweep, sweep_dir=sweep_dir, tracking_uri=tracking_uri, ui_url=ui_url),
                    encoding="utf-8")
    run_id = None
    if log:
        if path.name != "report.html":
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / "report.html"
                copy.write_bytes(path.read_bytes())
                run_id = log_report(sweep, copy, tracking_uri=tracking_uri)
        else:
            run_id = log_report(sweep, path, tracking_uri=tracking_uri)
    return path, run_id
