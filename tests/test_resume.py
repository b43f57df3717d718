"""Interrupted runs lose nothing finished and resume to the same results, byte for byte
(the cells recomputed after the interrupt reproduce the uninterrupted run's)."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

# One worker runs this file: its module-scoped fixture is built once (pytest-xdist).
pytestmark = pytest.mark.xdist_group("test_resume")

# stayput --quick: four cells of several seconds each, so the signal lands mid-run; its
# reference run also serves stayput's own checks below (no second run of it)
NAME = "stayput"
CMD = [
    sys.executable,
    "-m",
    "dropstudy_experiments.cli",
    "run",
    NAME,
    "--quick",
    "--no-progress",
]


def run(out):
    r = subprocess.run([*CMD, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return (out / NAME / "results.json").read_bytes()


def interrupt_after_first_cell(out, sig):
    # The child installs Python's SIGINT handler itself: an ignored SIGINT (as a background
    # job inherits it) survives exec, and Python then raises no KeyboardInterrupt.
    args = [*CMD[3:], "--out", str(out)]
    boot = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = ['dropstudy', *{args!r}]; "
        "runpy.run_module('dropstudy_experiments.cli', run_name='__main__')"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", boot], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    cells = out / NAME / "cells"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if cells.is_dir() and any(cells.glob("*.json")):
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be interrupted"
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    else:
        assert p.returncode == -signal.SIGKILL
    done = sorted(cells.glob("*.json"))
    assert done, "no finished cell was kept"
    for f in done:  # nothing truncated: every kept cell parses and has its result
        assert "result" in json.loads(f.read_text())
    assert not (out / NAME / "results.json").exists()
    return [f.name for f in done]


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    run(out)
    return out


@pytest.fixture(scope="module")
def reference(reference_dir):
    return (reference_dir / NAME / "results.json").read_bytes()


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)]
)
def test_interrupted_run_resumes_to_same_results(reference, tmp_path, sig):
    kept = interrupt_after_first_cell(tmp_path, sig)
    r = subprocess.run([*CMD, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{len(kept)} reused" in r.stderr
    assert (tmp_path / NAME / "results.json").read_bytes() == reference


def test_a_margin_set_elsewhere_copies_every_cell_and_changes_only_the_summary(
    reference_dir, tmp_path, capsys
):
    """A margin is no cell's argument: ``--set margin=...`` with ``--reuse`` copies every
    cell of the reference run (byte for byte) and computes none; the results differ in the
    margin, the rows do not."""
    from dropstudy_experiments import cli

    cells = reference_dir / NAME / "cells"
    before = {p.name: p.read_bytes() for p in cells.iterdir()}
    args = ["run", NAME, "--quick", "--no-progress", "--out", str(tmp_path)]
    assert cli.main([*args, "--set", "margin=0.3", "--reuse", str(reference_dir)]) == 0
    err = capsys.readouterr().err
    n = len(before)
    assert f"(0 cells computed, {n} reused; copied from {reference_dir}: {n} cells, 0 tun" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / NAME / "cells").iterdir()} == before
    assert {p.name: p.read_bytes() for p in cells.iterdir()} == before  # read, never written
    ref = json.loads((reference_dir / NAME / "results.json").read_text())
    new = json.loads((tmp_path / NAME / "results.json").read_text())
    assert (new["config"]["margin"], ref["config"]["margin"]) == (0.3, 0.1)
    assert new["rows"] == ref["rows"] and new["tests"] != ref["tests"]


def test_a_reuse_folder_without_this_runs_cells_is_said_to_have_given_none(
    reference_dir, tmp_path, capsys
):
    """A ``--reuse`` folder that holds no cell under the run's keys copies nothing, and the
    log says so rather than staying silent."""
    from dropstudy_experiments import cli

    empty = tmp_path / "elsewhere"
    (empty / NAME / "cells").mkdir(parents=True)
    out = tmp_path / "out"
    # the run's own folder holds every cell already: nothing to compute, nothing to copy
    shutil.copytree(reference_dir / NAME / "cells", out / NAME / "cells")
    args = ["run", NAME, "--quick", "--no-progress", "--out", str(out), "--reuse", str(empty)]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert f"; none copied from {empty} (no cell stored there under this run's keys" in err
    assert not any((empty / NAME / "cells").iterdir())  # read, never written


def test_changed_config_is_not_reused(tmp_path):
    from dropstudy_experiments.cells import CellStore

    store = CellStore(tmp_path)
    calls = []
    f = lambda v: (calls.append(v), {"v": v})[1]  # noqa: E731
    assert store.get("c", {"a": 1}, lambda: f(1)) == {"v": 1}
    assert store.get("c", {"a": 1}, lambda: f(2)) == {"v": 1}  # reused
    assert store.get("c", {"a": 2}, lambda: f(3)) == {"v": 3}  # config changed: recomputed
    store.path("c").write_text('{"format": 1, "config_hash": ')  # a torn file
    assert store.get("c", {"a": 2}, lambda: f(4)) == {"v": 4}
    assert calls == [1, 3, 4]


def test_no_nan_reaches_a_results_file(tmp_path):
    from dropstudy_experiments.results import write_json

    from dropstudy.validate import DropstudyError

    with pytest.raises(DropstudyError, match=r"non-finite value nan at \.a\[1\]"):
        write_json(tmp_path / "r.json", {"a": [1.0, float("nan")]})
    assert not (tmp_path / "r.json").exists()


def test_a_swallowed_interrupt_stops_the_run_after_the_cell(tmp_path):
    # Python drops a KeyboardInterrupt raised inside a finaliser; the flag the handler sets
    # still stops the run at the next cell boundary, keeping the cell that finished.
    from dropstudy_experiments.common import Context, cell
    from dropstudy_experiments.interrupt import INTERRUPTED, sticky_interrupt

    def work(i):
        if i == 0:
            INTERRUPTED.set()  # what the handler does before its exception is lost
        return {"i": i}

    ctx = Context("scaling", tmp_path, progress=False)
    with sticky_interrupt(), pytest.raises(KeyboardInterrupt):
        ctx.run_cells({"a": cell(work, i=0), "b": cell(work, i=1)})
    assert ctx.store.computed == ["a"] and not INTERRUPTED.is_set()


def test_stayput_plain_sgd_identity_and_each_optimiser(reference_dir):
    """From the reference quick run: under plain SGD every dropped unit stays bitwise put;
    momentum, Adam and weight decay each move dropped units (each optimiser option changes
    the measure), decay least."""
    rows = json.loads((reference_dir / NAME / "results.json").read_text())["rows"]
    assert rows["sgd"]["all_still"] and rows["sgd"]["ratio"]["mean"] == 0
    assert rows["sgd"]["kept_movement"]["mean"] > 0
    for o in ("momentum", "adam", "sgd_wd"):
        assert not rows[o]["all_still"] and rows[o]["ratio"]["mean"] > 0, o
    assert rows["sgd_wd"]["ratio"]["mean"] < 0.05 < rows["momentum"]["ratio"]["mean"]
    assert rows["momentum"]["ratio"] != rows["adam"]["ratio"]
