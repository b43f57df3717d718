"""The study's evaluator: each predictor it names is the library's, on the same weights."""

import jax
import numpy as np
import pytest
from dropstudy_experiments.evaluate import Evaluator

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.models import MLP

MODEL = MLP(hidden=(4, 3), n_out=3, rate=0.5)
X = jax.random.normal(jax.random.key(0), (6, 5))
VARIABLES, _ = M.init(MODEL, jax.random.key(1), X)


def test_each_predictor_is_the_library_s():
    ev = Evaluator(("exp", "cell"), k=7)
    got = ev.predict(MODEL, VARIABLES, X, seed=2, predictors=("exact", "ws", "mc"))
    assert list(got) == ["exact", "ws", "mc"]  # the order asked
    # the evaluator deals the subnetworks over the devices: the same sums to float rounding
    exact = P.exact(MODEL, VARIABLES, X)
    np.testing.assert_allclose(got["exact"].arithmetic, exact.arithmetic, rtol=1e-6)
    np.testing.assert_allclose(got["exact"].geometric, exact.geometric, rtol=1e-6)
    ws = P.weight_scaling(MODEL, VARIABLES, X)
    np.testing.assert_array_equal(got["ws"].arithmetic, ws.arithmetic)
    mc = P.mc(MODEL, VARIABLES, X, key=ev.key(2), k=7)
    np.testing.assert_allclose(got["mc"].arithmetic, mc.arithmetic, rtol=1e-6)


def test_an_unknown_predictor_is_refused():
    with pytest.raises(ValueError, match="unknown predictor"):
        Evaluator(("exp", "cell")).predict(MODEL, VARIABLES, X, 0, predictors=("ws", "vote"))
