"""The voting experiment's rules: its means are the library's, and its tie rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dropstudy_experiments import voting

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.models import MLP


@pytest.fixture(scope="module")
def net(digits_data):
    model = MLP(hidden=(4, 4), rate=0.5)
    variables = model.init(jax.random.key(0), digits_data.x_test[:1])
    return model, variables, jnp.asarray(digits_data.x_test[:50])


def test_mc_sums_are_the_library_mc_average(net):
    model, v, x = net
    spec = M.mask_spec(model, x)
    key = jax.random.key(5)
    sums = voting.mc_sums(model, spec, 40, (7, 40), v, x, key)
    for j, k in enumerate((7, 40)):
        avg = P.mc(model, v, x, key=key, k=k, method="dense")
        np.testing.assert_allclose(sums["probs"][j] / k, avg.arithmetic, atol=1e-5)
        np.testing.assert_allclose(jax.nn.softmax(sums["logp"][j] / k), avg.geometric, atol=1e-5)
        np.testing.assert_allclose(sums["votes"][j].sum(-1), k)


def test_mc_sums_at_k_alone_are_the_cumulative_sums_last_row(net):
    """The training set's path (one total, no cumulative sum) gives the same sums."""
    model, v, x = net
    spec = M.mask_spec(model, x)
    key = jax.random.key(5)
    whole = voting.mc_sums(model, spec, 40, (7, 40), v, x, key)
    alone = voting.mc_sums(model, spec, 40, (40,), v, x, key)
    for n in ("probs", "logp", "votes"):
        assert alone[n].shape == (1, *whole[n].shape[1:])
        np.testing.assert_allclose(alone[n][0], whole[n][1], rtol=1e-5, atol=1e-5)


def test_exact_sums_are_the_library_exact_average(net):
    model, v, x = net
    spec = M.mask_spec(model, x)
    sums = voting.exact_sums(model, spec, v, x)
    ex = P.exact(model, v, x, method="generic")
    np.testing.assert_allclose(sums["probs"], ex.arithmetic, atol=1e-5)
    np.testing.assert_allclose(jax.nn.softmax(sums["logp"]), ex.geometric, atol=1e-5)
    np.testing.assert_allclose(sums["votes"].sum(-1), 1.0, atol=1e-5)


def test_a_tied_vote_goes_to_the_higher_mean_then_the_lower_class():
    # Two subnetworks, one vote each for classes 0 and 1 (a tie).
    logits = jnp.array([[[2.0, 0.0, -5.0]], [[0.0, 9.0, -5.0]]])  # (K=2, B=1, C=3)
    pred = voting.decide(voting.combine(logits, jnp.ones(2)), 2.0)
    assert bool(pred["tie"][0]) and int(pred["vote"][0]) == 1  # class 1's mean is higher
    even = jnp.array([[[1.0, 0.0, -5.0]], [[0.0, 1.0, -5.0]]])  # equal means: lower index
    assert int(voting.decide(voting.combine(even, jnp.ones(2)), 2.0)["vote"][0]) == 0
    clear = jnp.concatenate([logits, logits[:1]])  # 2 votes to 1: no tie, class 0
    pred = voting.decide(voting.combine(clear, jnp.ones(3)), 3.0)
    assert not bool(pred["tie"][0]) and int(pred["vote"][0]) == 0


def test_a_tied_vote_counts_as_breaking_it_at_random():
    """Neither rule is handed the ties: a two-way tie holding the true class is half an
    error, one without it a whole error; an untied vote is scored as its class."""
    logits = jnp.array([[[2.0, 0.0, -5.0]], [[0.0, 9.0, -5.0]]])  # a 0-1 tie
    pred = voting.decide(voting.combine(logits, jnp.ones(2)), 2.0)
    assert voting.errors(pred, np.array([0]))["vote"] == 0.5
    assert voting.errors(pred, np.array([1]))["vote"] == 0.5
    assert voting.errors(pred, np.array([2]))["vote"] == 1.0
    clear = voting.decide(voting.combine(jnp.concatenate([logits, logits[:1]]), jnp.ones(3)), 3.0)
    assert voting.errors(clear, np.array([0]))["vote"] == 0.0
    assert voting.errors(clear, np.array([1]))["vote"] == 1.0
