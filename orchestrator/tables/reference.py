"""The papers' published numbers beside ours: the rows of a table's reference CSV
(``experiments/reference/*.csv``, named by ``table.reference``) matched to a cell by its param values."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

from orchestrator.spec.tablespec import TableSpec
from orchestrator.tables.table import canon

__all__ = ["load_reference", "published", "published_extra"]


def load_reference(spec: TableSpec, reference_dir: str | Path | None) -> list[dict[str, str]]:
    """The reference CSV's rows (none without ``table.reference``), its named columns checked."""
    if spec.reference is None:
        return []
    path = Path(reference_dir or ".") / spec.reference.file
    if not path.is_file():
        raise ValueError(f"table.reference.file: no such CSV {str(path)!r} (got {spec.reference.file!r})")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = ({*spec.reference.match.values(), *spec.reference.values.values(), *spec.reference.extra.values()}
               - set(rows[0] if rows else {}))
    if missing:
        raise ValueError(f"table.reference: {path.name} lacks columns {sorted(missing)} "
                         f"(got columns {sorted(rows[0]) if rows else []})")
    return rows


def _reference_row(spec: TableSpec, ref_rows: list[dict[str, str]], values: Mapping[str, str],
                   params: Sequence[str]) -> dict[str, str] | None:
    """The published CSV row whose ``reference.match`` columns equal these param values, if any."""
    ref = spec.reference
    assert ref is not None
    for row in ref_rows:
        if all(canon(ref.value_map.get(p, {}).get(values[p], values[p])) == canon(row[ref.match[p]])
               for p in params if p in ref.match):
            return row
    return None


def published(spec: TableSpec, ref_rows: list[dict[str, str]], values: Mapping[str, str], header: str,
              params: Sequence[str]) -> float | None:
    """The published number of column ``header`` for the cell with these param values, if the paper has one."""
    ref = spec.reference
    if ref is None or header not in ref.values:
        return None
    row = _reference_row(spec, ref_rows, values, params)
    text = "" if row is None else row[ref.values[header]].strip()
    return float(text) if text else None


def published_extra(spec: TableSpec, ref_rows: list[dict[str, str]], values: Mapping[str, str], header: str,
                    params: Sequence[str]) -> dict[str, str]:
    """The ``reference.extra`` columns of the CSV row that holds ``header``'s published value, as printed."""
    ref = spec.reference
    if ref is None or not ref.extra or header not in ref.values:
        return {}
    row = _reference_row(spec, ref_rows, values, params)
    if row is None or not row[ref.values[header]].strip():
        return {}
    return {label: row[column].strip() for label, column in ref.extra.items()}
