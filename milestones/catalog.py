"""The registered models as data, so that ``milestones list`` runs without importing torch: ``catalog.json`` holds
one row per model, in registry order, as the registry renders it (:func:`catalog_rows`). It is generated, never
edited by hand; ``tests/test_docs.py`` checks that it is fresh. Regenerate it with ``python -m milestones.catalog``."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("catalog.json")
REGENERATE = "python -m milestones.catalog"
COLUMNS = ("name", "family", "year", "params", "MACs", "paper")
"""The columns of every row, ``milestones list``'s headers: exact parameter count, MACs (``format_count``), and the
paper as ``short authors, title``."""


def find_models(patterns: Sequence[str] = ()) -> list[dict[str, object]]:
    """The catalogue's rows whose name matches any of the glob ``patterns`` (as ``list_models(pattern)`` matches),
    in registry order, each once; all of them without patterns. Reads ``catalog.json`` only (no torch)."""
    rows = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    if not patterns:
        return rows
    return [r for r in rows if any(not p or fnmatch.fnmatchcase(r["name"], p) for p in patterns)]


def catalog_rows() -> list[dict[str, object]]:
    """The rows of ``catalog.json`` as the registry gives them today (imports every model family, and torch)."""
    from .models import get_spec, list_models
    from .report import format_count, short_authors

    rows = []
    for name in list_models():
        s = get_spec(name)
        c = s.counts
        rows.append(dict(zip(COLUMNS, (name, s.family, s.paper.year, f"{c.params:,}" if c else "-",
                                       format_count(c.macs) if c else "-",
                                       f"{short_authors(s.paper)}, {s.paper.title}"))))
    return rows


def catalog_json() -> str:
    """``catalog.json``'s text: one row per line, so that a change reads as a one-line diff."""
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in catalog_rows()) + "\n]\n"


if __name__ == "__main__":
    CATALOG_FILE.write_text(catalog_json(), encoding="utf-8")
