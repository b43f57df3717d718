"""Claim 2b: weight scaling approximates averaging the ensemble of 2^n subnetworks.

On trained dropout nets, the same weights are evaluated by weight scaling, by Monte-Carlo
averages over K sampled subnetworks (K = 1 ... 1000, several mask streams), and by the exact
arithmetic and normalised geometric means over all 2^n subnetworks (n <= 20 droppable units).

The nets:

* primary: Warde-Farley et al.'s set-up, 2x10 ReLU at keep 0.5 on binary digit pairs (the
  per-seed value is the mean over the pairs), >= 25 seeds;
* multiclass: nets on every class of the data set, 12 seeds (each seed's exact mean is a
  pass over 2^20 subnetworks x the whole test set);
* a stress case: nets too small for 10 classes at their drop rate, other activations and
  depths, 3 seeds, labelled as such;
* a wide net where only MC is possible (the 2014 paper's K* figure), 5 seeds.

The primary and multiclass nets train by the study's protocol (:mod:`.protocol`, stopped by
their ensemble, the MC average, on the validation split; on each pair task an arm of its
own), and their tests are held to it: inconclusive when an arm did not converge or the test
on the nets selected within 2W decides otherwise. The stress cases and the wide net keep a
fixed budget (``Config.train``): the stress cases are small by design and have no test that
the report counts, and the wide net only gives the MC curve's K*.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.data import Dataset
from dropstudy.metrics import accuracy, gaps, nll
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, seed_keys, take, train_seeds
from dropstudy.validate import DropstudyError

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    ci,
    primary_first,
    test_ex,
)
from .evaluate import Evaluator
from .protocol import (
    ENSEMBLE,
    QUICK_ENSEMBLE,
    TWICE,
    Protocol,
    arm_summary,
    guarded,
    split,
    train_arm,
)
from .seeds import study_seeds
from .stats import equivalence, paired

NAME = "averaging"
CLAIM = "Weight scaling approximates the average of the 2^n subnetworks that dropout trains."
ROLES = ("primary", "multiclass", "stress", "wide")
# The roles trained by the protocol; the others keep the fixed budget ``Config.train``.
PROTOCOL_ROLES = ("primary", "multiclass")
# Warde-Farley et al.'s binary tasks: the three digit pairs whose training-set class means
# are closest (most alike, so the nets make errors to compare); closest_pairs() computes
# them (a test checks this constant against it), and on other data sets plan() takes that
# data set's own closest pairs.
PAIRS = ((1, 8), (3, 9), (8, 9))
MEANS = {"A": "exact arithmetic mean", "G": "exact normalised geometric mean"}  # by test tag


def closest_pairs(ds: Dataset, n: int) -> tuple[tuple[int, int], ...]:
    """The ``n`` class pairs whose training-set mean inputs are nearest (Euclidean).

    Uses the training set only.

    Args:
      ds: the data set.
      n: how many pairs to return.

    Returns:
      ``n`` pairs ``(a, b)`` with ``a < b``, nearest first.
    """
    means = np.stack([ds.x_train[ds.y_train == c].mean(0) for c in range(ds.n_classes)])
    pairs = [(a, b) for a in range(ds.n_classes) for b in range(a + 1, ds.n_classes)]
    pairs.sort(key=lambda ab: float(np.linalg.norm(means[ab[0]] - means[ab[1]])))
    return tuple(pairs[:n])


@dataclass(frozen=True)
class Net:
    """One network of the study: hidden widths, activation, drop rate, the tasks it is
    trained on (``()``: every class; else one binary task per pair, the per-seed value the
    mean over them), its role (one of ``ROLES``) and whether its subnetworks are few enough
    to enumerate exactly."""

    tag: str
    hidden: tuple[int, ...]
    activation: str = "relu"
    rate: float = 0.5
    role: str = "stress"
    tasks: tuple[tuple[int, ...], ...] = ()
    exact: bool = True
    input_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise DropstudyError(
                f"net {self.tag!r}: role must be one of {ROLES}, got {self.role!r}"
            )
        if self.role == "wide" and self.exact:
            raise DropstudyError(
                f"net {self.tag!r}: the wide net is the MC-only one (its K* alone): give it "
                "exact=False, or another role"
            )
        if self.tasks and self.role == "multiclass":
            raise DropstudyError(
                f"net {self.tag!r}: a multiclass net trains on every class, so it takes no "
                f"pair tasks (got {self.tasks}); give it role='stress' or 'primary'"
            )

    def to_dict(self) -> dict:
        """The net's fields as a JSON-able dict, tuples as lists.

        Returns:
          ``{"tag", "hidden", "activation", "rate", "role", "tasks", "exact", "input_rate"}``.
        """
        return {"tag": self.tag, "hidden": list(self.hidden), "activation": self.activation,
                "rate": self.rate, "role": self.role, "tasks": [list(t) for t in self.tasks],
                "exact": self.exact, "input_rate": self.input_rate}  # fmt: skip


NETS = (
    Net("relu 2x10, drop 0.5, digit pairs", (10, 10), role="primary", tasks=PAIRS),
    Net("relu 1x20, drop 0.5", (20,), role="multiclass"),
    Net("relu 2x10, drop 0.2", (10, 10), rate=0.2, role="multiclass"),
    *(Net(f"relu 2x10, drop {r}", (10, 10), rate=r) for r in (0.5, 0.8)),
    *(Net(f"{a} 2x10, drop 0.5", (10, 10), a) for a in ("tanh", "sigmoid", "linear")),
    Net("relu 3x(7,7,6), drop 0.5", (7, 7, 6)),
    # Srivastava et al.'s setting for their K* figure: input keep 0.8, hidden keep 0.5.
    Net(
        "relu 2x512, input drop 0.2, drop 0.5 (MC only)",
        (512, 512),
        role="wide",
        exact=False,
        input_rate=0.2,
    ),
)
QUICK_NETS = (
    Net("relu 2x6, drop 0.5, digit pairs", (6, 6), role="primary", tasks=PAIRS[:1]),
    Net("relu 1x8, drop 0.5", (8,), role="multiclass"),
    Net(
        "relu 2x64, input drop 0.2, drop 0.5 (MC only)",
        (64, 64),
        role="wide",
        exact=False,
        input_rate=0.2,
    ),
)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the averaging experiment."""

    seeds: int = 25  # the primary net (exact on its digit pairs' small test sets)
    multiclass_seeds: int = 12  # exact over 2^20 on the whole test set per seed
    stress_seeds: int = 3  # stress cases
    wide_seeds: int = 5  # the wide MC-only net (Srivastava et al.'s setting)
    nets: tuple[Net, ...] = NETS
    # The primary and multiclass nets: each stopped by its ensemble (the MC average of the
    # protocol's fixed subnetworks), the claim being about that ensemble.
    protocol: Protocol = ENSEMBLE
    # The stress cases and the wide net: a fixed budget (see the module's docstring).
    train: TrainConfig = TrainConfig(steps=3000, batch_size=128, lr=3e-3)
    ks: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    mc_keys: int = 3  # independent MC streams per exact-enumerable net (1 for MC-only nets)
    # Margins fixed before the run: 1 percentage point of test error, 0.02 nats of NLL. A
    # margin derived from the data (a share of what averaging gains over one subnetwork on
    # the validation split) was tried and dropped: it grows with the subnetworks'
    # disagreement, the very thing that pulls weight scaling away from the exact mean, so it
    # would be widest where the approximation is worst. That gain is reported beside the
    # tests instead, as the scale a reader can judge the margins by.
    margin: float = 0.01
    nll_margin: float = 0.02
    scale_k: int = 1000  # sampled subnetworks whose mean scores stand for the mean subnetwork
    k_delta: float = 0.001  # K*: the smallest K with MC error <= WS error + k_delta
    bootstrap: int = 1000  # resamples of seeds for K*'s interval
    primary: str = "primary err WS-A"
    mc_k: int = MC_K  # subnetworks in the MC average of each dropout net
    QUICK: ClassVar[dict] = {
        "seeds": 3,
        "multiclass_seeds": 3,
        "stress_seeds": 2,
        "wide_seeds": 2,
        "nets": QUICK_NETS,
        "train": train.replace(steps=300),
        "protocol": QUICK_ENSEMBLE,
        "scale_k": 100,
        "mc_keys": 2,
        "ks": (1, 10, 100, 1000),
    }

    def with_seeds(self, n: int):
        """The same configuration with ``n`` seeds for every role.

        Args:
          n: the seed count for ``seeds``, ``multiclass_seeds``, ``stress_seeds`` and
            ``wide_seeds``.

        Returns:
          A new ``Config``.
        """
        return replace(self, seeds=n, multiclass_seeds=n, stress_seeds=n, wide_seeds=n)

    def seeds_of(self, net: Net) -> int:
        """The number of seeds ``net`` is trained with, by its role.

        Args:
          net: a net of the study.

        Returns:
          ``seeds`` for the primary net, ``multiclass_seeds`` for a multiclass net,
          ``wide_seeds`` for the wide net, else ``stress_seeds``.
        """
        return {
            "primary": self.seeds, "multiclass": self.multiclass_seeds, "wide": self.wide_seeds
        }.get(net.role, self.stress_seeds)  # fmt: skip

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names, from the roles and tags of the exact ``nets``.

        Returns:
          Per exact-enumerable net: the primary's weight scaling against both exact means in
          error and NLL and its MC average against the arithmetic one; a multiclass net,
          error and NLL against the arithmetic mean; a stress case, error only (tagged). A
          test of a net on the protocol is followed by its twin within 2W.
        """
        names = []
        for n in (n for n in self.nets if n.exact):
            if n.role == "primary":
                own = [f"primary {m} WS-{g}" for g in "AG" for m in ("err", "nll")]
                own.append("primary err MC-A")
            else:
                metrics = ("err", "nll") if n.role == "multiclass" else ("err",)
                own = [f"{n.role} {m} WS-A {n.tag}" for m in metrics]
            twins = n.role in PROTOCOL_ROLES
            names += [t for name in own for t in ((name, name + TWICE) if twins else (name,))]
        return tuple(names)


def bounds(ws, ex) -> dict:
    """Where weight scaling sits relative to the exact means, entry by entry ``(B, C)``.

    Args:
      ws: weight scaling's probabilities ``(B, C)``.
      ex: the exact :class:`~dropstudy.average.Average`, with ``(B, C)`` means.

    Returns:
      ``{"frac_g_le_nwgm_le_a", "frac_ws_between_nwgm_and_a"}``: the fraction of entries
      where the unnormalised geometric mean <= the normalised one (NWGM) <= the arithmetic
      mean, and the fraction where weight scaling lies between the NWGM and the arithmetic
      mean, both to a relative tolerance of 1e-4.
    """
    g = np.exp(np.asarray(ex.log_geometric, np.float64))
    nwgm = np.asarray(ex.geometric, np.float64)
    a = np.asarray(ex.arithmetic, np.float64)
    ws = np.asarray(ws, np.float64)
    # Relative: G <= NWGM holds exactly, but float32 sums of logits near 100 leave ~1e-5 of
    # rounding in E[log p] (any method, the generic one too), and an absolute 1e-6 made
    # where G meets NWGM a matter of rounding.
    tol = 1e-4
    lo, hi = np.minimum(nwgm, a), np.maximum(nwgm, a)
    return {
        "frac_g_le_nwgm_le_a": float(np.mean((g <= nwgm * (1 + tol)) & (nwgm <= a * (1 + tol)))),
        "frac_ws_between_nwgm_and_a": float(
            np.mean((ws >= lo * (1 - tol)) & (ws <= hi * (1 + tol)))
        ),
    }


def _model(net: Net, ds: Dataset) -> MLP:
    """``net``'s MLP for ``ds``'s classes."""
    return MLP(
        hidden=net.hidden, n_out=ds.n_classes, activation=net.activation, rate=net.rate,
        input_rate=net.input_rate,
    )  # fmt: skip


def _rows(
    model: MLP,
    variables,
    ds: Dataset,
    exact: bool,
    ks: list,
    mc_keys: int,
    seeds: list,
    ev: Evaluator,
) -> list[dict]:
    """Per-seed measurements of trained ``variables`` (leading seed axis) on ``ds``'s test set,
    and train errors on ``ds``'s training set (MC keys and the MC average from ``ev``)."""
    x, y = ds.x_test, ds.y_test
    rows = []
    for i, s in enumerate(seeds):
        v = take(variables, i)
        tr = ev.sub("train").predict(model, v, ds.x_train, s)
        test = ev.predict(model, v, x, s, ("ws", "exact") if exact else ("ws",))
        ws = np.asarray(test["ws"].arithmetic)
        row = {
            "ws": {"err": 1 - accuracy(ws, y), "nll": nll(ws, y)},
            "train_err": {k: 1 - accuracy(a.arithmetic, ds.y_train) for k, a in tr.items()},
        }
        if exact:
            ex = test["exact"]
            for name, q in (("exact_a", ex.arithmetic), ("exact_g", ex.geometric)):
                row[name] = {"err": 1 - accuracy(q, y), "nll": nll(q, y)}
            row["bounds"] = bounds(ws, ex)
            row["gap_ws_vs_exact_a"] = gaps(ws, ex.arithmetic)
            row["gap_ws_vs_exact_g"] = gaps(ws, ex.geometric)
            row["gap_exact_g_vs_exact_a"] = gaps(ex.geometric, ex.arithmetic)
        curves = {"a_err": [], "a_nll": [], "g_err": [], "g_nll": []}
        last = []  # per key: each test example's error and NLL at the largest K
        for j in range(mc_keys if exact else 1):
            key = jax.random.fold_in(ev.key(s, "mc_curve"), j)
            cur = P.mc_curve(model, v, x, key=key, ks=ks)
            last.append(test_ex(cur[ks[-1]].arithmetic, y))
            curves["a_err"].append([1 - accuracy(cur[k].arithmetic, y) for k in ks])
            curves["a_nll"].append([nll(cur[k].arithmetic, y) for k in ks])
            curves["g_err"].append([1 - accuracy(cur[k].geometric, y) for k in ks])
            curves["g_nll"].append([nll(cur[k].geometric, y) for k in ks])
        row["mc"] = {k: np.mean(v, axis=0).tolist() for k, v in curves.items()}
        last_k = {m: np.mean([e[m] for e in last], axis=0).tolist() for m in ("nll", "err")}
        if exact:  # per test example, for the tests' intervals over both noises
            ex = test["exact"]
            row["ex"] = {"ws": test_ex(ws, y), "exact_a": test_ex(ex.arithmetic, y),
                         "exact_g": test_ex(ex.geometric, y), "mc_a": last_k}  # fmt: skip
        rows.append(row)
    return rows


@partial(jax.jit, static_argnums=0)
def subnetwork_logits(model: MLP, variables, x: jax.Array, masks) -> jax.Array:
    """Each subnetwork's logits ``(K, N, C)``, for masks with a leading K axis."""
    return jax.vmap(lambda m: M.apply(model, variables, x, m))(masks)


def validation_gain(model: MLP, variables, x, y, seeds: list, ev: Evaluator, k: int) -> list[dict]:
    """Per seed, what averaging does on ``(x, y)``: the exact arithmetic mean's error and NLL,
    and the mean over ``k`` sampled subnetworks of each one's own error and NLL.

    Args:
      model: the net.
      variables: its variables, leading seed axis.
      x: inputs ``(N, ...)`` (the validation split).
      y: labels ``(N,)``.
      seeds: the seeds.
      ev: the evaluator (its exact average, and the key of the sampled subnetworks).
      k: how many subnetworks.

    Returns:
      Per seed ``{"exact": {"err", "nll"}, "subnetwork": {"err", "nll"}}``.
    """
    spec = M.mask_spec(model, jnp.asarray(x[:1]))
    out = []
    for i, s in enumerate(seeds):
        v = take(variables, i)
        ex = ev.predict(model, v, x, s, ("exact",))["exact"].arithmetic
        masks = M.sample_mask_batch(spec, ev.key(s, "margin"), jnp.arange(k))
        logits = subnetwork_logits(model, v, jnp.asarray(x), masks)
        probs = np.asarray(jax.nn.softmax(logits, axis=-1), np.float64)  # (k, N, C)
        sub = {"err": float(np.mean([1 - accuracy(p, y) for p in probs])),
               "nll": float(np.mean([nll(p, y) for p in probs]))}  # fmt: skip
        out.append({"exact": {"err": 1 - accuracy(ex, y), "nll": nll(ex, y)}, "subnetwork": sub})
    return out


def _mean_rows(per_task: list[list[dict]]) -> list[dict]:
    """Per seed, every number averaged over the tasks (a nested dict of floats and lists).

    The per-example values (``"ex"``) are concatenated over the tasks instead, each task's
    scaled by ``N / (T * N_t)`` (N examples in all, T tasks, N_t in this task's test set), so
    that their plain mean is the mean over tasks of the tasks' means, as every other number.
    """

    def mean(*xs):
        if isinstance(xs[0], dict):
            return {k: mean(*(x[k] for x in xs)) for k in xs[0]}
        return np.mean(np.asarray(xs, np.float64), axis=0).tolist()

    def concat(*xs):
        if isinstance(xs[0], dict):
            return {k: concat(*(x[k] for x in xs)) for k in xs[0]}
        total = sum(len(x) for x in xs)
        return np.concatenate([np.asarray(x) * total / (len(xs) * len(x)) for x in xs]).tolist()

    out = []
    for rows in zip(*per_task, strict=True):
        row = mean(*({k: v for k, v in r.items() if k != "ex"} for r in rows))
        if "ex" in rows[0]:
            row["ex"] = concat(*(r["ex"] for r in rows))
        out.append(row)
    return out


def net_cell(
    ds: Dataset,
    net: Net,
    how: Protocol | TrainConfig,
    ks: list,
    mc_keys: int,
    seeds: list,
    ev: Evaluator,
    scale_k: int | None = None,
):
    """Weight scaling, MC curves and (when enumerable) exact means of ``net`` per seed.

    Measured on ``ds`` itself, or on each of its binary ``net.tasks`` (then averaged per
    seed); the MC keys come from ``ev``, the same for every task. A net trained by the
    protocol is measured twice, on its variables selected within ``W`` and within ``2W``.

    Args:
      ds: the data set.
      net: the network, its role and tasks.
      how: a :class:`.protocol.Protocol` (each task an arm of its own: tuned on the
        validation split, trained on the other 80%, each seed stopped in the run), or a
        ``TrainConfig`` (a fixed budget on the whole training set).
      ks: the numbers of subnetworks K of the MC curves.
      mc_keys: independent MC streams per seed for an exact-enumerable net (one otherwise);
        the curves are their mean.
      seeds: the seeds, trained together.
      ev: the evaluator: MC keys and the MC average on the training set.
      scale_k: with a protocol and an exact-enumerable net, the sampled subnetworks of
        :func:`validation_gain` on the validation split (the scale of the margins); refused
        otherwise.

    Returns:
      ``{"config": net.to_dict(), "tasks": [data set names], "seeds": [row per seed]}``,
      and with a protocol ``"seeds_2w"`` (the rows within ``2W``), ``"arms"`` (``{task
      name: record}``, :func:`.protocol.train_arm`) and ``"validation"`` (per seed, mean over
      the tasks, :func:`validation_gain` of the nets selected within ``W``, for an exact-enumerable
      net). A row holds ``"ws"`` (test ``"err"`` and
      ``"nll"``), ``"train_err"`` (per predictor, ``ws`` and ``mc``, on the examples trained
      on) and ``"mc"`` (``"a_err"``, ``"a_nll"``, ``"g_err"``, ``"g_nll"``, each a list over
      ``ks``); for an exact-enumerable net also ``"exact_a"`` and ``"exact_g"`` (``"err"``
      and ``"nll"``), ``"bounds"`` (see :func:`bounds`), the
      :func:`~dropstudy.metrics.gaps` ``"gap_ws_vs_exact_a"``, ``"gap_ws_vs_exact_g"`` and
      ``"gap_exact_g_vs_exact_a"``, and ``"ex"`` (per test example, for the tests).
    """
    if (scale_k is not None) != (isinstance(how, Protocol) and net.exact):
        raise DropstudyError(
            f"net {net.tag!r}: scale_k measures a net on the protocol with exact means on its "
            "validation split; give it for such a net only"
        )
    tasks = [ds.classes(*t) for t in net.tasks] or [ds]
    out = {"config": net.to_dict(), "tasks": [d.name for d in tasks]}
    measure = lambda model, v, d: _rows(model, v, d, net.exact, ks, mc_keys, seeds, ev)  # noqa: E731
    if isinstance(how, TrainConfig):
        per_task = []
        for d in tasks:
            model = _model(net, d)
            variables, _ = train_seeds(
                model, seed_keys(seeds), d.x_train, d.y_train, how, seeds=seeds
            )
            per_task.append(measure(model, variables, d))
        return out | {"seeds": _mean_rows(per_task)}
    within_w, within_2w, arms, val = [], [], {}, []
    for d in tasks:
        model = _model(net, d)
        arm = train_arm(d, model, how, seeds)
        fit, (xv, yv) = split(d)  # train errors on the 80% trained on
        arms[d.name] = arm.record
        within_w.append(measure(model, arm.within_w, fit))
        within_2w.append(measure(model, arm.within_2w, fit))
        if net.exact:
            ev_val = ev.sub("validation")
            val.append(validation_gain(model, arm.within_w, xv, yv, seeds, ev_val, scale_k))
    out |= {"seeds": _mean_rows(within_w), "seeds_2w": _mean_rows(within_2w), "arms": arms}
    return out | ({"validation": _mean_rows(val)} if val else {})


def k_star(ws_err, mc_err, ks, delta: float) -> int | None:
    """The smallest K whose mean MC error over seeds is at most the mean WS error plus ``delta``.

    Args:
      ws_err: weight scaling's error per seed ``(S,)``.
      mc_err: the MC average's error per seed and K ``(S, len(ks))``.
      ks: the numbers of subnetworks K, increasing.
      delta: the tolerance added to the mean weight-scaling error.

    Returns:
      That K, or None when no K up to the largest does.
    """
    hit = np.flatnonzero(np.mean(mc_err, axis=0) <= np.mean(ws_err) + delta)
    return int(ks[hit[0]]) if hit.size else None


def k_star_interval(ws_err, mc_err, ks, delta: float, n_boot: int, seed: int = 0) -> dict:
    """K* and its 95% percentile bootstrap interval over seeds.

    Args:
      ws_err: weight scaling's error per seed ``(S,)``.
      mc_err: the MC average's error per seed and K ``(S, len(ks))``.
      ks: the numbers of subnetworks K, increasing.
      delta: the tolerance of :func:`k_star`.
      n_boot: bootstrap resamples of the seeds.
      seed: the seed of the resampling.

    Returns:
      ``{"k", "lo", "hi"}``: :func:`k_star` on every seed and the interval's ends; each is
      None when beyond the largest K.
    """
    ws_err, mc_err = np.asarray(ws_err), np.asarray(mc_err)
    rng = np.random.default_rng(seed)
    big = ks[-1] * 10  # stands for "> K_max" while sorting
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(ws_err), len(ws_err))
        k = k_star(ws_err[i], mc_err[i], ks, delta)
        boots.append(big if k is None else k)
    lo, hi = np.percentile(boots, [2.5, 97.5], method="nearest")
    as_k = lambda k: None if k >= big else int(k)  # noqa: E731
    return {"k": k_star(ws_err, mc_err, ks, delta), "lo": as_k(lo), "hi": as_k(hi)}


def _summary(cfg: Config, cell: dict) -> dict:
    rows, ks = cell["seeds"], list(cfg.ks)
    out = {"config": cell["config"], "tasks": cell["tasks"], "n_seeds": len(rows)}
    if "arms" in cell:
        out["arms"] = {task: arm_summary(rec) for task, rec in cell["arms"].items()}
    for name in ("ws", "exact_a", "exact_g"):
        if name in rows[0]:
            out[name] = {m: ci([r[name][m] for r in rows]) for m in ("err", "nll")}
    out["train_err"] = {k: ci([r["train_err"][k] for r in rows]) for k in ("ws", "mc")}
    out["mc"] = {
        m: [ci([r["mc"][m][i] for r in rows]) for i in range(len(ks))]
        for m in ("a_err", "a_nll", "g_err", "g_nll")
    }
    out["k_star"] = k_star_interval(
        [r["ws"]["err"] for r in rows],
        [r["mc"]["a_err"] for r in rows],
        ks,
        cfg.k_delta,
        cfg.bootstrap,
    )
    if "exact_a" in out:
        for m in ("err", "nll"):
            out[f"{m}_ws_minus_exact_a"] = paired(
                *([r[k][m] for r in rows] for k in ("ws", "exact_a"))
            )
        for k in rows[0]["bounds"]:
            out[k] = ci([r["bounds"][k] for r in rows])
        for g in ("gap_ws_vs_exact_a", "gap_ws_vs_exact_g", "gap_exact_g_vs_exact_a"):
            out[g] = {m: ci([r[g][m] for r in rows]) for m in rows[0][g]}
    return out


def _diff(rows, a: str, b: str, metric: str) -> np.ndarray:
    """``a`` minus ``b`` per seed and test example ``(S, N)``, from the rows' ``"ex"``."""
    return np.array([r["ex"][a][metric] for r in rows]) - np.array(
        [r["ex"][b][metric] for r in rows]
    )


def validation_scale(cell: dict) -> dict | None:
    """What averaging does on a net's validation split: the scale its margins are read by.

    Args:
      cell: the net's cell (:func:`net_cell`); its ``"validation"`` rows, when it has them.

    Returns:
      None for a net without them (a fixed budget, or MC only); else per metric (``"err"``,
      ``"nll"``) ``{"exact", "subnetwork", "gain"}``: the means over seeds (and pair tasks)
      of the exact arithmetic mean's score and the mean subnetwork's, and the gain
      (subnetwork minus exact).
    """
    if "validation" not in cell:
        return None
    rows, out = cell["validation"], {}
    for m in ("err", "nll"):
        exact = float(np.mean([r["exact"][m] for r in rows]))
        sub = float(np.mean([r["subnetwork"][m] for r in rows]))
        out[m] = {"exact": exact, "subnetwork": sub, "gain": sub - exact}
    return out


def net_tests(cfg: Config, net: Net, rows: list[dict]) -> dict:
    """The equivalence tests of one exact-enumerable net, keyed ``"<role> <what>"``."""
    label = net.role
    where = net.tag + (", a stress case at a fixed budget" if net.role == "stress" else "")
    err_m, nll_m = cfg.margin, cfg.nll_margin
    t = {}
    specs = [("err", "exact_a", err_m, "A"), ("nll", "exact_a", nll_m, "A")]
    if net.role == "primary":
        specs += [("err", "exact_g", err_m, "G"), ("nll", "exact_g", nll_m, "G")]
    elif net.role == "stress":
        specs = specs[:1]
    for metric, ref, margin, short in specs:
        what = "test error" if metric == "err" else "test NLL"
        t[f"{label} {metric} WS-{short}" + ("" if net.role == "primary" else f" {net.tag}")] = (
            equivalence(
                _diff(rows, "ws", ref, metric),
                margin,
                what=f"{what}, weight scaling minus the {MEANS[short]} ({where})",
                predictor="ws",
            )
        )
    if net.role == "primary":
        t["primary err MC-A"] = equivalence(
            _diff(rows, "mc_a", "exact_a", "err"),
            err_m,
            what=f"test error, MC average minus the exact arithmetic mean ({where})",
            predictor="mc",
            predictor_label=f"MC average, K = {cfg.ks[-1]}",  # the curve's last K
        )
    return t


def on_data(net: Net, ds: Dataset) -> Net:
    """``net`` with its pair tasks chosen on ``ds``.

    Args:
      net: a net of the study.
      ds: the data set.

    Returns:
      ``net`` unchanged when it has no tasks, else with as many tasks, the closest pairs of
      ``ds``'s own training set (:func:`closest_pairs`; for digits, :data:`PAIRS`).
    """
    if not net.tasks:
        return net
    return replace(net, tasks=closest_pairs(ds, len(net.tasks)))


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: one :func:`net_cell` per net.

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{"net=<tag>": Cell}`` for each net of ``cfg.nets``, its pair tasks chosen on ``ds``
      (:func:`on_data`), its seeds by role (:meth:`Config.seeds_of`), trained by
      ``cfg.protocol`` when its role is one of :data:`PROTOCOL_ROLES`, else by ``cfg.train``.
    """
    return {
        f"net={n.tag}": cell(
            net_cell,
            ds=ds,
            net=on_data(n, ds),
            how=cfg.protocol if n.role in PROTOCOL_ROLES else cfg.train,
            **({"scale_k": cfg.scale_k} if n.role in PROTOCOL_ROLES and n.exact else {}),
            ks=list(cfg.ks),
            mc_keys=cfg.mc_keys,
            ev=Evaluator((NAME, f"net={n.tag}"), cfg.mc_k),
            seeds=study_seeds(cfg.seeds_of(n)),
        )
        for n in cfg.nets
    }


def summarise(cfg: Config, raw: dict) -> dict:
    """Intervals over seeds, K* and the equivalence tests of every net.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"ks", "nets", "protocol", "tests", "primary"}``: ``nets`` maps each
      tag to its intervals over seeds (test and train errors, NLL, MC curves, K*, for a net
      on the protocol its arms' training (:func:`.protocol.arm_summary`, per task), and for
      an exact-enumerable net the paired differences, bounds and gaps); ``tests`` holds the
      equivalence tests of the exact-enumerable nets (:meth:`Config.test_names`, the
      primary first), those of a net on the protocol guarded by its arms and followed by
      their twins within 2W, at the config's margins (each net's validation scale,
      :func:`validation_scale`, in ``nets``).

    Raises:
      ValueError: if ``cfg.primary`` is not one of the tests.
    """
    summaries, tests = {}, {}
    for n in cfg.nets:
        c = raw[f"net={n.tag}"]
        summaries[n.tag] = _summary(cfg, c)
        if not n.exact:
            continue
        summaries[n.tag]["validation"] = validation_scale(c)
        own = net_tests(cfg, n, c["seeds"])
        if "arms" in c:
            records = {f"{n.tag} [{task}]": rec for task, rec in c["arms"].items()}
            own = guarded(own, net_tests(cfg, n, c["seeds_2w"]), records)
        tests.update(own)
    if cfg.primary not in tests:
        raise ValueError(f"primary test {cfg.primary!r} is not one of {sorted(tests)}")
    return {
        "ks": list(cfg.ks),
        "nets": summaries,
        "protocol": cfg.protocol.to_dict(),
        "tests": primary_first(tests, cfg.primary),
        "primary": cfg.primary,
    }
