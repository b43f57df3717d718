"""Claim: deleting hidden units once per training batch, as the tutorial describes dropout,
trains the same thing as a fresh mask per example, as the libraries implement it.

The tutorial: "in each training batch ... half of the hidden nodes" are deleted, one
subnetwork per batch. PyTorch's ``nn.Dropout`` and :func:`dropstudy.train.train` (by default)
draw one mask per *example*. The same nets (same initialisation, minibatch order and keys)
are trained both ways (``mask_mode="per_batch"`` vs ``"per_example"``), each way an arm of its
own under the study's protocol (:mod:`.protocol`: tuned on the validation split, each
seed stopped by the MC average's validation NLL within ``W`` and, for the twin tests, within
``2W``), and compared on the test NLL and error of their MC average and of weight scaling,
with train error beside them, and on how closely weight scaling matches the net's own average
over subnetworks: the MC average for the wide net, the exact average over all 2^16
subnetworks for a small one. The NLL margin is a share of dropout's own effect on the wide
net's validation NLL, for which the wide net is also trained without dropout
(:func:`plain_cell`, :func:`nll_margin`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from dropstudy.data import Dataset
from dropstudy.metrics import gaps, scores
from dropstudy.models import MLP
from dropstudy.train import take

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    check_share,
    ci,
    disclose,
    primary_first,
    share_margin,
    test_ex,
)
from .evaluate import Evaluator, by_predictor
from .protocol import (
    ENSEMBLE,
    QUICK_ENSEMBLE,
    TWICE,
    Protocol,
    arm_summary,
    guarded,
    plain_protocol,
    shared_arm,
    split,
)
from .seeds import study_seeds
from .stats import direction, equivalence

NAME = "maskmode"
CLAIM = (
    "Deleting half of the hidden units once per training batch trains the same ensemble as "
    "a fresh mask for every example."
)
MODES = ("per_example", "per_batch")
LABELS = {"per_example": "a mask per example", "per_batch": "a mask per batch"}
# The plain arm's name in the arms table (not "wide ...": the primary's guard reads those)
PLAIN = "plain (the margin's scale)"


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Nets, training and the equivalence margins (the NLL margin derived, capped)."""

    seeds: int = 10
    hidden: tuple[int, ...] = (64, 64)
    small: tuple[int, ...] = (8, 8)  # 16 droppable units: weight scaling vs the exact mean
    rate: float = 0.5
    # Each mask mode is an arm of its own, stopped by its ensemble (the MC average): the
    # protocol's recipes with that mode (:func:`with_mode`).
    protocol: Protocol = ENSEMBLE
    # The NLL margin is this share of what dropout itself does to the wide net: the plain
    # net's validation NLL minus the per-example dropout net's (its MC average), within W,
    # mean over seeds, in size (:func:`nll_margin`), measured before any test number is read.
    # At one half, "equivalent" says switching the mask mode moves the NLL by less than half
    # as much as switching dropout off; a fixed margin (it was 0.02 nats) can exceed that
    # whole effect and then not tell either mode from no dropout at all.
    margin_share: float = 0.5
    # The fixed NLL margin set before the results, which the rule above replaced after they
    # were seen (post hoc): the derived margin never exceeds it, so the change can only make
    # equivalence harder to show; the primary is decided at it too, for the report.
    margin_nll_cap: float = 0.02
    # Equivalence margin on test error (exploratory), fixed before the run: 0.5 pp.
    margin_err: float = 0.005
    primary: str = "nll_mc"
    mc_k: int = MC_K  # subnetworks in the MC average of each dropout net
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "hidden": (16, 16),
        "small": (4, 4),
        "protocol": QUICK_ENSEMBLE,
    }

    def check(self) -> None:
        """Refuse a configuration no run could use, when it is built.

        The generic field rules of :meth:`ExperimentConfig.check`, then that ``margin_share``
        lies in (0, 1].

        Raises:
          DropstudyError: naming what is wrong.
        """
        super().check()
        check_share(self.margin_share, "dropout's own effect on the wide net's validation NLL")

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names (fixed).

        Returns:
          Test NLL and error by each predictor, and the weight-scaling gaps.
        """
        names = ("nll_mc", "nll_ws", "err_mc", "err_ws", "ws_gap_mc", "ws_gap_exact")
        return tuple(n + t for n in names for t in ("", TWICE))


def with_mode(protocol: Protocol, mode: str) -> Protocol:
    """``protocol`` with every recipe drawing its masks by ``mode``.

    Args:
      protocol: the protocol.
      mode: one of :data:`MODES`.

    Returns:
      The protocol whose recipes train with ``mask_mode=mode`` (the per-example one is the
      trainer's default, so its arm is the one other experiments train).
    """
    recipes = tuple(replace(r, train=r.train.replace(mask_mode=mode)) for r in protocol.recipes)
    return replace(protocol, recipes=recipes)


def mode_cell(
    ds: Dataset,
    model: MLP,
    protocol: Protocol,
    exact: bool,
    seeds: list[int],
    ev: Evaluator,
) -> dict:
    """Per seed and mask mode: scores by weight scaling and the MC average, and their gap.

    Each mode trains by ``protocol`` with its masks drawn that way (:func:`with_mode`),
    tuned on its own. Test and train scores by weight scaling and by the MC average (``ev``:
    its K and keys, the same MC subnetworks for both modes), and how far weight scaling is
    from that average on the test set (and, with ``exact``, from the exact arithmetic mean
    over all subnetworks), for the variables selected within ``W`` and within ``2W``.

    Args:
      ds: the data set.
      model: the dropout net.
      protocol: how to train (:mod:`.protocol`); its recipes' ``mask_mode`` is replaced by
        each of :data:`MODES`.
      exact: whether to compare with the exact average too (the net must be enumerable).
      seeds: the seeds, trained together.
      ev: the evaluator.

    Returns:
      ``{mode: [row per seed], mode + "_2w": [...], "arms": {mode: record}}``; a row holds
      ``"ws"`` and ``"mc"`` (``{"test", "train"}`` :func:`~dropstudy.metrics.scores`, train
      on the 80% trained on), ``"ws_vs_mc"`` and with ``exact`` ``"ws_vs_exact"``
      (:func:`~dropstudy.metrics.gaps` on the test set); ``arms`` the records of
      :func:`.protocol.train_arm`.
    """
    train, _ = split(ds)
    both = jnp.concatenate([jnp.asarray(ds.x_test), jnp.asarray(train.x_train)])
    n = len(ds.x_test)
    out = {"arms": {}}
    for mode in MODES:
        arm = shared_arm(ds, model, with_mode(protocol, mode), seeds)
        out["arms"][mode] = arm.record
        for sfx, variables in (("", arm.within_w), ("_2w", arm.within_2w)):
            rows = []
            for i, s in enumerate(seeds):
                v = take(variables, i)
                preds = ev.predict(model, v, both, s)
                row, test = {}, {}
                for p, avg in preds.items():
                    probs = np.asarray(avg.arithmetic)
                    row[p] = {
                        "test": scores(probs[:n], ds.y_test),
                        "train": scores(probs[n:], train.y_train),
                        "test_ex": test_ex(probs[:n], ds.y_test),
                    }
                    test[p] = probs[:n]
                row["ws_vs_mc"] = gaps(test["ws"], test["mc"])
                if exact:
                    ex = ev.predict(model, v, ds.x_test, s, ("exact",))["exact"].arithmetic
                    row["ws_vs_exact"] = gaps(test["ws"], np.asarray(ex))
                rows.append(row)
            out[mode + sfx] = rows
    return out


def plain_cell(ds: Dataset, model: MLP, protocol: Protocol, seeds: list[int]) -> dict:
    """The wide net without dropout, trained by the plain form of the dropout nets' protocol:
    the scale of the NLL margin.

    Args:
      ds: the data set.
      model: the dropout net; trained at drop rate 0.
      protocol: the dropout nets' protocol (:func:`.protocol.plain_protocol` of it trains the
        plain net, as ensembles' members train).
      seeds: the seeds.

    Returns:
      ``{"arm": record}``: :func:`.protocol.train_arm`'s record, whose ``val_w`` holds each
      seed's validation NLL within ``W`` (no test example is read).
    """
    return {"arm": shared_arm(ds, model.clone(rate=0.0), plain_protocol(protocol), seeds).record}


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: one :func:`mode_cell` for the wide net and one for the small net,
    and the plain wide net of the NLL margin (:func:`plain_cell`).

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{"net=wide": Cell, "net=small": Cell, "net=plain": Cell}``; only the small net is
      compared with the exact average.
    """
    seeds = study_seeds(cfg.seeds)
    kw = dict(ds=ds, protocol=cfg.protocol, seeds=seeds)
    return {
        "net=wide": cell(
            mode_cell, model=MLP(hidden=cfg.hidden, n_out=ds.n_classes, rate=cfg.rate),
            exact=False, ev=Evaluator((NAME, "net=wide"), cfg.mc_k), **kw,
        ),
        "net=small": cell(
            mode_cell, model=MLP(hidden=cfg.small, n_out=ds.n_classes, rate=cfg.rate),
            exact=True, ev=Evaluator((NAME, "net=small"), cfg.mc_k), **kw,
        ),
        "net=plain": cell(
            plain_cell, model=MLP(hidden=cfg.hidden, n_out=ds.n_classes, rate=cfg.rate), **kw,
        ),
    }  # fmt: skip


def nll_margin(cfg: Config, raw: dict) -> dict:
    """The NLL equivalence margin: a share of dropout's own effect on the validation NLL.

    Equivalence within it says that switching the mask mode moves the wide net's NLL by less
    than ``margin_share`` of what switching dropout off does: a margin as wide as that whole
    effect could not tell either mode from a net without dropout. Each arm's validation NLL is
    the one its protocol selects by (the plain net's own; the dropout net's MC average of the
    protocol's ``select_k`` fixed subnetworks, not the test's K), within ``W``, paired by seed;
    the effect's sign says which is ahead, its size is the scale.

    Args:
      cfg: the configuration (``margin_share``, ``margin_nll_cap``).
      raw: the cells' results: the plain arm's record (``net=plain``) and the per-example
        dropout arm's (``net=wide``).

    Returns:
      ``{"value", "share", "effect", "derived", "cap"}``: the margin, the share, the interval
      over seeds of the plain net's validation NLL minus the per-example dropout net's, the
      share of its mean's size, and the cap; the margin is the smaller of the last two.

    Raises:
      DropstudyError: if dropout leaves the validation NLL exactly as it was (no scale).
    """
    plain = np.asarray(raw["net=plain"]["arm"]["val_w"], np.float64)
    drop = np.asarray(raw["net=wide"]["arms"]["per_example"]["val_w"], np.float64)
    m = share_margin(
        cfg.margin_share,
        plain - drop,
        what="the plain net's validation NLL minus the dropout net's",
        remedy="dropout leaves the validation NLL as it was at this width and rate; the claim "
        "needs a net where dropout matters (Config fields hidden and rate), which changes the "
        "question, so say so beside any result",
        size=True,
        cap=cfg.margin_nll_cap,
    )
    m["effect"] = m.pop("scale")
    return m


def _tests(cfg: Config, raw: dict, sfx: str, margin_nll: float) -> dict:
    """The tests of one selection of the nets: within W (``sfx`` empty) or within 2W
    (``"_2w"``).

    Args:
      cfg: the configuration.
      raw: the cells' results.
      sfx: the selection's suffix of the cells' row keys.
      margin_nll: the NLL margin (:func:`nll_margin`).

    Returns:
      ``{name: test}``: the tests of :meth:`Config.test_names` without their twins.
    """

    def gap(net, mode, ref, m):
        return np.array([r[f"ws_vs_{ref}"][m] for r in raw[f"net={net}"][mode + sfx]])

    def diff(p, m):
        """Wide net, test split, per seed and test example ``(S, N)`` (intervals over both
        noises): a mask per batch minus a mask per example."""
        e = lambda mode: np.array([r[p]["test_ex"][m] for r in raw["net=wide"][mode + sfx]])  # noqa: E731
        return e("per_batch") - e("per_example")

    # Each quantity by both predictors: a sign or verdict that depends on which is a finding.
    tests = by_predictor(
        equivalence,
        {p: diff(p, "nll") for p in ("mc", "ws")},
        "nll",
        margin=margin_nll,
        metric="nll",
        what="test NLL, a mask per batch minus a mask per example (nats)",
    )
    tests |= by_predictor(
        equivalence,
        {p: diff(p, "err") for p in ("mc", "ws")},
        "err",
        margin=cfg.margin_err,
        metric="error",
        what="test error, a mask per batch minus a mask per example (fraction)",
    )
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
    return tests


def summarise(cfg: Config, raw: dict) -> dict:
    """The mask-mode tests and intervals per net and mode.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"rows", "arms", "protocol", "tests", "primary", "margin_nll"}``: per ``"<net>
      <mode>"``, intervals of accuracy and NLL by each predictor on test and train and of
      weight scaling's gaps (``mean_kl``, ``disagreement``), and each arm's training
      (:func:`.protocol.arm_summary`, the plain net of the margin's scale among them); the
      protocol; the tests (each guarded, with its twin within 2W) of
      :meth:`Config.test_names`, the primary first; the NLL margin and its derivation
      (:func:`nll_margin`).
    """

    def col(net, mode, p, split, m):
        return np.array([r[p][split][m] for r in raw[f"net={net}"][mode]])

    def gap(net, mode, ref, m):
        return np.array([r[f"ws_vs_{ref}"][m] for r in raw[f"net={net}"][mode]])

    # the margin, from the validation split alone (no test number) and the fixed cap
    margin = nll_margin(cfg, raw)
    arms = {f"{net} {mode}": raw[f"net={net}"]["arms"][mode] for net in ("wide", "small")
            for mode in MODES}  # fmt: skip
    of = lambda net: {k: a for k, a in arms.items() if k.startswith(net)}  # noqa: E731

    def held(m: float) -> dict:  # every test, each guarded by the arms it compares
        within, twice = _tests(cfg, raw, "", m), _tests(cfg, raw, "_2w", m)
        return guarded(within, twice, of("wide"), {"ws_gap_exact": of("small")})

    tests = held(margin["value"])
    disclose(margin, held, cfg.primary)
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
    arms[PLAIN] = raw["net=plain"]["arm"]
    return {
        "rows": rows,
        "arms": {k: arm_summary(v) for k, v in arms.items()},
        "protocol": cfg.protocol.to_dict(),
        "tests": tests,
        "primary": cfg.primary,
        "margin_nll": margin,
    }
