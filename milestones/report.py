"""Markdown reports generated from the registry, so the documentation cannot drift from the code.

``models_markdown()`` renders ``docs/models.md``: every registered model with our exact parameter count and
multiply-adds (the stored ``COUNTS``, which ``tests/test_models.py`` re-measures on the meta device) beside what its
paper reported (``REPORTED``). ``tests/test_docs.py`` fails when the committed file differs from a fresh rendering.

Regenerate with ``milestones report models > docs/models.md`` or ``python -m milestones.report > docs/models.md``.
"""

from __future__ import annotations

import sys

from .models import ModelSpec, PaperRef, get_spec, list_models

REGENERATE = "milestones report models > docs/models.md"

_INTRO = """\
# Models

Generated from the model registry; do not edit by hand. Regenerate with `{regenerate}`
(or `python -m milestones.report > docs/models.md`). `tests/test_docs.py` fails when this file is stale.

{n_models} models in {n_families} families. *Ours* are exact counts of this implementation at the input size shown:
trainable parameters, and multiply-adds for one image (the papers' "FLOPs"; `torch.utils.flop_counter` FLOPs / 2).
*Paper* columns quote the paper as printed (parameters in millions, errors in percent on the dataset named), with the
table and test protocol in the source column; - means not reported. `milestones info NAME` measures one model afresh.
"""

_COLUMNS = (
    "model",
    "paper",
    "input (CxHxW)",
    "params (ours, exact)",
    "params (paper, M)",
    "GMACs (ours)",
    "GMACs (paper)",
    "dataset",
    "top-1 err % (paper)",
    "top-5 err % (paper)",
    "source of the paper's numbers",
    "our count agrees with",
)


def format_count(n: float | None, unit: str = "", spec: str = ".2f") -> str:
    """``269722`` -> ``"269.72k"`` (``spec`` formats the mantissa); None -> ``"-"``."""
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:{spec}}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def short_authors(paper: PaperRef) -> str:
    """``"He et al."``, ``"Simonyan & Zisserman"`` or ``"Krizhevsky"``.

    Authors are stored as a comma-separated list, either as surnames or as full names; the surname is the last word.
    """
    authors = [a.strip() for a in paper.authors.split(",") if a.strip()]
    surnames = [a.split()[-1] for a in authors] or ["?"]
    if len(surnames) == 1:
        return surnames[0]
    if len(surnames) == 2:
        return f"{surnames[0]} & {surnames[1]}"
    return f"{surnames[0]} et al."


def short_cite(paper: PaperRef) -> str:
    """``"He et al. 2016"``, ``"Simonyan & Zisserman 2015"`` or ``"Krizhevsky 2014"``, linked to arXiv when known."""
    text = f"{short_authors(paper)} {paper.year}"
    return f"[{text}](https://arxiv.org/abs/{paper.arxiv})" if paper.arxiv else text


def _num(value: float | None) -> str:
    """A reported number as stored (``17.0`` stays ``17.0``, as the paper printed it), or a dash."""
    return "-" if value is None else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "-"


def _row(spec: ModelSpec) -> list[str]:
    r, c = spec.reported, spec.counts
    has_error = r.top1_err is not None or r.top5_err is not None
    return [
        f"`{spec.name}`",
        short_cite(spec.paper),
        "x".join(str(v) for v in spec.input_size),
        f"{c.params:,}" if c else "-",
        _num(r.params_m),
        f"{c.macs / 1e9:.4g}" if c else "-",
        _num(r.gmacs),
        r.dataset if has_error else "-",
        _num(r.top1_err),
        _num(r.top5_err),
        _cell(r.source),
        _cell(c.source if c else ""),
    ]


def models_markdown() -> str:
    """The model table for ``docs/models.md``: every registered model, grouped by family, in registration order.

    Returns:
        Markdown text ending in a newline; identical on every call for the same registry.
    """
    names = list_models()
    families: dict[str, list[ModelSpec]] = {}
    for name in names:
        spec = get_spec(name)
        families.setdefault(spec.family, []).append(spec)
    lines = [
        _INTRO.format(regenerate=REGENERATE, n_models=len(names), n_families=len(families)),
        "| family | " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * (len(_COLUMNS) + 1),
    ]
    for family, specs in families.items():
        for i, spec in enumerate(specs):
            # The family name heads its group only, so the groups stand out in the rendered table.
            lines.append(f"| {f'**{family}**' if i == 0 else ''} | " + " | ".join(_row(spec)) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """``python -m milestones.report``: write the model table to stdout."""
    sys.stdout.write(models_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
