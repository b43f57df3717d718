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
        (
            lambda: train(MODEL, jax.random.key(0), X, Y, CFG.replace(loss="cross_entropy")),
            None,
        ),
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
    if message is None:  # the default loss named explicitly: the same checks apply
        call()
        return
    with pytest.raises(DropstudyError, match=message):
        call()


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
            self.drop = dnnx.MaskedDropout(5, 0.5)
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
