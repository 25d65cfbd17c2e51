"""Invoking the CLI in-process, and the one shape every refusal must have."""
from __future__ import annotations

from click.testing import CliRunner

from glyph.cli import main


def cli(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def one_line_error(r, *needles: str) -> None:
    """Exit 1, exactly one ``error: …`` line, no traceback, and every needle in it."""
    assert r.exit_code == 1, r.output
    assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output[:500]
    assert "Traceback" not in r.output and "internal error" not in r.output
    for n in needles:
        assert n in r.output, r.output
