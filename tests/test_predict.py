"""Weight scaling, Monte-Carlo and exact averages: identities, convergence, brute force."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.models import MLP, ConvNet, MaskedDropout
from dropstudy.validate import DropstudyError


def _net(model, d_in=6, n=40, seed=0, dtype=jnp.float32):
    x = jax.random.normal(jax.random.key(seed + 100), (n, d_in), dtype)
    params, spec = M.init(model, jax.random.key(seed), x)
    # Larger weights make the nonlinearity matter, so identities that hold are not trivial.
    params = jax.tree.map(lambda p: 2.0 * p, params)
    return x, params, spec


def _brute_force(model, params, x, spec, task):
    """The exact averages by a plain numpy loop over every mask."""
    masks, probs = M.all_masks(spec, x.dtype)
    n = probs.shape[0]
    # Every subnetwork's outputs by plain forward passes (one vmapped call); the averaging
    # itself is the numpy loop below, independent of the library's reductions.
    outs = np.asarray(jax.jit(jax.vmap(lambda m: M.apply(model, params, x, m)))(masks))
    acc1 = acc2 = 0.0
    for i in range(n):
        out = outs[i].astype(np.float64)
        p = float(probs[i])
        if task == "classification":
            logp = (
                out
                - np.log(np.sum(np.exp(out - out.max(1, keepdims=True)), 1, keepdims=True))
                - out.max(1, keepdims=True)
            )
            acc1 = acc1 + p * np.exp(logp)
            acc2 = acc2 + p * logp
        else:
            acc1 = acc1 + p * out
            acc2 = acc2 + p * out**2
    return acc1, acc2


@pytest.mark.parametrize("method", ["generic", "factorised"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_exact_equals_brute_force_loop(x64, method, task):
    model = MLP(hidden=(3, 4), n_out=3, rate=(0.3, 0.6), input_rate=0.25, dtype=jnp.float64)
    x, params, spec = _net(model, d_in=3, dtype=jnp.float64)
    a, b = _brute_force(model, params, x, spec, task)
    chunk = 7 if method == "generic" else None  # the factorised path takes no chunk
    avg = P.exact(model, params, x, task=task, method=method, chunk=chunk)
    if task == "classification":
        np.testing.assert_allclose(avg.arithmetic, a, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(avg.log_geometric, b, rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(avg.mean, a, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(avg.var, b - a**2, rtol=1e-8, atol=1e-10)


def test_exact_does_not_depend_on_chunk(x64):
    model = MLP(hidden=(4, 3), n_out=3, rate=0.5, dtype=jnp.float64)
    x, params, _ = _net(model, dtype=jnp.float64)
    ref = P.exact(model, params, x, method="generic", chunk=128)
    for c in (1, 5, 13):
        got = P.exact(model, params, x, method="generic", chunk=c)
        np.testing.assert_allclose(got.arithmetic, ref.arithmetic, rtol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_linear_any_depth_weight_scaling_is_exact_mean_and_nwgm(x64, depth):
    hidden = (4, 3, 3)[:depth]
    for convention in ("inverted", "standard"):
        model = MLP(
            hidden=hidden,
            n_out=3,
            activation="linear",
            rate=(0.2, 0.5, 0.7)[:depth],
            input_rate=0.3,
            convention=convention,
            dtype=jnp.float64,
        )
        x, params, _ = _net(model, d_in=3, dtype=jnp.float64)
        ws = P.weight_scaling(model, params, x, task="regression").mean
        reg = P.exact(model, params, x, task="regression")
        np.testing.assert_allclose(ws, reg.mean, rtol=1e-12, atol=1e-12)
        cls = P.exact(model, params, x)
        np.testing.assert_allclose(jax.nn.softmax(ws), cls.geometric, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_one_hidden_layer_weight_scaling_is_exact_nwgm(x64, activation, rate):
    model = MLP(hidden=(10,), n_out=4, activation=activation, rate=rate, dtype=jnp.float64)
    x, params, _ = _net(model, dtype=jnp.float64)
    ws = P.weight_scaling(model, params, x).arithmetic
    ex = P.exact(model, params, x)
    np.testing.assert_allclose(ws, ex.geometric, rtol=1e-12, atol=1e-14)
    # ... but not the arithmetic mean: the identity test could fail.
    assert np.max(np.abs(ws - ex.arithmetic)) > 1e-3


def test_two_relu_layers_weight_scaling_differs_from_exact(x64):
    model = MLP(hidden=(5, 5), n_out=4, rate=0.5, dtype=jnp.float64)
    x, params, _ = _net(model, dtype=jnp.float64)
    ws = P.weight_scaling(model, params, x).arithmetic
    ex = P.exact(model, params, x)
    assert np.max(np.abs(ws - ex.geometric)) > 1e-3
    assert np.max(np.abs(ws - ex.arithmetic)) > 1e-3
    reg_ws = P.weight_scaling(model, params, x, task="regression").mean
    assert np.max(np.abs(reg_ws - P.exact(model, params, x, task="regression").mean)) > 1e-3


def test_geometric_below_nwgm_below_arithmetic_when_small(x64):
    """Baldi & Sadowski: G <= NWGM always; for a two-class (logistic) output, NWGM <= E where
    every subnetwork's output is <= 0.5 (Ky Fan's inequality)."""
    model = MLP(hidden=(4, 4), n_out=2, rate=0.5, dtype=jnp.float64)
    x, params, _ = _net(model, dtype=jnp.float64)
    ex = P.exact(model, params, x)
    g = np.exp(np.asarray(ex.log_geometric))
    nwgm = np.asarray(ex.geometric)
    assert np.all(g <= nwgm + 1e-15)
    masks, _ = M.all_masks(M.mask_spec(model, x), jnp.float64)
    outs = jax.nn.softmax(jax.vmap(lambda m: M.apply(model, params, x, m))(masks))
    small = np.all(np.asarray(outs) <= 0.5, axis=0)
    assert small.any() and not small.all()
    assert np.all(nwgm[small] <= np.asarray(ex.arithmetic)[small] + 1e-15)


@pytest.mark.slow  # over 20 s; `make test-slow`
def test_mc_converges_to_exact_within_standard_error():
    model = MLP(hidden=(6, 6), n_out=3, rate=0.5)
    x, params, spec = _net(model, n=20)
    ex = P.exact(model, params, x)
    key = jax.random.key(7)
    masks, _ = M.enumerate_masks(spec, jnp.arange(1))  # shape template
    del masks
    errs = []
    for k in (10, 100, 1000):
        est = P.mc(model, params, x, key=key, k=k)
        # per-sample standard deviation of the probabilities, from the same K subnetworks
        ms = M.sample_mask_batch(spec, key, jnp.arange(k))
        outs = jax.nn.softmax(jax.vmap(lambda m: M.apply(model, params, x, m))(ms))
        se = np.asarray(outs).std(0, ddof=1) / np.sqrt(k)
        z = np.abs(np.asarray(est.arithmetic) - np.asarray(ex.arithmetic)) / np.maximum(se, 1e-7)
        # 60 means: a 5-sigma bound fails with probability ~ 60 * 6e-7
        assert np.all(z < 5.0), f"K={k}: max z {z.max():.2f}"
        errs.append(np.abs(np.asarray(est.arithmetic) - np.asarray(ex.arithmetic)).mean())
    assert errs[2] < errs[0]


def test_mc_prefix_and_chunk_independence():
    model = MLP(hidden=(5, 5), n_out=3)
    x, params, spec = _net(model)
    key = jax.random.key(3)
    a = P.mc(model, params, x, key=key, k=50, chunk=50)
    b = P.mc(model, params, x, key=key, k=50, chunk=7)
    np.testing.assert_allclose(a.arithmetic, b.arithmetic, rtol=1e-5, atol=1e-7)
    one = P.mc(model, params, x, key=key, k=1)
    m0 = M.sample_masks(spec, jax.random.fold_in(key, 0))
    np.testing.assert_allclose(
        one.arithmetic, jax.nn.softmax(M.apply(model, params, x, m0)), rtol=1e-5, atol=1e-6
    )


def test_mc_regression_mean_and_variance():
    model = MLP(hidden=(8,), n_out=1, rate=0.5)
    x, params, spec = _net(model)
    avg = P.mc(model, params, x, key=jax.random.key(0), k=64, task="regression")
    ms = M.sample_mask_batch(spec, jax.random.key(0), jnp.arange(64))
    outs = np.asarray(jax.vmap(lambda m: M.apply(model, params, x, m))(ms))
    np.testing.assert_allclose(avg.mean, outs.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(avg.var, outs.var(0), rtol=1e-3, atol=1e-5)


def test_jit_and_nonjit_agree():
    model = MLP(hidden=(5, 5), n_out=3)
    x, params, spec = _net(model)
    m = M.sample_masks(spec, jax.random.key(0), (x.shape[0],))
    eager = M.apply(model, params, x, m)
    jitted = jax.jit(lambda p, x, m: M.apply(model, p, x, m))(params, x, m)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-6)


def test_conventions_give_same_function_with_scaled_weights():
    """standard with next-layer weights W/p equals inverted with W, for the same masks."""
    x = jax.random.normal(jax.random.key(0), (9, 5))
    inv = MLP(hidden=(6, 4), n_out=3, rate=(0.3, 0.6), input_rate=0.2, convention="inverted")
    std = inv.clone(convention="standard")
    variables, spec = M.init(inv, jax.random.key(1), x)
    params = variables["params"]
    keep = {"drop_input": 0.8, "dense_0": 0.7, "dense_1": 0.4}
    scaled = dict(params)
    scaled["dense_0"] = {
        **params["dense_0"],
        "kernel": params["dense_0"]["kernel"] / keep["drop_input"],
    }
    scaled["dense_1"] = {
        **params["dense_1"],
        "kernel": params["dense_1"]["kernel"] / keep["dense_0"],
    }
    scaled["out"] = {**params["out"], "kernel": params["out"]["kernel"] / keep["dense_1"]}
    for m in (M.sample_masks(spec, jax.random.key(2), (9,)), M.expected_masks(spec)):
        np.testing.assert_allclose(
            M.apply(inv, variables, x, m),
            M.apply(std, {"params": scaled}, x, m),
            rtol=1e-5,
            atol=1e-5,
        )


def mc_tolerance(model, params, x, spec, k: int) -> np.ndarray:
    """Five standard errors of a K-sample MC mean, entry by entry ``(B, C)``, from the
    subnetworks' own spread (every mask enumerated)."""
    masks, probs = M.all_masks(spec)
    outs = np.asarray(jax.vmap(lambda m: jax.nn.softmax(M.apply(model, params, x, m)))(masks))
    w = np.asarray(probs, np.float64)[:, None, None]
    mean = np.sum(w * outs, 0)
    sd = np.sqrt(np.maximum(np.sum(w * outs**2, 0) - mean**2, 0.0))
    return 5 * sd / np.sqrt(k) + 1e-6


def test_generic_exact_works_for_any_linen_model():
    """A conv net's exact average is the brute-force loop's (not merely a distribution), and
    MC lands within five of its standard errors, a band that weight scaling misses."""
    model = ConvNet(channels=(3,), dense_width=4, rate=0.5, dense_rate=0.5)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    params, spec = M.init(model, jax.random.key(1), x)
    params = jax.tree.map(lambda p: 2.0 * p, params)  # the nonlinearity matters
    assert spec.n_droppable == 7
    ex = P.exact(model, params, x)
    arith, logg = _brute_force(model, params, x, spec, "classification")
    np.testing.assert_allclose(ex.arithmetic, arith, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ex.log_geometric, logg, rtol=1e-5, atol=1e-5)
    k = 2000
    tol = mc_tolerance(model, params, x, spec, k)
    mc = P.mc(model, params, x, key=jax.random.key(0), k=k)
    assert np.all(np.abs(mc.arithmetic - ex.arithmetic) <= tol)
    ws = P.weight_scaling(model, params, x).arithmetic
    assert np.any(np.abs(ws - ex.arithmetic) > tol)  # the band tells WS from the average


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m, p, x: P.mc(m, p, x, key=jax.random.key(0), k=0), "k .*>= 1"),
        (lambda m, p, x: P.exact(m, p, x.at[0, 0].set(jnp.nan)), "x contains 1 NaN"),
        (lambda m, p, x: P.exact(m, p, x, task="ranking"), "unknown task"),
        (lambda m, p, x: P.exact(m, p, x, max_units=3), "2\\^10 = 1,024 subnetworks"),
        (lambda m, p, x: P.weight_scaling(m.clone(activation="gelu"), p, x), "unknown activation"),
        (lambda m, p, x: P.weight_scaling(m.clone(rate=1.0), p, x), "rate.*\\[0, 1\\)"),
        (lambda m, p, x: P.weight_scaling(m.clone(rate=-0.1), p, x), "rate.*\\[0, 1\\)"),
    ],
)
def test_bad_input_raises_clear_error(call, match):
    model = MLP(hidden=(5, 5), n_out=3)
    x, params, _ = _net(model)
    with pytest.raises(DropstudyError, match=match):
        call(model, params, x)


def test_factorised_without_safe_shift_matches_generic():
    """Huge weights defeat the default low part's shift; fewer low units must take over."""
    model = MLP(hidden=(4, 5), n_out=3, rate=0.5)
    x, params, _ = _net(model)
    params = jax.tree.map(lambda p: 40.0 * p, params)
    gen = P.exact(model, params, x, method="generic")
    fac = P.exact(model, params, x, method="factorised")
    assert np.all(np.isfinite(fac.arithmetic))
    np.testing.assert_allclose(fac.arithmetic, gen.arithmetic, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fac.log_geometric, gen.log_geometric, rtol=1e-4, atol=1e-2)


def test_mc_curve_matches_mc():
    model = MLP(hidden=(5, 5), n_out=3)
    x, params, _ = _net(model)
    key = jax.random.key(11)
    curve = P.mc_curve(model, params, x, key=key, ks=[1, 7, 30], chunk=4)
    for k in (1, 7, 30):
        ref = P.mc(model, params, x, key=key, k=k)
        np.testing.assert_allclose(curve[k].arithmetic, ref.arithmetic, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(curve[k].log_geometric, ref.log_geometric, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_factorised_equals_generic_on_full_digits_enumeration(digits_data):
    """All 2^20 subnetworks of the compare default net, both exact paths (~40 s)."""
    model = MLP(hidden=(10, 10), rate=0.5)
    x = digits_data.x_test
    params, spec = M.init(model, jax.random.key(0), x)
    assert spec.n_droppable == 20
    fac = P.exact(model, params, x, method="factorised")
    gen = P.exact(model, params, x, method="generic")
    np.testing.assert_allclose(fac.arithmetic, gen.arithmetic, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fac.log_geometric, gen.log_geometric, rtol=1e-4, atol=1e-4)


class _OneOut(nn.Module):
    """A user's net with one output (not a dropstudy MLP: its width is traced)."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(MaskedDropout(0.5)(nn.relu(nn.Dense(4)(x))))


@pytest.mark.parametrize("one_out", ["mlp", "user"])
@pytest.mark.parametrize("predictor", ["weight_scaling", "mc", "exact", "over_masks"])
def test_one_output_is_never_averaged_as_a_classifier(one_out, predictor):
    """A softmax over one output is 1 everywhere: without task='regression' every predictor
    refuses, naming it; with it, the outputs are averaged."""
    model = MLP(hidden=(4,), n_out=1, rate=0.5) if one_out == "mlp" else _OneOut()
    x = jax.random.normal(jax.random.key(0), (3, 5))
    variables, spec = M.init(model, jax.random.key(1), x)
    kw = {
        "weight_scaling": {},
        "mc": {"key": jax.random.key(2), "k": 4},
        "exact": {},
        "over_masks": {"masks": M.sample_mask_batch(spec, jax.random.key(3), jnp.arange(4))},
    }[predictor]
    f = getattr(P, predictor)
    for task in (None, "classification"):
        with pytest.raises(DropstudyError, match="task='regression'"):
            f(model, variables, x, task=task, **kw)
    avg = f(model, variables, x, task="regression", **kw)
    assert avg.task == "regression" and avg.mean.shape == (3, 1)
