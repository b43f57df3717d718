"""Claim: the parameters of the units dropped in a training step stay as they were.

The tutorial: "the deleted neuron parameters remain the results before they are deleted";
only the kept units are updated. With one mask per step shared by the minibatch
(``mask_mode="per_batch"``, as the tutorial describes it), a unit dropped in a step has a zero
gradient on every parameter that touches it: its incoming weights and bias, and its outgoing
weights (the activation it sends is 0, and the error it receives is multiplied by its mask).
Whether the parameters then stay put is a property of the optimiser, not of dropout:

* plain SGD without L2: the update is ``-lr * 0``, so they stay put exactly (an identity,
  checked bitwise at every step);
* SGD with momentum 0.9 (the tutorial's own optimiser): the velocity carries them on;
* Adam: the moment estimates carry them on;
* SGD with weight decay (``optax.add_decayed_weights``; for SGD without momentum, decoupled
  and coupled decay are the same update): the decay shrinks them.

Per step, each hidden unit's movement is the mean absolute change of its parameters (incoming
weights and bias, outgoing weights); the measure is the mean movement of the units dropped in
that step over the mean movement of the units kept, averaged over steps: 0 when dropped units
stay put, about 1 when they move as much as kept ones. Each step's masks come from
:func:`dropstudy.train.step_masks`, the function training draws them with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dropstudy import masks as M
from dropstudy.data import Dataset
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, make_trainer, seed_keys, step_masks

from .common import ExperimentConfig, cell, ci, primary_first
from .seeds import study_seeds
from .stats import equivalence, exact_check

NAME = "stayput"
# Whether a dropped unit's parameters move follows from its zero gradient and the optimiser's
# update rule: an identity of the update rules, decided outside the claims' family.
CHECK = "an identity of the optimisers' update rules (a dropped unit has a zero gradient)"
CLAIM = (
    "In a training step the dropped units' parameters remain as they were; only the kept "
    "units are updated."
)
OPTIMIZERS = ("sgd", "momentum", "adam", "sgd_wd")
LABELS = {
    "sgd": "plain SGD",
    "momentum": "SGD, momentum 0.9 (tutorial)",
    "adam": "Adam",
    "sgd_wd": "SGD + weight decay",
}


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes, optimisers and the equivalence margin (fixed before the run)."""

    seeds: int = 10
    hidden: tuple[int, ...] = (64, 64)
    rate: float = 0.5  # hidden layers only: "half of the hidden neurons ... are deleted"
    steps: int = 300
    batch_size: int = 64
    lr_sgd: float = 0.05
    lr_momentum: float = 0.01  # the tutorial's lr_init, with momentum 0.9
    lr_adam: float = 1e-3
    weight_decay: float = 5e-4
    # Equivalence margin on the movement ratio (dropped / kept), fixed before the run: a
    # dropped unit that moves less than a tenth as much as a kept one "stays put" for any
    # practical reading of the claim.
    margin: float = 0.1
    primary: str = "momentum"
    QUICK: ClassVar[dict] = {"seeds": 2, "hidden": (16, 16), "steps": 20}

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names (fixed).

        Returns:
          The movement ratio per optimiser, and plain SGD's bitwise check.
        """
        return (*OPTIMIZERS, "sgd_identity")


def optimizer(name: str, steps: int, batch_size: int, lr: float, decay: float) -> TrainConfig:
    """The training configuration of optimiser ``name``, one mask per minibatch.

    Args:
      name: one of :data:`OPTIMIZERS`: ``sgd`` (momentum 0), ``momentum`` (SGD, momentum
        0.9), ``adam``, or else SGD with ``optax.add_decayed_weights``.
      steps: training steps.
      batch_size: examples per step.
      lr: the learning rate.
      decay: the weight decay; it applies to ``sgd_wd`` only.

    Returns:
      A ``TrainConfig`` with ``mask_mode="per_batch"``.
    """
    base = TrainConfig(steps=steps, batch_size=batch_size, mask_mode="per_batch")
    if name == "sgd":
        return base.replace(optimizer="sgd", lr=lr, momentum=0.0)
    if name == "momentum":
        return base.replace(optimizer="sgd", lr=lr, momentum=0.9)
    if name == "adam":
        return base.replace(optimizer="adam", lr=lr)
    return base.replace(optimizer=optax.chain(optax.add_decayed_weights(decay), optax.sgd(lr)))


def lr_of(name: str, cfg: Config) -> float:
    """The learning rate of optimiser ``name`` in ``cfg``.

    Args:
      name: one of :data:`OPTIMIZERS`.
      cfg: the configuration.

    Returns:
      ``cfg.lr_momentum`` for ``momentum``, ``cfg.lr_adam`` for ``adam``, else
      ``cfg.lr_sgd``.
    """
    return {"momentum": cfg.lr_momentum, "adam": cfg.lr_adam}.get(name, cfg.lr_sgd)


def unit_movement(model: MLP, delta: dict, masks) -> tuple[jax.Array, jax.Array, jax.Array]:
    """How far one step moved the dropped and the kept hidden units.

    A unit's movement is the mean absolute change of its incoming weights, bias and outgoing
    weights.

    Args:
      model: the MLP.
      delta: the step's parameter change, a params tree.
      masks: the step's masks (one per minibatch), by dropout layer.

    Returns:
      ``(dropped, kept, still)``, scalars: the mean movement of the dropped and of the kept
      hidden units, and the fraction of dropped units whose every parameter is bitwise
      unchanged.
    """
    dense, drops = model.dense_layers(), model.dropout_layers()
    moved, dropped = [], []
    for i in range(1, len(drops)):  # hidden layer i - 1 is read by dropout layer i
        m = masks[drops[i]]["mask"]
        w_in, b = delta[dense[i - 1]]["kernel"], delta[dense[i - 1]]["bias"]
        w_out = delta[dense[i]]["kernel"]
        total = jnp.abs(w_in).sum(0) + jnp.abs(b) + jnp.abs(w_out).sum(1)
        moved.append(total / (w_in.shape[0] + 1 + w_out.shape[1]))
        dropped.append(m == 0)
    moved, dropped = jnp.concatenate(moved), jnp.concatenate(dropped)
    n_drop = jnp.maximum(dropped.sum(), 1)
    n_keep = jnp.maximum((~dropped).sum(), 1)
    still = jnp.where(dropped, moved == 0, False).sum() / n_drop
    return (
        jnp.where(dropped, moved, 0).sum() / n_drop,
        jnp.where(dropped, 0, moved).sum() / n_keep,
        still,
    )


@partial(jax.jit, static_argnames=("model", "spec", "cfg"))
def _trace(model: MLP, spec: M.MaskSpec, cfg: TrainConfig, keys, x, y):
    """Per seed and step ``(dropped, kept, still)``, each ``(S, steps)``; and the trained
    variables, stacked ``(S, ...)``."""
    t = make_trainer(model, spec, cfg)

    def run(key):
        ks, carry = t.start(key, x)

        def step(carry, s):
            before = carry[0]
            carry, _ = t.steps(ks, carry, x, y, None, first=s, n=1)
            delta = jax.tree.map(jnp.subtract, carry[0], before)
            masks = step_masks(spec, cfg.mask_mode, ks[1], s, 0, dtype=x.dtype)
            return carry, unit_movement(model, delta, masks)

        carry, stats = jax.lax.scan(step, carry, jnp.arange(cfg.steps))
        return stats, t.finish(carry)

    return jax.vmap(run)(keys)


def movement_cell(
    ds: Dataset,
    model: MLP,
    optimizer_name: str,
    steps: int,
    batch_size: int,
    lr: float,
    decay: float,
    seeds: list[int],
) -> dict:
    """Per seed: how far the dropped units' parameters move, and the trained nets' errors.

    Args:
      ds: the data set.
      model: the dropout MLP.
      optimizer_name: one of :data:`OPTIMIZERS` (:func:`optimizer`).
      steps: training steps.
      batch_size: examples per step.
      lr: the learning rate.
      decay: the weight decay of ``sgd_wd``.
      seeds: the seeds, trained together.

    Returns:
      ``{"train_error", "test_error", "ratio", "all_still", "still_fraction",
      "curve_ratio", "kept_movement"}``: per seed, the trained nets' train and test error by
      weight scaling, the ratio (dropped / kept movement, averaged over steps where a kept
      unit moved), the fraction of dropped units that stayed bitwise put and the kept units'
      movement, each averaged over steps; whether every dropped unit stayed bitwise put at
      every step (one bool); the per-step ratio's seed means.
    """
    train = optimizer(optimizer_name, steps, batch_size, lr, decay)
    spec = M.mask_spec(model, ds.x_train[:1])
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    stats, variables = _trace(model, spec, train, seed_keys(seeds), x, y)
    dropped, kept, still = (np.asarray(a) for a in stats)
    per_step = np.where(kept > 0, dropped / np.where(kept > 0, kept, 1), np.nan)
    err = lambda xs, ys: (  # noqa: E731  weight scaling: no masks given = their expectation
        np.asarray(jax.vmap(lambda v: model.apply(v, xs))(variables).argmax(-1)) != ys
    ).mean(1)
    return {
        "train_error": err(x, ds.y_train).tolist(),
        "test_error": err(jnp.asarray(ds.x_test), ds.y_test).tolist(),
        # Per step, then averaged over steps (steps where no kept unit moved do not count).
        "ratio": np.nanmean(per_step, 1).tolist(),
        "all_still": bool((still == 1).all()),
        "still_fraction": still.mean(1).tolist(),
        "curve_ratio": np.nanmean(per_step, 0).tolist(),
        "kept_movement": kept.mean(1).tolist(),
    }


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: one :func:`movement_cell` per optimiser.

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{"optimizer=<o>": Cell}`` for each of :data:`OPTIMIZERS`.
    """
    model = MLP(hidden=cfg.hidden, n_out=ds.n_classes, rate=cfg.rate)
    seeds = study_seeds(cfg.seeds)
    return {
        f"optimizer={o}": cell(
            movement_cell,
            ds=ds,
            model=model,
            optimizer_name=o,
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            lr=lr_of(o, cfg),
            decay=cfg.weight_decay if o == "sgd_wd" else 0.0,
            seeds=seeds,
        )
        for o in OPTIMIZERS
    }


def summarise(cfg: Config, raw: dict) -> dict:
    """The movement tests per optimiser and intervals over seeds.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"rows", "tests", "primary"}``: per optimiser, intervals of the ratio,
      the still fraction, the kept movement and the errors, and ``all_still``; the
      equivalence test of the ratio per optimiser and plain SGD's bitwise check
      (``sgd_identity``), the primary first.
    """
    rows = {o: raw[f"optimizer={o}"] for o in OPTIMIZERS}
    tests = {
        o: equivalence(
            np.asarray(r["ratio"]),
            cfg.margin,
            predictor="-",
            metric="ratio",
            what=f"dropped over kept units' parameter movement per step, {LABELS[o]}",
        )
        for o, r in rows.items()
    }
    tests["sgd_identity"] = exact_check(
        rows["sgd"]["all_still"],
        predictor="-",
        what="plain SGD: every dropped unit's parameters bitwise unchanged at every step",
    )
    tests = primary_first(tests, cfg.primary)
    summary = {
        o: {
            "ratio": ci(r["ratio"]),
            "still_fraction": ci(r["still_fraction"]),
            "kept_movement": ci(r["kept_movement"]),
            "train_error": ci(r["train_error"]),
            "test_error": ci(r["test_error"]),
            "all_still": r["all_still"],
        }
        for o, r in rows.items()
    }
    return {"rows": summary, "tests": tests, "primary": cfg.primary}
