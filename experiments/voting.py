"""Claim: the mean of the networks' outputs and their majority vote decide alike.

The tutorial: "we can use 'five result mean' or 'majority winning voting strategy' to
determine the final result" and dropout "is equivalent to averaging many different
networks". Over the same subnetworks of one dropout net, this experiment compares the test
error of

* the majority vote (each subnetwork votes for its most probable class). A tie among t
  classes counts as the expected error of breaking it at random: 1 - 1/t of an error when the
  true class is among them, else 1. (Breaking it by the tied classes' mean probability would
  hand every tie to the rule the vote is compared with.)
* the arithmetic mean of the subnetworks' probabilities,
* their normalised geometric mean (the softmax of the mean log-probabilities),
* weight scaling (the net at its expected mask),

over K sampled subnetworks (the MC subnetworks: mask i is ``sample_masks(spec, fold_in(key,
i))``, as in :func:`dropstudy.predict.mc`), as K grows, and for a net of 16 droppable units over
all 2^16 subnetworks, where every subnetwork's vote counts with its probability.

The primary's error margin is a share of what combining the tutorial's five subnetworks does
at all, measured on the validation split (:func:`margin_cell`, :func:`err_margin`): two rules
decide alike when they differ by less than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dropstudy import masks as M
from dropstudy.data import Dataset
from dropstudy.models import MLP
from dropstudy.train import take

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    check_numbers,
    check_share,
    ci,
    disclose,
    primary_first,
    share_margin,
)
from .evaluate import seed_key
from .protocol import (
    ENSEMBLE,
    QUICK_ENSEMBLE,
    TWICE,
    Protocol,
    arm_summary,
    guarded,
    shared_arm,
    split,
)
from .seeds import study_seeds
from .stats import direction, equivalence

NAME = "voting"
CLAIM = (
    "Averaging the networks' outputs and taking their majority vote are interchangeable ways "
    "to combine them."
)
RULES = ("vote", "arithmetic", "geometric", "ws")
LABELS = {
    "vote": "majority vote",
    "arithmetic": "arithmetic mean",
    "geometric": "normalised geometric mean",
    "ws": "weight scaling",
}
CHUNK = 256  # subnetworks per step of a reduction
SMALL_TESTS = ("vote_5_small", "vote_exact_small")  # the tests on the small net


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Nets, the K grid and the equivalence margins (the primary's derived, capped)."""

    seeds: int = 10
    hidden: tuple[int, ...] = (64, 64)
    small: tuple[int, ...] = (8, 8)  # 16 droppable units: the exact vote over 2^16
    rate: float = 0.5
    # Each net trains by the study's protocol, stopped by its ensemble (the MC average of a
    # fixed set of subnetworks): the claim is about combining subnetworks.
    protocol: Protocol = ENSEMBLE
    k: int = MC_K
    k_grid: tuple[int, ...] = (1, 3, 5, 11, 21, 51, 101, 201, 501, 1000)
    # Equivalence margin on test error (fraction), fixed before the run: half a percentage
    # point, as the ensembles experiment's. The exploratory tests keep it; it caps the
    # primary's derived margin below (set after the results at it were seen, post hoc: the
    # rule may only make equivalence harder).
    margin_err: float = 0.005
    # The primary's margin is this share of what combining its `members` subnetworks does at
    # all: their mean single-subnetwork validation error minus their arithmetic mean's, mean
    # over seeds (:func:`err_margin`). At one half, "decide alike" says the vote and the mean
    # differ by less than half of what either gains over one subnetwork; a margin as wide as
    # that gain could not tell a rule from using one subnetwork alone.
    margin_share: float = 0.5
    members: int = 5  # the tutorial's "five result mean or majority voting": the primary's K
    primary: str = "vote_5"
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "hidden": (16, 16),
        "small": (4, 4),
        "protocol": QUICK_ENSEMBLE,
        "k": 64,
        "k_grid": (1, 5, 64),  # holds members
    }

    def check(self) -> None:
        """Refuse a configuration no run could use, when it is built.

        The generic field rules of :meth:`ExperimentConfig.check`, then that ``margin_share``
        lies in (0, 1].

        Raises:
          DropstudyError: naming what is wrong.
        """
        from dropstudy.validate import DropstudyError

        super().check()
        check_numbers(self, "rate", "margin_err")
        if self.members < 2:
            raise DropstudyError(
                f"members={self.members} must be at least 2: the primary combines them, and "
                "its margin is what combining them does"
            )
        check_share(
            self.margin_share, "what combining the subnetworks does to the validation error"
        )

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names (fixed).

        Returns:
          Whatever ``members`` and ``k`` are (they change the wording only): the votes
          against the arithmetic mean, weight scaling and the geometric mean.
        """
        names = ("vote_5", "vote_5_small", "vote_mc", "vote_vs_ws", "vote_exact_small",
                 "geometric_vs_vote")  # fmt: skip
        return tuple(n + t for n in names for t in ("", TWICE))


def combine(logits: jax.Array, weights: jax.Array) -> dict[str, jax.Array]:
    """Weighted sums over subnetworks of their probabilities, log-probabilities and votes.

    Args:
      logits: the subnetworks' logits ``(K, B, C)``.
      weights: each subnetwork's weight ``(K,)``.

    Returns:
      ``{"probs", "logp", "votes"}``, each ``(B, C)``: the sums of the probabilities, of the
      log-probabilities, and of the one-hot argmaxes.
    """
    logp = jax.nn.log_softmax(logits, -1)
    votes = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=logits.dtype)
    w = weights[:, None, None]
    return {
        "probs": (w * jnp.exp(logp)).sum(0),
        "logp": (w * logp).sum(0),
        "votes": (w * votes).sum(0),
    }


def decide(sums: dict[str, jax.Array], total: float) -> dict[str, jax.Array]:
    """Each rule's predicted class from :func:`combine`'s sums over ``total`` weight.

    ``vote`` names one class for a figure or a user: a tie goes to the tied class of highest
    arithmetic mean probability, then to the lower index. Its error is scored from ``tied``
    instead (:func:`errors`).

    Args:
      sums: :func:`combine`'s ``{"probs", "logp", "votes"}``, each ``(B, C)``.
      total: the total weight of the subnetworks summed.

    Returns:
      ``{"vote", "arithmetic", "geometric"}``, each ``(B,)``, the predicted classes; the
      vote's ``"tied"`` classes ``(B, C)`` (within ``1e-6 * total`` of the most votes) and
      whether it ties (``"tie"``, ``(B,)``).
    """
    arith = sums["probs"] / total
    votes = sums["votes"]
    tied = votes >= votes.max(-1, keepdims=True) - 1e-6 * total
    return {
        "vote": jnp.argmax(jnp.where(tied, arith, -1.0), -1),
        "arithmetic": jnp.argmax(arith, -1),
        "geometric": jnp.argmax(sums["logp"], -1),  # softmax is monotone in the mean logp
        "tied": tied,
        "tie": tied.sum(-1) > 1,
    }


@partial(jax.jit, static_argnames=("model", "spec", "k", "grid"))
def mc_sums(model, spec, k, grid, variables, x, key):
    """The sums of :func:`combine` over MC subnetworks ``0 .. g - 1`` for every ``g`` in ``grid``.

    Mask i is ``sample_masks(spec, fold_in(key, i))``; jitted, the subnetworks run
    :data:`CHUNK` at a time.

    Args:
      model: the model (static).
      spec: its mask spec, :func:`dropstudy.masks.mask_spec` (static).
      k: the number of subnetworks (static).
      grid: the prefix sizes, sorted, the last ``k`` (static).
      variables: the model's variables dict.
      x: inputs ``(B, d)``.
      key: the key of the subnetworks' masks.

    Returns:
      ``{"probs", "logp", "votes"}``, each ``(len(grid), B, C)``.
    """
    masks = M.sample_mask_batch(spec, key, jnp.arange(k))
    logits = jax.lax.map(
        lambda m: M.apply(model, variables, x, m), masks, batch_size=CHUNK
    )  # (k, B, C)
    logp = jax.nn.log_softmax(logits, -1)
    votes = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=logits.dtype)
    if grid == (k,):  # one total: a sum, not a cumulative sum over (k, B, C)
        return {n: a.sum(0)[None] for n, a in (("probs", jnp.exp(logp)), ("logp", logp),
                                               ("votes", votes))}  # fmt: skip
    cum = {
        "probs": jnp.cumsum(jnp.exp(logp), 0),
        "logp": jnp.cumsum(logp, 0),
        "votes": jnp.cumsum(votes, 0),
    }
    at = jnp.asarray(grid) - 1
    return {n: c[at] for n, c in cum.items()}


@partial(jax.jit, static_argnames=("model", "spec"))
def exact_sums(model, spec, variables, x):
    """The sums of :func:`combine` over all 2^n subnetworks, each weighted by its probability.

    Jitted; the subnetworks run in chunks of up to ``4 * CHUNK``.

    Args:
      model: the model (static).
      spec: its mask spec, :func:`dropstudy.masks.mask_spec` (static).
      variables: the model's variables dict.
      x: inputs ``(B, d)``.

    Returns:
      ``{"probs", "logp", "votes"}``, each ``(B, C)``.
    """
    n = spec.n_droppable
    chunks = jnp.arange(2**n).reshape(-1, min(CHUNK * 4, 2**n))

    def body(acc, idx):
        masks, w = M.enumerate_masks(spec, idx)
        logits = jax.vmap(lambda m: M.apply(model, variables, x, m))(masks)
        part = combine(logits, w)
        return jax.tree.map(jnp.add, acc, part), None

    c = model.apply(variables, x[:1]).shape[-1]
    zero = {n: jnp.zeros((x.shape[0], c), x.dtype) for n in ("probs", "logp", "votes")}
    return jax.lax.scan(body, zero, chunks)[0]


def errors_ex(pred: dict, y) -> dict[str, np.ndarray]:
    """Each example's error under each rule, the vote's ties counted as breaking them at
    random would.

    A t-way tie counts as the expected error: 1 - 1/t when it holds the true class, else 1.

    Args:
      pred: :func:`decide`'s predictions.
      y: labels ``(B,)``.

    Returns:
      ``{"vote", "arithmetic", "geometric"}``: the errors, each ``(B,)`` float64.
    """
    y = np.asarray(y)
    tied = np.asarray(pred["tied"], np.float64)
    return {
        "vote": 1.0 - tied[np.arange(len(y)), y] / tied.sum(-1),
        **{r: (np.asarray(pred[r]) != y).astype(np.float64) for r in ("arithmetic", "geometric")},
    }


def errors(pred: dict, y) -> dict:
    """Test error of each rule: the means of :func:`errors_ex`.

    Args:
      pred: :func:`decide`'s predictions.
      y: labels ``(B,)``.

    Returns:
      ``{"vote", "arithmetic", "geometric"}``: the errors, floats.
    """
    return {r: float(np.mean(e)) for r, e in errors_ex(pred, y).items()}


def vote_cell(
    ds: Dataset,
    model: MLP,
    protocol: Protocol,
    k: int,
    grid: tuple[int, ...],
    seeds: list[int],
    stream: tuple[str, ...],
    ex_at: tuple[int, ...] = (),
) -> dict:
    """Per seed, one dropout net: the test and train error of every rule.

    The net trains by the protocol (tuned on the validation split, each seed's variables
    selected within ``W`` and within ``2W``); both selections are scored alike. Test error of
    every rule over its first ``g`` MC subnetworks for ``g`` in ``grid``, the fraction of tied
    votes, and train and test error of every rule (and weight scaling) at ``k``. With 16 or
    fewer droppable units, test error and ties over all 2^n.

    Args:
      ds: the data set.
      model: the dropout net.
      protocol: how to train it (:mod:`.protocol`).
      k: the number of MC subnetworks.
      grid: the numbers of subnetworks of the test curves (``k`` is added).
      seeds: the seeds, trained together.
      stream: the names the MC keys derive from.
      ex_at: the numbers of subnetworks (in the grid) at which each test example's error is
        kept, for tests whose intervals cover the test set's noise.

    Returns:
      ``{"grid": sorted grid with k, "seeds": [row per seed], "seeds_2w", "arm"}``; a row
      holds ``"test_curve"`` (``vote``, ``arithmetic``, ``geometric`` and ``tie``, lists over
      the grid), ``"test"`` and ``"train"`` (the errors of :func:`errors` and ``ws`` at ``k``,
      train on the 80% trained on), ``"test_ex"`` (``{str(g): each test example's error per
      rule}`` for ``g`` in ``ex_at``, with ``ws`` where ``g`` is ``k``), and with 16 or fewer
      droppable units ``"exact_test"`` (errors), ``"exact_test_ex"`` (per example) and
      ``"exact_tie"``; ``seeds_2w`` the same for the variables selected within ``2W``;
      ``arm`` the net's record (:func:`.protocol.train_arm`).
    """
    arm = shared_arm(ds, model, protocol, seeds)
    train, _ = split(ds)
    spec = M.mask_spec(model, ds.x_train[:1])
    grid = tuple(sorted(set(grid) | {k}))
    out = {"grid": list(grid), "arm": arm.record}
    for sfx, variables in (("", arm.within_w), ("_2w", arm.within_2w)):
        out["seeds" + sfx] = [
            _vote_row(
                model,
                spec,
                take(variables, i),
                seed_key((*stream, "votes"), s),
                ds,
                train,
                k,
                grid,
                ex_at,
            )
            for i, s in enumerate(seeds)
        ]
    return out


def _vote_row(model, spec, v, key, ds, train, k, grid, ex_at) -> dict:
    """One seed's row of :func:`vote_cell`: every rule's errors on test and on ``train``."""
    row = {"test_curve": {r: [] for r in (*RULES[:3], "tie")}, "test_ex": {}}
    for part, x, y in (("test", ds.x_test, ds.y_test), ("train", train.x_train, train.y_train)):
        x = jnp.asarray(x)
        # the training split's rows are needed at K only (3,200 examples on MNIST-1D)
        at = grid if part == "test" else (k,)
        sums = mc_sums(model, spec, k, at, v, x, key)
        ws = np.asarray(model.apply(v, x).argmax(-1))
        for j, g in enumerate(at):
            pred = decide({n: a[j] for n, a in sums.items()}, float(g))
            if part == "test":
                each = errors_ex(pred, y)
                for r, e in each.items():
                    row["test_curve"][r].append(float(np.mean(e)))
                row["test_curve"]["tie"].append(float(np.mean(np.asarray(pred["tie"]))))
                if g in ex_at:
                    kept = {r: e.tolist() for r, e in each.items()}
                    if g == k:
                        kept["ws"] = (ws != np.asarray(y)).astype(np.float64).tolist()
                    row["test_ex"][str(g)] = kept
            if g == k:
                row[part] = {**errors(pred, y), "ws": float(np.mean(ws != y))}
        # The exact vote on the test set only: its train error would cost the training set's
        # size over again, and the MC rows at K already give every rule's train error.
        if spec.n_droppable <= 16 and part == "test":
            pred = decide(exact_sums(model, spec, v, x), 1.0)
            row["exact_test"] = errors(pred, y)
            row["exact_test_ex"] = {r: e.tolist() for r, e in errors_ex(pred, y).items()}
            row["exact_tie"] = float(np.mean(np.asarray(pred["tie"])))
    return row


def margin_cell(
    ds: Dataset,
    model: MLP,
    protocol: Protocol,
    members: int,
    seeds: list[int],
    stream: tuple[str, ...],
) -> dict:
    """Per seed, on the validation split: what combining ``members`` subnetworks does to the
    error, the scale of the primary's margin.

    The net is the one :func:`vote_cell` trains (:func:`.protocol.shared_arm`: trained once),
    selected within ``W``; its subnetworks are ``members`` MC masks of a stream of their own
    (not the test's).

    Args:
      ds: the data set.
      model: the dropout net.
      protocol: how it trains (:mod:`.protocol`).
      members: the number of subnetworks combined.
      seeds: the seeds.
      stream: the names the masks' keys derive from.

    Returns:
      ``{"seeds": [{"member", "mean"}]}``: per seed, the subnetworks' mean validation error
      one by one, and the error of their arithmetic mean (no test example is read).
    """
    arm = shared_arm(ds, model, protocol, seeds)
    _, (x, y) = split(ds)
    spec = M.mask_spec(model, ds.x_train[:1])
    x, y = jnp.asarray(x), np.asarray(y)
    rows = []
    for i, s in enumerate(seeds):
        v = take(arm.within_w, i)
        masks = M.sample_mask_batch(spec, seed_key((*stream, "validation"), s), jnp.arange(members))
        logits = jax.vmap(lambda m, v=v: M.apply(model, v, x, m))(masks)  # (members, B, C)
        one = np.asarray(logits.argmax(-1)) != y[None]
        mean = np.asarray(jax.nn.softmax(logits, -1).mean(0).argmax(-1)) != y
        rows.append({"member": float(one.mean()), "mean": float(mean.mean())})
    return {"seeds": rows}


def err_margin(cfg: Config, raw: dict) -> dict:
    """The primary's error margin: a share of what combining its subnetworks does.

    Equivalence within it says the majority vote and the arithmetic mean of ``members``
    subnetworks differ by less than ``margin_share`` of what the mean gains over one
    subnetwork on the validation split; capped by the fixed ``margin_err``.

    Args:
      cfg: the configuration (``margin_share``, ``margin_err``).
      raw: the cells' results (``margin``: :func:`margin_cell`'s rows).

    Returns:
      ``{"value", "share", "effect", "derived", "cap"}``: the margin, the share, the interval
      over seeds of the mean single-subnetwork validation error minus the mean's, the share of
      its mean, and the cap; the margin is the smaller of the last two.

    Raises:
      DropstudyError: if combining the subnetworks does not lower the validation error.
    """
    rows = raw["margin"]["seeds"]
    m = share_margin(
        cfg.margin_share,
        [r["member"] - r["mean"] for r in rows],
        what=f"the validation error of one subnetwork minus that of {cfg.members} averaged",
        remedy="averaging the subnetworks does not help this net on the validation split, so "
        "'decide alike' has no scale here; raise members or use a net where averaging helps "
        "(Config fields members, hidden, rate), and say so beside any result",
        cap=cfg.margin_err,
    )
    m["effect"] = m.pop("scale")
    return m


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: one :func:`vote_cell` for the wide net and one for the small net,
    and the wide net's :func:`margin_cell`.

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{"net=wide": Cell, "net=small": Cell, "margin": Cell}``, the votes' grid
      ``cfg.k_grid`` with ``cfg.members``.
    """
    seeds = study_seeds(cfg.seeds)
    grid = tuple(sorted(set(cfg.k_grid) | {cfg.members}))
    kw = dict(ds=ds, protocol=cfg.protocol, k=cfg.k, grid=grid, seeds=seeds,
              ex_at=tuple(sorted({cfg.members, cfg.k})))  # fmt: skip
    return {
        "net=wide": cell(
            vote_cell,
            model=MLP(hidden=cfg.hidden, n_out=ds.n_classes, rate=cfg.rate),
            stream=(NAME, "net=wide"),
            **kw,
        ),
        "net=small": cell(
            vote_cell,
            model=MLP(hidden=cfg.small, n_out=ds.n_classes, rate=cfg.rate),
            stream=(NAME, "net=small"),
            **kw,
        ),
        "margin": cell(
            margin_cell,
            ds=ds,
            model=MLP(hidden=cfg.hidden, n_out=ds.n_classes, rate=cfg.rate),
            protocol=cfg.protocol,
            members=cfg.members,
            seeds=seeds,
            stream=(NAME, "net=wide"),
        ),
    }


def _tests(cfg: Config, wide: list, small: list, margin: float) -> dict:
    """The tests of one selection of the nets (within W, or within 2W).

    Args:
      cfg: the configuration.
      wide: the wide net's rows per seed (:func:`vote_cell`'s ``seeds`` or ``seeds_2w``).
      small: the small net's.
      margin: the primary's error margin (:func:`err_margin`); every other equivalence
        keeps ``cfg.margin_err``.

    Returns:
      ``{name: test}`` for the tests of :meth:`Config.test_names` without their twins.
    """
    col = lambda rows, part, r: np.array([s[part][r] for s in rows])  # noqa: E731

    def curve(rule, rows):  # (S, N): each test example's error, first `members` subnetworks
        return np.array([s["test_ex"][str(cfg.members)][rule] for s in rows])

    def at_k(rows, rule):  # (S, N): each test example's error at K (and weight scaling's)
        return np.array([s["test_ex"][str(cfg.k)][rule] for s in rows])

    def first_members(rows, net: str, margin: float):  # vote minus mean, first `members`
        return equivalence(
            curve("vote", rows) - curve("arithmetic", rows),
            margin,
            predictor="mc",
            predictor_label=f"the first {cfg.members} MC subnetworks",
            metric="error",
            what=f"test error, majority vote minus arithmetic mean of {cfg.members} "
            f"subnetworks{net}",
        )

    tests = {
        "vote_5": first_members(
            wide, f" (the tutorial's five networks), wide net {mlp_hidden(cfg.hidden)}", margin
        ),
        "vote_5_small": first_members(
            small, f", small net {mlp_hidden(cfg.small)}", cfg.margin_err
        ),
        "vote_mc": equivalence(
            at_k(wide, "vote") - at_k(wide, "arithmetic"),
            cfg.margin_err,
            predictor="mc",
            predictor_label=f"the same K = {cfg.k} MC subnetworks",
            metric="error",
            what=f"test error, majority vote minus arithmetic mean of the same {cfg.k} subnetworks",
        ),
        "vote_vs_ws": equivalence(
            at_k(wide, "vote") - at_k(wide, "ws"),
            cfg.margin_err,
            predictor="mc",
            predictor_label=f"majority vote of K = {cfg.k} vs weight scaling",
            metric="error",
            what="test error, majority vote minus weight scaling",
        ),
        "vote_exact_small": equivalence(
            col(small, "exact_test_ex", "vote") - col(small, "exact_test_ex", "arithmetic"),
            cfg.margin_err,
            predictor="exact_a",
            metric="error",
            what=f"test error, exact vote minus exact arithmetic mean, 2^{sum(cfg.small)}"
            " subnetworks of the small net",
        ),
        "geometric_vs_vote": direction(
            at_k(wide, "vote") - at_k(wide, "geometric"),
            predictor="mc",
            predictor_label=f"the same K = {cfg.k} MC subnetworks",
            metric="error",
            what="test error, majority vote minus normalised geometric mean (> 0: the mean "
            "is better)",
        ),
    }
    return tests


def summarise(cfg: Config, raw: dict) -> dict:
    """The tests, intervals over seeds and curves of both nets.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"grid", "rows", "curves", "exact_tie", "arms", "protocol", "tests", "primary",
      "margin_err"}``: per net,
      intervals of each rule's test, train and (when enumerated) exact test error
      (``rows``) and of the test curves over the grid (``curves``); the interval of the exact
      tie fraction of the small net (None when not enumerated); the tests of
      :meth:`Config.test_names`, the primary first; the primary's error margin and its
      derivation (:func:`err_margin`), with the primary decided at the fixed cap too.
    """
    wide, small = raw["net=wide"]["seeds"], raw["net=small"]["seeds"]
    col = lambda rows, part, r: np.array([s[part][r] for s in rows])  # noqa: E731
    arms = {"wide": raw["net=wide"]["arm"], "small": raw["net=small"]["arm"]}
    on_small = {n: {"small net": arms["small"]} for n in SMALL_TESTS}
    # the margin, from the validation split alone (no test number) and the fixed cap
    margin = err_margin(cfg, raw)

    def held(m: float) -> dict:  # every test, each guarded by the arms it compares
        within = _tests(cfg, wide, small, m)
        twice = _tests(cfg, raw["net=wide"]["seeds_2w"], raw["net=small"]["seeds_2w"], m)
        return guarded(within, twice, {"wide net": arms["wide"]}, on_small)

    tests = held(margin["value"])
    disclose(margin, held, cfg.primary)
    tests = primary_first(tests, cfg.primary)
    rows = {}
    for net, seeds_ in (("wide", wide), ("small", small)):
        parts = [("test", "test"), ("train", "train")]
        if "exact_test" in seeds_[0]:
            parts += [("exact test", "exact_test")]
        rows[net] = {
            label: {r: ci(col(seeds_, part, r)) for r in seeds_[0][part]} for label, part in parts
        }
    curves = {
        net: {
            r: [ci([s["test_curve"][r][j] for s in seeds_]) for j in range(len(grid))]
            for r in (*RULES[:3], "tie")
        }
        for net, seeds_, grid in (
            ("wide", wide, raw["net=wide"]["grid"]),
            ("small", small, raw["net=small"]["grid"]),
        )
    }
    return {
        "grid": raw["net=wide"]["grid"],
        "rows": rows,
        "curves": curves,
        "exact_tie": ci([s["exact_tie"] for s in small]) if "exact_tie" in small[0] else None,
        "arms": {k: arm_summary(v) for k, v in arms.items()},
        "protocol": cfg.protocol.to_dict(),
        "tests": tests,
        "primary": cfg.primary,
        "margin_err": margin,
    }


def mlp_hidden(hidden) -> str:
    """Hidden widths in words, ``64x64``.

    Args:
      hidden: the hidden widths.

    Returns:
      The widths joined by ``x``.
    """
    return "x".join(map(str, hidden))
