"""Claim 1 on the tutorial's own example: dropout reduces overfitting.

The tutorial's regression: a 1-200-200-200-1 ReLU MLP on 10 noisy points of y = 1.5x, drop
rate 0 vs 0.5, SGD lr 0.01 momentum 0.9, 2000 full-batch steps, snapshots every 400 steps;
over many seeds, paired (same data, same initialisation). The dropout net is judged as an
ensemble (its MC average over K subnetworks) and by weight scaling; overfitting is measured by
test MSE, by the noise-free risk and by the roughness of the fitted curve. The tutorial's own
PyTorch code runs on the same data sets as the reference the replication is checked against.
The data are the tutorial's own, drawn per seed: the experiment runs once, whatever
``--dataset`` says (the overfitting experiment tests the claim on each data set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from dropstudy import predict as P
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, diverged, seed_keys, take, train_seeds
from dropstudy.validate import DropstudyError

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    ci,
)
from .evaluate import Evaluator
from .seeds import study_seeds
from .stats import direction, paired
from .torch_reference import torch_reference_cell
from .tutorial_task import fit_measures, rough_grid, tutorial_sets

NAME = "tutorial"
CLAIM = "Dropout reduces overfitting: the tutorial's own regression example."
DATA = "the tutorial's 10 noisy points of y = 1.5x, drawn per seed"
GRID = 200  # points on which fitted curves are drawn
HIST_BINS = 40


def tutorial_net(rate: float) -> MLP:
    """The tutorial's 1-200-200-200-1 ReLU net, PyTorch's default initialisation.

    Args:
      rate: the drop rate of the hidden layers.

    Returns:
      The ``MLP``.
    """
    return MLP(hidden=(200, 200, 200), n_out=1, rate=rate, weight_init="torch")


def tutorial_config(steps: int, every: int = 0) -> TrainConfig:
    """The tutorial's training: full-batch SGD, lr 0.01, momentum 0.9, mean squared error.

    Args:
      steps: training steps.
      every: snapshot every this many steps (0: only at the end).

    Returns:
      The regression ``TrainConfig``.
    """
    return TrainConfig(
        steps=steps,
        batch_size=0,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        task="regression",
        snapshot_every=every,
    )


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Seeds, rates and training of the tutorial's regression."""

    seeds: int = 20
    rates: tuple[float, float] = (0.0, 0.5)  # plain, dropout
    train: TrainConfig = tutorial_config(2000, 400)
    # the network as used: the tutorial's `model.eval()` (weight scaling), the training
    # protocol's rule of one predictor per claim from its source; the MC average beside it
    primary: str = "tutorial test MSE WS"
    mc_k: int = MC_K  # subnetworks in the MC average of each dropout net
    slope: float = 1.5  # the tutorial's true function y = slope * x
    rough_points: int = 201  # on [-1, 1] (spacing 0.01): where roughness and risk are measured
    QUICK: ClassVar[dict] = {"seeds": 3, "train": tutorial_config(200, 100)}

    def check(self) -> None:
        """Refuse a configuration no run could use, when it is built.

        The generic field rules of :meth:`ExperimentConfig.check`, then that ``rough_points`` is
        an integer >= 3 (roughness takes second differences).

        Raises:
          DropstudyError: naming what is wrong.
        """
        super().check()
        if not (isinstance(self.rough_points, int) and self.rough_points >= 3):
            raise DropstudyError(
                f"rough_points must be an integer >= 3 (roughness takes second differences), "
                f"got {self.rough_points!r}"
            )

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names (fixed).

        Returns:
          Per implementation and predictor, test MSE, risk and roughness (the PyTorch
          reference's MC average has no roughness); and per implementation the count of
          diverged runs, which a summary adds only when a run diverged.
        """
        names = [f"{a} {w} {p}" for a in ("tutorial", "pytorch") for p in ("WS", "MC")
                 for w in ("test MSE", "risk", "roughness")]  # fmt: skip
        names.remove("pytorch roughness MC")
        return (*names, *(f"{a} test MSE MC, divergences counted" for a in ("tutorial", "pytorch")))


def tutorial_cell(
    rate: float,
    train: TrainConfig,
    seeds: list[int],
    ev: Evaluator,
    slope: float,
    rough_points: int,
) -> dict:
    """The tutorial's net at drop ``rate`` on each seed's own data set.

    Train and test MSE, risk and roughness by weight scaling (``ws``) and, with dropout, by
    the MC average (``mc``, by ``ev``); data on y = ``slope`` x, risk and roughness on
    ``rough_points`` points. A run that diverges is recorded as diverged, its measures None.

    Args:
      rate: the drop rate (0: the plain net).
      train: how to train (:func:`tutorial_config`).
      seeds: the seeds, each with its own data set, trained together.
      ev: the evaluator of the MC average.
      slope: the true line's slope.
      rough_points: the grid's points on [-1, 1].

    Returns:
      ``{"diverged", "detail", "ws"[, "mc"]}``: the seeds that diverged; per seed that did
      not, in detail (data, curves at every snapshot, weight and gradient histograms, and
      with dropout the MC average's curve); per predictor, ``{"train_mse", "test_mse",
      "risk", "roughness"}``, lists over seeds.
    """
    model = tutorial_net(rate)
    sets, xs, ys = tutorial_sets(seeds, slope)
    # A run that diverges under the tutorial's settings is recorded as diverged (no NaN is
    # kept); the summary reports it as an outcome, with and without it.
    variables, hist = train_seeds(
        model,
        seed_keys(seeds),
        xs,
        ys,
        train,
        per_seed_data=True,
        seeds=seeds,
        allow_divergence=True,
    )
    bad = diverged(hist.loss)
    grid = jnp.linspace(-1.2, 1.2, GRID)[:, None]
    predictors = ("ws", "mc") if rate > 0 else ("ws",)
    out = {"diverged": [s for s, b in zip(seeds, bad) if b], "detail": {}}
    out.update(
        {p: {"train_mse": [], "test_mse": [], "risk": [], "roughness": []} for p in predictors}
    )
    every = train.snapshot_every or train.steps
    n = len(sets[0].x_train)
    for i, d in enumerate(sets):
        if bad[i]:
            for p in predictors:
                for k in out[p]:
                    out[p][k].append(None)
            continue
        v_i = take(variables, i)
        x = jnp.concatenate(
            [jnp.asarray(d.x_train), jnp.asarray(d.x_test), rough_grid(rough_points)]
        )
        preds = ev.predict(model, v_i, x, seeds[i])
        for p in predictors:
            o = np.asarray(preds[p].mean)
            m = fit_measures(o[:n], o[n : 2 * n], o[2 * n :], d, slope)
            for k, val in m.items():
                out[p][k].append(val)
        out["detail"][str(seeds[i])] = _detail(model, hist, i, d, grid, train.steps // every, every)
        if "mc" in predictors:  # the ensemble's own curve, on [-1, 1], for the fit figure
            out["detail"][str(seeds[i])]["mc_curve"] = {
                "x": rough_grid(rough_points)[:, 0].tolist(),
                "y": np.asarray(preds["mc"].mean)[2 * n :, 0].tolist(),
            }
    return out


def robust_histogram(values, bins: int = HIST_BINS, tail: float = 1.0) -> dict:
    """Counts over the central ``100 - 2 * tail`` percent of ``values``.

    The tails are clipped into the end bins (``clipped`` is their share), so a few outliers
    cannot squash the rest into one spike.

    Args:
      values: the values, any shape.
      bins: the number of bins.
      tail: the percent clipped at each end.

    Returns:
      ``{"counts", "edges", "clipped"}``: ``bins`` counts, ``bins + 1`` edges, and the
      fraction of values clipped.
    """
    v = np.asarray(values, np.float64).ravel()
    lo, hi = np.percentile(v, [tail, 100 - tail])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    clipped = float(np.mean((v < lo) | (v > hi)))
    return {"counts": counts.tolist(), "edges": edges.tolist(), "clipped": clipped}


def _detail(model, hist, i, d, grid, n_snap, every) -> dict:
    """One seed in detail: data, curves at every snapshot, weight and gradient histograms."""
    snaps = []
    for k in range(n_snap):
        p0 = take(hist.params, i, k)
        g0 = take(hist.grads, i, k)
        layers = {}
        for layer in p0:
            for kind, tree in (("weight", p0), ("grad", g0)):
                layers[f"{layer}/{kind}"] = robust_histogram(tree[layer]["kernel"])

        def mse(x, y, p=p0):
            out = P.weight_scaling(model, {"params": p}, x, task="regression").mean
            return float(np.mean((np.asarray(out) - y) ** 2))

        snaps.append(
            {
                "step": (k + 1) * every,
                "curve": np.asarray(
                    P.weight_scaling(model, {"params": p0}, grid, task="regression").mean
                )[:, 0].tolist(),
                "loss": float(hist.loss[i, (k + 1) * every - 1]),
                "train_mse": mse(d.x_train, d.y_train),
                "test_mse": mse(d.x_test, d.y_test),
                "hist": layers,
            }
        )
    return {
        "loss": np.asarray(hist.loss[i]).tolist(),  # every step, dropout active
        "x": d.x_train[:, 0].tolist(),
        "y_train": d.y_train[:, 0].tolist(),
        "y_test": d.y_test[:, 0].tolist(),
        "grid": np.asarray(grid)[:, 0].tolist(),
        "snapshots": snaps,
    }


def plan(cfg: Config, ds=None) -> dict:
    """The experiment's cells: per drop rate, this replication and the PyTorch reference.

    Args:
      cfg: the configuration.
      ds: unused: the data are the tutorial's own, drawn per seed.

    Returns:
      ``{"tutorial_rate=<r>": Cell, "pytorch_rate=<r>": Cell}`` for each of ``cfg.rates``.
    """
    seeds = study_seeds(cfg.seeds)
    task = {"slope": cfg.slope, "rough_points": cfg.rough_points}
    cells = {}
    for r in cfg.rates:
        label = f"tutorial_rate={r}"
        cells[label] = cell(
            tutorial_cell,
            rate=r,
            train=cfg.train,
            seeds=seeds,
            ev=Evaluator((NAME, label), cfg.mc_k, "regression"),
            **task,
        )
        cells[f"pytorch_rate={r}"] = cell(
            torch_reference_cell, rate=r, train=cfg.train, seeds=seeds, k=cfg.mc_k, **task
        )
    return cells


def _tutorial(cfg: Config, plain: dict, drop: dict, label: str, source: str):
    """Summary and tests of one implementation's tutorial runs (``label``: ``"tutorial"``
    for ours, ``"pytorch"`` for the reference). Seeds where either net diverged are left
    out of the paired comparisons and counted; when any diverged, one more test counts them
    as losses of the net that diverged."""
    n = cfg.seeds
    ok = [
        i
        for i in range(n)
        if plain["ws"]["test_mse"][i] is not None and drop["ws"]["test_mse"][i] is not None
    ]
    if len(ok) < 2:
        raise DropstudyError(f"{source}: fewer than 2 tutorial seeds trained without diverging")
    pick = lambda r, p, k: [r[p][k][i] for i in ok]  # noqa: E731
    summ = {
        "seeds": n,
        "seeds_compared": len(ok),
        "diverged_plain": plain["diverged"],
        "diverged_dropout": drop["diverged"],
        "plain": {k: ci(pick(plain, "ws", k)) for k in plain["ws"]},
        "median_train_mse_plain": float(np.median(pick(plain, "ws", "train_mse"))),
    }
    tests = {}
    for p in ("ws", "mc"):
        summ[f"dropout_{p}"] = {k: ci(pick(drop, p, k)) for k in drop[p]}
        for k, what in (("test_mse", "test MSE"), ("risk", "risk"), ("roughness", "roughness")):
            if k not in drop[p]:
                continue
            d = paired(pick(plain, "ws", k), pick(drop, p, k))
            summ[f"{k}_plain_minus_dropout_{p}"] = d
            tests[f"{label} {what} {p.upper()}"] = direction(
                np.subtract(pick(plain, "ws", k), pick(drop, p, k)),
                what=f"{what}, plain minus dropout ({source})",
                predictor=p,
            )
    if plain["diverged"] or drop["diverged"]:
        # Per seed: +1 where dropout's test MSE is lower (or only the plain net diverged),
        # -1 where it is higher (or only the dropout net diverged), 0 where both diverged.
        score = []
        for i in range(n):
            a, b = plain["ws"]["test_mse"][i], drop["mc"]["test_mse"][i]
            if a is None or b is None:
                score.append(float(a is None) - float(b is None))
            else:
                score.append(float(np.sign(a - b)))
        tests[f"{label} test MSE MC, divergences counted"] = direction(
            score,
            what=f"sign of test MSE, plain minus dropout, a diverged run counted as a loss "
            f"({source})",
            predictor="mc",
        )
    return summ, tests


def summarise(cfg: Config, raw: dict) -> dict:
    """This replication and the PyTorch reference, and their tests.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"tutorial", "pytorch", "tests", "primary"}``: each implementation's
      summary (seeds compared, diverged seeds, intervals and paired differences; the
      replication's also the seed its figures show), the tests of
      :meth:`Config.test_names`.
    """
    r0, r1 = cfg.rates
    tut, tests = _tutorial(
        cfg, raw[f"tutorial_rate={r0}"], raw[f"tutorial_rate={r1}"], "tutorial",
        "this replication, JAX",
    )  # fmt: skip
    ref, ref_tests = _tutorial(
        cfg, raw[f"pytorch_rate={r0}"], raw[f"pytorch_rate={r1}"], "pytorch",
        "the tutorial's PyTorch code",
    )  # fmt: skip
    tests.update(ref_tests)
    shown = [raw[f"tutorial_rate={r}"]["detail"] for r in (r0, r1)]
    tut["figure_seed"] = next(i for i in study_seeds(cfg.seeds) if all(str(i) in d for d in shown))
    return {
        "tutorial": tut,
        "pytorch": ref,
        "tests": tests,
        "primary": cfg.primary,
    }
