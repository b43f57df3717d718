import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import numpy as np
import pytest

from dropstudy.data import digits


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
