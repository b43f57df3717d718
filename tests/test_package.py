"""The package's front: submodules and main names reachable from ``dropstudy``, loaded on
first use, so that importing it stays cheap."""

import subprocess
import sys
from pathlib import Path

import pytest

import dropstudy

ROOT = Path(__file__).resolve().parent.parent


def test_every_submodule_is_listed():
    files = {f.stem for f in (ROOT / "dropstudy").glob("*.py")} - {"__init__"}
    assert set(dropstudy.SUBMODULES) == files


@pytest.mark.parametrize("name", sorted(dropstudy.NAMES))
def test_main_names_are_the_submodules_own(name):
    import importlib

    module = importlib.import_module(f"dropstudy.{dropstudy.NAMES[name]}")
    assert getattr(dropstudy, name) is getattr(module, name)


def test_submodules_load_on_first_use_and_import_stays_cheap():
    code = (
        "import sys, dropstudy as ds; assert 'jax' not in sys.modules, 'jax imported'; "
        "p = ds.predict; assert 'jax' in sys.modules and p.__name__ == 'dropstudy.predict'; "
        "print(set(dir(ds)) >= set(ds.__all__))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stdout.strip() == "True"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        dropstudy.nope  # noqa: B018
