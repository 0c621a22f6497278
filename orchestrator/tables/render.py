"""Rendering a regenerated table (``orchestrator.tables.table.Table``) as md, csv, latex or html text.

Every format is the same grid (``_grid``): the row params, the per-row extra figures (Params/FLOPs) with the
published ones, then per column value and metric the cell (``mean ± std (n)``, ``missing (0/3)``), max, the
published number with the paper's other printed columns (``reference.extra``), delta to it, delta to the
baseline and the t-test's t and p. csv splits the cell into numeric mean/std/n columns at full precision for
further processing; the others round to ``digits`` and carry the papers' marks (``table.marks``: the best
mean of a column in bold, an asterisk on significant p-values).
"""

from __future__ import annotations

import csv
import io
import math
from html import escape

from orchestrator.spec.tablespec import TableSpec
from orchestrator.tables.table import Cell, Table, canon

__all__ = ["FORMATS", "render"]

# a grid string opening with this is printed in bold (md **x**, latex \textbf{x}, html <b>x</b>)
_BOLD = "\x01"


def _fmt(x: float | None, digits: int, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if digits >= 10 else text


def _cell_text(cell: Cell, spec: TableSpec) -> str:
    s, d = cell.summary, spec.digits
    count = f"{s.n}/{cell.expected_n}" if cell.expected_n and s.n != cell.expected_n else f"{s.n}"
    if s.n == 0:
        return f"missing ({count})"
    text = _fmt(s.mean, d)
    if "std" in spec.aggregate and s.n > 1:
        text += f" ± {_fmt(s.std, d)}"
    return text + (f" ({count})" if "n" in spec.aggregate else "")


def _grid(table: Table, numeric: bool) -> tuple[list[str], list[list[str]]]:
    """The table as a header and string rows; ``numeric`` splits cells into mean/std/n for csv."""
    spec = table.spec
    d = 10 if numeric else spec.digits  # csv keeps the precision for further processing
    labels = {param: {canon(k): text for k, text in names.items()} for param, names in spec.labels.items()}
    label = lambda param, v: labels.get(param, {}).get(canon(v), v)  # noqa: E731
    has_ref = {m.header: spec.reference is not None and m.header in spec.reference.values for m in spec.metrics}
    ref_extra = list(spec.reference.extra) if spec.reference is not None else []
    best = {} if numeric or not spec.marks.best else _best_means(table)
    alpha = None if numeric else spec.marks.significance
    header = [*spec.rows]
    width: dict[str, int] = {}
    for e in spec.extra_metrics:
        header.append(e.header)
        if spec.reference is not None and e.header in spec.reference.values:
            header.append(f"{e.header} paper")
    for c in table.col_keys:
        for m in spec.metrics:
            prefix = " ".join([*(label(p, v) for p, v in zip(spec.columns, c)),
                               *([m.header] if len(spec.metrics) > 1 or not spec.columns else [])])
            subs = (["mean", "std", "n"] if numeric else [""]) + (["max"] if "max" in spec.aggregate else [])
            subs += (["paper", *(f"paper {x}" for x in ref_extra), "Δpaper"] * has_ref[m.header]
                     + ["Δbase"] * bool(spec.baseline))
            subs += ["t", "p"] * (spec.test != "none")
            header += [f"{prefix} {s}".strip() for s in subs]
            width[m.header] = len(subs)
    body = []
    for r in table.row_keys:
        line = [label(p, v) for p, v in zip(spec.rows, r)]
        col_label = lambda c: " ".join(str(label(p, v)) for p, v in zip(spec.columns, c))  # noqa: E731
        for e in spec.extra_metrics:
            split = table.extras_by_column.get((r, e.header))
            line.append(", ".join(f"{_fmt(v, e.digits)} ({col_label(c)})" for c, v in split) if split
                        else _fmt(table.extras.get((r, e.header)), e.digits))
            if spec.reference is not None and e.header in spec.reference.values:
                pub = table.published_extras.get((r, e.header))
                line.append("" if pub is None else f"{pub:g}")
        for c in table.col_keys:
            for m in spec.metrics:
                cell = table.cells.get((r, c, m.header))
                if cell is None:  # a combination the sweep never planned (excluded): blank, not missing
                    line += [""] * width[m.header]
                    continue
                s = cell.summary
                text = _cell_text(cell, spec)
                if s.n and best.get((_group(spec, r), c, m.header)) == s.mean:
                    text = _BOLD + text
                line += [_fmt(s.mean, d), _fmt(s.std, d), str(s.n)] if numeric else [text]
                if "max" in spec.aggregate:
                    line.append(_fmt(s.max, d))
                if has_ref[m.header]:
                    extra = [_starred(cell.published_extra.get(x, ""), alpha, x) for x in ref_extra]
                    line += [_fmt(cell.published, d), *extra, _fmt(cell.delta_published, d, True)]
                if spec.baseline:
                    line.append("baseline" if cell.is_baseline else _fmt(cell.delta_baseline, d, True))
                if spec.test != "none":
                    p_text = "" if math.isnan(cell.p) else f"{cell.p:.{2 if d < 10 else 10}g}"
                    line += [_fmt(cell.t, 2 if d < 10 else d), _starred(p_text, alpha, "p")]
        body.append(line)
    return header, body


def _group(spec: TableSpec, row: tuple[str, ...]) -> tuple[str, ...]:
    """The values of ``marks.best_within``'s row params: rows sharing them compete for the bold mark."""
    return tuple(v for p, v in zip(spec.rows, row) if p in spec.marks.best_within)


def _best_means(table: Table) -> dict[tuple[tuple[str, ...], tuple[str, ...], str], float]:
    """(row group, column, metric header) -> the highest mean among its cells with runs."""
    best: dict[tuple[tuple[str, ...], tuple[str, ...], str], float] = {}
    for (r, c, header), cell in table.cells.items():
        if cell.summary.n and not math.isnan(cell.summary.mean):
            key = (_group(table.spec, r), c, header)
            best[key] = max(best.get(key, -math.inf), cell.summary.mean)
    return best


def _starred(text: str, alpha: float | None, column: str) -> str:
    """A p-value's text with the papers' asterisk when it is below ``alpha`` (other columns unchanged)."""
    if alpha is None or column != "p" or not text:
        return text
    try:
        return text + "*" if float(text) < alpha else text
    except ValueError:
        return text


def _bold(text: str, on: str, off: str) -> str:
    return on + text[1:] + off if text.startswith(_BOLD) else text


def _footer(table: Table) -> str:
    total = len(table.cells)
    return (f"{table.runs_used} runs; {table.missing} of {total} cells missing"
            + (f"; {table.runs_skipped} runs skipped (other sweep, not FINISHED or lacking the layout params)"
               if table.runs_skipped else "")
            + (f"; {table.runs_inconsistent} FINISHED runs left out: their trial folders disagree (`convsweep status` "
               "says why, `convsweep resume` runs them again)" if table.runs_inconsistent else ""))


def _md(table: Table) -> str:
    header, body = _grid(table, numeric=False)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [f"**{table.spec.title}**", ""] if table.spec.title else []
    lines += ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_bold(esc(v), "**", "**") for v in row) + " |" for row in body]
    return "\n".join(lines + ["", _footer(table)]) + "\n"


def _csv(table: Table) -> str:
    header, body = _grid(table, numeric=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return buf.getvalue()


def _latex(table: Table) -> str:
    header, body = _grid(table, numeric=False)
    specials = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "±": r"$\pm$", "Δ": r"$\Delta$"}
    esc = lambda s: "".join(specials.get(ch, ch) for ch in s)  # noqa: E731
    lines = [r"\begin{table}[t]", r"\centering"]
    if table.spec.title:
        lines.append(rf"\caption{{{esc(table.spec.title)}}}")
    lines += [r"\begin{tabular}{" + "l" * len(table.spec.rows) + "r" * (len(header) - len(table.spec.rows)) + "}",
              r"\hline", " & ".join(map(esc, header)) + r" \\", r"\hline"]
    lines += [" & ".join(_bold(esc(v), r"\textbf{", "}") for v in row) + r" \\" for row in body]
    lines += [r"\hline", r"\end{tabular}", f"% {_footer(table)}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _html(table: Table) -> str:
    header, body = _grid(table, numeric=False)
    lines = ["<table>"]
    if table.spec.title:
        lines.append(f"<caption>{escape(table.spec.title)}</caption>")
    lines.append("<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead>")
    lines.append("<tbody>")
    lines += ["<tr>" + "".join(f"<td>{_bold(escape(v), '<b>', '</b>')}</td>" for v in row) + "</tr>" for row in body]
    lines += ["</tbody>", "</table>", f"<p>{escape(_footer(table))}</p>"]
    return "\n".join(lines) + "\n"


_RENDERERS = {"md": _md, "csv": _csv, "latex": _latex, "html": _html}
FORMATS = tuple(_RENDERERS)  # `convsweep table --format`


def render(table: Table, fmt: str = "md") -> str:
    """The table as text in ``fmt`` (one of ``FORMATS``)."""
    if fmt not in _RENDERERS:
        raise ValueError(f"format: unknown table format {fmt!r} (allowed: {', '.join(FORMATS)})")
    return _RENDERERS[fmt](table)
