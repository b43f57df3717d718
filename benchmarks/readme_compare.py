"""Rewrite docs/cli.md's sample of ``dropstudy compare`` from a run of the command.

``python benchmarks/readme_compare.py`` runs ``dropstudy compare`` with its defaults and
writes what it printed between docs/cli.md's compare markers, so the sample is the command's
output, never typed in (``tests/test_readme.py`` checks the block's form in the default
suite and, in ``make test-slow``, reruns the command against it).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- compare:start (written by `python benchmarks/readme_compare.py`) -->"
END = "<!-- compare:end -->"


def run_compare() -> str:
    """What ``dropstudy compare`` (its defaults, no progress bars) prints on stdout."""
    from dropstudy_experiments.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if main(["compare", "--no-progress"]) != 0:
            raise SystemExit("dropstudy compare failed")
    return out.getvalue()


def block(text: str) -> str:
    """The block between the compare markers (without them)."""
    m = re.search(re.escape(START) + r"\n```\n(.*?)```\n" + re.escape(END), text, re.S)
    if m is None:
        raise SystemExit(f"docs/cli.md has no block between {START!r} and {END!r}")
    return m.group(1)


def main() -> None:
    readme = ROOT / "docs" / "cli.md"
    text = readme.read_text()
    old = block(text)
    readme.write_text(text.replace(old, run_compare(), 1))


if __name__ == "__main__":
    main()
