"""Claim 3: weight scaling (standard) and train-time 1/p scaling (inverted) match the expected
activation.

Part A is the tutorial's demo: 10,000 inputs of 1, dropout 0.5, a bias-free linear unit with
all weights 1, then ReLU: the distribution of training-mode outputs over many keys, and the
exact eval-mode output, for both conventions. Part B checks that the two conventions are the
same function family: trained from matching initialisations (standard's post-dropout weights
= inverted's / p) with SGD whose post-dropout learning rates are scaled by 1/p^2, they stay
the same function; with identical hyper-parameters they drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.data import Dataset
from dropstudy.metrics import accuracy, gaps
from dropstudy.models import MLP, MaskedDropout
from dropstudy.train import TrainConfig, train

from .common import ExperimentConfig, cell, ci
from .evaluate import derived_key
from .stats import equivalence_from, exact_check

NAME = "scaling"
CLAIM = (
    "Scaling weights by p at test time, or activations by 1/p in training (inverted "
    "dropout), matches the expected activation."
)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the scaling experiment."""

    n_inputs: int = 10_000  # the tutorial's demo: 10,000 inputs of 1
    demo_rate: float = 0.5
    n_keys: int = 10_000  # training-mode draws of the demo
    hidden: tuple[int, ...] = (64, 64)
    rate: float = 0.5
    input_rate: float = 0.2
    train: TrainConfig = TrainConfig(
        steps=1500, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9
    )
    same_function: float = 1e-3  # largest logit difference of "the same function"
    # Equivalence margin of training-mode mean minus eval output, relative to the
    # expectation: 0.5% (50 on 10,000, half the per-draw sd of 100), fixed before the run.
    demo_margin: float = 0.005
    primary: str = "demo_inverted"
    QUICK: ClassVar[dict] = {"n_keys": 1_000, "train": train.replace(steps=200)}

    def with_seeds(self, n: int):
        """This configuration unchanged: ``--seeds`` does not apply here.

        The demo draws ``n_keys`` masks and the conventions check trains one net per convention
        (seed 0); a warning says the seeds are ignored.

        Args:
          n: the seed count asked for, ignored.

        Returns:
          ``self``.
        """
        logging.getLogger("dropstudy").warning("scaling: --seeds does not apply; ignored")
        return self

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names (fixed).

        Returns:
          The demo and the exactness of the eval output per convention, and the matched
          conventions' check.
        """
        conventions = ("inverted", "standard")
        return (*(f"{t}_{c}" for c in conventions for t in ("demo", "eval_exact")),
                "same_function")  # fmt: skip


class TutorialUnit(nn.Module):
    """Dropout, then a bias-free linear unit with every weight 1, then ReLU."""

    rate: float = 0.5
    convention: str = "inverted"

    @nn.compact
    def __call__(self, x):
        x = MaskedDropout(self.rate, convention=self.convention)(x)
        return jax.nn.relu(nn.Dense(1, use_bias=False, kernel_init=nn.initializers.ones)(x))


def demo_cell(convention: str, rate: float, n_inputs: int, n_keys: int) -> dict:
    """The tutorial's unit in training mode over ``n_keys`` keys, and in eval mode.

    Both conventions draw the same keys.

    Args:
      convention: ``"inverted"`` or ``"standard"``.
      rate: the drop rate.
      n_inputs: the number of inputs, each 1.
      n_keys: the number of training-mode draws.

    Returns:
      ``{"eval", "train_mean", "train_sd", "first_draw", "theory_mean", "theory_sd", "hist",
      "n_keys"}``: the eval-mode output; the interval of the training-mode mean, their sd
      and the first draw; the expected mean and sd; the draws' histogram (``counts``,
      ``edges``, 40 bins).
    """
    model = TutorialUnit(rate, convention)
    x = jnp.ones((1, n_inputs))
    variables, spec = M.init(model, jax.random.key(0), x)
    # the same draws for both conventions
    keys = jax.random.split(derived_key(NAME, "demo"), n_keys)
    train_out = jax.jit(
        jax.vmap(lambda k: M.apply(model, variables, x, M.sample_masks(spec, k, (1,)))[0, 0])
    )(keys)
    train_out = np.asarray(train_out, np.float64)
    eval_out = float(P.weight_scaling(model, variables, x, task="regression").mean[0, 0])
    counts, edges = np.histogram(train_out, bins=40)
    keep = 1 - rate
    scale = 1 / keep if convention == "inverted" else 1.0
    return {
        "eval": eval_out,
        "train_mean": ci(train_out),
        "train_sd": float(train_out.std(ddof=1)),
        "first_draw": float(train_out[0]),
        "theory_mean": n_inputs * keep * scale,
        "theory_sd": float(np.sqrt(n_inputs * keep * (1 - keep)) * scale),
        "hist": {"counts": counts.tolist(), "edges": edges.tolist()},
        "n_keys": n_keys,
    }


def conventions_cell(ds: Dataset, model: MLP, train_cfg: TrainConfig, seed: int) -> dict:
    """The inverted ``model`` and its standard twin trained from matching initialisations.

    The standard net's post-dropout weights start as the inverted net's / keep; its
    post-dropout learning rates are scaled by 1/p^2 (``matched_lr``) or not (``same_lr``).

    Args:
      ds: the data set.
      model: the inverted-convention MLP.
      train_cfg: how to train.
      seed: the seed of the initialisation and the training.

    Returns:
      ``{"matched_lr": ..., "same_lr": ...}``, each ``{"max_abs_logit", "max_abs_prob",
      "mean_kl", "disagreement", "acc_inverted", "acc_standard"}`` on the test set, by
      weight scaling.
    """
    inv = model
    std = inv.clone(convention="standard")
    x = jnp.asarray(ds.x_train)
    v_inv, spec = M.init(inv, jax.random.split(jax.random.key(seed), 3)[0], x)
    # Dropout layer i feeds dense layer i: standard's weights there are inverted's / keep.
    keep = {d: float(spec.layer_keep(i).flat[0]) for i, d in enumerate(spec.names)}
    after = dict(zip(inv.dense_layers(), inv.dropout_layers(), strict=True))
    p_std = {k: {**v, "kernel": v["kernel"] / keep[after[k]]} for k, v in v_inv["params"].items()}
    matched = train_cfg.replace(
        lr_scale=tuple((f"{k}/kernel", 1 / keep[v] ** 2) for k, v in after.items())
    )
    key = jax.random.key(seed)
    out = {}
    for tag, cfg_std in (("matched_lr", matched), ("same_lr", train_cfg)):
        a, _ = train(inv, key, ds.x_train, ds.y_train, train_cfg, variables0=v_inv)
        b, _ = train(std, key, ds.x_train, ds.y_train, cfg_std, variables0={"params": p_std})
        # A dropout layer with no mask given is at its expectation: weight scaling's logits.
        la, lb = inv.apply(a, ds.x_test), std.apply(b, ds.x_test)
        pa, pb = jax.nn.softmax(la), jax.nn.softmax(lb)
        out[tag] = {
            "max_abs_logit": float(jnp.max(jnp.abs(la - lb))),
            **gaps(pb, pa),
            "acc_inverted": accuracy(pa, ds.y_test),
            "acc_standard": accuracy(pb, ds.y_test),
        }
    return out


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: the demo per convention and the conventions check.

    Args:
      cfg: the configuration.
      ds: the data set of the conventions check.

    Returns:
      ``{"demo_inverted": Cell, "demo_standard": Cell, "conventions": Cell}``.
    """
    model = MLP(hidden=cfg.hidden, n_out=ds.n_classes, rate=cfg.rate, input_rate=cfg.input_rate)
    cells = {
        f"demo_{c}": cell(
            demo_cell, convention=c, rate=cfg.demo_rate, n_inputs=cfg.n_inputs, n_keys=cfg.n_keys
        )
        for c in ("inverted", "standard")
    }
    cells["conventions"] = cell(conventions_cell, ds=ds, model=model, train_cfg=cfg.train, seed=0)
    return cells


def summarise(cfg: Config, raw: dict) -> dict:
    """The demo's and the conventions check's results, and their tests.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"demo", "conventions", "demo_rate", "tests", "primary", "findings"}``: the demo
      cells per convention, the conventions cell, the tests of :meth:`Config.test_names`
      (training-mode mean against eval output within the margin, the eval output exactly
      the expectation, matched training within ``same_function`` in logits), and no
      findings.
    """
    demo = {c: raw[f"demo_{c}"] for c in ("inverted", "standard")}
    conv = raw["conventions"]
    # Primary: the training-mode mean over many masks (the ensemble's average) equals the
    # eval-mode output (weight scaling) within the margin, for PyTorch's inverted dropout.
    tests = {}
    for c, d in demo.items():
        tests[f"demo_{c}"] = equivalence_from(
            d["train_mean"]["mean"] - d["eval"],
            d["train_sd"],
            d["n_keys"],
            cfg.demo_margin * d["theory_mean"],
            what=f"training-mode mean minus eval output, {c} dropout (tutorial unit)",
            predictor="ws",
        )
        tests[f"eval_exact_{c}"] = exact_check(
            d["eval"] == d["theory_mean"],
            what=f"eval output equals the expectation exactly, {c} dropout",
            predictor="ws",
        )
    tests["same_function"] = exact_check(
        conv["matched_lr"]["max_abs_logit"] < cfg.same_function,
        what=f"matched training: inverted and standard nets within {cfg.same_function:g} in logits",
        predictor="ws",
    )
    return {
        "demo": demo,
        "conventions": conv,
        "demo_rate": cfg.demo_rate,
        "tests": tests,
        "primary": cfg.primary,
        "findings": [],
    }
