"""The fused threefry draws are jax.random's numbers, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import masks as M
from dropstudy import rng
from dropstudy.models import MLP


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_fold_in_is_jax_fold_in(seed):
    k = jax.random.key(seed)
    for d in (0, 1, 7, 2**31 - 1):
        want = jax.random.key_data(jax.random.fold_in(k, d))
        np.testing.assert_array_equal(jax.random.key_data(rng.fold_in(k, d)), want)
        np.testing.assert_array_equal(jax.random.key_data(jax.jit(rng.fold_in)(k, d)), want)


@pytest.mark.parametrize("shape", [(1,), (5,), (2, 1), (10, 601), (3, 4, 7)])
def test_uniform_is_jax_uniform(shape):
    for seed in (0, 3):
        k = jax.random.key(seed)
        want = jax.random.uniform(k, shape)
        np.testing.assert_array_equal(rng.uniform(k, shape), want)
        np.testing.assert_array_equal(jax.jit(rng.uniform, static_argnums=1)(k, shape), want)
        cols = sorted({0, shape[-1] // 2, shape[-1] - 1})
        np.testing.assert_array_equal(rng.uniform(k, shape, cols), want[..., cols])


def test_other_key_kinds_fall_back():
    k = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(rng.uniform(k, (4, 3)), jax.random.uniform(k, (4, 3)))
    np.testing.assert_array_equal(
        jax.random.key_data(rng.fold_in(k, 5)), jax.random.key_data(jax.random.fold_in(k, 5))
    )


@pytest.mark.parametrize("input_rate", [0.0, 0.2])
def test_sample_masks_are_bernoulli_of_jax_uniform(input_rate):
    # Mixed layers: kept-for-sure units (input_rate 0, rate 0 on the second layer) between
    # droppable ones, so the draw is split into runs.
    model = MLP(hidden=(5, 4, 3), rate=(0.5, 0.0, 0.3), input_rate=input_rate)
    spec = M.mask_spec(model, jnp.zeros((2, 6)))
    key = jax.random.key(9)
    for batch in [(), (7,), (2, 3)]:
        got = spec.flatten(M.sample_masks(spec, key, batch))
        u = jax.random.uniform(key, (*batch, spec.n_units))
        want = (u < jnp.asarray(spec.keep, jnp.float32)).astype(jnp.float32)
        np.testing.assert_array_equal(got, want)


def test_nothing_droppable_gives_ones():
    model = MLP(hidden=(4,), rate=0.0)
    spec = M.mask_spec(model, jnp.zeros((2, 3)))
    got = spec.flatten(M.sample_masks(spec, jax.random.key(0), (5,)))
    np.testing.assert_array_equal(got, np.ones((5, spec.n_units)))


# 2: the smallest sort; 3200: MNIST-1D's training split, two rounds of two passes; 4097:
# one past a power of two (a position's 13th bit); 70000: three passes a round. Each n
# compiles its own programs, so the list is short.
@pytest.mark.parametrize("n", [2, 3200, 4097, 70000])
def test_permutation_is_jax_permutation(n):
    for seed in (0, 5):
        k = jax.random.fold_in(jax.random.key(seed), n)
        want = jax.random.permutation(k, n)
        got = rng.permutation(k, n)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(jax.jit(rng.permutation, static_argnums=1)(k, n), want)
    keys = jax.random.split(jax.random.key(1), 3)
    np.testing.assert_array_equal(
        jax.vmap(lambda k: rng.permutation(k, n))(keys),
        jax.vmap(lambda k: jax.random.permutation(k, n))(keys),
    )


def test_permutation_sorts_by_radix_up_to_its_limit_only(monkeypatch):
    """Above MAX_RADIX indices (four passes a round) jax.random's own sort runs."""

    def no_radix(keys):
        raise AssertionError("radix passes above the limit")

    k = jax.random.key(3)
    monkeypatch.setattr(rng, "MAX_RADIX", 100)
    monkeypatch.setattr(rng, "stable_order", no_radix)
    np.testing.assert_array_equal(rng.permutation(k, 101), jax.random.permutation(k, 101))
    with pytest.raises(AssertionError, match="radix passes"):
        rng.permutation(k, 100)


def test_permutation_falls_back_where_it_does_not_sort():
    k = jax.random.key(3)
    np.testing.assert_array_equal(rng.permutation(k, 1), jax.random.permutation(k, 1))
    np.testing.assert_array_equal(rng.permutation(k, 0), jax.random.permutation(k, 0))
    raw = jax.random.PRNGKey(3)  # raw uint32 key data
    np.testing.assert_array_equal(rng.permutation(raw, 50), jax.random.permutation(raw, 50))
    with pytest.raises(ValueError, match="single key"):  # jax.random's own message
        rng.permutation(jax.random.split(k, 2), 5)


@pytest.mark.parametrize("n", [2, 7, 1000, 70000])
@pytest.mark.parametrize("distinct", [2, 50, 2**32, "spread"])
def test_stable_order_is_a_stable_argsort(n, distinct):
    # few distinct keys: ties everywhere, which a sort that is not stable would reorder;
    # "spread": ties among 50 keys drawn over the whole range, so they differ in every digit
    r = np.random.default_rng(n)
    if distinct == "spread":
        keys = r.choice(r.integers(0, 2**32, 50, dtype=np.uint64), n).astype(np.uint32)
    else:
        keys = r.integers(0, distinct, n, dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(
        rng.stable_order(jnp.asarray(keys)), np.argsort(keys, kind="stable")
    )
