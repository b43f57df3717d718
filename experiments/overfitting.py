"""Claim 1: dropout reduces overfitting (and claim 6: typical rates 0.3-0.5 work best).

On the data set given (digits, MNIST-1D): a 2-hidden-layer MLP's train and test accuracy and
NLL against the drop rate, and the train-test gap against the training-set size. Every net is
trained by the study's protocol (:mod:`.protocol`): on 80% of the training set, its recipe and
learning rate chosen on the validation split, each seed stopped at its best validation loss
within ``W`` (and, to check the verdict survives twice the budget, within ``2W``). The
primary test: test NLL of the plain net minus the dropout net's by weight scaling (the network
as the tutorial uses it, ``model.eval()``), paired by seed and test example (> 0: dropout
generalises better); the dropout net judged as an ensemble (its MC average over K
subnetworks) beside it. The tutorial's own regression example, replicated against its PyTorch
code, is the ``tutorial`` experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from dropstudy import predict as P
from dropstudy.data import Dataset
from dropstudy.metrics import accuracy, nll, per_example
from dropstudy.models import MLP
from dropstudy.train import take
from dropstudy.validate import DropstudyError

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    ci,
)
from .evaluate import Evaluator
from .protocol import ADAM, TWICE, Protocol, arm_summary, guarded, split, train_arm
from .seeds import study_seeds
from .stats import direction, paired

NAME = "overfitting"
CLAIM = "Dropout reduces overfitting."


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the overfitting experiment."""

    seeds: int = 10  # every primary has at least 10 seeds
    width: int = 100
    # One W for every arm, long enough for the slowest (dropout nets improve for longer); the
    # convergence guard says when an arm's stop is not inside it.
    protocol: Protocol = Protocol(window=8000, eval_every=100, select_by="ws")
    rates: tuple[float, ...] = (0.0, 0.2, 0.3, 0.5, 0.8)
    sizes: tuple[int, ...] = (100, 200, 500, 1000)  # plus the full training set
    size_rates: tuple[float, float] = (0.0, 0.5)
    typical_rates: tuple[float, ...] = (0.3, 0.5)  # the tutorial's "typical" rates
    # the network as used (the tutorial's model.eval()): weight scaling; the MC average beside
    primary: str = "test NLL WS"
    mc_k: int = MC_K  # subnetworks in the MC average of each dropout net
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "width": 32,
        # one recipe: each recipe's grid compiles once per arm
        "protocol": Protocol(
            window=100,
            eval_every=50,
            recipes=(replace(ADAM, lrs=(1e-3, 3e-3)),),
            pilot_seeds=(1000, 1001),
        ),
        # the primary's two rates only: a third would tune and train one more arm
        "rates": (0.0, 0.5),
        "typical_rates": (0.5,),
        "sizes": (100,),
    }

    def check(self) -> None:
        """Refuse a configuration no run could use, when it is built.

        The generic field rules of :meth:`ExperimentConfig.check`, then that ``rates`` holds
        both ``size_rates`` (the first of them 0) and every one of ``typical_rates``.

        Raises:
          DropstudyError: naming what is wrong.
        """
        super().check()
        s0, s1 = self.size_rates
        if not {s0, s1} <= set(self.rates) or s0 != 0:
            raise DropstudyError(
                f"rates {self.rates} must include the compared rates {self.size_rates}, the first 0"
            )
        if not set(self.typical_rates) <= set(self.rates):
            raise DropstudyError(
                f"rates {self.rates} must include the typical rates {self.typical_rates}"
            )

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names, from ``rates`` and ``typical_rates``.

        Returns:
          Test NLL of the plain net against the dropout net by each predictor (each with its
          twin on the nets selected within 2W, :data:`.protocol.TWICE`), and, by
          each predictor, every rate outside the typical ones against the typical rates.
        """
        others = [r for r in self.rates if r not in self.typical_rates]
        return ("test NLL WS", "test NLL MC", f"test NLL WS{TWICE}", f"test NLL MC{TWICE}",
                *(f"typical rates vs {r} {p}" for p in ("WS", "MC") for r in others))  # fmt: skip


def data_cell(
    ds: Dataset,
    rate: float,
    width: int,
    protocol: Protocol,
    seeds: list[int],
    n_train: int | None,
    ev: Evaluator,
    tune_rate: float,
) -> dict:
    """Train and test accuracy and NLL of MLPs at drop ``rate``, trained by the protocol.

    On 80% of the training set (the rest is the validation split) or (``n_train``) a
    different random subset of it per seed, the same for every rate; the nets selected within
    ``W`` and, as ``*_2w``, within ``2W``. On the full set, with dropout, test accuracy and
    NLL by the MC average too (``mc_test_*``, by ``ev``).

    Args:
      ds: the data set.
      rate: the drop rate of the hidden layers.
      width: units per hidden layer (two layers).
      protocol: the arm's protocol (its window ``W``).
      seeds: the seeds, trained together.
      n_train: the training subset's size, or None for the whole 80%.
      ev: the evaluator of the MC average.
      tune_rate: the arm whose choice of recipe and learning rate this one takes (its own
        rate for the primary's arms, the primary's dropout rate for the exploratory ones).

    Returns:
      ``{"train_acc", "test_acc", "train_nll", "test_nll"[, "mc_test_acc", "mc_test_nll"],
      "n_train", "arm"}`` and the same measures with ``_2w``: lists over seeds; the number of
      training examples; the arm's record (:func:`.protocol.train_arm`: its choice, stops and
      convergence). On the full set also ``test_nll_ex`` (and ``mc_test_nll_ex`` with
      dropout), each seed's per-example test NLLs ``(S, N)``, for tests that cover the test
      set's noise.
    """
    model = MLP(hidden=(width, width), n_out=ds.n_classes, rate=rate)
    tune_as = (
        None
        if tune_rate == rate
        else MLP(hidden=(width, width), n_out=ds.n_classes, rate=tune_rate)
    )
    arm = train_arm(ds, model, protocol, seeds, tune_as=tune_as, subsets=n_train)
    train, _ = split(ds)
    if n_train is None:
        subs = [(train.x_train, train.y_train)] * len(seeds)
    else:  # the same subsets as train_arm's: by seed, from the 80%
        subs = [(d.x_train, d.y_train) for d in (train.subset(n_train, seed=s) for s in seeds)]
    mc = rate > 0 and n_train is None
    out: dict = {"n_train": arm.record["n_train"], "arm": arm.record}
    for suffix, variables in (("", arm.within_w), ("_2w", arm.within_2w)):
        for i, s in enumerate(seeds):
            v = take(variables, i)
            xtr, ytr = subs[i]
            ptr = P.weight_scaling(model, v, xtr).arithmetic
            pte = P.weight_scaling(model, v, ds.x_test).arithmetic
            add = lambda k, val, suffix=suffix: out.setdefault(k + suffix, []).append(val)  # noqa: E731
            add("train_acc", accuracy(ptr, ytr))
            add("test_acc", accuracy(pte, ds.y_test))
            add("train_nll", nll(ptr, ytr))
            add("test_nll", nll(pte, ds.y_test))
            if n_train is None:
                add("test_nll_ex", per_example(pte, ds.y_test)["nll"].tolist())
            if mc:
                pmc = ev.predict(model, v, ds.x_test, s, predictors=("mc",))["mc"].arithmetic
                add("mc_test_acc", accuracy(pmc, ds.y_test))
                add("mc_test_nll", nll(pmc, ds.y_test))
                add("mc_test_nll_ex", per_example(pmc, ds.y_test)["nll"].tolist())
    return out


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: the rate sweep and the size sweep.

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{"rate=<r>": Cell}`` on the full training set for each of ``cfg.rates``, and
      ``{"n=<n>_rate=<r>": Cell}`` for each size and each of ``cfg.size_rates``; the full
      training set's point of the size sweep is the rate sweep's cell.
    """
    kw = dict(ds=ds, width=cfg.width, seeds=study_seeds(cfg.seeds))
    ev = lambda label: Evaluator((NAME, label), cfg.mc_k)  # noqa: E731
    # The primary's two arms are tuned on their own; every other rate (exploratory) trains at
    # the dropout arm's choice, stopped by its own validation loss.
    tuned = lambda r: r if r in cfg.size_rates else cfg.size_rates[1]  # noqa: E731
    cells = {
        f"rate={r}": cell(
            data_cell,
            rate=r,
            n_train=None,
            ev=ev(f"rate={r}"),
            protocol=cfg.protocol,
            tune_rate=tuned(r),
            **kw,
        )
        for r in cfg.rates
    }
    # The full training set's point of the size sweep is the rate sweep's cell.
    for n in cfg.sizes:
        for r in cfg.size_rates:
            label = f"n={n}_rate={r}"
            cells[label] = cell(
                data_cell, rate=r, n_train=n, ev=ev(label), protocol=cfg.protocol,
                tune_rate=r, **kw,
            )  # fmt: skip
    return cells


def summarise(cfg: Config, raw: dict) -> dict:
    """The rate and size sweeps on the data set, and the tests.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"rates", "sizes", "protocol", "tests", "primary"}``: per rate, intervals of every
      measure and of the train-test accuracy gap; per training-set size (the full set
      last), the paired test accuracy and NLL gains of dropout and both nets' gaps; the
      tests of :meth:`Config.test_names`.
    """
    tests = {}
    rates = cfg.rates
    rate_sweep = {r: raw[f"rate={r}"] for r in rates}
    n_full = rate_sweep[rates[0]]["n_train"]
    sizes = [*cfg.sizes, n_full]
    size_cell = lambda n, r: raw[f"n={n}_rate={r}"] if n != n_full else rate_sweep[r]  # noqa: E731
    scalar = lambda k: k not in ("n_train", "arm") and "_ex" not in k  # noqa: E731
    rates_summary = {
        str(r): {k: ci(v) for k, v in rate_sweep[r].items() if scalar(k)}
        | {"gap_acc": ci(np.subtract(rate_sweep[r]["train_acc"], rate_sweep[r]["test_acc"]))}
        | {"arm": arm_summary(rate_sweep[r]["arm"])}
        for r in rates
    }
    s0, s1 = cfg.size_rates
    arms = {f"drop {s0}": rate_sweep[s0]["arm"], f"drop {s1}": rate_sweep[s1]["arm"]}
    # Per seed and test example (S, N), so that the intervals cover the test set's noise; the
    # nets selected within W decide, those within 2W say whether the verdict survives.
    within = {
        sfx: {
            f"test NLL {p.upper()}": direction(
                np.subtract(rate_sweep[s0]["test_nll_ex" + sfx], rate_sweep[s1][key + sfx]),
                what=f"test NLL, drop {s0} minus drop {s1} (> 0: dropout generalises better)",
                predictor=p,
            )
            for p, key in (("ws", "test_nll_ex"), ("mc", "mc_test_nll_ex"))
        }
        for sfx in ("", "_2w")
    }
    tests.update(guarded(within[""], within["_2w"], arms))
    # The plain net (rate 0) has one prediction: it stands in for both predictors.
    nll_of = lambda r, p: rate_sweep[r]["mc_test_nll_ex" if p == "mc" and r > 0 else "test_nll_ex"]  # noqa: E731
    for p in ("ws", "mc"):
        typical = np.mean([nll_of(r, p) for r in cfg.typical_rates], axis=0)
        for r in rates:
            if r not in cfg.typical_rates:
                tests[f"typical rates vs {r} {p.upper()}"] = direction(
                    np.subtract(nll_of(r, p), typical),
                    what=f"test NLL at drop {r} minus the mean at the typical rates "
                    f"{', '.join(str(t) for t in cfg.typical_rates)}",
                    predictor=p,
                )
    sizes_summary = {}
    for n in sizes:
        p0, p5 = size_cell(n, s0), size_cell(n, s1)
        sizes_summary[str(n)] = {
            "test_acc_gain": paired(p5["test_acc"], p0["test_acc"]),
            "test_nll_gain": paired(p0["test_nll"], p5["test_nll"]),
            "gap_plain": ci(np.subtract(p0["train_acc"], p0["test_acc"])),
            "gap_dropout": ci(np.subtract(p5["train_acc"], p5["test_acc"])),
            "arms": {f"drop {s0}": arm_summary(p0["arm"]), f"drop {s1}": arm_summary(p5["arm"])},
        }
    return {
        "rates": rates_summary,
        "sizes": sizes_summary,
        "protocol": cfg.protocol.to_dict(),
        "tests": tests,
        "primary": cfg.primary,
    }
