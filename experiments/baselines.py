"""Claim: the set-up here reproduces MNIST-1D's published baselines (MLP 68%, CNN 94%).

Greydanus (2020) publishes test accuracies on MNIST-1D's default 4,000/1,000 split: MLP 68%,
CNN 94%. The models are the repository's (``notebooks/models.py``): an MLP 40-256-256-10
whose second layer is residual, ``h + relu(W2 h)``; a CNN of three 1-D convolutions with 25
channels (kernel 5, stride 2, padding 1, then kernel 3, stride 2, padding 1, twice) and a
linear head on the 125 flattened features. The training is theirs (``notebooks/train.py``):
Adam at lr 1e-2, batch 100, 8,000 steps, no weight decay, PyTorch's default initialisation
(weights and biases uniform in +-1/sqrt(fan in)), the last step's net evaluated. One
difference: minibatches here come from a fresh permutation of the training set per epoch
(theirs walk it in order). The data are this study's MNIST-1D, made by the package's own
generator with its default arguments (:func:`dropstudy.data.mnist1d`).

Each model is plain (no dropout): the reference the study's MNIST-1D nets are read against.
The claim holds for a model when its mean test accuracy over seeds is within ``margin`` of
the published figure (equivalence, margin fixed before the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dropstudy.data import Dataset, mnist1d
from dropstudy.metrics import accuracy
from dropstudy.models import MaskedDropout, PatchConv, TorchDense
from dropstudy.predict import weight_scaling
from dropstudy.train import TrainConfig, seed_keys, take, train_seeds

from .common import ExperimentConfig, cell, ci, primary_first
from .seeds import study_seeds
from .stats import equivalence

NAME = "baselines"
CLAIM = (
    "The MNIST-1D set-up here reproduces the published baselines of the anchor's models and "
    "training: MLP 68%, CNN 94% test accuracy."
)
DATA = "MNIST-1D (the package's generator, default arguments)"
# Not a claim about dropout: a check of the set-up, decided alone, outside the claims' family.
CHECK = "a check of the set-up (the published baselines)"
MODELS = ("mlp", "cnn")


def _torch_uniform(fan_in: int):
    """PyTorch's default bias initialisation: uniform in +-1/sqrt(fan in)."""
    bound = 1.0 / np.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound
    )


class ResidualMLP(nn.Module):
    """The repository's MLP: ``relu(W1 x)``, then ``h + relu(W2 h)``, then a linear head.

    Plain: its dropout layers (rate 0) only give the trainer the masks it expects.

    Attributes:
      hidden: the hidden width.
      n_out: the number of classes.
    """

    hidden: int = 256
    n_out: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of ``x``.

        Args:
          x: signals ``(B, 40)``.

        Returns:
          ``(B, n_out)``.
        """
        h = jax.nn.relu(TorchDense(self.hidden)(MaskedDropout(0.0)(x)))
        h = MaskedDropout(0.0)(h)
        h = h + jax.nn.relu(TorchDense(self.hidden)(h))
        return TorchDense(self.n_out)(h)


class ConvBaseline(nn.Module):
    """The repository's CNN: three strided 1-D convolutions with ReLU, then a linear head.

    Attributes:
      channels: channels of each convolution.
      n_out: the number of classes.
    """

    channels: int = 25
    n_out: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of ``x``.

        Args:
          x: signals ``(B, L)``.

        Returns:
          ``(B, n_out)``.
        """
        h, c_in = MaskedDropout(0.0)(x)[..., None], 1
        for i, k in enumerate((5, 3, 3)):
            # nn.Conv's parameters and outputs (to float rounding) as strided patches times a
            # matrix: XLA:CPU's convolution of these shapes, vmapped over seeds, took 3x as long
            # per gradient step on one device, and the study's cell (seeds split over the CPU
            # devices) 20x as long
            conv = PatchConv(
                self.channels, (k,), strides=(2,), padding=((1, 1),),
                # PyTorch's default: kaiming-uniform with a = sqrt(5), i.e. +-1/sqrt(fan in)
                kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                bias_init=_torch_uniform(k * c_in), name=f"Conv_{i}",
            )  # fmt: skip
            h, c_in = jax.nn.relu(conv(h)), self.channels
        return TorchDense(self.n_out)(h.reshape(h.shape[0], -1))


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The repository's models and training, the published figures and the margin.

    The margin (2 percentage points, fixed before the run): a single run's test accuracy on
    1,000 signals has a sampling standard error of about 0.75 points at 94%, and the
    published figures are single runs rounded to whole points (+-0.5). The CNN is the
    primary: the harder figure to reach, and the model class whose gap matters most to the
    study's conv nets.
    """

    # 10 seeds, the study's floor for every primary (5 before: their interval straddled the
    # margin, and 11 seeds were needed for the effect seen)
    seeds: int = 10
    hidden: int = 256
    channels: int = 25
    steps: int = 8000
    batch_size: int = 100
    lr: float = 1e-2
    published_mlp: float = 0.68
    published_cnn: float = 0.94
    margin: float = 0.02
    primary: str = "cnn"
    QUICK: ClassVar[dict] = {"seeds": 2, "steps": 20, "hidden": 16, "channels": 4}

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names (fixed).

        Returns:
          One per model: ``("mlp", "cnn")``.
        """
        return MODELS

    def train(self) -> TrainConfig:
        """The repository's training.

        Returns:
          Adam at ``lr``, ``batch_size``, ``steps``.
        """
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr)


def baseline_cell(ds: Dataset, model: nn.Module, train: TrainConfig, seeds: list[int]) -> dict:
    """Train ``model`` on ``ds`` once per seed and score the last step's nets.

    Args:
      ds: MNIST-1D.
      model: the plain model.
      train: how to train.
      seeds: the seeds.

    Returns:
      ``{"test_acc", "train_acc", "final_loss"}``, each a list over seeds, and the data's
      ``n_train``, ``n_test`` and ``n_features``.
    """
    variables, hist = train_seeds(
        model, seed_keys(seeds), ds.x_train, ds.y_train, train, seeds=seeds
    )
    out = {"test_acc": [], "train_acc": [], "final_loss": np.asarray(hist.loss[:, -1]).tolist()}
    out |= {"n_train": len(ds.x_train), "n_test": len(ds.x_test), "n_features": ds.x_train.shape[1]}
    for i in range(len(seeds)):
        v = take(variables, i)
        for split, x, y in (("test", ds.x_test, ds.y_test), ("train", ds.x_train, ds.y_train)):
            out[f"{split}_acc"].append(accuracy(weight_scaling(model, v, x).arithmetic, y))
    return out


def models(cfg: Config) -> dict[str, nn.Module]:
    """The two models at the configured sizes.

    Args:
      cfg: the configuration.

    Returns:
      ``{"mlp": ResidualMLP, "cnn": ConvBaseline}``.
    """
    return {"mlp": ResidualMLP(cfg.hidden), "cnn": ConvBaseline(cfg.channels)}


def plan(cfg: Config, ds=None) -> dict:
    """The experiment's cells: one per model, on MNIST-1D whatever data set is given.

    Args:
      cfg: the configuration.
      ds: unused: the experiment always runs on MNIST-1D (:data:`DATA`).

    Returns:
      ``{"model=<name>": Cell}``.
    """
    data = mnist1d()
    seeds = study_seeds(cfg.seeds)
    return {
        f"model={name}": cell(baseline_cell, ds=data, model=m, train=cfg.train(), seeds=seeds)
        for name, m in models(cfg).items()
    }


def summarise(cfg: Config, raw: dict) -> dict:
    """Accuracies over seeds against the published figures, and their tests.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"rows", "data_sizes", "train", "tests", "primary"}``: per model its
      label, the published figure, intervals of test and train accuracy and the per-seed
      values (``rows``); the data's sizes; the training (a ``TrainConfig`` dict); one
      equivalence test per model of test accuracy minus the published figure within
      ``margin``, the primary first.
    """
    published = {"mlp": cfg.published_mlp, "cnn": cfg.published_cnn}
    d = raw["model=mlp"]["n_features"]
    labels = {
        "mlp": f"MLP {d}-{cfg.hidden}-{cfg.hidden}-10, second layer residual",
        "cnn": f"CNN, 3 x Conv1d({cfg.channels}), linear head",
    }
    rows, tests = {}, {}
    for name in MODELS:
        r = raw[f"model={name}"]
        acc = np.asarray(r["test_acc"])
        rows[name] = {
            "label": labels[name],
            "published": published[name],
            "test_acc": ci(acc),
            "train_acc": ci(r["train_acc"]),
            "per_seed": r,
        }
        tests[name] = equivalence(
            acc - published[name],
            cfg.margin,
            what=f"{labels[name]}: test accuracy minus the published {published[name]:.0%}",
            predictor="plain",
            metric="accuracy",
        )
    data = {k: raw["model=mlp"][k] for k in ("n_train", "n_test", "n_features")}
    return {
        "rows": rows,
        "data_sizes": data,
        "train": cfg.train().to_dict(),
        "tests": primary_first(tests, cfg.primary),
        "primary": cfg.primary,
    }
