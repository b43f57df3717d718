import os
import tempfile

import xla_flags

os.environ.setdefault("MPLBACKEND", "Agg")

# One persistent compilation cache for this test session: its two workers and the
# subprocesses they start (resume, the CLI) compile many of the same programs (the quick
# runs' training and evaluation), and a cache hit loads the same executable, so no number
# changes. Keyed by the controlling pytest process (an xdist worker's parent), so a test never
# reads programs compiled by another session; that process removes it at the end. Set in the
# environment, before JAX starts, so that subprocesses inherit it.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(
        tempfile.gettempdir(),
        "dropstudy-test-jax-cache-"
        + str(os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()),
    ),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
# Flags that make XLA compile faster (xla_flags.FAST: the suite compiles far more than it
# computes). Every number a test compares is computed in the same session (no test retrains
# a committed result), so they change no verdict; the study's commands keep XLA's defaults.
# A user's own XLA_FLAGS are left as they are. Set in the controller, before JAX starts; the
# workers and subprocesses inherit it, so the probe runs once.
os.environ["XLA_FLAGS"] = xla_flags.suite_flags()

import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from dropstudy.data import digits
from dropstudy.sharding import use_cpu_cores

# Every test runs with two CPU devices, as the commands do on two cores: seeds split over
# devices with padding, subnetworks dealt over a mesh and gathered MC's flags then run on
# every change (tests/test_two_devices.py checks them). Before any JAX operation; an
# XLA_FLAGS device count (the 8-device subprocess) is left alone.
TEST_DEVICES = 2
use_cpu_cores(TEST_DEVICES)


COMPILE_CACHE = Path(os.environ["JAX_COMPILATION_CACHE_DIR"])


def pytest_sessionfinish(session):
    """The controlling process (not an xdist worker) removes this session's compile cache
    (only its own: a cache folder set by the user stays)."""
    if not hasattr(session.config, "workerinput") and COMPILE_CACHE.name.startswith(
        "dropstudy-test-jax-cache-"
    ):
        shutil.rmtree(COMPILE_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def digits_data():
    return digits()


@pytest.fixture
def x64():
    """Run a test in float64: the exact identities must hold to float precision."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
