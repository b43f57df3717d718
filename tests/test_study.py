"""Smoke test of the whole study at --quick scale: every results file, figure and the report."""

import json
import subprocess
import sys

from dropstudy_experiments import NAMES, module


def test_quick_study_writes_everything(tmp_path):
    out = tmp_path / "results"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dropstudy.cli",
            "run",
            "all",
            "--quick",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for name in NAMES:
        res = json.loads((out / name / "results.json").read_text())
        assert res["verdict"] in ("supported", "partly supported", "not supported")
        assert res["figures"], name
        for fig in res["figures"]:
            png = out / name / fig
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        md, verdict = module(name).section(res)
        assert verdict == res["verdict"] and "**" in md
    report = tmp_path / "REPORT.md"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dropstudy.cli",
            "report",
            "--results",
            str(out),
            "--out",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    text = report.read_text()
    for name in NAMES:
        assert f". {name}\n" in text
    assert "Quick (smoke-test) scale" in text
    # every image the report links exists
    import re

    for link in re.findall(r"\]\(([^)]+\.png)\)", text):
        assert (report.parent / link).is_file(), link
