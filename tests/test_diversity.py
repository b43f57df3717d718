"""The diversity experiment's decomposition: the ambiguity identity and its pair measures."""

import jax
import jax.numpy as jnp
import numpy as np
from dropstudy_experiments import diversity


def test_ensemble_brier_is_member_brier_minus_ambiguity():
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(0), (7, 50, 4)) * 2)
    labels = jax.random.randint(jax.random.key(1), (50,), 0, 4)
    d = diversity.decompose(probs, labels)
    np.testing.assert_allclose(d["ensemble"], d["member"] - d["ambiguity"], rtol=1e-5)
    assert 0 < float(d["ambiguity"]) and 0 <= float(d["disagreement"]) <= 1


def test_identical_members_have_no_diversity():
    one = jax.nn.softmax(jax.random.normal(jax.random.key(2), (1, 40, 3)))
    labels = jnp.zeros(40, jnp.int32)
    d = diversity.decompose(jnp.repeat(one, 4, axis=0), labels)
    assert float(d["ambiguity"]) < 1e-7 and float(d["disagreement"]) == 0
    assert abs(float(d["error_corr"]) - 1) < 1e-5  # identical errors: correlation 1
    np.testing.assert_allclose(d["ensemble"], d["member"], rtol=1e-6)


def test_error_correlation_averages_the_pairs_where_it_is_defined():
    """A member that is always right has no error correlation with anyone: the mean is over
    the other pairs, not diluted by zeros, and the share of defined pairs says so."""
    labels = jnp.array([0, 1, 0, 1, 0, 1])
    right = jax.nn.one_hot(labels, 2)
    flaky = jax.nn.one_hot(jnp.array([1, 1, 0, 0, 0, 1]), 2)  # wrong on examples 0 and 3
    probs = jnp.stack([right, flaky, flaky])
    d = diversity.decompose(probs, labels)
    assert abs(float(d["error_corr"]) - 1) < 1e-6  # the two flaky members: identical errors
    np.testing.assert_allclose(float(d["corr_defined"]), 2 / 6)  # 2 of 6 ordered pairs
