"""The suite's grouping: tests marked with one ``xdist_group`` run on one worker, so that a
module fixture (the resume test's reference run, a worker's quick runs) is built once."""

import subprocess
import sys

GROUPED = """
import os
import pytest

pytestmark = pytest.mark.xdist_group("g")


@pytest.mark.parametrize("i", range(4))
def test_a(i):
    print("WORKER", os.environ.get("PYTEST_XDIST_WORKER"))
"""


def test_a_module_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-s",
         "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path / "test_grouped.py")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:]
    workers = {line.split()[0] for line in r.stdout.splitlines() if "PASSED" in line}
    assert len(workers) == 1, (
        f"xdist_group's tests ran on {sorted(workers)}: --dist loadgroup does not group with "
        "this pytest (pytest-xdist issue 1386); install the pytest the test extra pins"
    )
