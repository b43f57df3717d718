"""A Flax NNX model: train it your way, average its subnetworks dropstudy's way.

``dropstudy.nnx.MaskedDropout`` replaces ``nnx.Dropout`` (rate first, ``rngs=``): called
directly in train mode it draws as ``nnx.Dropout`` does, so an ``nnx.Optimizer`` loop trains
it unchanged. ``dropstudy.nnx.pure`` then hands the trained model to the predictors, which
set its masks themselves.

    python examples/nnx_model.py                  # about 20 s on 2 CPU cores
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from dropstudy import metrics
from dropstudy import nnx as dnnx
from dropstudy import predict as P
from dropstudy.data import digits


class Net(nnx.Module):
    """64 pixels -> 12 ReLU units -> dropout -> 10 logits."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(64, 12, rngs=rngs)
        self.drop = dnnx.MaskedDropout(0.5, rngs=rngs)  # was nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(12, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.hidden(x))))


def main(steps: int = 2000, k: int = 1000) -> dict[str, float]:
    """Train with an ``nnx.Optimizer`` loop, then score the averages of the same weights.

    Args:
      steps: Adam steps on minibatches of 128.
      k: Monte-Carlo subnetworks.

    Returns:
      ``{predictor: test accuracy}``.
    """
    d = digits()
    x, y = jnp.asarray(d.x_train), jnp.asarray(d.y_train)
    model = Net(nnx.Rngs(0, dropout=1))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, idx):
        def loss(model):
            logits = model(x[idx])  # train mode: the layer draws its own masks
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

        opt.update(model, nnx.grad(loss)(model))

    for key in jax.random.split(jax.random.key(2), steps):
        step(model, opt, jax.random.choice(key, len(x), (128,), replace=False))

    net, variables = dnnx.pure(model)  # the predictors set the masks: train mode is moot
    scores = {
        "weight scaling": P.weight_scaling(net, variables, d.x_test),
        f"MC average, K = {k}": P.mc(net, variables, d.x_test, key=jax.random.key(3), k=k),
        "exact average, 2^12": P.exact(net, variables, d.x_test),
    }
    return {name: metrics.accuracy(avg.probs(), d.y_test) for name, avg in scores.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    for name, acc in main(args.steps).items():
        print(f"{name:>24}: test accuracy {acc:.3f}")
