"""Claim: the subnetworks dropout trains are different networks whose errors offset each other.

The tutorial: "Different networks produce different overfitting, some of which are 'reverse'
to offset each other", and "Dropout removes different hidden neurons like training different
networks". Whether averaging members helps is measured by the ambiguity decomposition of the
Brier score (Krogh & Vedelsby 1995): for members' class probabilities ``p_k`` and their mean
``p̄``, on every example

    Brier(p̄) = mean_k Brier(p_k) - mean_k ||p_k - p̄||²,

an identity: the ensemble's loss is the members' mean loss minus their diversity (the
*ambiguity*). Beside it, the members' pairwise disagreement (how often two members' argmax
differ) and the correlation of their errors (0/1 indicators, averaged over pairs).

Members are (a) the subnetworks of one dropout net (the MC stream's first K masks) and (b)
independently trained plain nets of the same architecture (own initialisation and minibatch
order), both as K grows. Both kinds train by the study's protocol (:mod:`.protocol`), each
tuned on its own: the dropout net stopped by its MC average's validation NLL, each plain net
by its own, within ``W`` and (for the twin tests) within ``2W``. The primary test asks
whether dropout's subnetworks offset each other's errors as much as independent nets do: the
share of the members' mean Brier score that averaging K of them removes (ambiguity over mean
member loss), dropout minus independent, equivalent within a margin: a share of the
independent nets' own share on the validation split (:func:`margin_cell`, :func:`share_margin_of`),
capped by the fixed margin it replaced.
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
    member_seeds,
    plain_protocol,
    shared_arm,
    split,
)
from .seeds import study_seeds
from .stats import direction, equivalence

NAME = "diversity"
CLAIM = (
    "Dropout's subnetworks are different networks whose overfitting offsets each other when "
    "they are averaged, as independently trained networks' does."
)
KINDS = ("dropout", "independent")
LABELS = {"dropout": "dropout's subnetworks", "independent": "independent plain nets"}


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Nets, ensemble sizes and the equivalence margin (derived, capped)."""

    seeds: int = 10
    hidden: tuple[int, ...] = (64, 64)
    rate: float = 0.5
    # The dropout net stopped by its ensemble (the MC average); the plain nets by weight
    # scaling (:func:`.protocol.plain_protocol`), tuned on their own.
    protocol: Protocol = ENSEMBLE
    members: int = 5  # independent nets per seed; the primary compares ensembles of this size
    k_grid: tuple[int, ...] = (2, 3, 5, 10, 30, 100)  # dropout subnetworks (<= members shown
    # for the independent nets)
    # Equivalence margin on the share of the members' mean Brier score that averaging
    # removes (ambiguity / mean member Brier), fixed before the run: 5 percentage points. It
    # caps the derived margin below, which replaced it after the results at it were seen
    # (post hoc: the rule may only make equivalence harder).
    margin: float = 0.05
    # The margin is this share of the independent nets' own share on the validation split
    # (what averaging `members` of them removes there), mean over seeds (:func:`share_margin_of`).
    # At one half, "as independent nets do" says dropout's share differs from theirs by less
    # than half of theirs; a margin as wide as their share could not tell dropout's
    # subnetworks from members that offset nothing.
    margin_share: float = 0.5
    primary: str = "share_equiv"
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "hidden": (16, 16),
        "protocol": QUICK_ENSEMBLE,
        "members": 3,
        "k_grid": (2, 3, 10),
    }

    def seed_span(self) -> int:
        """The seeds the study uses: member j of seed s is the plain net of seed
        ``s + j * seeds``, so ``seeds * members`` of them.

        Returns:
          The count.
        """
        return self.seeds * self.members

    def check(self) -> None:
        """Refuse a configuration no run could use, when it is built.

        The generic field rules of :meth:`ExperimentConfig.check`, then that the plain
        members' seeds (``0 .. seeds * members - 1``) stay clear of the protocol's pilot
        seeds.

        Raises:
          DropstudyError: naming what is wrong.
        """
        from dropstudy.validate import DropstudyError

        super().check()
        check_numbers(self, "rate", "margin")
        if self.members < 2:
            raise DropstudyError(
                f"members={self.members} must be at least 2: averaging one member removes "
                "nothing, so neither the share nor its margin exists"
            )
        member_seeds(self.seeds, self.members, self.protocol, "members")
        check_share(self.margin_share, "the independent nets' share on the validation split")

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names (fixed).

        Returns:
          Whatever ``members`` is (it changes the wording only): the share equivalence,
          the offset of errors and the error correlation.
        """
        return tuple(n + t for n in ("share_equiv", "offset_dropout", "corr") for t in ("", TWICE))


def decompose(probs: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """The ambiguity decomposition of members' Brier score, their disagreement and correlation.

    Brier scores are means over examples; ensemble = members - ambiguity exactly. The error
    correlation is the mean pairwise correlation of the members' 0/1 errors over the pairs
    where it is defined (a member always right or always wrong has none); it reads 0 when no
    pair has one.

    Args:
      probs: members' probabilities ``(K, B, C)``.
      labels: labels ``(B,)``.

    Returns:
      Scalars ``{"ensemble", "member", "ambiguity", "disagreement", "error_corr",
      "corr_defined", "ensemble_error", "member_error"}``: the ensemble's Brier score, the
      members' mean Brier score, the ambiguity, the pairwise disagreement, the error
      correlation with the share of pairs where it is defined, and the 0/1 test error of the
      averaged prediction and the members' mean.
    """
    k = probs.shape[0]
    onehot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
    mean = probs.mean(0)
    brier = lambda p: jnp.sum((p - onehot) ** 2, -1)  # noqa: E731
    member = jax.vmap(brier)(probs).mean(0)
    ambiguity = jnp.sum((probs - mean) ** 2, -1).mean(0)
    pred = probs.argmax(-1)  # (K, B)
    wrong = (pred != labels).astype(probs.dtype)
    off = ~jnp.eye(k, dtype=bool)
    pairs = max(k * (k - 1), 1)
    disagree = (pred[:, None, :] != pred[None, :, :]).mean(-1)
    c = wrong - wrong.mean(-1, keepdims=True)
    sd = jnp.sqrt((c**2).mean(-1))
    cov = (c[:, None, :] * c[None, :, :]).mean(-1)
    denom = sd[:, None] * sd[None, :]
    defined = off & (denom > 0)
    corr = jnp.where(defined, cov / jnp.where(defined, denom, 1.0), 0.0)
    return {
        "ensemble": brier(mean).mean(),
        "member": member.mean(),
        "ambiguity": ambiguity.mean(),
        "disagreement": jnp.where(off, disagree, 0).sum() / pairs,
        "error_corr": corr.sum() / jnp.maximum(defined.sum(), 1),
        "corr_defined": defined.sum() / pairs,
        "ensemble_error": (mean.argmax(-1) != labels).mean(),
        "member_error": wrong.mean(),
    }


@partial(jax.jit, static_argnames=("model", "spec", "k"))
def _subnetwork_probs(model, spec, k, variables, x, key):
    """Probabilities of MC subnetworks ``0 .. k - 1``: ``(k, B, C)``."""
    masks = M.sample_mask_batch(spec, key, jnp.arange(k))
    return jax.lax.map(
        lambda m: jax.nn.softmax(M.apply(model, variables, x, m)), masks, batch_size=64
    )


def decompose_ex(probs, labels) -> dict[str, list[float]]:
    """Each example's terms of :func:`decompose` whose means the share and offset tests take.

    Args:
      probs: members' probabilities ``(K, B, C)``.
      labels: labels ``(B,)``.

    Returns:
      ``{"member", "ambiguity", "member_error", "ensemble_error"}``, each a list of B floats:
      the members' mean Brier score, the ambiguity, the members' mean 0/1 error and the
      averaged prediction's 0/1 error, per example.
    """
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    onehot = np.eye(probs.shape[-1])[labels]
    mean = probs.mean(0)
    return {
        "member": np.sum((probs - onehot) ** 2, -1).mean(0).tolist(),
        "ambiguity": np.sum((probs - mean) ** 2, -1).mean(0).tolist(),
        "member_error": (probs.argmax(-1) != labels).mean(0).tolist(),
        "ensemble_error": (mean.argmax(-1) != labels).astype(np.float64).tolist(),
    }


def _stats(probs: np.ndarray, labels: np.ndarray, ks) -> dict:
    """:func:`decompose` of the first ``k`` members for every ``k`` in ``ks``."""
    out = {}
    for k in ks:
        d = decompose(jnp.asarray(probs[:k]), jnp.asarray(labels))
        out[str(k)] = {n: float(v) for n, v in d.items()}
    return out


def diversity_cell(
    *, ds: Dataset, model: MLP, protocol: Protocol, members: int, ks: tuple[int, ...],
    seeds: list[int], stream: tuple[str, ...],
) -> dict:  # fmt: skip
    """Per seed: :func:`decompose` for dropout's subnetworks and for independent plain nets.

    On the test set and the 80% trained on, for the dropout net's first K subnetworks (K in
    ``ks``, keys from ``stream``) and for ensembles of the first K of ``members`` independent
    plain nets (K = 2 .. members; member j of seed s is the plain net of seed ``s + j * S``,
    S the number of seeds), each net trained by the protocol, for the variables selected
    within ``W`` and within ``2W``.

    Args:
      ds: the data set.
      model: the dropout net; the plain nets are it at drop rate 0.
      protocol: how to train the dropout net (:mod:`.protocol`); the plain nets train by
        :func:`.protocol.plain_protocol` of it.
      members: independent plain nets per seed.
      ks: the numbers of dropout subnetworks.
      seeds: the seeds, trained together.
      stream: the names the keys derive from.

    Returns:
      ``{"seeds": [row per seed], "seeds_2w", "arms"}``; a row is ``{kind: {split: {str(K):
      decompose}}}`` for kind ``dropout`` and ``independent``, split ``test`` and ``train``,
      the values floats, and ``{kind: {"test_ex": decompose_ex}}``: the first ``members``
      members' per-example terms on the test set, for tests whose intervals cover the test
      set's noise; ``seeds_2w`` the same within 2W; ``arms`` both kinds' records
      (:func:`.protocol.train_arm`).
    """
    plain_model = model.clone(rate=0.0)
    n_seeds = len(seeds)
    member_seeds = [s + j * n_seeds for j in range(members) for s in seeds]
    drop = shared_arm(ds, model, protocol, seeds)
    plain = shared_arm(ds, plain_model, plain_protocol(protocol), member_seeds)
    train, _ = split(ds)
    spec = M.mask_spec(model, ds.x_train[:1])
    both = jnp.concatenate([jnp.asarray(ds.x_test), jnp.asarray(train.x_train)])
    n = len(ds.x_test)
    result = {"arms": {"dropout": drop.record, "independent": plain.record}}
    for sfx, vd, vp in (("", drop.within_w, plain.within_w),
                        ("_2w", drop.within_2w, plain.within_2w)):  # fmt: skip
        out = []
        for i, s in enumerate(seeds):
            sub = np.asarray(
                _subnetwork_probs(
                    model, spec, max(ks), take(vd, i), both, seed_key((*stream, "mc"), s)
                )
            )
            ind = np.stack(
                [
                    np.asarray(jax.nn.softmax(plain_model.apply(take(vp, i + j * n_seeds), both)))
                    for j in range(members)
                ]
            )
            row = {}
            for kind, probs, grid in (
                ("dropout", sub, ks),
                ("independent", ind, range(2, members + 1)),
            ):
                row[kind] = {
                    "test": _stats(probs[:, :n], ds.y_test, grid),
                    "train": _stats(probs[:, n:], train.y_train, grid),
                    "test_ex": decompose_ex(probs[:members, :n], ds.y_test),
                }
            out.append(row)
        result["seeds" + sfx] = out
    return result


def margin_cell(
    *, ds: Dataset, model: MLP, protocol: Protocol, members: int, seeds: list[int]
) -> dict:
    """Per seed, on the validation split: the share of the independent members' mean Brier
    score that averaging them removes, the scale of the primary's margin.

    The members are the plain nets :func:`diversity_cell` trains (:func:`.protocol.shared_arm`:
    trained once), each selected within ``W``.

    Args:
      ds: the data set.
      model: the dropout net; its members train at drop rate 0.
      protocol: the dropout net's protocol (the plain form of it trains the members).
      members: independent plain nets per seed.
      seeds: the seeds.

    Returns:
      ``{"seeds": [{"ambiguity", "member"}]}``: per seed, :func:`decompose`'s ambiguity and
      members' mean Brier score of the ``members`` nets on the validation split (no test
      example is read).
    """
    plain_model = model.clone(rate=0.0)
    n_seeds = len(seeds)
    member_seeds_ = [s + j * n_seeds for j in range(members) for s in seeds]
    plain = shared_arm(ds, plain_model, plain_protocol(protocol), member_seeds_)
    _, (x, y) = split(ds)
    x = jnp.asarray(x)
    rows = []
    for i in range(n_seeds):
        probs = jnp.stack(
            [jax.nn.softmax(plain_model.apply(take(plain.within_w, i + j * n_seeds), x))
             for j in range(members)]
        )  # fmt: skip
        d = decompose(probs, jnp.asarray(y))
        rows.append({"ambiguity": float(d["ambiguity"]), "member": float(d["member"])})
    return {"seeds": rows}


def share_margin_of(cfg: Config, raw: dict) -> dict:
    """The primary's margin: a share of the independent nets' own share on validation.

    Args:
      cfg: the configuration (``margin_share``, ``margin``: the cap).
      raw: the cells' results (``margin``: :func:`margin_cell`'s rows).

    Returns:
      ``{"value", "share", "effect", "derived", "cap"}``: the margin, the share, the interval
      over seeds of the independent nets' validation share, the share of its mean, and the
      cap; the margin is the smaller of the last two.

    Raises:
      DropstudyError: if averaging the independent nets removes nothing on validation, or
        their mean Brier score there is 0 (a share of nothing).
    """
    from dropstudy.validate import DropstudyError

    rows = raw["margin"]["seeds"]
    zero = [i for i, r in enumerate(rows) if not r["member"] > 0]
    if zero:
        raise DropstudyError(
            f"the independent nets' mean validation Brier score is 0 for seed index(es) {zero}: "
            "they fit every validation example exactly, so no share of it, and no margin, can "
            "be derived; use a harder data set or smaller nets (Config field hidden), and say "
            "so beside any result"
        )
    m = share_margin(
        cfg.margin_share,
        [r["ambiguity"] / r["member"] for r in rows],
        what=f"the share of {cfg.members} independent nets' validation Brier score that "
        "averaging them removes",
        remedy="the independent nets agree on every validation example, so 'as independent "
        "nets do' has no scale here; raise members or use nets that differ (Config fields "
        "members, hidden), and say so beside any result",
        cap=cfg.margin,
    )
    m["effect"] = m.pop("scale")
    return m


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: :func:`diversity_cell`, and :func:`margin_cell` for the
    primary's margin.

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{"diversity": Cell, "margin": Cell}``, the first's ``ks`` ``cfg.k_grid`` with
      ``cfg.members``.
    """
    model = MLP(hidden=cfg.hidden, n_out=ds.n_classes, rate=cfg.rate)
    ks = tuple(sorted(set(cfg.k_grid) | {cfg.members}))
    return {
        "diversity": cell(
            diversity_cell, ds=ds, model=model, protocol=cfg.protocol, members=cfg.members, ks=ks,
            seeds=study_seeds(cfg.seeds), stream=(NAME, "diversity"),
        ),
        "margin": cell(
            margin_cell, ds=ds, model=model, protocol=cfg.protocol, members=cfg.members,
            seeds=study_seeds(cfg.seeds),
        ),
    }  # fmt: skip


STATS = (
    "ensemble",
    "member",
    "ambiguity",
    "disagreement",
    "error_corr",
    "corr_defined",
    "ensemble_error",
    "member_error",
)


def _tests(cfg: Config, seeds: list, margin: float) -> dict:
    """The tests of one selection of the nets (within W, or within 2W).

    Args:
      cfg: the configuration.
      seeds: the cell's rows per seed (``seeds`` or ``seeds_2w``).
      margin: the primary's margin (:func:`share_margin_of`).

    Returns:
      ``{name: test}`` for the tests of :meth:`Config.test_names` without their twins.
    """
    m = str(cfg.members)

    def col(kind, split, k, stat):
        return np.array([s[kind][split][str(k)][stat] for s in seeds])

    def ex(kind, term):  # (S, N): the first `members` members' per-example term
        return np.array([s[kind]["test_ex"][term] for s in seeds])

    def share_ex(kind):
        """The share ``A / M`` (means over examples) per seed and test example ``(S, N)``,
        linearised by the delta method: ``A / M + (a_i - (A / M) m_i) / M``, whose mean over
        the examples is the share itself."""
        a, mem = ex(kind, "ambiguity"), ex(kind, "member")
        big_m = mem.mean(1, keepdims=True)
        ratio = a.mean(1, keepdims=True) / big_m
        return ratio + (a - ratio * mem) / big_m

    tests = {
        "share_equiv": equivalence(
            share_ex("dropout") - share_ex("independent"),
            margin,
            predictor="members",
            metric="share",
            what=f"share of the members' mean test Brier score removed by averaging {m} of "
            "them, dropout's subnetworks minus independent nets",
        ),
        # Not the Brier gap: member minus ensemble Brier *is* the ambiguity, never negative.
        # The 0/1 error of the averaged prediction can exceed the members' mean error.
        "offset_dropout": direction(
            ex("dropout", "member_error") - ex("dropout", "ensemble_error"),
            predictor="members",
            metric="error",
            what=f"test error, mean of {m} dropout subnetworks minus their average's (> 0: "
            "their errors offset)",
        ),
        "corr": direction(
            col("dropout", "test", m, "error_corr") - col("independent", "test", m, "error_corr"),
            positive_supports=False,
            predictor="members",
            metric="corr",
            what=f"pairwise error correlation of {m} members, dropout's subnetworks minus "
            "independent nets (< 0: dropout's are less alike)",
        ),
    }
    return tests


def summarise(cfg: Config, raw: dict) -> dict:
    """The share, offset and correlation tests, and the curves over K.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"grids", "curves", "shares", "arms", "protocol", "tests", "primary", "margin"}``:
      each kind's Ks;
      per kind and split, intervals of each of :data:`STATS` over K; each kind's interval of
      the share of the members' mean test Brier score that averaging ``members`` removes;
      both kinds' training (:func:`.protocol.arm_summary`) and the protocol; the tests of
      :meth:`Config.test_names` (each guarded, with its twin within 2W), the primary first;
      the primary's margin and its derivation (:func:`share_margin_of`), with the primary
      decided at the fixed cap too.
    """
    seeds = raw["diversity"]["seeds"]
    m = str(cfg.members)

    def col(kind, split, k, stat):
        return np.array([s[kind][split][str(k)][stat] for s in seeds])

    def share(kind, k=m):
        return col(kind, "test", k, "ambiguity") / col(kind, "test", k, "member")

    arms = raw["diversity"]["arms"]
    # the margin, from the validation split alone (no test number) and the fixed cap
    margin = share_margin_of(cfg, raw)

    def held(mg: float) -> dict:  # every test, each guarded by the arms it compares
        within, twice = _tests(cfg, seeds, mg), _tests(cfg, raw["diversity"]["seeds_2w"], mg)
        # a test on dropout's subnetworks alone is held by the dropout net's training alone
        return guarded(within, twice, arms, {"offset_dropout": {"dropout": arms["dropout"]}})

    tests = held(margin["value"])
    disclose(margin, held, cfg.primary)
    tests = primary_first(tests, cfg.primary)
    grids = {k: list(seeds[0][k]["test"]) for k in KINDS}  # str(K) keys
    curves = {
        kind: {
            split: {st: [ci(col(kind, split, k, st)) for k in grids[kind]] for st in STATS}
            for split in ("test", "train")
        }
        for kind in KINDS
    }
    shares = {kind: ci(share(kind)) for kind in KINDS}
    return {
        "grids": grids,
        "curves": curves,
        "shares": shares,
        "arms": {k: arm_summary(v) for k, v in arms.items()},
        "protocol": cfg.protocol.to_dict(),
        "tests": tests,
        "primary": cfg.primary,
        "margin": margin,
    }
