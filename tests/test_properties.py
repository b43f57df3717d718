"""Property-based tests (hypothesis) of the invariants every predictor must keep."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.models import MLP

# Each example is a new net, so a new compile: the default suite draws 2 per property, and
# `make test-slow` draws more (DROPSTUDY_PROPERTY_EXAMPLES).
EXAMPLES = int(os.environ.get("DROPSTUDY_PROPERTY_EXAMPLES", "2"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
rates = st.floats(0.0, 0.9).map(lambda r: round(r, 2))


@st.composite
def nets(draw):
    hidden = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    model = MLP(
        hidden=hidden,
        n_out=draw(st.integers(2, 4)),
        activation=draw(st.sampled_from(["relu", "tanh", "sigmoid", "linear"])),
        rate=tuple(draw(rates) for _ in hidden),
        input_rate=draw(rates),
    )
    seed = draw(st.integers(0, 2**16))
    x = jax.random.normal(jax.random.key(seed), (5, 3))
    params, spec = M.init(model, jax.random.key(seed + 1), x)
    return model, jax.tree.map(lambda p: 3 * p, params), spec, x, seed


@SETTINGS
@given(nets())
def test_enumeration_probabilities_sum_to_one(net):
    _, _, spec, _, _ = net
    _, probs = M.all_masks(spec)
    assert np.all(np.asarray(probs) >= 0)
    np.testing.assert_allclose(float(jnp.sum(probs)), 1.0, rtol=1e-5)


@pytest.mark.slow  # the default suite keeps enumeration sums-to-one and MC = exact terms
@SETTINGS
@given(nets())
def test_predictions_are_distributions(net):
    model, params, _, x, seed = net
    for avg in (P.exact(model, params, x), P.mc(model, params, x, key=jax.random.key(seed), k=7)):
        for p in (np.asarray(avg.arithmetic), np.asarray(avg.geometric)):
            assert np.all((p >= 0) & (p <= 1 + 1e-6))
            np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)


@SETTINGS
@given(nets())
def test_exact_means_are_the_weighted_means_over_every_mask(net):
    """``arithmetic`` is E[p] and ``log_geometric`` E[log p] over every mask, each mask
    weighted by its probability: a float64 loop over the subnetworks' logits (an AM-GM
    inequality would hold for wrong means too)."""
    model, params, spec, x, _ = net
    ex = P.exact(model, params, x)
    masks, probs = M.all_masks(spec)
    z = np.asarray(jax.vmap(lambda m: M.apply(model, params, x, m))(masks), np.float64)
    top = z.max(-1, keepdims=True)
    logp = z - top - np.log(np.exp(z - top).sum(-1, keepdims=True))
    w = np.asarray(probs, np.float64)[:, None, None]
    np.testing.assert_allclose(ex.arithmetic, np.sum(w * np.exp(logp), 0), rtol=0, atol=2e-6)
    np.testing.assert_allclose(ex.log_geometric, np.sum(w * logp, 0), rtol=1e-5, atol=1e-5)


@SETTINGS
@given(nets(), st.integers(1, 6))
def test_mc_with_one_key_per_subnetwork_is_the_matching_exact_terms(net, k):
    """MC over masks i = 0..k-1 equals the probability-free average of exactly those
    subnetworks' outputs, evaluated one by one."""
    model, params, spec, x, seed = net
    key = jax.random.key(seed)
    est = P.mc(model, params, x, key=key, k=k)
    terms = [
        jax.nn.softmax(M.apply(model, params, x, M.sample_masks(spec, jax.random.fold_in(key, i))))
        for i in range(k)
    ]
    np.testing.assert_allclose(est.arithmetic, np.mean(terms, 0), rtol=1e-5, atol=1e-6)
