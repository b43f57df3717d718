"""Binary classification with one logit: the loss, selection and every predictor."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy import sharding as S
from dropstudy import train as T
from dropstudy.models import MLP, MaskedDropout
from dropstudy.validate import DropstudyError

X = jax.random.normal(jax.random.key(0), (40, 6))
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int32)
MODEL = MLP(hidden=(6, 5), n_out=1, rate=0.5)


@pytest.fixture(scope="module")
def trained():
    cfg = T.TrainConfig(steps=200, task="binary", lr=1e-2, batch_size=16)
    v, hist = T.train(MODEL, jax.random.key(1), X, Y, cfg)
    return v, hist


def _subnetworks(model, v, x):
    """Every subnetwork's logit ``(2^n, B)`` and probability ``(2^n,)``, by brute force."""
    spec = M.mask_spec(model, x)
    masks, w = M.enumerate_masks(spec, jnp.arange(2**spec.n_droppable), x.dtype)
    z = jax.vmap(lambda m: M.apply(model, v, x, m))(masks)[..., 0]
    return z, w


def test_the_default_loss_is_the_sigmoid_cross_entropy(trained):
    _, hist = trained
    assert float(hist.loss[-1]) < 0.5 * float(hist.loss[0])
    z = jax.random.normal(jax.random.key(2), (7, 1))
    y = jnp.asarray([0, 1, 1, 0, 1, 0, 0])
    loss = T.task_loss(T.TrainConfig(task="binary"))
    manual = -jnp.mean(y * jax.nn.log_sigmoid(z[:, 0]) + (1 - y) * jax.nn.log_sigmoid(-z[:, 0]))
    np.testing.assert_allclose(loss(z, y), manual, rtol=1e-6)
    named = T.task_loss(T.TrainConfig(task="binary", loss="binary_cross_entropy"))
    np.testing.assert_allclose(named(z, y), manual, rtol=1e-6)


def test_every_predictor_averages_the_sigmoid(trained):
    v, _ = trained
    z, w = _subnetworks(MODEL, v, X)
    z, w = np.asarray(z, np.float64), np.asarray(w, np.float64)  # a float64 reference
    arith = w @ (1 / (1 + np.exp(-z)))
    geo = 1 / (1 + np.exp(-(w @ z)))  # the NWGM of Bernoullis: sigmoid(E[z])
    for method in ("factorised", "generic"):
        ex = P.exact(MODEL, v, X, task="binary", method=method)
        assert ex.task == "classification" and ex.arithmetic.shape == (40, 2)
        np.testing.assert_allclose(ex.arithmetic[:, 1], arith, atol=1e-6)
        np.testing.assert_allclose(ex.probs("geometric")[:, 1], geo, atol=1e-6)
        np.testing.assert_allclose(ex.arithmetic.sum(1), 1.0, atol=1e-6)
    ws = P.weight_scaling(MODEL, v, X, task="binary")
    spec = M.mask_spec(MODEL, X)
    zw = M.apply(MODEL, v, X, M.expected_masks(spec))[:, 0]
    np.testing.assert_allclose(ws.arithmetic[:, 1], jax.nn.sigmoid(zw), atol=1e-7)
    key = jax.random.key(3)
    dense = P.mc(MODEL, v, X, key=key, k=300, task="binary", method="dense")
    gathered = P.mc(MODEL, v, X, key=key, k=300, task="binary", method="gathered")
    np.testing.assert_allclose(gathered.arithmetic, dense.arithmetic, atol=1e-6)
    np.testing.assert_allclose(gathered.log_geometric, dense.log_geometric, atol=1e-5)
    assert float(jnp.max(jnp.abs(dense.arithmetic[:, 1] - arith))) < 0.1  # 300 samples
    masks = M.sample_mask_batch(spec, key, jnp.arange(5), X.dtype)
    over = P.over_masks(MODEL, v, X, masks=masks, task="binary")
    zk = jax.vmap(lambda m: M.apply(MODEL, v, X, m))(masks)[..., 0]
    np.testing.assert_allclose(over.arithmetic[:, 1], jax.nn.sigmoid(zk).mean(0), atol=1e-6)


def test_binary_averages_dealt_over_a_mesh(trained):
    v, _ = trained
    mesh = S.mesh()
    key = jax.random.key(4)
    for predictor, options in (
        ("exact", {}),
        ("exact", {"method": "generic"}),
        ("mc", {"key": key, "k": 64, "method": "dense"}),
        ("mc", {"key": key, "k": 64, "method": "gathered"}),
    ):
        one = P.predict(predictor, MODEL, v, X, task="binary", **options)
        dealt = P.predict(predictor, MODEL, v, X, task="binary", mesh=mesh, **options)
        np.testing.assert_allclose(dealt.arithmetic, one.arithmetic, atol=1e-6)


def test_selection_scores_the_binary_nll():
    cfg = T.TrainConfig(steps=60, task="binary", lr=1e-2, eval_every=20, select_by="mc")
    v, hist = T.train(MODEL, jax.random.key(1), X, Y, cfg, validation=(X[:10], Y[:10]))
    scored = hist.val_loss[~np.isnan(np.asarray(hist.val_loss))]
    assert scored.shape == (3,) and bool(jnp.all(scored > 0))
    ws = T.TrainConfig(steps=60, task="binary", lr=1e-2, eval_every=20)
    v, hist = T.train(MODEL, jax.random.key(1), X, Y, ws, validation=(X[:10], Y[:10]))
    last = P.weight_scaling(MODEL, v, X[:10], task="binary")
    nll = -np.mean(np.log(np.asarray(last.arithmetic)[np.arange(10), np.asarray(Y[:10])]))
    np.testing.assert_allclose(hist.val_loss[-1], nll, rtol=1e-5)


def test_binary_refusals(trained):
    v, _ = trained
    with pytest.raises(DropstudyError, match="task='binary' for a binary classifier"):
        P.exact(MODEL, v, X)
    two = MLP(hidden=(6,), n_out=2, rate=0.5)
    v2, _ = M.init(two, jax.random.key(0), X)
    with pytest.raises(DropstudyError, match="task='binary' takes a model with one output"):
        P.mc(two, v2, X, key=jax.random.key(0), k=5, task="binary")
    cfg = T.TrainConfig(steps=5, task="binary")
    with pytest.raises(DropstudyError, match="the model has 2 outputs"):
        T.train(two, jax.random.key(0), X, Y, cfg)
    with pytest.raises(DropstudyError, match="labels 0 or 1"):
        T.train(MODEL, jax.random.key(0), X, Y + 1, cfg)
    with pytest.raises(DropstudyError, match="labels 0 or 1"):
        T.train(MODEL, jax.random.key(0), X, Y.astype(np.float32) * 0.5, cfg)


def test_optax_agrees_on_the_loss():
    """The library's binary loss is optax's sigmoid cross-entropy on the one logit."""
    z = jnp.linspace(-30, 30, 9)[:, None]
    y = jnp.asarray([0, 1] * 4 + [1])
    loss = T.task_loss(T.TrainConfig(task="binary"))
    np.testing.assert_allclose(
        loss(z, y), optax.sigmoid_binary_cross_entropy(z[:, 0], y.astype(z.dtype)).mean()
    )


class Squeezed(nn.Module):
    """A binary net whose logit comes as (B,), not (B, 1)."""

    @nn.compact
    def __call__(self, x):
        x = MaskedDropout(0.5)(nn.relu(nn.Dense(6)(x)))
        return nn.Dense(1)(x)[:, 0]


def test_a_logit_of_shape_b_is_refused_naming_the_fix():
    cfg = T.TrainConfig(steps=5, task="binary")
    with pytest.raises(DropstudyError, match=r"shape \(B, 1\)"):
        T.train(Squeezed(), jax.random.key(0), X, Y, cfg)
    v = Squeezed().init(jax.random.key(0), X[:1])
    for predictor, options in (("weight_scaling", {}), ("exact", {})):
        with pytest.raises(DropstudyError, match=r"shape \(B, 1\)"):
            P.predict(predictor, Squeezed(), v, X, task="binary", **options)


def test_labels_and_losses_that_do_not_fit_the_task():
    with pytest.raises(DropstudyError, match="does not fit task='binary'"):
        T.TrainConfig(task="binary", loss="cross_entropy")
    with pytest.raises(DropstudyError, match="does not fit task='classification'"):
        T.TrainConfig(loss="binary_cross_entropy")
    with pytest.raises(DropstudyError, match="pass task='binary'"):
        T.train(MODEL, jax.random.key(0), X, Y, T.TrainConfig(steps=5))
    cfg = T.TrainConfig(steps=5, task="binary")
    with pytest.raises(DropstudyError, match=r"map two classes to 0 and 1"):
        T.train(MODEL, jax.random.key(0), X, np.where(Y == 1, 8, 1), cfg)
    # 0./1. floats and booleans are labels 0 and 1: the same run
    ints = T.train(MODEL, jax.random.key(0), X, Y, cfg)[0]
    for labels in (Y.astype(np.float32), np.asarray(Y).astype(bool)):
        same = T.train(MODEL, jax.random.key(0), X, labels, cfg)[0]
        assert all(
            np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ints), jax.tree.leaves(same))
        )


def test_mc_curve_of_a_binary_net_is_the_mc_prefix(trained, monkeypatch):
    v, _ = trained
    key = jax.random.key(5)
    curve = P.mc_curve(MODEL, v, X, key=key, ks=[3, 20], task="binary")
    for k in (3, 20):
        one = P.mc(MODEL, v, X, key=key, k=k, task="binary", method="dense")
        np.testing.assert_allclose(curve[k].arithmetic, one.arithmetic, atol=1e-6)
    with pytest.raises(DropstudyError, match="task='binary'"):
        P.mc_curve(MODEL, v, X, key=key, ks=[3])
    monkeypatch.setattr(P, "MAX_CURVE_FLOATS", 20 * 40 * 2 - 1)
    with pytest.raises(DropstudyError, match="MAX_CURVE_FLOATS"):
        P.mc_curve(MODEL, v, X, key=key, ks=[20], task="binary")
