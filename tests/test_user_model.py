"""A user's own linen model, written outside the package: a small conv net with BatchNorm,
trained with an optax transformation, checkpointed, and averaged through the same calls as
the MLP (the README shows the same steps)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dropstudy import checkpoint
from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.models import MaskedDropout
from dropstudy.train import TrainConfig, train, train_seeds
from dropstudy.validate import DropstudyError

# One worker runs this file: its module-scoped fixture is built once (pytest-xdist).
pytestmark = pytest.mark.xdist_group("test_user_model")


class ConvBN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> channel dropout -> Dense -> ReLU -> dropout -> Dense."""

    training: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not self.training)(x)
        x = MaskedDropout(0.5, broadcast_dims=(1, 2))(jax.nn.relu(x))  # 4 channel units
        x = x.reshape(x.shape[0], -1)
        x = MaskedDropout(0.25)(jax.nn.relu(nn.Dense(6)(x)))  # 6 units
        return nn.Dense(10)(x)


@pytest.fixture(scope="module")
def trained(digits_data):
    d = digits_data
    x = d.x_train.reshape(-1, 8, 8, 1)
    cfg = TrainConfig(steps=200, batch_size=64, optimizer=optax.adamw(1e-2, weight_decay=1e-4))
    variables, hist = train(ConvBN(training=True), jax.random.key(0), x, d.y_train, cfg)
    return variables, hist, d.x_test.reshape(-1, 8, 8, 1), d.y_test


def test_batch_stats_are_trained_and_kept(trained):
    variables, hist, _, _ = trained
    assert set(variables) == {"params", "batch_stats"}
    init = ConvBN().init(jax.random.key(0), jnp.ones((1, 8, 8, 1)))["batch_stats"]
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), variables["batch_stats"], init)
    assert all(jax.tree.leaves(moved))
    assert float(hist.loss[-1]) < float(hist.loss[0])


def test_same_calls_as_the_mlp(trained):
    variables, _, x, y = trained
    model = ConvBN()
    ws = P.weight_scaling(model, variables, x)
    ref = jax.nn.softmax(model.apply(variables, x))  # jit vs eager: float rounding only
    np.testing.assert_allclose(ws.arithmetic, ref, rtol=1e-5, atol=1e-7)
    assert float(np.mean(np.argmax(ws.arithmetic, -1) == y)) > 0.5  # it learned something
    ex = P.exact(model, variables, x)
    assert ex.count == 2**10
    # The exact average by brute force over every mask of the 10 droppable units.
    spec = M.mask_spec(model, x)
    masks, probs = M.all_masks(spec)
    outs = jax.vmap(lambda m: jax.nn.softmax(M.apply(model, variables, x, m)))(masks)
    np.testing.assert_allclose(ex.arithmetic, jnp.einsum("k,kbc->bc", probs, outs), atol=1e-5)
    # MC within five standard errors of it (from the subnetworks' spread), a band that
    # weight scaling misses.
    k = 3000
    sd = jnp.sqrt(jnp.maximum(jnp.einsum("k,kbc->bc", probs, outs**2) - ex.arithmetic**2, 0))
    tol = np.asarray(5 * sd / np.sqrt(k) + 1e-6)
    mc = P.mc(model, variables, x, key=jax.random.key(1), k=k)
    assert np.all(np.abs(mc.arithmetic - ex.arithmetic) <= tol)
    assert np.any(np.abs(ws.arithmetic - ex.arithmetic) > tol)


def test_checkpoint_roundtrip_is_bit_identical(trained, tmp_path):
    variables, _, x, _ = trained
    d = checkpoint.save(tmp_path / "ck", ConvBN(), variables, example_input=x)
    model, loaded, config = checkpoint.load(d, model=ConvBN())
    assert config["model_class"].endswith("ConvBN")
    assert jax.tree.structure(loaded) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    np.testing.assert_array_equal(
        P.weight_scaling(model, loaded, x).arithmetic,
        P.weight_scaling(model, variables, x).arithmetic,
    )


class NoisyNet(nn.Module):
    """A net with randomness that is not a dropout mask: flax's own nn.Dropout."""

    @nn.compact
    def __call__(self, x):
        x = MaskedDropout(0.5)(jax.nn.relu(nn.Dense(8)(x)))
        x = nn.Dropout(0.3, deterministic=False)(x)
        return nn.Dense(10)(x)


def test_rng_streams_feed_other_randomness(digits_data):
    d = digits_data
    cfg = TrainConfig(steps=5, batch_size=32)
    with pytest.raises(DropstudyError, match=r"rng_streams=\('dropout',\)"):
        train(NoisyNet(), jax.random.key(0), d.x_train, d.y_train, cfg)
    a, _ = train(
        NoisyNet(), jax.random.key(0), d.x_train, d.y_train, cfg.replace(rng_streams=("dropout",))
    )
    b, _ = train(
        NoisyNet(), jax.random.key(0), d.x_train, d.y_train, cfg.replace(rng_streams=("dropout",))
    )
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)  # the streams come from the key: reproducible


class OnlyFlaxDropout(nn.Module):
    """Its only randomness is nn.Dropout's (the MaskedDropout layer keeps every unit)."""

    @nn.compact
    def __call__(self, x):
        x = MaskedDropout(0.0)(jax.nn.relu(nn.Dense(16)(x)))
        return nn.Dense(10)(nn.Dropout(0.5, deterministic=False)(x))


@pytest.mark.parametrize("segmented", [False, True])
def test_each_step_draws_a_fresh_stream_key(digits_data, segmented):
    """Full batch and a zero learning rate: the weights never move, so the loss changes from
    step to step only if nn.Dropout draws a new mask each step (a key fixed for the whole
    run gives one loss throughout); the segmented path (a progress callback) as well."""
    from dropstudy.train import progress as train_progress

    d = digits_data
    cfg = TrainConfig(steps=4, batch_size=0, optimizer=optax.sgd(0.0), rng_streams=("dropout",))
    run = lambda: train(OnlyFlaxDropout(), jax.random.key(0), d.x_train, d.y_train, cfg)  # noqa: E731
    if segmented:
        with train_progress(lambda done, total: None):
            _, hist = run()
    else:
        _, hist = run()
    loss = np.asarray(hist.loss)
    assert len(set(loss.tolist())) == len(loss), loss


def test_custom_loss_and_optimizer_change_training(digits_data):
    d = digits_data
    from dropstudy.models import MLP

    model = MLP(hidden=(8,), rate=0.5)
    cfg = TrainConfig(steps=20, batch_size=64)
    base, _ = train(model, jax.random.key(0), d.x_train, d.y_train, cfg)

    def smoothed(out, y):
        return optax.softmax_cross_entropy(
            out, optax.smooth_labels(jax.nn.one_hot(y, 10), 0.2)
        ).mean()

    same = cfg.replace(loss="cross_entropy")
    s, _ = train(model, jax.random.key(0), d.x_train, d.y_train, same)
    ls, _ = train(model, jax.random.key(0), d.x_train, d.y_train, cfg.replace(loss=smoothed))
    o, _ = train(
        model, jax.random.key(0), d.x_train, d.y_train, cfg.replace(optimizer=optax.sgd(0.1))
    )
    leaves = lambda v: jax.tree.leaves(v["params"])  # noqa: E731
    assert all(np.array_equal(u, v) for u, v in zip(leaves(base), leaves(s)))
    assert not all(np.array_equal(u, v) for u, v in zip(leaves(base), leaves(ls)))
    assert not all(np.array_equal(u, v) for u, v in zip(leaves(base), leaves(o)))
    with pytest.raises(DropstudyError, match="lr=0.5 applies to the named optimizers"):
        cfg.replace(optimizer=optax.sgd(0.1), lr=0.5).validate()
    with pytest.raises(DropstudyError, match="momentum=0.5 applies to optimizer='sgd'"):
        cfg.replace(momentum=0.5).validate()


def test_seeds_of_a_batchnorm_net(digits_data):
    d = digits_data
    x = d.x_train[:256].reshape(-1, 8, 8, 1)
    keys = jax.vmap(jax.random.key)(jnp.arange(2))
    cfg = TrainConfig(steps=3, batch_size=64)
    v, _ = train_seeds(ConvBN(training=True), keys, x, d.y_train[:256], cfg)
    assert v["batch_stats"]["BatchNorm_0"]["mean"].shape == (2, 4)
