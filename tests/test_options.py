"""Every option changes what it claims to change.

The audit of the issue ("each option has a test showing it changes what it claims"): one
test here for each option of the library, the command line and the scaling experiment that
no other test would catch being accepted and ignored. Options other files already cover
are not repeated. Spies (``monkeypatch``) record what reaches the code an option selects,
where the option's effect is a choice of path rather than a different number.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dropstudy import average, checkpoint, fast_exact, metrics
from dropstudy import masks as M
from dropstudy import nnx as dnnx
from dropstudy import predict as P
from dropstudy import sharding as S
from dropstudy import train as training
from dropstudy.data import Dataset, load_mnist, tutorial_regression
from dropstudy.models import MLP, ConvNet
from dropstudy.train import (
    DivergenceError,
    History,
    TrainConfig,
    diverged,
    l2_penalty,
    seed_keys,
    take,
    task_loss,
    train,
    train_seeds,
)
from dropstudy.validate import DropstudyError

# One worker runs this file: its module-scoped fixture is built once (pytest-xdist).
pytestmark = pytest.mark.xdist_group("test_options")

# Module-level values built without op-by-op dispatch: every eager op compiles once.
X = jnp.asarray(np.random.default_rng(0).normal(size=(8, 5)), jnp.float32)  # (B, d_in)
Y = jnp.asarray(np.arange(8) % 3, jnp.int32)  # (B,) labels of 3 classes
NET = MLP(hidden=(4,), n_out=3, rate=0.5)  # 4 droppable units
NET_VARS = {"params": jax.jit(NET.init)(jax.random.key(1), X)["params"]}
NET_SPEC = M.mask_spec(NET, X)
APPLY = jax.jit(M.apply, static_argnums=0)  # M.apply(model, variables, x, masks), compiled


@pytest.fixture
def dropstudy_log():
    """The ``dropstudy`` logger, restored afterwards (the CLI sets its level and handlers
    and stops propagation, which would hide its records from ``caplog``)."""
    log = logging.getLogger("dropstudy")
    saved = (log.level, list(log.handlers), log.propagate)
    log.propagate = True
    yield log
    log.setLevel(saved[0])
    log.handlers[:] = saved[1]
    log.propagate = saved[2]


def _same(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _tiny_dataset(name: str = "tiny") -> Dataset:
    """16 train / 8 test examples of 5 features, 3 classes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 5)).astype(np.float32)
    y = (np.arange(24) % 3).astype(np.int32)
    return Dataset(name, x[:16], y[:16], x[16:], y[16:], 3)


def _mnist(folder, n_train: int = 3, name: str = "mnist"):
    """A tiny ``{name}.npz`` (28 x 28 images) in ``folder``, which it returns."""
    rng = np.random.default_rng(n_train)
    folder.mkdir(exist_ok=True)
    np.savez(
        folder / f"{name}.npz",
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=np.arange(n_train) % 10,
        x_test=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        y_test=np.array([1, 2]),
    )
    return folder


# --- models -----------------------------------------------------------------------------


def test_each_activation_is_the_named_function():
    by_hand = {
        "relu": lambda z: np.maximum(z, 0),
        "tanh": np.tanh,
        "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
        "linear": lambda z: z,
    }
    # the same parameters for every activation (not init's masks: those of drop rate 0.5)
    v = {"params": jax.jit(MLP(hidden=(4,), n_out=2).init)(jax.random.key(0), X)["params"]}
    p = jax.tree.map(np.asarray, v["params"])
    for name, act in by_hand.items():
        model = MLP(hidden=(4,), n_out=2, activation=name, rate=0.0)
        h = act(np.asarray(X) @ p["dense_0"]["kernel"] + p["dense_0"]["bias"])
        want = h @ p["out"]["kernel"] + p["out"]["bias"]
        got = jax.jit(model.apply)(v, X)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_mlp_dtype_sets_parameters_and_computation():
    x = jnp.ones((2, 5), jnp.float32)
    for weight_init in ("lecun", "torch"):
        for dtype in (jnp.float32, jnp.bfloat16):
            model = MLP(hidden=(3,), n_out=2, dtype=dtype, weight_init=weight_init)
            v = jax.eval_shape(model.init, jax.random.key(0), x)  # traced: nothing computed
            assert {a.dtype for a in jax.tree.leaves(v["params"])} == {jnp.dtype(dtype)}
            assert jax.eval_shape(model.apply, v, x).dtype == dtype


def test_convnet_rates_widths_and_classes():
    model = ConvNet(channels=(2,), n_out=3, rate=0.1, dense_rate=0.3, dense_width=4)
    x = jnp.ones((2, 8, 8, 1))
    spec = M.mask_spec(model, x)  # traced only
    assert spec.shapes == ((2,), (4,))
    np.testing.assert_allclose(spec.layer_keep(0), 0.9)
    np.testing.assert_allclose(spec.layer_keep(1), 0.7)
    v = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply, v, x).shape == (2, 3)


# --- masks ------------------------------------------------------------------------------


def test_init_key_draws_the_parameters():
    init = jax.jit(lambda key: M.init(NET, key, X)[0])  # compiled once: fewer eager ops
    a, b, c = init(jax.random.key(0)), init(jax.random.key(0)), init(jax.random.key(5))
    assert _same(a, b) and not _same(a, c)
    assert set(a) == {"params"}  # the masks are not variables


def test_mask_dtype_options():
    spec, dtype = NET_SPEC, jnp.bfloat16  # not the default float32
    traced = {  # dtypes only: traced, nothing computed
        "sample_masks": lambda: M.sample_masks(spec, jax.random.key(0), (3,), dtype),
        "sample_mask_batch": lambda: M.sample_mask_batch(
            spec, jax.random.key(0), jnp.arange(3), dtype
        ),
        "enumerate_masks": lambda: M.enumerate_masks(spec, jnp.arange(3), dtype)[0],
        "all_masks": lambda: M.all_masks(spec, dtype)[0],
    }
    made = {name: jax.eval_shape(f) for name, f in traced.items()}
    made["expected_masks"] = M.expected_masks(spec, dtype)
    made["ones_masks"] = M.ones_masks(spec, dtype)
    for name, masks in made.items():
        assert {a.dtype for a in jax.tree.leaves(masks)} == {jnp.dtype(dtype)}, name
    # ones: every unit kept, whatever its keep probability; expected: the keep probability
    np.testing.assert_array_equal(spec.flatten(made["ones_masks"]), 1.0)
    np.testing.assert_array_equal(spec.flatten(made["expected_masks"]), spec.keep)


def test_max_units_limits_enumeration():
    assert NET_SPEC.n_droppable == 4
    for call in (  # traced only: the limit is checked before anything is computed
        lambda mu: jax.eval_shape(lambda: M.all_masks(NET_SPEC, max_units=mu)),
        lambda mu: jax.eval_shape(lambda: M.enumerate_masks(NET_SPEC, jnp.arange(2), max_units=mu)),
    ):
        call(4)
        with pytest.raises(DropstudyError, match="limit of 3 units"):
            call(3)


# --- averages and predictors ------------------------------------------------------------


def test_average_mean_names_pick_the_mean():
    arith = jnp.array([[0.6, 0.4], [0.1, 0.9]])
    log_geo = jnp.log(jnp.array([[0.3, 0.5], [0.2, 0.2]]))  # unnormalised
    avg = average.Average("classification", 2, arithmetic=arith, log_geometric=log_geo)
    nwgm = jax.nn.softmax(log_geo)
    np.testing.assert_array_equal(avg.probs(), arith)
    np.testing.assert_array_equal(avg.probs("arithmetic"), arith)
    np.testing.assert_allclose(avg.probs("geometric"), nwgm, rtol=1e-6)
    np.testing.assert_allclose(avg.log_probs("arithmetic"), np.log(arith), rtol=1e-6)
    np.testing.assert_allclose(avg.log_probs("geometric"), np.log(nwgm), rtol=1e-5)
    reg = average.Average("regression", 2, mean=jnp.zeros((1, 1)), var=jnp.full((1, 1), 4.0))
    np.testing.assert_allclose(reg.std, 2.0)


@pytest.fixture
def stream_spy(monkeypatch):
    """Every call of the generic streamed reduction: its ``chunk`` (subnetworks per step)."""
    seen: list[int] = []
    real = P.streamed

    def spy(model, spec, **kw):
        seen.append(kw["chunk"])
        return real(model, spec, **kw)

    monkeypatch.setattr(P, "streamed", spy)
    return seen


def test_chunk_sets_subnetworks_per_scan_step(stream_spy, monkeypatch):
    key = jax.random.key(0)
    P.mc(NET, NET_VARS, X, key=key, k=10, chunk=3)
    P.exact(NET, NET_VARS, X, method="generic", chunk=5)
    assert stream_spy == [3, 5]
    # the default is the number of subnetworks whose (chunk, B, width) floats fit the budget
    assert average.default_chunk(X, 2**16, 10**9) == average.CHUNK_ELEMENTS // (8 * 2**16)
    assert average.default_chunk(X, 4, 10) == 10
    assert (
        average.resolve_chunk(NET, NET_VARS, X, NET_SPEC, total=6, chunk=None) == 6
    )  # at most total
    assert average.resolve_chunk(NET, NET_VARS, X, NET_SPEC, total=6, chunk=4) == 4
    assert average.resolve_chunk(NET, NET_VARS, X, NET_SPEC, total=6, chunk=9) == 6
    # the width is the widest layer output: a conv layer's 8 x 8 positions x 5 channels,
    # not its 5 droppable channels
    from dropstudy.models import ConvNet

    conv = ConvNet(channels=(5,), dense_width=3, input_shape=(8, 8, 1))
    xc = jnp.zeros((2, 64))
    vc = conv.init(jax.random.key(0), xc)
    assert average.widest(conv, vc, xc, M.mask_spec(conv, xc)) == 8 * 8 * 5
    # mc_curve draws its masks `chunk` at a time
    sizes: list[int] = []
    real = M.sample_mask_batch

    def spy(spec, key, idx, dtype=jnp.float32):
        sizes.append(idx.shape[0])
        return real(spec, key, idx, dtype)

    monkeypatch.setattr(M, "sample_mask_batch", spy)
    P.mc_curve(NET, NET_VARS, X, key=key, ks=[2, 11], chunk=3)
    assert sizes == [3]


@pytest.fixture
def factorised_spy(monkeypatch):
    """Every call of the factorised exact average (MLPs)."""
    seen: list[bool] = []
    real = fast_exact.exact_mlp

    def spy(*args, **kw):
        seen.append(True)
        return real(*args, **kw)

    monkeypatch.setattr(fast_exact, "exact_mlp", spy)
    return seen


def test_method_picks_the_exact_path(stream_spy, factorised_spy):
    P.exact(NET, NET_VARS, X, method="generic", chunk=5)
    assert (len(factorised_spy), len(stream_spy)) == (0, 1)
    P.exact(NET, NET_VARS, X, method="factorised")
    assert (len(factorised_spy), len(stream_spy)) == (1, 1)
    P.exact(NET, NET_VARS, X)  # auto: an MLP takes the factorised path
    assert (len(factorised_spy), len(stream_spy)) == (2, 1)


def test_mesh_deals_out_the_reduction(stream_spy, factorised_spy):
    """With ``mesh`` the sums come back from the mesh (a psum over its axis), not from the
    one-device reduction, for MC and for both exact paths."""
    mesh = S.mesh("z")
    assert mesh.axis_names == ("z",)
    key = jax.random.key(0)
    for run, path in (
        (lambda **kw: P.mc(NET, NET_VARS, X, key=key, k=10, chunk=3, **kw), "stream"),
        (lambda **kw: P.exact(NET, NET_VARS, X, method="generic", chunk=5, **kw), "stream"),
        (lambda **kw: P.exact(NET, NET_VARS, X, **kw), "factorised"),
    ):
        dealt = run(mesh=mesh)
        assert dealt.arithmetic.sharding.mesh == mesh and not stream_spy
        assert len(factorised_spy) == (path == "factorised")
        plain = run()
        assert not isinstance(plain.arithmetic.sharding, jax.sharding.NamedSharding)
        np.testing.assert_allclose(dealt.arithmetic, plain.arithmetic, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(dealt.log_geometric, plain.log_geometric, rtol=1e-5, atol=1e-6)
        stream_spy.clear()
        factorised_spy.clear()


def test_exact_chunk_is_honoured_or_refused():
    with pytest.raises(DropstudyError, match="chunk"):
        P.exact(NET, NET_VARS, X, method="factorised", chunk=7)


def test_over_masks_weights_and_task():
    flat = np.ones((2, NET_SPEC.n_units), np.float32)  # two subnetworks (K = 2)
    flat[0, [5, 6]] = flat[1, [7]] = 0.0  # hidden units dropped (the 5 inputs come first)
    masks = NET_SPEC.unflatten(jnp.asarray(flat))
    outs = [np.asarray(APPLY(NET, NET_VARS, X, NET_SPEC.unflatten(jnp.asarray(f)))) for f in flat]
    probs = [np.asarray(jax.nn.softmax(o)) for o in outs]
    first = P.over_masks(NET, NET_VARS, X, masks=masks, weights=jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(first.arithmetic, probs[0], rtol=1e-5, atol=1e-7)
    mix = P.over_masks(NET, NET_VARS, X, masks=masks, weights=jnp.array([0.25, 0.75]))
    np.testing.assert_allclose(
        mix.arithmetic, 0.25 * probs[0] + 0.75 * probs[1], rtol=1e-5, atol=1e-7
    )
    reg = P.over_masks(NET, NET_VARS, X, masks=masks, task="regression")
    np.testing.assert_allclose(reg.mean, (outs[0] + outs[1]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reg.var, ((outs[0] - outs[1]) / 2) ** 2, rtol=1e-3, atol=1e-5)


def test_registered_predictors_run_by_name_with_their_options():
    calls = []

    def fixed(model, variables, x, *, task="classification", value=0.5):
        calls.append(value)
        return average.Average.of_one(task, jnp.full((x.shape[0], 2), value))

    P.register("opts_fixed")(fixed)
    try:
        assert P.get("opts_fixed") is fixed
        P.predict("opts_fixed", NET, NET_VARS, X, value=3.0)
        assert calls == [3.0]
        with pytest.raises(DropstudyError, match="already registered"):
            P.register("opts_fixed")(fixed)
    finally:
        P.PREDICTORS.pop("opts_fixed")
    assert P.predict("mc", NET, NET_VARS, X, key=jax.random.key(0), k=10, chunk=3).count == 10


# --- training ---------------------------------------------------------------------------

DROP = MLP(hidden=(6,), n_out=2, activation="tanh", rate=0.5)  # tanh: no dead units
X_SAME = jnp.asarray(np.tile(np.asarray(X[:1]), (16, 1)))  # 16 copies of one input
Y_SAME = jnp.asarray(np.zeros(16, np.int32))
DROP_VARS = {"params": jax.jit(DROP.init)(jax.random.key(3), X_SAME[:1])["params"]}
BATCH_SIZES: list[int] = []  # minibatch sizes the loss was traced with


def spread(out: jax.Array, y: jax.Array) -> jax.Array:
    """Variance of the outputs ``(B, n_out)`` over the batch. The inputs are copies of one
    example, so it is 0 exactly when the whole batch shares one mask."""
    BATCH_SIZES.append(out.shape[0])  # at trace time
    return jnp.mean(jnp.var(out, axis=0))


SGD = TrainConfig(
    steps=2, batch_size=0, optimizer="sgd", lr=0.1, momentum=0.0, snapshot_every=1, loss=spread
)


def _close(a, b):
    """Trees equal up to float32 rounding of parameter differences."""
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-3 * float(np.abs(v).max()) + 1e-7)


def _lin(*terms):
    """``c1 * t1 + c2 * t2 + ...`` for ``terms = (c1, t1, c2, t2, ...)``, trees ``t``."""
    cs = terms[::2]
    return jax.tree.map(lambda *a: sum(c * t for c, t in zip(cs, a)), *terms[1::2])


def _steps(p0, hist, *index):
    """The run ``index`` of a history of two steps (``snapshot_every=1``): its updates
    ``[p1 - p0, p2 - p1]`` and the gradients ``[g0, g1]`` it recorded."""
    p = [p0, take(hist.params, *index, 0), take(hist.params, *index, 1)]
    steps = [jax.tree.map(lambda a, b: a - b, p[i + 1], p[i]) for i in range(2)]
    return steps, [take(hist.grads, *index, t) for t in range(2)]


def _adam(grads, lrs):
    """Adam's updates by hand (optax's defaults: b1 0.9, b2 0.999, eps 1e-8)."""
    m = v = jax.tree.map(np.zeros_like, grads[0])
    out = []
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        m = _lin(0.9, m, 0.1, g)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * np.square(g), v, g)
        mh, vh = _lin(-lr / (1 - 0.9**t), m), _lin(1 / (1 - 0.999**t), v)
        out.append(jax.tree.map(lambda m, v: m / (np.sqrt(v) + 1e-8), mh, vh))
    return out


def test_sgd_options_by_hand():
    """``-lr * (g + momentum * previous g)`` from ``variables0``, times ``lr_scale``; the
    loss is the shared mask's spread (0) plus the L2 penalty."""
    BATCH_SIZES.clear()
    cfg = SGD.replace(momentum=0.5, lr_scale=(("out", 2.0),), l2=0.5)
    cfg = cfg.replace(mask_mode="per_batch", batch_size=4)
    _, h = train(DROP, jax.random.key(0), X_SAME, Y_SAME, cfg, variables0=DROP_VARS)
    params = DROP_VARS["params"]
    (s1, s2), (g0, g1) = _steps(params, h)
    _close(s1["dense_0"], _lin(-0.1, g0["dense_0"]))
    _close(s1["out"], _lin(-0.2, g0["out"]))
    _close(s2["dense_0"], _lin(-0.1, g1["dense_0"], -0.05, g0["dense_0"]))
    _close(s2["out"], _lin(-0.2, g1["out"], -0.1, g0["out"]))
    assert BATCH_SIZES == [4]
    # one mask for the minibatch: the outputs do not spread, the biases get no gradient
    assert np.abs(np.asarray(g0["dense_0"]["bias"])).max() < 1e-6
    kernels = sum(float(jnp.sum(params[k]["kernel"] ** 2)) for k in ("dense_0", "out"))
    np.testing.assert_allclose(float(h.loss[0]), 0.25 * kernels, rtol=1e-5)
    np.testing.assert_allclose(float(l2_penalty(params, 0.5)), 0.25 * kernels, rtol=1e-6)


def test_adam_options_by_hand():
    """Adam at the default lr (1e-3) on the cosine schedule (lr / 2 at step 1 of 2), times a
    parameter's ``lr_scale``; one mask per example of the full batch."""
    BATCH_SIZES.clear()
    cfg = SGD.replace(optimizer="adam", lr=None, momentum=None, schedule="cosine")
    cfg = cfg.replace(lr_scale=(("dense_0/kernel", 3.0),))
    _, h = train(DROP, jax.random.key(0), X_SAME, Y_SAME, cfg, variables0=DROP_VARS)
    steps, grads = _steps(DROP_VARS["params"], h)
    for s, want in zip(steps, _adam(grads, [1e-3, 5e-4]), strict=True):
        want["dense_0"]["kernel"] = 3.0 * want["dense_0"]["kernel"]
        _close(s, want)
    assert BATCH_SIZES == [16]
    # one mask per example: the outputs spread, every hidden bias gets a gradient
    assert np.all(np.asarray(h.loss) > 1e-4)
    assert np.abs(np.asarray(grads[0]["dense_0"]["bias"])).min() > 1e-5


def test_allow_divergence_warns_and_names_the_seeds(monkeypatch, caplog, dropstudy_log):
    """How ``train_seeds`` treats a run whose loss became NaN (seed 9, step 1). The compiled
    training program is replaced by that history: this checks the handling, not training."""
    loss = jnp.array([[1.0, 0.5], [1.0, jnp.nan]])  # (seeds, steps)
    fake = lambda *args, **kw: ({"params": {}}, History(loss, {}, {}))  # noqa: E731
    monkeypatch.setattr(training, "run_segments", fake)
    model, cfg, keys = MLP(hidden=(3,), n_out=3), TrainConfig(steps=2), seed_keys([7, 9])
    with pytest.raises(DivergenceError, match="at step 1 for seed 9"):
        train_seeds(model, keys, X, Y, cfg, seeds=[7, 9])
    with caplog.at_level(logging.WARNING, logger="dropstudy"):
        _, h = train_seeds(model, keys, X, Y, cfg, seeds=[7, 9], allow_divergence=True)
    assert "diverged (NaN or inf loss) for 1 of 2 runs, seeds [9]" in caplog.text
    assert diverged(h.loss).tolist() == [False, True]


def test_loss_names_select_the_loss():
    out = jnp.array([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    y = jnp.array([0, 2])
    ce = float(optax.softmax_cross_entropy_with_integer_labels(out, y).mean())
    for cfg in (TrainConfig(), TrainConfig(loss="cross_entropy", task="regression")):
        np.testing.assert_allclose(float(task_loss(cfg)(out, y)), ce, rtol=1e-6)
    target = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    mse = float(jnp.mean((out - target) ** 2))
    for cfg in (TrainConfig(task="regression"), TrainConfig(loss="mse")):
        np.testing.assert_allclose(float(task_loss(cfg)(out, target)), mse, rtol=1e-6)


# --- checkpoints, data, metrics, sharding -----------------------------------------------


def test_checkpoint_records_train_and_extra(tmp_path):
    d = checkpoint.save(
        tmp_path / "ck", NET, NET_VARS, example_input=X, train={"steps": 3}, extra={"seed": 4}
    )
    _, _, config = checkpoint.load(d)
    assert config["train"] == {"steps": 3} and config["extra"] == {"seed": 4}
    checkpoint.check_compatible(config, NET, 5, 3, "ck")
    with pytest.raises(DropstudyError, match="3 outputs, the data 4 classes"):
        checkpoint.check_compatible(config, NET, 5, 4, "ck")
    with pytest.raises(DropstudyError, match="the data have 6 features"):
        checkpoint.check_compatible(config, NET, 6, 3, "ck")


def test_subset_size_and_seed():
    ds = _tiny_dataset()
    a, b, c = ds.subset(10, seed=1), ds.subset(10, seed=1), ds.subset(10, seed=2)
    assert len(a.x_train) == len(a.y_train) == 10
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_tutorial_regression_options():
    key = jax.random.key(0)
    d = tutorial_regression(key, n=7, slope=2.0, train_sd=0.0, test_sd=0.0, x_range=(0.0, 3.0))
    np.testing.assert_allclose(d.x_train[:, 0], np.linspace(0, 3, 7), rtol=1e-6)
    np.testing.assert_allclose(d.y_train, 2 * d.x_train, rtol=1e-6)
    np.testing.assert_allclose(d.y_test, 2 * d.x_test, rtol=1e-6)
    one = tutorial_regression(key, n=7, slope=0.0, train_sd=1.0, test_sd=1.0)
    two = tutorial_regression(key, n=7, slope=0.0, train_sd=2.0, test_sd=3.0)
    np.testing.assert_allclose(two.y_train, 2 * one.y_train, rtol=1e-6)
    np.testing.assert_allclose(two.y_test, 3 * one.y_test, rtol=1e-6)
    assert np.abs(one.y_train).max() > 0 and not np.allclose(one.y_train, one.y_test)


def test_load_mnist_name_picks_the_file(tmp_path):
    _mnist(tmp_path, 5, "fashion_mnist")
    with pytest.raises(DropstudyError, match="no mnist data"):
        load_mnist(tmp_path)
    ds = load_mnist(tmp_path, "fashion-mnist")
    assert ds.name == "fashion-mnist" and len(ds.x_train) == 5
    _mnist(tmp_path, 3)
    assert len(load_mnist(tmp_path).x_train) == 3
    assert len(load_mnist(tmp_path, "fashion-mnist").x_train) == 5


def test_ece_bins():
    p = np.array([[0.95, 0.05], [0.55, 0.45], [0.65, 0.35], [0.85, 0.15]])
    y = np.array([0, 1, 0, 0])
    conf, correct = p.max(1), (p.argmax(1) == y)
    assert metrics.ece(p, y, bins=1) == pytest.approx(abs(correct.mean() - conf.mean()))
    per_example = np.mean(np.abs(correct - conf))  # 20 bins: one example in each used bin
    assert metrics.ece(p, y, bins=20) == pytest.approx(per_example)
    assert metrics.ece(p, y, bins=1) != pytest.approx(per_example)


def test_use_cpu_cores_warns_only_when_asked(monkeypatch, caplog, dropstudy_log):
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        pytest.skip("XLA_FLAGS fixes the device count")
    n = len(jax.devices()) + 3  # the backend has started: the count cannot change now
    with caplog.at_level(logging.WARNING, logger="dropstudy"):
        assert S.use_cpu_cores(n, warn=False) == 0
        assert caplog.text == ""
        assert S.use_cpu_cores(n) == 0
        assert f"use_cpu_cores({n}) came after JAX started" in caplog.text
        monkeypatch.setenv(S.CPU_DEVICES_ENV, str(n + 1))  # read when n is not given
        S.use_cpu_cores()
        assert f"use_cpu_cores({n + 1}) came after JAX started" in caplog.text


# --- NNX --------------------------------------------------------------------------------


def test_nnx_mlp_options_match_the_linen_mlp():
    """Non-default activation and convention: the linen twin's function, mask for mask."""
    kw = dict(hidden=(4,), n_out=3, rate=0.5, input_rate=0.2)
    activation, convention = "tanh", "standard"
    lin = MLP(**kw, activation=activation, convention=convention)
    lin_vars = {"params": jax.jit(lin.init)(jax.random.key(0), X)["params"]}
    spec = M.mask_spec(lin, X)
    model = dnnx.MLP(5, **kw, activation=activation, convention=convention, rngs=nnx.Rngs(1))
    nnx.update(model, lin_vars["params"])
    net, v = dnnx.pure(model)
    draw = np.random.default_rng(2).random((X.shape[0], spec.n_units)) < np.asarray(spec.keep)
    mask = spec.unflatten(jnp.asarray(draw, jnp.float32))  # one subnetwork per example
    np.testing.assert_allclose(
        APPLY(net, v, X, mask), APPLY(lin, lin_vars, X, mask), rtol=1e-5, atol=1e-6
    )


def test_nnx_dtypes_and_rngs():
    layer = dnnx.MaskedDropout(0.5, features=3, deterministic=None, dtype=jnp.bfloat16)
    assert layer.mask[...].dtype == jnp.bfloat16
    a, b = (dnnx.pure(dnnx.MLP(5, (4,), 3, rngs=nnx.Rngs(s)))[1] for s in (0, 1))
    assert not _same(a, b)  # the keys draw the parameters
    # traced only: the parameters' and the computation's dtype
    half = lambda: dnnx.MLP(5, (4,), 3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))  # noqa: E731
    params = jax.tree.leaves(nnx.state(nnx.eval_shape(half), nnx.Param))
    assert {p.dtype for p in params} == {jnp.dtype(jnp.bfloat16)}
    assert nnx.eval_shape(lambda: half()(X)).dtype == jnp.bfloat16


def test_pure_apply_method_and_mutable():
    class Two(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.lin = nnx.Linear(5, 3, rngs=rngs)
            self.drop = dnnx.MaskedDropout(
                0.5, features=3, deterministic=None, convention="standard"
            )

        def __call__(self, x):
            return self.drop(self.lin(x))

        def pre(self, x):
            return self.lin(x)

    net, v = dnnx.pure(Two(nnx.Rngs(0)))
    pre = net.apply(v, X, method="pre")
    np.testing.assert_allclose(net.apply(v, X), 0.5 * pre, rtol=1e-6)  # standard: times keep
    by_fn = net.apply(v, X, method=lambda m, x: 3.0 * m.lin(x))
    np.testing.assert_allclose(by_fn, 3.0 * pre, rtol=1e-6)
    _, state = net.apply(v, X, mutable=True)
    assert set(state) == {"params", "masks"} and _same(state["params"], v["params"])


# --- the command line -------------------------------------------------------------------


def test_compare_flags_reach_the_model_and_training(tmp_path, monkeypatch, capsys, dropstudy_log):
    from dropstudy_experiments import cli
    from dropstudy_experiments import compare as C

    calls = []
    monkeypatch.setattr(C, "compare", lambda cfg, data, **kw: calls.append((cfg, data, kw)))
    monkeypatch.setattr(C, "format_table", lambda result: "")
    args = ["compare", "--hidden", "3", "--activation", "tanh", "--rate", "0.3",
            "--input-rate", "0.1", "--convention", "standard", "--steps", "3",
            "--batch-size", "16", "--lr", "0.01", "--samples", "2,7", "--seed", "5",
            "--no-exact", "--max-units", "9", "--dataset", "mnist",
            "--data-dir", str(_mnist(tmp_path))]  # fmt: skip
    assert cli.main(args) == 0 and cli.main([*args, "--no-progress"]) == 0
    (cfg, data, kw), (_, _, quiet) = calls
    assert (kw["progress"], quiet["progress"]) == (True, False)
    assert data.name == "mnist" and kw["checkpoint_dir"] is None and kw["save_dir"] is None
    assert (cfg.samples, cfg.seed, cfg.exact, cfg.max_units) == ((2, 7), 5, False, 9)
    m = cfg.model(10)
    assert (m.hidden, m.activation, m.rate, m.input_rate, m.convention, m.n_out) == (
        (3,), "tanh", 0.3, 0.1, "standard", 10
    )  # fmt: skip
    t = cfg.train_config()
    assert (t.steps, t.batch_size, t.lr) == (3, 16, 0.01)
    monkeypatch.undo()  # the real compare: --max-units moves the exact average's limit
    assert cli.main(["compare", "--hidden", "4,4", "--max-units", "7", *args[-4:]]) == 2
    assert "over the limit of 7 units" in capsys.readouterr().err


def test_verbosity_flags_set_the_log_level(monkeypatch, dropstudy_log):
    from dropstudy_experiments import cli

    monkeypatch.setitem(cli.COMMANDS, "compare", lambda args, parser: 0)
    for flags, level in (([], logging.INFO), (["-v"], logging.DEBUG), (["-q"], logging.WARNING)):
        assert cli.main(["compare", *flags]) == 0
        assert cli.log.level == level, flags


def test_run_and_report_flags_reach_their_functions(tmp_path, monkeypatch, dropstudy_log):
    from dropstudy_experiments import cli, report, runner

    calls = []
    monkeypatch.setattr(runner, "run_experiment", lambda name, **kw: calls.append((name, kw)))
    tb = tmp_path / "tb"
    argv = ["run", "all", "--quick", "--seeds", "3", "--out", str(tmp_path / "o"), "--force",
            "--tensorboard", str(tb), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    assert [n for n, _ in calls] == list(runner.NAMES)
    assert calls[0][1] == {
        "out": tmp_path / "o", "quick": True, "seeds": 3, "progress": False, "data": None,
        "tensorboard": tb, "force": True, "seed_start": 0, "tuning": None, "sets": {},
        "reuse": None,
    }  # fmt: skip
    calls.clear()
    assert cli.main([*argv, "--seed-start", "150"]) == 0  # a second list, to every experiment
    assert {kw["seed_start"] for _, kw in calls} == {150}
    calls.clear()  # --set, to the one experiment it names, in one spelling per value
    one = ["run", "stayput", "--quick", "--out", str(tmp_path / "s"), "--set", "margin=.20"]
    assert cli.main(one) == 0 and [(n, kw["sets"]) for n, kw in calls] == [
        ("stayput", {"margin": "0.2"})
    ]
    d = _mnist(tmp_path / "mnist")
    calls.clear()
    argv = ["run", "scaling", "--dataset", "mnist", "--data-dir", str(d), "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert calls[0][1]["data"].name == "mnist" and calls[0][1]["progress"] is True
    built = []
    monkeypatch.setattr(
        report, "build_report",
        lambda results, out, compare, replicate, other_cpu: built.append(
            (results, out, compare, replicate, other_cpu)
        ),
    )  # fmt: skip
    argv = ["report", "--results", str(tmp_path), "--out", str(tmp_path / "R.md")]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--compare", "a", "--compare", "b"]) == 0
    assert cli.main([*argv, "--replicate", "c"]) == 0
    assert cli.main([*argv, "--other-cpu", "d", "--other-cpu", "e"]) == 0
    assert built == [
        (tmp_path, tmp_path / "R.md", [], None, []),
        (tmp_path, tmp_path / "R.md", [Path("a"), Path("b")], None, []),
        (tmp_path, tmp_path / "R.md", [], [Path("c")], []),
        (tmp_path, tmp_path / "R.md", [], None, [Path("d"), Path("e")]),
    ]
    # --readme names a file that must exist; with it the findings table is written there
    assert cli.main([*argv, "--readme", str(tmp_path / "none.md")]) == 2
    assert len(built) == 4  # refused before the report is built
    wrote = []
    monkeypatch.setattr(report, "read_results", lambda folder: {})
    monkeypatch.setattr(report, "write_readme_block", lambda f, lines: wrote.append(f) or f)
    (tmp_path / "README.md").write_text(f"{report.README_START}\n{report.README_END}\n")
    assert cli.main([*argv, "--readme", str(tmp_path / "README.md")]) == 0
    assert wrote == [tmp_path / "README.md"]
    # `python -m dropstudy_experiments NAME [options]` is `dropstudy run NAME [options]`
    from dropstudy_experiments import __main__ as entry

    seen = []
    monkeypatch.setattr(cli, "cmd_run", lambda args, parser=None: seen.append(args) or 0)
    monkeypatch.setitem(cli.COMMANDS, "run", cli.cmd_run)
    assert entry.run(["scaling", "--quick", "--seeds", "4"]) == 0
    assert (seen[0].name, seen[0].quick, seen[0].seeds) == ("scaling", True, 4)
    assert entry.run(["run", "scaling"]) == 0 and seen[1].name == "scaling"


def test_force_and_progress_of_a_run(tmp_path, capsys, caplog, dropstudy_log):
    from dropstudy_experiments import common, runner

    old = tmp_path / "scaling" / "results.json"
    old.parent.mkdir()
    old.write_text(json.dumps({"scale": runner.scale(quick=False)}))
    quick = runner.scale(quick=True)
    with pytest.raises(DropstudyError, match="pass --force"):
        runner.check_scale(tmp_path, ["scaling"], quick)
    with caplog.at_level(logging.WARNING, logger="dropstudy"):
        runner.check_scale(tmp_path, ["scaling"], quick, force=True)
    assert "--force: " in caplog.text and "; this run overwrites them" in caplog.text
    # a second list into its first list's folder is pointed at fromK inside it
    second = runner.scale(quick=False, seed_start=100)
    with pytest.raises(DropstudyError, match=f"--out \\(e.g. {tmp_path}/from100\\)"):
        runner.check_scale(tmp_path, ["scaling"], second)
    # another experiment at this scale beside another scale's: refused before any work
    with pytest.raises(DropstudyError, match=r"would write beside them, and a folder's report"):
        runner.check_scale(tmp_path, ["voting"], quick)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dropstudy"):
        runner.check_scale(tmp_path, ["voting"], quick, force=True)
    assert "writes beside them, and the folder's report refuses it" in caplog.text
    caplog.clear()
    runner.check_scale(tmp_path, ["voting"], runner.scale(quick=False))  # the same scale
    assert not caplog.text
    runner.check_scale(tmp_path, [], quick)  # nothing to write (replicate picked none)
    for progress in (True, False):
        ctx = common.Context("shrinkage", tmp_path / str(progress), progress=progress)
        ctx.run_cells({"a": common.cell(dict, v=1)})
        assert ("shrinkage" in capsys.readouterr().err) is progress
    data = _tiny_dataset()
    assert common.Context("shrinkage", tmp_path, data=data).dataset() is data


def test_compare_config_dataset_is_the_evaluated_data(monkeypatch):
    from dropstudy_experiments import compare as C

    def no_training(*args, **kw):  # a refusal must come before any training
        raise AssertionError("compare trained on tiny data although mnist was asked for")

    monkeypatch.setattr(C, "train_with_progress", no_training)
    cfg = C.CompareConfig(dataset="mnist", hidden=(2,), steps=1, samples=(1,), exact=False)
    with pytest.raises(DropstudyError, match="mnist"):
        C.compare(cfg, _tiny_dataset("tiny"))


# --- the scaling experiment's configuration ---------------------------------------------


def test_scaling_config_reaches_its_cells():
    from dropstudy_experiments import protocol as PR
    from dropstudy_experiments import scaling

    train_cfg = TrainConfig(steps=2, batch_size=32)
    cfg = scaling.Config(
        n_inputs=30, demo_rate=0.2, n_keys=7, hidden=(3,), rate=0.4, input_rate=0.1,
        train=train_cfg, expect_seeds=3, expect_k=11,
        expect_protocol=PR.Protocol(window=30, eval_every=10), check_steps=1,
    )  # fmt: skip
    cells = scaling.plan(cfg, _tiny_dataset())
    exp = cells["expectation"].kwargs
    assert (exp["seeds"], exp["k"]) == ([0, 1, 2], 11)
    assert exp["protocol"] == PR.Protocol(window=30, eval_every=10)  # part C's own training
    assert exp["model"].hidden == (3,) and exp["model"].rate == 0.4
    assert cfg.with_seeds(5).expect_seeds == 5
    demos = [c.kwargs for c in cells.values() if "n_keys" in c.kwargs]
    assert len(demos) == 2
    for kw in demos:
        assert (kw["rate"], kw["n_inputs"], kw["n_keys"]) == (0.2, 30, 7)
    (conv,) = [c.kwargs for c in cells.values() if "seed" in c.kwargs]
    m = conv["model"]
    assert (m.hidden, m.rate, m.input_rate, conv["train_cfg"]) == ((3,), 0.4, 0.1, train_cfg)
    assert conv["check_steps"] == 1
    short = scaling.Config(train=train_cfg.replace(steps=5), check_steps=3)
    (conv,) = [
        c.kwargs for c in scaling.plan(short, _tiny_dataset()).values() if "seed" in c.kwargs
    ]
    assert conv["check_steps"] == 3
    with pytest.raises(DropstudyError, match="check_steps"):
        scaling.Config(train=train_cfg, check_steps=3)
    # the demo's unit sums n_inputs inputs of 1: its eval output is n_inputs (inverted) or
    # keep * n_inputs (standard), drawn n_keys times in training mode
    raw = {}
    for convention, want in (("inverted", 30.0), ("standard", 24.0)):
        raw[f"demo_{convention}"] = r = scaling.demo_cell(convention, 0.2, 30, 7)
        assert r["eval"] == pytest.approx(want) and sum(r["hist"]["counts"]) == 7
    # the margins and the primary test reach the summary's tests
    # the check reads the matched pair at check_steps, not at the end of training
    raw["conventions"] = {"matched_lr": {"max_abs_logit": 1.0},
                          "at_check": {"matched_lr": {"max_abs_logit": 5e-4}}}  # fmt: skip
    gap = np.full((3, 4), 0.07) + 0.001 * np.arange(4)  # 0.070-0.073 sd: inside 0.1, not 0.06
    sel = {"gap": gap.tolist(), "sd": np.ones((3, 4)).tolist(), "test_acc": [0.9] * 3,
           "train_acc": [0.95] * 3, "disagree": [0.01] * 3}  # fmt: skip
    arm = {"recipe": "adam", "lr": 1e-3, "edge": False, "tuned_as": "x", "window": 100,
           "stop_w": [50] * 3, "stop_2w": [50] * 3, "settle_2w": [50] * 3,
           "diverged": [False] * 3, "converged": True, "tuning": {"adam": {}}}  # fmt: skip
    raw["expectation"] = {"within_w": sel, "within_2w": sel, "arm": arm}
    # retraining opens 0.4 sd on validation: half is 0.2, so the caps (0.1, 0.06) stand
    raw["margin"] = {"pairs": [{"seeds": [0, 1], "retrain": 0.4}]}
    wide = scaling.summarise(scaling.Config(same_function=1e-3, demo_margin=0.01), raw)
    narrow = scaling.summarise(
        scaling.Config(same_function=1e-4, demo_margin=0.02, primary="demo_standard",
                       expect_margin=0.06), raw,
    )  # fmt: skip
    e = [r["tests"]["expectation"] for r in (wide, narrow)]
    assert [t["margin"] for t in e] == [0.1, 0.06] and e[0]["n_examples"] == 4
    assert [t["verdict"] for t in e] == ["supported", "contradicted"]
    # where the cap stands, the verdict at the rule's own margin (0.2) stands beside it
    assert wide["margin"]["at_rule"]["verdict_w"] == "supported"
    assert wide["margin"]["derived"] == pytest.approx(0.2)
    # margin_share sets the derived margin: a tenth of 0.4 is 0.04, tighter than the cap
    tight = scaling.summarise(scaling.Config(margin_share=0.1), raw)
    t = tight["tests"]["expectation"]
    assert t["margin"] == pytest.approx(0.04) and t["verdict"] == "contradicted"
    assert tight["margin"]["replaced"]["verdict_w"] == "supported"
    with pytest.raises(DropstudyError, match="margin_share"):
        scaling.Config(margin_share=0)
    verdicts = [r["tests"]["same_function"]["verdict"] for r in (wide, narrow)]
    assert verdicts == ["supported", "contradicted"]
    for r, margin in ((wide, 0.01), (narrow, 0.02)):
        assert r["tests"]["demo_standard"]["margin"] == pytest.approx(margin * 24.0)
    assert (wide["primary"], narrow["primary"]) == ("expectation", "demo_standard")


# --- last: a fresh process, started with the module's first test so that it runs alongside


@pytest.fixture(scope="module", autouse=True)
def device_count_probe():
    """``use_cpu_cores(2)`` in a fresh process, with ``$DROPSTUDY_CPU_DEVICES=3``: prints
    what it returned and the device count JAX then has."""
    code = (
        "import jax; from dropstudy import sharding as S; "
        "n = S.use_cpu_cores(2); print(n, len(jax.devices()))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update({"JAX_PLATFORMS": "cpu", S.CPU_DEVICES_ENV: "3"})
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    yield proc
    if proc.poll() is None:  # the test did not run (deselected) or timed out
        proc.kill()
        proc.communicate()


def test_use_cpu_cores_sets_the_device_count(device_count_probe):
    """``n`` (before ``$DROPSTUDY_CPU_DEVICES``) sets the device count of a fresh process."""
    out, err = device_count_probe.communicate(timeout=120)
    assert out.split() == ["2", "2"], err[-2000:]


def test_replicate_passes_the_first_lists_tuning(tmp_path, monkeypatch, dropstudy_log):
    from dropstudy_experiments import cli, runner

    calls = []
    monkeypatch.setattr(runner, "run_experiment", lambda name, **kw: calls.append((name, kw)))
    monkeypatch.setattr(cli, "load_data", lambda args: None)
    root = Path(__file__).resolve().parent.parent / "results"
    # another start than the committed second list's (from 100), which it must not overlap
    argv = ["replicate", "--results", str(root), "--out", str(tmp_path / "o")]
    assert cli.main([*argv, "--seed-start", "200"]) == 0
    assert calls and {str(kw["tuning"]) for _, kw in calls} == {str(root / "tuning")}
    assert {kw["seed_start"] for _, kw in calls} == {200}
