"""The co-adaptation experiment's pieces: temperature, interactions
(against explicit masked forward passes), the normalised measure, rescaled removal."""

import jax
import jax.numpy as jnp
import numpy as np
from dropstudy_experiments import coadaptation as C

from dropstudy import masks as M
from dropstudy.metrics import cross_entropy, fit_temperature, logit_nll
from dropstudy.models import MLP


def test_temperature_recovers_the_scale_of_calibrated_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 5)) * 2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=q) for q in p])
    t = fit_temperature(3.0 * z, y)  # over-confident by a factor 3
    assert abs(t - 3.0) < 0.25
    grid = np.exp(np.linspace(np.log(t) - 0.2, np.log(t) + 0.2, 41))
    assert logit_nll(3 * z / t, y) <= min(logit_nll(3 * z / g, y) for g in grid) + 1e-9


def test_stable_cross_entropy_keeps_tiny_losses():
    z = np.zeros((3, 4), np.float32)
    z[:, 0] = [20.0, 25.0, 30.0]
    exact = np.log1p(3 * np.exp(-z[:, 0].astype(np.float64)))
    got = np.asarray(cross_entropy(jnp.asarray(z), jnp.zeros(3, jnp.int32)))
    np.testing.assert_allclose(got, exact, rtol=1e-5)


def test_interactions_match_masked_forward_passes():
    model = MLP(hidden=(5, 4), n_out=3, rate=0.5)
    x = jax.random.normal(jax.random.key(0), (30, 6))
    y = jnp.arange(30) % 3
    v = jax.jit(model.init)(jax.random.key(1), x)
    v = {"params": v["params"]}
    spec = M.mask_spec(model, x)
    expected = M.expected_masks(spec)
    last = M.layer_units(spec, model.dropout_layers()[-1])
    u = M.apply(model, v, x, expected, method=MLP.features)
    w, b = v["params"]["out"]["kernel"], v["params"]["out"]["bias"]
    parts = np.stack([np.full(30, 1 / 30), np.r_[np.full(10, 0.1), np.zeros(20)]]).astype("f4")
    t = 1.7
    l0, l1, l2 = C.unit_interactions(u, w, b, y, jnp.asarray([t, 1.0]), jnp.asarray(parts))

    base = np.asarray(spec.flatten(expected))
    ii, jj = np.triu_indices(len(last), 1)
    gones = [[], *([i] for i in last), *([last[i], last[j]] for i, j in zip(ii, jj))]
    flat = np.stack([np.where(np.isin(np.arange(len(base)), g), 0.0, base) for g in gones])
    ce = np.asarray(
        jax.jit(jax.vmap(lambda m: cross_entropy(M.apply(model, v, x, spec.unflatten(m)) / t, y)))(
            flat
        )
    )  # (1 + h + pairs, N)
    np.testing.assert_allclose(l0[0], parts @ ce[0], atol=1e-5)
    np.testing.assert_allclose(l1[0], (ce[1 : 1 + len(last)] @ parts.T).T, atol=1e-5)
    np.testing.assert_allclose(l2[0], (ce[1 + len(last) :] @ parts.T).T, atol=1e-5)


def test_normalised_interaction_is_zero_for_additive_effects_and_skips_dead_units():
    d = np.array([0.1, 0.3, 0.0, 0.2])
    ii, jj = np.triu_indices(4, 1)
    live = np.array([True, True, False, True])
    additive = C.interaction_measures(1.0, 1.0 + d, 1.0 + d[ii] + d[jj], live)
    assert additive["norm"] == 0.0 and np.isclose(additive["abs_single"], 0.2)
    bump = 1.0 + d[ii] + d[jj] + 0.05  # every pair 0.05 worse than additive
    m = C.interaction_measures(1.0, 1.0 + d, bump, live)
    assert np.isclose(m["abs_d"], 0.05) and np.isclose(m["norm"], 0.05 / 0.2)
    assert len(m["d_over"]) == 3  # pairs of the three live units


def test_rescaled_removal_preserves_each_layers_total():
    base = np.full(10, 0.5, np.float32)
    layers = [np.arange(0, 4), np.arange(4, 10)]
    gone = np.array([1, 4, 5, 6])
    plain = C.removal_mask(base, layers, gone, rescale=False)
    scaled = C.removal_mask(base, layers, gone, rescale=True)
    assert plain[gone].sum() == 0 and scaled[gone].sum() == 0
    for units in layers:
        assert np.isclose(scaled[units].sum(), base[units].sum())
    assert np.isclose(scaled[0], 0.5 * 4 / 3) and np.isclose(scaled[9], 0.5 * 6 / 3)
