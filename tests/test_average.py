"""Accurate sums over subnetworks: pairwise within a chunk, compensated across chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.average import kahan_add, pairwise_sum
from dropstudy.models import MLP


def test_pairwise_sum_is_the_sum_and_drifts_less_than_a_running_sum():
    terms = np.full((20_001, 3), 1 / 20_001, np.float32)
    exact = terms.astype(np.float64).sum(0)
    pair = np.asarray(pairwise_sum(jnp.asarray(terms)))
    running = np.float32(0)
    for t in terms[:, 0]:
        running = np.float32(running + t)
    assert np.max(np.abs(pair - exact)) <= 1e-7
    assert abs(running - exact[0]) > 10 * np.max(np.abs(pair - exact))
    np.testing.assert_array_equal(pairwise_sum(jnp.ones((1, 2))), [1.0, 1.0])


def test_kahan_add_keeps_the_low_bits():
    """10,000 adds of 1e-4 in float32: compensated within 1e-6 of 1, plain adds drift."""
    step = jnp.float32(1e-4)

    def body(carry, _):
        (k, plain) = carry
        return (kahan_add(k, step), plain + step), None

    z = jnp.float32(0)
    ((k, _), plain), _ = jax.lax.scan(body, ((z, z), z), None, length=10_000)
    assert abs(float(k) - 1.0) <= 1e-6 < abs(float(plain) - 1.0)


@pytest.mark.parametrize("chunk", [20_000, 1000])
def test_mc_rows_sum_to_one_within_1e_6(chunk):
    """K = 20,000 on the 3,4,2 ReLU net (drop 0.35, input drop 0.2, 5 inputs): one chunk of
    all 20,000 (pairwise within it) and 20 chunks of 1,000 (compensated across them)."""
    model = MLP(hidden=(3, 4), n_out=2, rate=0.35, input_rate=0.2)
    x = jax.random.normal(jax.random.key(3), (64, 5))
    v, _ = M.init(model, jax.random.key(4), x)
    v = jax.tree.map(lambda p: 3 * p, v)
    avg = P.mc(model, v, x, key=jax.random.key(2), k=20_000, chunk=chunk)
    assert float(jnp.max(jnp.abs(avg.arithmetic.sum(-1) - 1))) <= 1e-6


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_counts_say_how_many_subnetworks_were_averaged(task):
    """Weight scaling is one network, MC K subnetworks, exact 2^n, for either task (a
    mutation run found weight scaling's regression count unchecked)."""
    model = MLP(hidden=(3, 4), n_out=2, rate=0.35)
    x = jax.random.normal(jax.random.key(3), (6, 5))
    v, spec = M.init(model, jax.random.key(4), x)
    assert P.weight_scaling(model, v, x, task=task).count == 1
    assert P.mc(model, v, x, key=jax.random.key(0), k=7, task=task).count == 7
    assert P.exact(model, v, x, task=task).count == 2**spec.n_droppable == 2**7
