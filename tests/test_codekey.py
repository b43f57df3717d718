"""Cell keys cover the code a cell runs and nothing else (experiments/codekey.py).

Two halves: edits that a cell cannot see (a report section, a summary rule, a docstring, a
comment, a function nobody calls) keep its key, and edits to code it runs change it; and the
key's static walk reaches every project function that a real cell executes, traced."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import jax
import pytest
from dropstudy_experiments import runner
from dropstudy_experiments.codekey import code_key, parsed, project_roots, reached

from dropstudy.data import digits

LIB = '''
"""A library."""
from functools import partial

import numpy as np

SCALE = 2.0
EDGES = np.linspace(0.0, 1.0, 5)
ACT = {"a": abs, "b": round}
square = lambda x: x * x  # noqa: E731
halve = partial(pow, exp=0.5)


def make(c):
    return lambda x: x * c


times3 = make(3.0)


def used(x, shift=0.0):
    """Doubles."""
    return x * SCALE + shift + EDGES.sum() + ACT["a"](x) + square(x) + halve(4.0) + times3(x)

def unused(x):
    return x + 1

class Box:
    """Holds a number."""

    N = 1

    def __init__(self, v):
        self.v = v

    def get(self):
        return self.v * self.N
'''

EXP = '''
"""An experiment."""
from dataclasses import dataclass

from . import lib
from .lib import Box

CLAIM = "a claim"


@dataclass(frozen=True)
class Arg:
    n: int = 3

    def twice(self):
        return 2 * self.n


def helper(x):
    return lib.used(x) + 1


def cell(arg, box):
    """The cell."""
    # why: nothing
    return helper(arg.twice()) + box.get() + Box(1).get()


def summarise(raw):
    return {"mean": raw}


def section(r):
    return f"{CLAIM}: {r['mean']}"
'''


def key_of(tmp_path: Path, tag: str, lib: str = LIB, exp: str = EXP) -> str:
    """The key of ``pkg.exp.cell`` with ``lib`` and ``exp`` as the package's sources."""
    root = tmp_path / tag
    pkg = root / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "lib.py").write_text(textwrap.dedent(lib))
    (pkg / "exp.py").write_text(textwrap.dedent(exp))
    for m in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
        del sys.modules[m]
    sys.path.insert(0, str(root))
    try:
        from pkg import exp as mod

        return code_key(mod.cell, {"arg": mod.Arg(), "box": mod.Box(2)}, roots=[pkg])
    finally:
        sys.path.remove(str(root))
        for m in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
            del sys.modules[m]


SAME = {
    "a section": ("exp", 'f"{CLAIM}: {r', 'f"{CLAIM} -- {r'),
    "a summary rule": ("exp", '{"mean": raw}', '{"mean": raw, "sd": 0}'),
    "a module constant no cell reads": ("exp", '"a claim"', '"another claim"'),
    "a cell's docstring": ("exp", '"""The cell."""', '"""The cell, reworded."""'),
    "a comment": ("exp", "# why: nothing", "# why: something else"),
    "a library docstring": ("lib", '"""Doubles."""', '"""Multiplies by SCALE."""'),
    "a library function no cell calls": ("lib", "x + 1", "x + 2"),
    "a class docstring": ("lib", '"""Holds a number."""', '"""Holds."""'),
    "blank lines": ("exp", "\n\ndef helper", "\n\n\n\ndef helper"),
}

CHANGED = {
    "the cell's code": ("exp", "+ box.get()", "- box.get()"),
    "a helper it calls": ("exp", ") + 1\n", ") + 2\n"),
    "a library function it calls": ("lib", "x * SCALE +", "x * SCALE * 1 +"),
    "a numpy array it reads": ("lib", "np.linspace(0.0, 1.0, 5)", "np.linspace(0.0, 1.0, 6)"),
    "a function in a dict it reads": ("lib", '"a": abs', '"a": round'),
    "a default argument": ("lib", "shift=0.0", "shift=1.0"),
    "a module-level lambda": ("lib", "x * x  # noqa", "x * x * x  # noqa"),
    "a partial's argument": ("lib", "exp=0.5", "exp=0.25"),
    "a closure's value": ("lib", "make(3.0)", "make(4.0)"),
    "a class attribute": ("lib", "    N = 1", "    N = 2"),
    "a constant the library reads": ("lib", "SCALE = 2.0", "SCALE = 3.0"),
    "a method of an argument's class": ("exp", "2 * self.n", "3 * self.n"),
    "a method of a class it builds": ("lib", "return self.v *", "return -self.v *"),
}


def _edit(which: str, old: str, new: str) -> tuple[str, str]:
    src = {"lib": LIB, "exp": EXP}
    assert old in src[which], old
    src[which] = src[which].replace(old, new, 1)
    return src["lib"], src["exp"]


@pytest.mark.parametrize("what", SAME)
def test_edits_a_cell_cannot_see_keep_its_key(tmp_path, what):
    base = key_of(tmp_path, "base")
    lib, exp = _edit(*SAME[what])
    assert key_of(tmp_path, "edited", lib, exp) == base


@pytest.mark.parametrize("what", CHANGED)
def test_edits_to_code_it_runs_change_its_key(tmp_path, what):
    base = key_of(tmp_path, "base")
    lib, exp = _edit(*CHANGED[what])
    assert key_of(tmp_path, "edited", lib, exp) != base


def test_a_key_is_stable_within_and_across_calls_and_folders(tmp_path):
    """The same sources in two folders (a clone, a worktree): the same key."""
    assert key_of(tmp_path, "a") == key_of(tmp_path / "elsewhere", "b")


def test_a_key_describes_the_sources_as_first_read(tmp_path):
    """A file edited after the run read it (the code in memory is the old one) keeps the
    key of the code that runs."""
    from dropstudy_experiments.codekey import parsed

    root = tmp_path / "s" / "pkg"
    root.mkdir(parents=True)
    f = root / "m.py"
    f.write_text("def g():\n    return 1\n")
    before = parsed(str(f.resolve()))
    f.write_text("def g():\n    return 2\n")
    assert parsed(str(f.resolve())) == before


def executed(fn, kwargs) -> set:
    """The project definitions ``(file, top-level name)`` whose code runs in ``fn(**kwargs)``,
    traced with the compile caches emptied (so jitted functions are traced again)."""
    roots = [r.resolve() for r in project_roots()]
    calls = set()

    def profile(frame, event, arg):
        if event == "call":
            calls.add((frame.f_code.co_filename, frame.f_code.co_qualname))

    jax.clear_caches()
    sys.setprofile(profile)
    try:
        fn(**kwargs)
    finally:
        sys.setprofile(None)
    out = set()
    for f, q in calls:
        p = Path(f).resolve()
        if any(p.is_relative_to(r) for r in roots):
            top = q.split(".")[0]
            out.add((str(p), top if top in parsed(str(p))[0] else f"<code>{q}"))
    return out


def _cells(names):
    ds = digits()
    for name in names:
        cfg = runner.config(name, quick=True)
        for label, c in runner.module(name).plan(cfg, ds).items():
            yield f"{name}/{label}", c


def _check_covered(names, first_only: bool):
    seen = set()
    for label, c in _cells(names):
        name = label.split("/")[0]
        if first_only and name in seen:
            continue
        seen.add(name)
        missing = executed(c.fn, c.kwargs) - reached(c.fn, c.kwargs)
        assert not missing, f"{label}: the key misses {sorted(missing)}"


@pytest.mark.slow  # tracing; its every-cell twin is slow too
def test_the_key_covers_every_function_a_cell_runs():
    """Traced: the scaling demo (masks, weight scaling) and one averaging cell (training,
    MC and exact averages)."""
    _check_covered(["scaling", "averaging"], first_only=True)


@pytest.mark.slow
def test_the_key_covers_every_function_every_cell_runs():
    _check_covered(runner.NAMES, first_only=False)


def test_a_recomputed_cell_says_which_part_of_its_key_changed(tmp_path, caplog):
    import logging

    from dropstudy_experiments.cells import CellStore

    store = CellStore(tmp_path)
    key = {"fn": "f", "args": {"a": 1}, "code": "abc", "versions": {}, "devices": "1 cpu"}
    with caplog.at_level(logging.DEBUG, logger="dropstudy"):
        assert store.get("c", key, lambda: 1) == 1
        assert store.get("c", key, lambda: 2) == 1  # reused
        assert store.get("c", {**key, "code": "abd"}, lambda: 3) == 3
        assert store.get("c", {**key, "code": "abd", "args": {"a": 2}}, lambda: 4) == 4
    text = caplog.text
    assert "c: computing (no stored result)" in text and "c: reused" in text
    assert "c: computing (changed: the code it runs)" in text
    assert "c: computing (changed: its arguments)" in text


KEYS_OF_EVERY_CELL = """
from dropstudy_experiments import codekey, runner
import importlib
for name in runner.NAMES:
    for m in [runner.module(name)] + [importlib.import_module(f"dropstudy_experiments.{p}")
              for p in ("shrinkage_linear", "shrinkage_logistic", "shrinkage_mlp")
              if p.startswith(name)]:
        for n in sorted(dir(m)):
            if n.endswith("_cell") and callable(getattr(m, n)):
                print(m.__name__.rsplit(".", 1)[-1], n, codekey.code_key(getattr(m, n), {}))
"""


@pytest.mark.slow  # about a minute on 2 cores: `make test-slow`
def test_every_real_cell_keeps_its_key_in_another_folder(tmp_path, capsys):
    """The study's own cells, not only the toy package: the same sources in another folder
    give the same keys (a path among the constants a cell reads, e.g. a module's __file__,
    once made every clone recompute every cell)."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parent.parent
    exec(KEYS_OF_EVERY_CELL, {})  # this checkout's keys, in-process
    here = capsys.readouterr().out
    tree = tmp_path / "elsewhere"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(root / "dropstudy", tree / "dropstudy", ignore=skip)
    shutil.copytree(root / "experiments", tree / "dropstudy_experiments", ignore=skip)
    r = subprocess.run(
        [sys.executable, "-c", KEYS_OF_EVERY_CELL], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert here.count("_cell") >= 20
    assert r.stdout == here


def test_a_run_loads_every_experiment_when_it_reads_the_sources():
    """run_experiment snapshots the sources and imports every experiment and section at once,
    so a later experiment of the same process runs the code its keys describe."""
    import inspect

    from dropstudy_experiments import runner

    mods = runner.load_all()
    assert [m.__name__ for m in mods[::2]] == [runner.REGISTRY[n] for n in runner.NAMES]
    assert all(m.__name__.endswith(f"sections.{n}") for m, n in zip(mods[1::2], runner.NAMES))
    src = inspect.getsource(runner.run_experiment)
    assert src.index("snapshot()") < src.index("load_all()") < src.index("mod = module(name)")
