"""Bad input to the library's own-model path gets one clear DropstudyError, never a deep
Flax/JAX traceback or a silently wrong number."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dropstudy import checkpoint, io
from dropstudy import masks as M
from dropstudy import nnx as dnnx
from dropstudy import predict as P
from dropstudy.models import MLP, MaskedDropout
from dropstudy.train import TrainConfig, seed_keys, train, train_seeds
from dropstudy.validate import DropstudyError

X = jax.random.normal(jax.random.key(0), (12, 5))
Y = jnp.arange(12, dtype=jnp.int32) % 3
CFG = TrainConfig(steps=2, batch_size=4)
MODEL = MLP(hidden=(4,), n_out=3, rate=0.5)
V, SPEC = M.init(MODEL, jax.random.key(1), X)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: train(MODEL.clone(n_out=2), jax.random.key(0), X, Y, CFG), r"in \[0, 2\)"),
        (lambda: train(MODEL, jax.random.key(0), X, -Y - 1, CFG), r"labels must be class"),
        (lambda: train(MODEL, jax.random.key(0), X, Y[:, None], CFG), "shape \\(N,\\)"),
        (lambda: train(MODEL, 0, X, Y, CFG), "PRNG key"),
        (lambda: train_seeds(MODEL, jax.random.key(0), X, Y, CFG), "one key per seed"),
        (lambda: train(MLP(hidden=[4], n_out=3), jax.random.key(0), X, Y, CFG), "hashable"),
        (
            lambda: train(
                MODEL,
                jax.random.key(0),
                X,
                Y.astype(jnp.float32)[:, None].repeat(2, 1),
                CFG.replace(task="regression"),
            ),
            "2 value\\(s\\) per example; the model has 3",
        ),
        (lambda: P.weight_scaling(MODEL, V, X[:, :4]), "do not fit MLP"),
        (lambda: P.weight_scaling(MODEL, V["params"], X), "variables dict"),
        (lambda: P.mc(MODEL, V, X, key=0, k=3), "PRNG key"),
        (lambda: P.over_masks(MODEL, V, X, masks=M.expected_masks(SPEC)), "leading K axis"),
        (
            lambda: P.over_masks(
                MODEL, V, X, masks=M.all_masks(SPEC, max_units=4)[0], weights=jnp.ones(16)
            ),
            "summing to 1",
        ),
        (lambda: M.ablate(M.expected_masks(SPEC), SPEC, [1000]), r"in \[0, 9\)"),
        (lambda: M.ablate(M.expected_masks(SPEC), SPEC, [-1]), r"in \[0, 9\)"),
        (lambda: CFG.replace(optimizer=optax.adam(1e-2), lr=1e-3).validate(), "lr=0.001"),
    ],
)
def test_clear_errors(call, message):
    with pytest.raises(DropstudyError, match=message):
        call()


def test_label_checks_apply_to_the_default_loss_named_explicitly():
    """``loss="cross_entropy"`` is the classification default by name: the same label
    checks refuse the same bad labels, and good ones train."""
    ce = CFG.replace(loss="cross_entropy")
    for model, y, message in (
        (MODEL.clone(n_out=2), Y, r"in \[0, 2\)"),
        (MODEL, -Y - 1, "labels must be class"),
        (MODEL, Y[:, None], "shape \\(N,\\)"),
    ):
        with pytest.raises(DropstudyError, match=message):
            train(model, jax.random.key(0), X, y, ce)
    _, hist = train(MODEL, jax.random.key(0), X, Y, ce)
    assert np.all(np.isfinite(np.asarray(hist.loss)))


class BN(nn.Module):
    training: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=not self.training)(nn.Dense(4)(x))
        return nn.Dense(3)(MaskedDropout(0.5)(x))


class Noisy(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.Dropout(0.3, deterministic=False)(MaskedDropout(0.5)(x)))


def test_models_in_training_mode_are_refused_by_the_predictors():
    v, _ = M.init(BN(), jax.random.key(0), X)
    with pytest.raises(DropstudyError, match="eval mode"):
        P.weight_scaling(BN(training=True), v, X)
    with pytest.raises(DropstudyError, match="evaluate it deterministically"):
        P.weight_scaling(Noisy(), {"params": {}}, X)


def test_nnx_models_where_they_cannot_go():
    net = dnnx.MLP(5, (4,), 3, 0.5, rngs=nnx.Rngs(0))
    pure_net, v = dnnx.pure(net)
    with pytest.raises(DropstudyError, match="takes a linen module"):
        checkpoint.save("/nonexistent", pure_net, v, example_input=X)
    with pytest.raises(DropstudyError, match="cannot draw initial parameters"):
        train_seeds(pure_net, seed_keys([0, 1]), X, Y, CFG)

    class WithDropout(nnx.Module):
        def __init__(self):
            self.drop = dnnx.MaskedDropout(0.5, features=5, deterministic=None)
            self.noise = nnx.Dropout(0.3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.noise(self.drop(x))

    with pytest.raises(DropstudyError, match=r"model.eval\(\)"):
        dnnx.pure(WithDropout())
    m = WithDropout()
    m.eval()
    dnnx.pure(m)  # deterministic: accepted


def test_failed_atomic_write_leaves_nothing(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "x").write_text("keep me")  # os.replace onto a non-empty folder fails
    with pytest.raises(OSError):
        io.atomic_write(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
    np.testing.assert_equal((target / "x").read_text(), "keep me")


def test_variables_of_another_model_are_refused_on_the_factorised_path():
    """The factorised exact path reads the output layer itself: variables trained with 10
    outputs, given to a 3-output MLP, get the same one-line refusal as the generic path."""
    ten = MLP(hidden=(4,), n_out=10, rate=0.5)
    v, _ = M.init(ten, jax.random.key(0), X)
    for method in ("factorised", "generic"):
        with pytest.raises(DropstudyError, match="variables do not fit"):
            P.exact(MODEL, v, X, method=method)


def test_integer_inputs_average_as_floats():
    """Integer pixels (0..16, as digits ships them) give every predictor the float inputs'
    numbers, not an overflow or a scan's type error."""
    xi = jnp.asarray(np.arange(12 * 5).reshape(12, 5) % 17, jnp.int32)
    xf = xi.astype(jnp.float32)
    for f in (
        lambda x: P.exact(MODEL, V, x),
        lambda x: P.exact(MODEL, V, x, method="generic"),
        lambda x: P.mc(MODEL, V, x, key=jax.random.key(0), k=5),
        lambda x: P.weight_scaling(MODEL, V, x),
    ):
        np.testing.assert_array_equal(f(xi).arithmetic, f(xf).arithmetic)
