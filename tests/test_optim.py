"""The max-norm constraint against its definition, alone and after an optimiser."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dropstudy.optim import max_norm, project_max_norm
from dropstudy.validate import DropstudyError


def _units(key, shape, norms):
    """A kernel of ``shape`` whose units (last axis) have the given norms."""
    w = jax.random.normal(key, shape)
    axes = tuple(range(len(shape) - 1))
    return w / jnp.sqrt(jnp.sum(w * w, axis=axes, keepdims=True)) * jnp.asarray(norms)


def _params():
    k = jax.random.split(jax.random.key(0), 2)
    return {
        "dense": {"kernel": _units(k[0], (5, 4), [0.5, 2.0, 3.0, 8.0]), "bias": 9 * jnp.ones(4)},
        "conv": {"kernel": _units(k[1], (3, 3, 2, 3), [1.0, 2.4, 5.0]), "bias": jnp.zeros(3)},
        "norm": {"scale": 10.0 * jnp.ones(4)},
    }


def test_projection_is_the_definition():
    """Each unit (last axis) whose incoming weights have norm n > c is scaled by c / n; the
    rest, biases and scales stay as they are."""
    params, c = _params(), 2.5
    got = project_max_norm(params, c)
    for layer in ("dense", "conv"):
        w = np.asarray(params[layer]["kernel"], np.float64).reshape(
            -1, params[layer]["kernel"].shape[-1]
        )
        g = np.asarray(got[layer]["kernel"]).reshape(w.shape)
        for j in range(w.shape[1]):
            n = np.linalg.norm(w[:, j])
            want = w[:, j] * (c / n if n > c else 1.0)
            np.testing.assert_allclose(g[:, j], want, rtol=1e-6)
            assert np.linalg.norm(g[:, j]) <= c * (1 + 1e-6)
        assert any(np.linalg.norm(w[:, j]) > c for j in range(w.shape[1]))  # some projected
        assert any(np.linalg.norm(w[:, j]) < c for j in range(w.shape[1]))  # some not
        np.testing.assert_array_equal(got[layer]["bias"], params[layer]["bias"])
    np.testing.assert_array_equal(got["norm"]["scale"], params["norm"]["scale"])


def test_after_an_optimiser_the_step_lands_on_the_constraint():
    params, c = _params(), 2.5
    grads = jax.tree.map(lambda p: -jnp.ones_like(p), params)
    sgd = optax.sgd(0.3, momentum=0.9)
    chained = optax.chain(sgd, max_norm(c))
    u_plain, _ = sgd.update(grads, sgd.init(params), params)
    u, _ = chained.update(grads, chained.init(params), params)
    new = optax.apply_updates(params, u)
    want = project_max_norm(optax.apply_updates(params, u_plain), c)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # units inside the ball, biases and scales take the optimiser's update bitwise
    free = optax.chain(sgd, max_norm(1e6))
    u_free, _ = free.update(grads, free.init(params), params)
    for a, b in zip(jax.tree.leaves(u_free), jax.tree.leaves(u_plain), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_radius_and_missing_params_are_refused():
    with pytest.raises(DropstudyError, match="max_norm"):
        max_norm(0.0)
    with pytest.raises(ValueError, match="needs params"):
        max_norm(1.0).update({"kernel": jnp.ones((2, 2))}, optax.EmptyState())
