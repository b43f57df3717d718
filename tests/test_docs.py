"""The API reference builds from the docstrings (make docs), one page per module, and none
of its links into the package is dead."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import dropstudy

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # 10 s: pdoc imports and renders every module
def test_api_reference_builds_with_every_module_and_no_dead_link(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pdoc", "-o", str(tmp_path), "--docformat", "google", "dropstudy"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    pages = {p.stem for p in (tmp_path / "dropstudy").glob("*.html")}
    assert pages == set(dropstudy.SUBMODULES)
    dead = []
    for page in tmp_path.rglob("*.html"):
        for target in re.findall(r'href="([^"#:]+\.html)', page.read_text()):
            if not (page.parent / target).resolve().exists():
                dead.append(f"{page.name} -> {target}")
    assert not dead, dead[:10]
