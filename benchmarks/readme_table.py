"""Rewrite README.md's table of seconds per experiment from benchmarks/STUDY.md.

``python benchmarks/readme_table.py`` after ``python benchmarks/run.py --only study --write
benchmarks/STUDY.md``: the table then holds the measured figures, never typed-in ones
(``tests/test_readme.py`` checks that the two agree).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measured(study: str) -> dict[str, dict[str, str]]:
    """``{data set: {experiment: seconds}}`` from STUDY.md's "study wall time on" rows."""
    out = {}
    for line in study.splitlines():
        m = re.match(r"\| study wall time on (\S+):", line)
        if m:
            out[m.group(1)] = dict(re.findall(r"(\w+) (\d+) s", line.split("|")[3]))
    return out


def table(times: dict[str, dict[str, str]]) -> str:
    """The Markdown table: a row per data set, a column per experiment (in the study's order)."""
    from dropstudy_experiments.runner import NAMES

    seen = {n for row in times.values() for n in row}
    names = [n for n in NAMES if n in seen] + sorted(seen - set(NAMES))
    lines = ["| experiment | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for ds, row in times.items():
        lines.append(f"| {ds} | " + " | ".join(row.get(n, "-") for n in names) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    times = measured((ROOT / "benchmarks" / "STUDY.md").read_text())
    if not times:
        raise SystemExit("benchmarks/STUDY.md has no study rows: run benchmarks/run.py first")
    readme = ROOT / "README.md"
    text = readme.read_text()
    # the table whose first row is digits' (the findings table above it has a row per claim)
    pattern = r"\| experiment \|.*\|\n\|[-|]+\|\n\| digits \|.*\|\n(?:\| .*\|\n)*"
    new, n = re.subn(pattern, table(times), text, count=1)
    if n != 1:
        raise SystemExit("README.md has no table of seconds per experiment to replace")
    readme.write_text(new)


if __name__ == "__main__":
    main()
