"""Claim: deleting hidden units once per training batch, as the tutorial describes dropout,
trains the same thing as a fresh mask per example, as the libraries implement it.

The tutorial: "in each training batch ... half of the hidden nodes" are deleted, one
subnetwork per batch. PyTorch's ``nn.Dropout`` and :func:`dropstudy.train.train` (by default)
draw one mask per *example*. The same nets (same initialisation, minibatch order, steps and
keys) are trained both ways (``mask_mode="per_batch"`` vs ``"per_example"``) and compared on
the test NLL and error of their MC average and of weight scaling, with train error beside
them, and on how closely weight scaling matches the net's own average over subnetworks: the
MC average for the wide net, the exact average over all 2^16 subnetworks for a small one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from dropstudy.data import Dataset
from dropstudy.metrics import gaps, scores
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, seed_keys, train_seeds

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    ci,
    primary_first,
    test_ex,
)
from .evaluate import Evaluator, by_predictor
from .stats import direction, equivalence

NAME = "maskmode"
CLAIM = (
    "Deleting half of the hidden units once per training batch trains the same ensemble as "
    "a fresh mask for every example."
)
MODES = ("per_example", "per_batch")
LABELS = {"per_example": "a mask per example", "per_batch": "a mask per batch"}


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Nets, training and the equivalence margins (fixed before the run)."""

    seeds: int = 10
    hidden: tuple[int, ...] = (64, 64)
    small: tuple[int, ...] = (8, 8)  # 16 droppable units: weight scaling vs the exact mean
    rate: float = 0.5
    train: TrainConfig = TrainConfig(steps=3000, batch_size=128, lr=2e-3)
    # Equivalence margins, fixed before the run, as the ensembles experiment's: 0.02 nats of
    # test NLL (true-label probabilities within a factor ~1.02) and 0.5 pp of test error.
    margin_nll: float = 0.02
    margin_err: float = 0.005
    primary: str = "nll_mc"
    mc_k: int = MC_K  # subnetworks in the MC average of each dropout net
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "hidden": (16, 16),
        "small": (4, 4),
        "train": train.replace(steps=150),
    }

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names (fixed).

        Returns:
          Test NLL and error by each predictor, and the weight-scaling gaps.
        """
        return ("nll_mc", "nll_ws", "err_mc", "err_ws", "ws_gap_mc", "ws_gap_exact")


def mode_cell(
    ds: Dataset,
    model: MLP,
    train: TrainConfig,
    exact: bool,
    seeds: list[int],
    ev: Evaluator,
) -> dict:
    """Per seed and mask mode: scores by weight scaling and the MC average, and their gap.

    Test and train scores by weight scaling and by the MC average (``ev``: its K and keys,
    the same MC subnetworks for both modes), and how far weight scaling is from that average
    on the test set (and, with ``exact``, from the exact arithmetic mean over all
    subnetworks). Both modes start from the same keys, so only the masks differ.

    Args:
      ds: the data set.
      model: the dropout net.
      train: how to train; its ``mask_mode`` is replaced by each of :data:`MODES`.
      exact: whether to compare with the exact average too (the net must be enumerable).
      seeds: the seeds, trained together.
      ev: the evaluator.

    Returns:
      ``{mode: [row per seed]}``; a row holds ``"ws"`` and ``"mc"`` (``{"test", "train"}``
      :func:`~dropstudy.metrics.scores`), ``"ws_vs_mc"`` and with ``exact``
      ``"ws_vs_exact"`` (:func:`~dropstudy.metrics.gaps` on the test set).
    """
    out = {}
    for mode in MODES:
        variables, _ = train_seeds(
            model, seed_keys(seeds), ds.x_train, ds.y_train, train.replace(mask_mode=mode),
            seeds=seeds,
        )  # fmt: skip
        rows = []
        both = jnp.concatenate([jnp.asarray(ds.x_test), jnp.asarray(ds.x_train)])
        n = len(ds.x_test)
        for _, s, v, preds in ev.over_seeds(model, variables, seeds, both):
            row, test = {}, {}
            for p, avg in preds.items():
                probs = np.asarray(avg.arithmetic)
                row[p] = {
                    "test": scores(probs[:n], ds.y_test),
                    "train": scores(probs[n:], ds.y_train),
                    "test_ex": test_ex(probs[:n], ds.y_test),
                }
                test[p] = probs[:n]
            row["ws_vs_mc"] = gaps(test["ws"], test["mc"])
            if exact:
                ex = ev.predict(model, v, ds.x_test, s, ("exact",))["exact"].arithmetic
                row["ws_vs_exact"] = gaps(test["ws"], np.asarray(ex))
            rows.append(row)
        out[mode] = rows
    return out


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: one :func:`mode_cell` for the wide net and one for the small net.

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{"net=wide": Cell, "net=small": Cell}``; only the small net is compared with the
      exact average.
    """
    seeds = list(range(cfg.seeds))
    kw = dict(ds=ds, train=cfg.train, seeds=seeds)
    return {
        "net=wide": cell(
            mode_cell, model=MLP(hidden=cfg.hidden, n_out=ds.n_classes, rate=cfg.rate),
            exact=False, ev=Evaluator((NAME, "net=wide"), cfg.mc_k), **kw,
        ),
        "net=small": cell(
            mode_cell, model=MLP(hidden=cfg.small, n_out=ds.n_classes, rate=cfg.rate),
            exact=True, ev=Evaluator((NAME, "net=small"), cfg.mc_k), **kw,
        ),
    }  # fmt: skip


def summarise(cfg: Config, raw: dict) -> dict:
    """The mask-mode tests and intervals per net and mode.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"rows", "tests", "primary", "findings"}``: per ``"<net> <mode>"``, intervals of
      accuracy and NLL by each predictor on test and train and of weight scaling's gaps
      (``mean_kl``, ``disagreement``); the tests of :meth:`Config.test_names`, the primary
      first; findings where the NLL or error test differs in sign or verdict between the
      predictors.
    """

    def col(net, mode, p, split, m):
        return np.array([r[p][split][m] for r in raw[f"net={net}"][mode]])

    def gap(net, mode, ref, m):
        return np.array([r[f"ws_vs_{ref}"][m] for r in raw[f"net={net}"][mode]])

    def diff(p, m):
        """Wide net, test split, per seed and test example ``(S, N)`` (intervals over both
        noises): a mask per batch minus a mask per example."""
        e = lambda mode: np.array([r[p]["test_ex"][m] for r in raw["net=wide"][mode]])  # noqa: E731
        return e("per_batch") - e("per_example")

    # Each quantity by both predictors: a sign or verdict that depends on which is a finding.
    tests, findings = by_predictor(
        equivalence,
        {p: diff(p, "nll") for p in ("mc", "ws")},
        "nll",
        margin=cfg.margin_nll,
        metric="nll",
        what="test NLL, a mask per batch minus a mask per example (nats)",
    )
    err_tests, err_findings = by_predictor(
        equivalence,
        {p: diff(p, "err") for p in ("mc", "ws")},
        "err",
        margin=cfg.margin_err,
        metric="error",
        what="test error, a mask per batch minus a mask per example (fraction)",
    )
    tests |= err_tests
    findings += err_findings
    tests["ws_gap_mc"] = direction(
        gap("wide", "per_batch", "mc", "mean_kl") - gap("wide", "per_example", "mc", "mean_kl"),
        predictor="ws",
        metric="kl",
        what="KL(MC average || weight scaling) on test, per batch minus per example (> 0: "
        "weight scaling is a worse stand-in for the average when masks are per batch)",
    )
    tests["ws_gap_exact"] = direction(
        gap("small", "per_batch", "exact", "mean_kl")
        - gap("small", "per_example", "exact", "mean_kl"),
        predictor="exact_a",
        metric="kl",
        what="KL(exact mean || weight scaling) on test, small net, per batch minus per example",
    )
    tests = primary_first(tests, cfg.primary)
    rows = {}
    for net in ("wide", "small"):
        for mode in MODES:
            r = {
                f"{p} {split}": {m: ci(col(net, mode, p, split, m)) for m in ("accuracy", "nll")}
                for p in ("ws", "mc")
                for split in ("test", "train")
            }
            refs = ("mc", "exact") if net == "small" else ("mc",)
            for ref in refs:
                r[f"ws vs {ref}"] = {
                    m: ci(gap(net, mode, ref, m)) for m in ("mean_kl", "disagreement")
                }
            rows[f"{net} {mode}"] = r
    return {"rows": rows, "tests": tests, "primary": cfg.primary, "findings": findings}
