"""Claim 5: dropout shrinks the weights, like L2 regularisation.

**Linear part (the precise claim).** Srivastava et al. (2014, section 9.1): linear regression
with input dropout at keep ``p`` has the expected loss ``||y - pXw||^2 + p(1-p)||Gw||^2``,
``G = diag(X^T X)^(1/2)``. Under the inverted convention used here (``w~ = p w``) it is

    ||y - X w - b||^2 + (1 - p) / p * w^T diag(X^T X) w,

ridge with a *data-dependent* penalty, minimised (centred data) by the **data-dependent
ridge** ``w_dd = (X^T X + (1-p)/p diag(X^T X))^-1 X^T y``. On standardised features
``diag(X^T X) = n I`` and this is plain ridge, so the data are made heterogeneous: the
standardised diabetes features (scikit-learn, 442 x 10) times fixed per-feature scales
``10^u``, ``u`` evenly spread over ``decades`` and assigned by a fixed permutation. The
**plain ridge of equal total strength** penalises ``lambda ||w||^2`` with
``lambda = (1-p)/p * trace(X^T X) / d``: the same trace of the penalty matrix, spread evenly.
Full-batch SGD (momentum, cosine-decayed lr, a fresh input mask per example and step) is
compared with both closed forms; plain SGD (keep 1) against least squares checks that SGD
converges. The seeds vary the initialisation and the mask stream; the data are fixed.

**Logistic part.** Wager et al. (2013): dropout on logistic regression is, to second order,
the penalty ``(1-p)/(2p) * sum_j w_j^2 sum_i p_i(1-p_i) x_ij^2`` (``p_i`` the model's
probability, a function of ``w``): L2 after scaling by the diagonal Fisher information. The
labels are ``y > mean``; the features as above. The plain-L2 counterpart penalises
``lambda/2 ||w||^2`` with ``lambda`` the mean over ``j`` of the Fisher-scaled coefficients
``(1-p)/p * sum_i p_i(1-p_i) x_ij^2`` at the Wager solution.

**MLP part.** MLPs against the drop rate and against the L2 strength, under SGD with
momentum and under Adam, each arm trained by the study's protocol (:mod:`.protocol`) within
its part's optimiser: the learning rate chosen on the validation split, each seed stopped at
its best validation NLL within ``W`` (the tests) and within ``2W`` (whether they survive twice
the budget); the weight norm along the run shows whether the sign depends on when one looks.
Three measures of the test-time weights and function: the Frobenius
norm of all kernels, the product of the kernels' spectral norms (a bound on the net's
Lipschitz constant), and the test logit norm: the mean over test examples of the L2 norm of
the class-centred logits (the softmax ignores a shift shared by all classes; for the MC
average, the class-centred log of its mean probabilities, floored at float32's smallest
normal number where a probability underflows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from dropstudy.data import Dataset
from dropstudy.train import TrainConfig
from dropstudy.validate import DropstudyError

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
)
from .evaluate import Evaluator
from .protocol import TWICE, Protocol, Recipe
from .seeds import study_seeds
from .shrinkage_linear import linear_cell, summarise_linear
from .shrinkage_logistic import logistic_cell, summarise_logistic
from .shrinkage_mlp import MEASURES, MLP_PREDICTED, norm_cell, summarise_mlp

NAME = "shrinkage"
CLAIM = "Dropout shrinks the weights, like L2 regularisation."


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the shrinkage experiment."""

    seeds: int = 10  # every primary has at least 10 seeds
    width: int = 64
    rates: tuple[float, ...] = (0.0, 0.5, 0.8)  # must hold 0.0 and test_rate
    test_rate: float = 0.5  # the drop rate the MLP tests compare with the plain net
    l2s: tuple[float, ...] = (1e-3, 1e-2)
    # Each MLP arm trains by the study's protocol within its part's optimiser: the learning
    # rate tuned on the validation split, each seed stopped at its best validation NLL within
    # W (and 2W). No max-norm: it bounds the very norms this experiment measures.
    adam: Recipe = Recipe("adam", TrainConfig(batch_size=128), (3e-4, 1e-3, 3e-3, 1e-2))
    sgd: Recipe = Recipe(
        "sgd", TrainConfig(batch_size=128, optimizer="sgd", momentum=0.9), (0.01, 0.03, 0.1, 0.3)
    )
    protocol: Protocol = Protocol(window=8000, eval_every=100, select_by="ws")
    trajectory_every: int = 400  # steps between the points of the weight-norm trajectory
    mlp_optimizers: tuple[str, ...] = ("sgd", "adam")  # which of the two train the MLPs
    keeps: tuple[float, ...] = (0.5, 0.8)  # input keep probabilities of the linear models
    decades: float = 1.5  # spread of the per-feature scales (orders of magnitude)
    scale_seed: int = 0  # the permutation that assigns the scales to the features
    linear: TrainConfig = TrainConfig(
        steps=8000,
        batch_size=0,
        optimizer="sgd",
        lr=0.025,
        momentum=0.9,
        task="regression",
        schedule="cosine",
    )
    logistic: TrainConfig | None = TrainConfig(  # None: no logistic part
        steps=8000, batch_size=0, optimizer="sgd", lr=0.3, momentum=0.9, schedule="cosine"
    )
    agree: float = 0.05  # equivalence margin: relative distance to the predicted solution
    apart: float = 0.20  # relative distance from the plain ridge the claim's refinement needs
    # The claim is the tutorial's, about its networks (hidden dropout, SGD with momentum):
    # the weights' squared norm shrinks. The linear data-dependent ridge is the mechanism in
    # linear models (exploratory).
    primary: str = "mlp_sgd_frob"
    mc_k: int = MC_K  # subnetworks in the MC average of each dropout net
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "width": 16,
        "rates": (0.0, 0.5),
        "l2s": (),
        "sgd": Recipe(
            "sgd", TrainConfig(batch_size=128, optimizer="sgd", momentum=0.9), (0.03, 0.1)
        ),
        "protocol": Protocol(window=100, eval_every=50, pilot_seeds=(1000, 1001)),
        "trajectory_every": 50,
        "mlp_optimizers": ("sgd",),  # every cell is a compile: the quick run keeps four
        "keeps": (0.5,),
        "linear": linear.replace(steps=800),
        "logistic": None,
    }

    def check(self) -> None:
        """Refuse a configuration no run could use, when it is built.

        The generic field rules of :meth:`ExperimentConfig.check`, then that ``rates`` holds 0.0
        and ``test_rate`` and that ``mlp_optimizers`` names only sgd and adam.

        Raises:
          DropstudyError: naming what is wrong.
        """
        super().check()
        if 0.0 not in self.rates or self.test_rate not in self.rates:
            raise DropstudyError(f"rates {self.rates} must hold 0.0 and test_rate {self.test_rate}")
        if not set(self.mlp_optimizers) <= {"sgd", "adam"}:
            raise DropstudyError(f"mlp_optimizers {self.mlp_optimizers} must name sgd and/or adam")
        if (2 * self.protocol.window) % self.trajectory_every:
            raise DropstudyError(
                f"trajectory_every={self.trajectory_every} must divide "
                f"2W={2 * self.protocol.window}"
            )

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names, from ``keeps``, ``logistic`` and the optimisers.

        Returns:
          The linear part's tests per keep, the logistic part's (when there is one) per
          keep, and per optimiser each MLP measure (a prediction's by each predictor), each with
          its twin on the nets selected within 2W (:data:`.protocol.TWICE`).
        """
        lin = ("ridge_dd", "ridge_pr", "ridge_closest", "linear_shrink")
        names = ["sanity_ols", *(f"{t}_keep={k}" for k in self.keeps for t in lin)]
        if self.logistic is not None:
            names += [
                "sanity_mle",
                *(f"{t}_keep={k}" for k in self.keeps for t in ("wager", "wager_pr")),
            ]
        for o in self.mlp_optimizers:
            mlp = [f"mlp_{o}_{m}" for m in MEASURES if m not in MLP_PREDICTED]
            mlp += [f"mlp_{o}_{m}_{p}" for m in MLP_PREDICTED for p in ("ws", "mc")]
            names += [n + t for n in mlp for t in ("", TWICE)]  # each with its twin within 2W
        return tuple(names)

    def optimizers(self, l2: float = 0.0) -> dict[str, Protocol]:
        """The MLPs' protocols by optimiser name: the part's recipe alone, with ``l2``.

        Args:
          l2: the coupled L2 penalty of the arm (0: none).

        Returns:
          ``{name: Protocol}`` for each of ``mlp_optimizers``, in its order.
        """
        both = {"sgd": self.sgd, "adam": self.adam}
        return {
            o: replace(
                self.protocol,
                recipes=(replace(both[o], train=both[o].train.replace(l2=l2)),),
            )
            for o in self.mlp_optimizers
        }


# ------------------------------------------------------------------------------ the study


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: the MLPs, the linear and the logistic regressions.

    Args:
      cfg: the configuration.
      ds: the data set of the MLPs.

    Returns:
      ``{label: Cell}``: per optimiser, ``<o>_rate=<r>`` for each drop rate and
      ``<o>_l2=<l2>`` (plain nets) for each L2 strength (:func:`norm_cell`); for each keep
      and keep 1 (plain SGD, the convergence check), ``linear_keep=<k>`` and, when
      ``cfg.logistic`` is given, ``logistic_keep=<k>``.
    """
    seeds = study_seeds(cfg.seeds)
    cells = {}
    kw = dict(ds=ds, width=cfg.width, seeds=seeds, trajectory_every=cfg.trajectory_every)
    for o, protocol in cfg.optimizers().items():
        for r in cfg.rates:
            label = f"{o}_rate={r}"
            cells[label] = cell(
                norm_cell, rate=r, protocol=protocol, ev=Evaluator((NAME, label), cfg.mc_k), **kw
            )
        for l2 in cfg.l2s:
            label = f"{o}_l2={l2}"
            cells[label] = cell(
                norm_cell, rate=0.0, protocol=cfg.optimizers(l2)[o],
                ev=Evaluator((NAME, label), cfg.mc_k), **kw,
            )  # fmt: skip
    data = {"decades": cfg.decades, "scale_seed": cfg.scale_seed, "seeds": seeds}
    for k in (*cfg.keeps, 1.0):  # keep 1: plain SGD, the convergence check
        cells[f"linear_keep={k}"] = cell(linear_cell, keep=k, train=cfg.linear, **data)
        if cfg.logistic is not None:
            cells[f"logistic_keep={k}"] = cell(logistic_cell, keep=k, train=cfg.logistic, **data)
    return cells


def summarise(cfg: Config, raw: dict) -> dict:
    """The three parts' summaries and tests.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"width", "test_rate", "mlp", "protocol", "linear", "logistic", "tests",
      "primary"}``: the parts' summaries (``logistic`` None without a logistic part) and their
      tests.

    Raises:
      DropstudyError: if ``cfg.primary`` is not one of the tests.
    """
    lin, t_lin = summarise_linear(cfg, raw)
    log, t_log = summarise_logistic(cfg, raw) if cfg.logistic is not None else (None, {})
    mlp, t_mlp = summarise_mlp(cfg, raw)
    tests = {**t_lin, **t_log, **t_mlp}
    if cfg.primary not in tests:
        raise DropstudyError(f"primary {cfg.primary!r} is not one of the tests {sorted(tests)}")
    return {
        "width": cfg.width,
        "test_rate": cfg.test_rate,
        "mlp": mlp,
        "protocol": cfg.protocol.to_dict(),
        "linear": lin,
        "logistic": log,
        "tests": tests,
        "primary": cfg.primary,
    }
