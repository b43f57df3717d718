"""A binary classifier with one logit: dropstudy's trainer and averages, ``task="binary"``.

Two digits (1 and 8) as labels 0 and 1, an MLP with one output ``z`` trained with the sigmoid
cross-entropy, then weight scaling, a Monte-Carlo average and the exact average over every
subnetwork of the same weights: each averages the two classes ``[1 - sigmoid(z),
sigmoid(z)]``, so the exact arithmetic mean is the mean of ``sigmoid(z)`` over all 2^20
subnetworks and the normalised geometric mean is ``sigmoid(E[z])``.

    python examples/binary_classifier.py          # about 15 s on 2 CPU cores
"""

from __future__ import annotations

import argparse

import jax

from dropstudy import metrics
from dropstudy import predict as P
from dropstudy.data import digits
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, train


def main(steps: int = 1000, k: int = 1000) -> dict[str, float]:
    """Train the one-logit net on the 1s and 8s, then score the three averages.

    Args:
      steps: Adam steps on minibatches of 64.
      k: Monte-Carlo subnetworks.

    Returns:
      ``{predictor: test accuracy}``.
    """
    d = digits().classes(1, 8)  # the 1s (label 0) and the 8s (label 1)
    x, y, x_test, y_test = d.x_train, d.y_train, d.x_test, d.y_test
    model = MLP(hidden=(10, 10), n_out=1, rate=0.5)  # one output: the logit of class 1
    cfg = TrainConfig(steps=steps, batch_size=64, lr=3e-3, task="binary")
    variables, _ = train(model, jax.random.key(0), x, y, cfg)
    scores = {
        "weight scaling": P.weight_scaling(model, variables, x_test, task="binary"),
        f"MC average, K = {k}": P.mc(
            model, variables, x_test, key=jax.random.key(1), k=k, task="binary"
        ),
        "exact average, 2^20": P.exact(model, variables, x_test, task="binary"),
    }
    return {name: metrics.accuracy(avg.probs(), y_test) for name, avg in scores.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    for name, acc in main(args.steps).items():
        print(f"{name:>24}: test accuracy {acc:.3f}")
