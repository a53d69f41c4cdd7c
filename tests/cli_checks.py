"""The one check every bad-input test makes: what the CLI printed to stderr is one line, ``error: ...``."""

from __future__ import annotations


def one_line_error(err: str, *needles: str) -> str:
    """Assert ``err`` is exactly one ``error: ...`` line with no traceback and every needle in it; return the line."""
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    line = err.rstrip("\n")
    for needle in needles:
        assert needle in line, (needle, line)
    return line
