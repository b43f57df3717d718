"""Your own Flax linen model, your own training loop, dropstudy's averages.

A model written for ``nn.Dropout`` takes ``dropstudy.models.MaskedDropout`` in its place (same
arguments). Your optax loop trains it as before: with ``deterministic=False`` and a
``"dropout"`` rng the layer draws its own masks, as ``nn.Dropout`` does. dropstudy's predictors
then set the masks themselves: weight scaling, a Monte-Carlo average and the exact average
over every subnetwork, on the same weights.

    python examples/own_linen_model.py            # about 20 s on 2 CPU cores
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dropstudy import metrics
from dropstudy import predict as P
from dropstudy.data import digits
from dropstudy.models import MaskedDropout


class Net(nn.Module):
    """64 pixels -> 12 ReLU units -> dropout -> 10 logits."""

    train: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(12)(x))
        x = MaskedDropout(0.5, deterministic=not self.train)(x)  # was nn.Dropout(0.5, ...)
        return nn.Dense(10)(x)


def main(steps: int = 2000, k: int = 1000) -> dict[str, float]:
    """Train with a plain optax loop, then score the three averages of the same weights.

    Args:
      steps: Adam steps on minibatches of 128.
      k: Monte-Carlo subnetworks.

    Returns:
      ``{predictor: test accuracy}``.
    """
    d = digits()
    x, y = jnp.asarray(d.x_train), jnp.asarray(d.y_train)
    variables = Net().init(jax.random.key(0), x[:1])  # records no mask
    opt = optax.adam(3e-3)
    state = opt.init(variables["params"])

    @jax.jit
    def step(params, state, key):
        k_batch, k_drop = jax.random.split(key)
        idx = jax.random.choice(k_batch, len(x), (128,), replace=False)

        def loss(p):
            logits = Net(train=True).apply({"params": p}, x[idx], rngs={"dropout": k_drop})
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state

    params = variables["params"]
    for key in jax.random.split(jax.random.key(1), steps):
        params, state = step(params, state, key)
    trained = {"params": params}

    x_test = d.x_test
    scores = {
        "weight scaling": P.weight_scaling(Net(), trained, x_test),
        f"MC average, K = {k}": P.mc(Net(), trained, x_test, key=jax.random.key(2), k=k),
        "exact average, 2^12": P.exact(Net(), trained, x_test),  # 12 units: 4,096 subnetworks
    }
    return {name: metrics.accuracy(avg.probs(), d.y_test) for name, avg in scores.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    for name, acc in main(args.steps).items():
        print(f"{name:>24}: test accuracy {acc:.3f}")
