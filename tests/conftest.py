import os

os.environ.setdefault("MPLBACKEND", "Agg")

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
