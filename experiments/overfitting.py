"""Claim 1: dropout reduces overfitting (and claim 6: typical rates 0.3-0.5 work best).

On the data set given (digits, MNIST-1D): a 2-hidden-layer MLP's train and test accuracy and
NLL against the drop rate, the dropout net judged as an ensemble (its MC average over K
subnetworks) and by weight scaling; and the train-test gap against the training-set size.
The primary test: test NLL of the plain net minus the dropout net's MC average (> 0: dropout
generalises better). The tutorial's own regression example, replicated against its PyTorch
code, is the ``tutorial`` experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dropstudy import predict as P
from dropstudy.data import Dataset
from dropstudy.metrics import accuracy, nll, per_example
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, seed_keys, take, train_seeds
from dropstudy.validate import DropstudyError

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    ci,
    flips,
)
from .evaluate import Evaluator
from .stats import direction, paired

NAME = "overfitting"
CLAIM = "Dropout reduces overfitting."


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the overfitting experiment."""

    seeds: int = 10  # every primary has at least 10 seeds
    width: int = 100
    train: TrainConfig = TrainConfig(steps=2000, batch_size=128, lr=1e-3)
    rates: tuple[float, ...] = (0.0, 0.2, 0.3, 0.5, 0.8)
    sizes: tuple[int, ...] = (100, 200, 500, 1000)  # plus the full training set
    size_rates: tuple[float, float] = (0.0, 0.5)
    typical_rates: tuple[float, ...] = (0.3, 0.5)  # the tutorial's "typical" rates
    primary: str = "test NLL MC"
    mc_k: int = MC_K  # subnetworks in the MC average of each dropout net
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "width": 32,
        "train": TrainConfig(steps=150, batch_size=128, lr=1e-3),
        "rates": (0.0, 0.3, 0.5),
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
          Test NLL of the plain net against the dropout net by each predictor, and, by
          each predictor, every rate outside the typical ones against the typical rates.
        """
        others = [r for r in self.rates if r not in self.typical_rates]
        return ("test NLL WS", "test NLL MC",
                *(f"typical rates vs {r} {p}" for p in ("WS", "MC") for r in others))  # fmt: skip


def data_cell(
    ds: Dataset,
    rate: float,
    width: int,
    train: TrainConfig,
    seeds: list[int],
    n_train: int | None,
    ev: Evaluator,
) -> dict:
    """Train and test accuracy and NLL of MLPs at drop ``rate``, by weight scaling.

    On the full training set or (``n_train``) a different random subset per seed, the same
    for every rate; on the full set, with dropout, test accuracy and NLL by the MC average
    too (``mc_test_*``, by ``ev``).

    Args:
      ds: the data set.
      rate: the drop rate of the hidden layers.
      width: units per hidden layer (two layers).
      train: how to train.
      seeds: the seeds, trained together.
      n_train: the training subset's size, or None for the full training set.
      ev: the evaluator of the MC average.

    Returns:
      ``{"train_acc", "test_acc", "train_nll", "test_nll"[, "mc_test_acc", "mc_test_nll"],
      "n_train"}``: lists over seeds, and the number of training examples; on the full set
      also ``test_nll_ex`` (and ``mc_test_nll_ex`` with dropout), each seed's per-example
      test NLLs ``(S, N)``, for tests that cover the test set's noise.
    """
    model = MLP(hidden=(width, width), n_out=ds.n_classes, rate=rate)
    if n_train is None:
        xs, ys, per_seed = ds.x_train, ds.y_train, False
    else:  # a different random subset per seed, the same for every rate (paired)
        subs = [ds.subset(n_train, seed=s) for s in seeds]
        xs, ys, per_seed = [d.x_train for d in subs], [d.y_train for d in subs], True
    variables, _ = train_seeds(
        model, seed_keys(seeds), xs, ys, train, per_seed_data=per_seed, seeds=seeds
    )
    mc = rate > 0 and n_train is None
    names = ("train_acc", "test_acc", "train_nll", "test_nll")
    extra = (("mc_test_acc", "mc_test_nll", "mc_test_nll_ex") if mc else ()) + (
        ("test_nll_ex",) if n_train is None else ()
    )
    out = {k: [] for k in names + extra}
    out["n_train"] = len(ds.x_train) if n_train is None else n_train
    for i, s in enumerate(seeds):
        v = take(variables, i)
        xtr = xs[i] if per_seed else xs
        ytr = ys[i] if per_seed else ys
        ptr = P.weight_scaling(model, v, xtr).arithmetic
        pte = P.weight_scaling(model, v, ds.x_test).arithmetic
        out["train_acc"].append(accuracy(ptr, ytr))
        out["test_acc"].append(accuracy(pte, ds.y_test))
        out["train_nll"].append(nll(ptr, ytr))
        out["test_nll"].append(nll(pte, ds.y_test))
        if n_train is None:
            out["test_nll_ex"].append(per_example(pte, ds.y_test)["nll"].tolist())
        if mc:
            pmc = ev.predict(model, v, ds.x_test, s, predictors=("mc",))["mc"].arithmetic
            out["mc_test_acc"].append(accuracy(pmc, ds.y_test))
            out["mc_test_nll"].append(nll(pmc, ds.y_test))
            out["mc_test_nll_ex"].append(per_example(pmc, ds.y_test)["nll"].tolist())
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
    kw = dict(ds=ds, width=cfg.width, train=cfg.train, seeds=list(range(cfg.seeds)))
    ev = lambda label: Evaluator((NAME, label), cfg.mc_k)  # noqa: E731
    cells = {
        f"rate={r}": cell(data_cell, rate=r, n_train=None, ev=ev(f"rate={r}"), **kw)
        for r in cfg.rates
    }
    # The full training set's point of the size sweep is the rate sweep's cell.
    for n in cfg.sizes:
        for r in cfg.size_rates:
            label = f"n={n}_rate={r}"
            cells[label] = cell(data_cell, rate=r, n_train=n, ev=ev(label), **kw)
    return cells


def summarise(cfg: Config, raw: dict) -> dict:
    """The rate and size sweeps on the data set, and the tests.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"rates", "sizes", "tests", "primary", "findings"}``: per rate, intervals of every
      measure and of the train-test accuracy gap; per training-set size (the full set
      last), the paired test accuracy and NLL gains of dropout and both nets' gaps; the
      tests of :meth:`Config.test_names`; findings where a test differs in sign or verdict
      between weight scaling and the MC average.
    """
    tests = {}
    rates = cfg.rates
    rate_sweep = {r: raw[f"rate={r}"] for r in rates}
    n_full = rate_sweep[rates[0]]["n_train"]
    sizes = [*cfg.sizes, n_full]
    size_cell = lambda n, r: raw[f"n={n}_rate={r}"] if n != n_full else rate_sweep[r]  # noqa: E731
    scalar = lambda k: k != "n_train" and not k.endswith("_ex")  # noqa: E731
    rates_summary = {
        str(r): {k: ci(v) for k, v in rate_sweep[r].items() if scalar(k)}
        | {"gap_acc": ci(np.subtract(rate_sweep[r]["train_acc"], rate_sweep[r]["test_acc"]))}
        for r in rates
    }
    s0, s1 = cfg.size_rates
    # Per seed and test example (S, N), so that the intervals cover the test set's noise.
    plain_nll = rate_sweep[s0]["test_nll_ex"]
    for p, key in (("ws", "test_nll_ex"), ("mc", "mc_test_nll_ex")):
        tests[f"test NLL {p.upper()}"] = direction(
            np.subtract(plain_nll, rate_sweep[s1][key]),
            what=f"test NLL, drop {s0} minus drop {s1} (> 0: dropout generalises better)",
            predictor=p,
        )
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
        }
    pairs = [("test NLL WS", "test NLL MC")]
    pairs += [(f"typical rates vs {r} WS", f"typical rates vs {r} MC") for r in rates
              if r not in cfg.typical_rates]  # fmt: skip
    return {
        "rates": rates_summary,
        "sizes": sizes_summary,
        "tests": tests,
        "primary": cfg.primary,
        "findings": flips(tests, pairs),
    }
