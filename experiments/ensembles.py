"""Claim 2a: training with dropout trains many networks, and is equivalent to averaging them.

The claim is an equivalence: dropout's average should do as well as an explicit average of
independently trained nets, at the same training compute. Every arm sees the same data split
per seed and costs the same number of example-gradient evaluations (``steps x batch_size``):
a single net trains ``steps`` steps, each of an ensemble's K members ``steps / K`` steps at the
same batch size. The arms, and the question each answers:

* ``plain``: one net without dropout (the dropout architecture at its expected mask, which
  is the plain net), same initialisation and minibatch order as the dropout net. Does
  dropout's average cancel overfitting? (plain minus dropout)
* ``dropout``: one dropout net, judged by weight scaling and by its MC average (K = MC_K).
* ``independent``: K plain nets, own initialisations and minibatch orders, probabilities
  averaged. Is dropout equivalent to the explicit ensemble? (the primary test)
* ``bagging``: dropout bagging as Warde-Farley et al. (2014) ran it: K masked subnetworks with
  untied weights. Member j keeps mask j (drawn at the dropout rate) throughout, and starts from
  the dropout net's initialisation and minibatch order (whole training set, no bootstrap).
  Does dropout beat its own subnetworks trained without weight sharing? (their finding: yes)
* ``fixed_shared``: the same K masks cycled step by step on one set of tied weights, from the
  same initialisation and minibatch stream. Against ``bagging`` only the weight sharing
  differs: given the same K subnetworks, does tying their weights help?
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
from dropstudy.metrics import scores
from dropstudy.models import MLP
from dropstudy.train import (
    TrainConfig,
    seed_keys,
    take,
    train_seeds,
)
from dropstudy.validate import DropstudyError

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    ci,
    ci_str,
    flips,
    mlp_str,
    plt,
    predictions,
    primary_first,
    table,
    train_str,
)
from .stats import direction, equivalence

NAME = "ensembles"
CLAIM = (
    "Training with dropout trains many different networks and is equivalent to "
    "averaging them, which cancels their overfitting."
)
# Rows of the tables: one per arm and predictor, plus the mean single member of each ensemble.
ROWS = (
    "plain",
    "dropout_ws",
    "dropout_mc",
    "independent",
    "independent_member",
    "bagging",
    "bagging_member",
    "fixed_shared",
)
METRICS = ("accuracy", "nll", "ece", "brier")


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes, hyperparameters and the equivalence margins (fixed before the run)."""

    # 10 seeds (vmapped): the direction tests' detectable effects at 5 seeds were larger
    # than the effects in question, and 10 fit the time budget.
    seeds: int = 10
    width: int = 64
    rate: float = 0.5
    k: int = 5  # ensemble members; each trains train.steps // k steps (must divide)
    train: TrainConfig = TrainConfig(steps=3000, batch_size=128, lr=2e-3)
    # Equivalence margin on test NLL (nats per example), chosen before any run: a mean log
    # likelihood within 0.02 nats means the two predictors give the true label probabilities
    # within a factor exp(0.02) ~ 1.02 of each other (a geometric mean over examples), a gap
    # too small to choose one method over the other by.
    margin_nll: float = 0.02
    # Equivalence margin on test error (fraction): 0.5 pp, under two of the 360 test digits.
    margin_err: float = 0.005
    primary: str = "nll_equiv_mc"
    QUICK: ClassVar[dict] = {"seeds": 2, "width": 32, "k": 3, "train": train.replace(steps=150)}


def _member_keys(seeds: list[int], k: int) -> jax.Array:
    """K member keys per seed, ``(S * K,)``: member j of seed s is ``fold_in(key(s), 100 + j)``."""
    return jnp.stack(
        [jax.random.fold_in(jax.random.key(s), 100 + j) for s in seeds for j in range(k)]
    )


def fixed_masks(spec: M.MaskSpec, seeds: list[int], k: int) -> jax.Array:
    """The K subnetworks of each seed's bagging and fixed-mask arms, flat ``(S, K, n_units)``:
    mask j of seed s is ``sample_masks(spec, fold_in(fold_in(key(s), 99), j))``."""
    keys = jnp.stack([jax.random.fold_in(jax.random.key(s), 99) for s in seeds])
    return _draw(spec, k, keys)


@partial(jax.jit, static_argnames=("spec", "k"))
def _draw(spec: M.MaskSpec, k: int, keys: jax.Array) -> jax.Array:
    return jax.vmap(lambda key: spec.flatten(M.sample_mask_batch(spec, key, jnp.arange(k))))(keys)


def expected(spec: M.MaskSpec, lead: tuple[int, ...]) -> jax.Array:
    """Every unit at its keep probability, flat ``(*lead, n_units)``. Under the inverted
    convention a layer multiplies by mask / keep = 1, so the dropout architecture under this
    mask computes the plain net (same function and gradients, to float rounding): plain nets
    then train in the same compiled program as masked ones (one compile, not two)."""
    return jnp.broadcast_to(jnp.asarray(spec.keep, jnp.float32), (*lead, spec.n_units))


@partial(jax.jit, static_argnames=("model", "spec"))
def run_probs(model: MLP, spec: M.MaskSpec, variables, x, masks) -> jax.Array:
    """Class probabilities of R runs, each under M subnetworks: ``variables`` stacked
    ``(R, ...)``, ``x (B, d)``, flat ``masks (R, M, n_units)`` -> ``(R, M, B, C)``."""
    one = lambda v, m: jax.nn.softmax(M.apply(model, v, x, spec.unflatten(m)))  # noqa: E731
    return jax.vmap(lambda v, ms: jax.vmap(lambda m: one(v, m))(ms))(variables, masks)


def _scores(probs_test, probs_train, ds: Dataset) -> dict:
    """``{"test": scores, "train": scores}`` of class probabilities ``(B, C)``."""
    return {"test": scores(probs_test, ds.y_test), "train": scores(probs_train, ds.y_train)}


def _rows(name: str, probs: dict, ds: Dataset, members: bool = False) -> dict[str, list]:
    """Per-seed scores of ensembles ``probs = {"test": (S, K, B, C), "train": ...}`` averaged
    over K (the arithmetic mean of probabilities): ``{name: [per seed {"test", "train"}]}``;
    with ``members`` also ``{name}_member``: the K members' scores, averaged."""
    te, tr = np.asarray(probs["test"]), np.asarray(probs["train"])
    out = {name: [_scores(te[i].mean(0), tr[i].mean(0), ds) for i in range(len(te))]}
    if members:
        out[f"{name}_member"] = []
        for i in range(len(te)):
            each = [_scores(te[i, j], tr[i, j], ds) for j in range(te.shape[1])]
            out[f"{name}_member"].append(
                {
                    sp: {m: float(np.mean([e[sp][m] for e in each])) for m in METRICS}
                    for sp in each[0]
                }
            )
    return out


def _both(ds: Dataset) -> jax.Array:
    """Test and training inputs in one batch ``(N_test + N_train, d)``: one compile, not two."""
    return jnp.concatenate([jnp.asarray(ds.x_test), jnp.asarray(ds.x_train)])


def _split(probs, ds: Dataset) -> dict:
    """Probabilities over :func:`_both`'s batch (batch axis -2) -> ``{"test", "train"}``."""
    n = len(ds.x_test)
    return {"test": probs[..., :n, :], "train": probs[..., n:, :]}


def _eval(model: MLP, spec, variables, masks, ds: Dataset, s_n: int) -> dict:
    """``run_probs`` on the test and the training set, each ``(S, R / S * M, B, C)``."""
    probs = run_probs(model, spec, variables, _both(ds), masks)
    return _split(probs.reshape(s_n, -1, *probs.shape[2:]), ds)


def dropout_cell(ds: Dataset, drop: MLP, cfg: TrainConfig, seeds: list[int]) -> dict:
    """One dropout net per seed, ``cfg.steps`` steps, by weight scaling and by its MC average
    (K = MC_K): ``{"dropout_ws": [per seed {"test", "train"} scores], "dropout_mc": [...]}``."""
    variables, _ = train_seeds(drop, seed_keys(seeds), ds.x_train, ds.y_train, cfg, seeds=seeds)
    out = {"dropout_ws": [], "dropout_mc": []}
    for i, s in enumerate(seeds):
        v, key = take(variables, i), jax.random.key(7000 + s)
        # The same MC subnetworks on the test and the training set.
        for p, avg in predictions(drop, v, _both(ds), key=key).items():
            probs = _split(avg.arithmetic, ds)
            out[f"dropout_{p}"].append(_scores(probs["test"], probs["train"], ds))
    return out


def tied_cell(ds: Dataset, drop: MLP, cfg: TrainConfig, k: int, seeds: list[int]) -> dict:
    """Per seed, from the dropout net's initialisation and minibatch order, ``cfg.steps``
    steps each, trained together: the plain net (the expected mask) and the fixed-mask
    ensemble (K masks cycled on one set of weights): ``{"plain": [...], "fixed_shared":
    [...]}`` (per seed ``{"test", "train"}`` scores)."""
    spec, s_n = M.mask_spec(drop, ds.x_train), len(seeds)
    fixed = fixed_masks(spec, seeds, k)
    masks = jnp.concatenate([expected(spec, (s_n, k)), fixed])  # (2S, K, n_units)
    variables, _ = train_seeds(
        drop,
        jnp.concatenate([seed_keys(seeds)] * 2),
        ds.x_train,
        ds.y_train,
        cfg.replace(mask_mode="cycle"),
        cycle_masks=masks,
        seeds=seeds * 2,
    )
    half = lambda i: jax.tree.map(lambda a: a[i * s_n : (i + 1) * s_n], variables)  # noqa: E731
    return {
        **_rows("plain", _eval(drop, spec, half(0), masks[:s_n, :1], ds, s_n), ds),
        **_rows("fixed_shared", _eval(drop, spec, half(1), fixed, ds, s_n), ds),
    }


def members_cell(ds: Dataset, drop: MLP, cfg: TrainConfig, k: int, seeds: list[int]) -> dict:
    """K members per seed, ``cfg.steps // k`` steps each, trained together: the independent
    ensemble (plain nets; member j of seed s with its own initialisation and minibatch order
    from ``fold_in(key(s), 100 + j)``) and dropout bagging (member j keeps fixed mask j and
    starts from key(s): the seed's dropout net's initialisation and minibatch order). Returns
    rows ``independent``, ``bagging`` and their ``_member`` rows."""
    spec, s_n = M.mask_spec(drop, ds.x_train), len(seeds)
    plain = expected(spec, (s_n * k, 1))
    fixed = fixed_masks(spec, seeds, k).reshape(s_n * k, 1, -1)
    keys = jnp.concatenate(
        [_member_keys(seeds, k), jnp.stack([jax.random.key(s) for s in seeds for _ in range(k)])]
    )
    variables, _ = train_seeds(
        drop,
        keys,
        ds.x_train,
        ds.y_train,
        cfg.replace(steps=cfg.steps // k, mask_mode="cycle"),
        cycle_masks=jnp.concatenate([plain, fixed]),  # (2 S K, 1, n_units)
        seeds=[s for s in seeds for _ in range(k)] * 2,
    )
    half = lambda i: jax.tree.map(lambda a: a[i * s_n * k : (i + 1) * s_n * k], variables)  # noqa: E731
    return {
        **_rows("independent", _eval(drop, spec, half(0), plain, ds, s_n), ds, members=True),
        **_rows("bagging", _eval(drop, spec, half(1), fixed, ds, s_n), ds, members=True),
    }


def plan(cfg: Config, ds: Dataset) -> dict:
    if cfg.train.steps % cfg.k:
        raise DropstudyError(
            f"train.steps={cfg.train.steps} must be a multiple of k={cfg.k}: each member "
            "trains steps / k steps, so that every arm costs the same"
        )
    seeds = list(range(cfg.seeds))
    drop = MLP(hidden=(cfg.width, cfg.width), n_out=ds.n_classes, rate=cfg.rate)
    kw = dict(ds=ds, drop=drop, cfg=cfg.train, seeds=seeds)
    return {
        "cell=dropout": cell(dropout_cell, **kw),
        "cell=tied": cell(tied_cell, k=cfg.k, **kw),
        "cell=members": cell(members_cell, k=cfg.k, **kw),
    }


def summarise(cfg: Config, raw: dict) -> dict:
    rows = {name: v for c in raw.values() for name, v in c.items()}
    col = lambda r, m, split="test": np.array([s[split][m] for s in rows[r]])  # noqa: E731
    summary = {
        r: {split: {m: ci(col(r, m, split)) for m in METRICS} for split in ("test", "train")}
        for r in ROWS
    }
    err = lambda r: 1.0 - col(r, "accuracy")  # noqa: E731
    tests = {}
    for p in ("ws", "mc"):
        d = f"dropout_{p}"
        tests[f"nll_equiv_{p}"] = equivalence(
            col(d, "nll") - col("independent", "nll"),
            cfg.margin_nll,
            predictor=p,
            metric="nll",
            what="test NLL, dropout minus the independent ensemble (nats)",
        )
        tests[f"err_equiv_{p}"] = equivalence(
            err(d) - err("independent"),
            cfg.margin_err,
            predictor=p,
            metric="error",
            what="test error, dropout minus the independent ensemble (fraction)",
        )
        tests[f"bagging_{p}"] = direction(
            col("bagging", "nll") - col(d, "nll"),
            predictor=p,
            metric="nll",
            what="test NLL, dropout bagging minus dropout (> 0: dropout better, as "
            "Warde-Farley et al. found)",
        )
        tests[f"bagging_err_{p}"] = direction(
            err("bagging") - err(d),
            predictor=p,
            metric="error",
            what="test error, dropout bagging minus dropout (> 0: dropout better; "
            "Warde-Farley et al. compared error)",
        )
        tests[f"overfit_{p}"] = direction(
            col("plain", "nll") - col(d, "nll"),
            predictor=p,
            metric="nll",
            what="test NLL, plain minus dropout (> 0: dropout cancels overfitting)",
        )
    tests["sharing"] = direction(
        col("bagging", "nll") - col("fixed_shared", "nll"),
        predictor="members",
        metric="nll",
        what="test NLL, untied (bagging) minus tied (fixed-mask) weights over the same M masks "
        "(> 0: sharing helps)",
    )
    tests = primary_first(tests, cfg.primary)
    pairs = [
        (f"{q}_mc", f"{q}_ws")
        for q in ("nll_equiv", "err_equiv", "bagging", "bagging_err", "overfit")
    ]
    # The margins against what ensembling buys here: a margin wider than the ensemble's gain
    # over its own members cannot tell an ensemble from a single net.
    findings = flips(tests, pairs)
    for metric, margin, f in (("NLL", cfg.margin_nll, lambda r: col(r, "nll")),
                              ("error", cfg.margin_err, err)):  # fmt: skip
        gain = ci(f("independent_member") - f("independent"))
        if margin >= gain["mean"]:
            findings.append(
                f"The {metric} margin (+-{margin:g}) is at least the independent ensemble's "
                f"own gain over its mean single member ({gain['mean']:.4f} "
                f"[{gain['lo']:.4f}, {gain['hi']:.4f}]): equivalence within it could not "
                "tell the ensemble from one of its members."
            )
    return {
        "k": cfg.k,
        "steps": cfg.train.steps,
        "width": cfg.width,
        "rows": summary,
        "tests": tests,
        "primary": cfg.primary,
        "findings": findings,
    }


LABELS = {
    "plain": "plain net",
    "dropout_ws": "dropout, weight scaling",
    "dropout_mc": f"dropout, MC average (K = {MC_K})",
    "independent": "independent ensemble",
    "independent_member": "independent: mean single member",
    "bagging": "dropout bagging (untied)",
    "bagging_member": "bagging: mean single member",
    "fixed_shared": "fixed masks, tied weights",
}


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    rows, xs = r["rows"], np.arange(len(ROWS))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, metric, ylabel in zip(
        axes[:2], ("nll", "accuracy"), ("NLL (nats)", "error (fraction)"), strict=True
    ):
        flip = (lambda v: 1.0 - v) if metric == "accuracy" else (lambda v: v)
        for split, mk, off in (("test", "o", -0.1), ("train", "s", 0.1)):
            c = [rows[k][split][metric] for k in ROWS]
            m = np.array([flip(v["mean"]) for v in c])
            lo, hi = np.array([flip(v["lo"]) for v in c]), np.array([flip(v["hi"]) for v in c])
            yerr = [m - np.minimum(lo, hi), np.maximum(lo, hi) - m]
            ax.errorbar(xs + off, m, yerr=yerr, ls="", marker=mk, capsize=3, label=split)
        ax.set_xticks(xs, [LABELS[k] for k in ROWS], fontsize=8, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    ax = axes[2]
    names = [("nll_equiv_ws", "weight scaling"), ("nll_equiv_mc", "MC average")]
    rows_raw = {name: v for c in raw.values() for name, v in c.items()}
    nll = lambda name: np.array([s["test"]["nll"] for s in rows_raw[name]])  # noqa: E731
    for i, (t, _) in enumerate(names):
        tt = r["tests"][t]
        per_seed = nll(f"dropout_{t[-2:]}") - nll("independent")
        ax.plot(np.full(len(per_seed), i + 0.12), per_seed, ".", color="C1", alpha=0.6)
        ax.errorbar(
            i,
            tt["effect"],
            yerr=[[tt["effect"] - tt["lo"]], [tt["hi"] - tt["effect"]]],
            marker="o",
            capsize=4,
            color="C0",
        )
    ax.axhspan(-cfg.margin_nll, cfg.margin_nll, color="C2", alpha=0.15, label="equivalence margin")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(names)), [n[1] for n in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("test NLL, dropout - independent ensemble (nats)")
    ax.set_title("mean paired difference, 90% interval (TOST); dots: seeds", fontsize=9)
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Matched compute, M = {cfg.k} members: means over {cfg.seeds} seeds with 95% CI",
        fontsize=10,
    )
    ctx.savefig(fig, "ensembles.png")


def section(r: dict) -> str:
    def err_str(c: dict) -> str:  # accuracy interval as an error interval
        return ci_str({"mean": 1 - c["mean"], "lo": 1 - c["hi"], "hi": 1 - c["lo"]})

    rows = [
        [
            LABELS[k],
            err_str(v["test"]["accuracy"]),
            err_str(v["train"]["accuracy"]),
            ci_str(v["test"]["nll"]),
            ci_str(v["train"]["nll"]),
            ci_str(v["test"]["ece"]),
        ]
        for k, v in ((k, r["rows"][k]) for k in ROWS)
    ]
    c, t = r["config"], r["config"]["train"]
    k, steps, w = r["k"], r["steps"], r["width"]
    evals = steps * t["batch_size"]
    return f"""{mlp_str(r, [w, w])}, drop rate {c["rate"]}, M = {k} members. Matched compute:
every arm makes {steps} x {t["batch_size"]} = {evals} example-gradient evaluations. Single
nets train with {train_str(t)}; each ensemble member trains {steps // k} steps at
the same batch size. Every arm sees the same data split per seed.

- *Plain net* vs *dropout* (same initialisation and minibatch order): does dropout's average
  cancel overfitting?
- *Dropout* (weight scaling, and the MC average over {MC_K} subnetworks) vs the *independent
  ensemble* (M plain nets, own initialisations and minibatch orders, probabilities averaged):
  the claim itself, an equivalence within +-{c["margin_nll"]} nats of test NLL and
  +-{100 * c["margin_err"]:.1f} pp of test error (margins fixed before the run).
- *Dropout bagging* (Warde-Farley et al. 2014: dropout's subnetworks with untied weights):
  M members, member j keeping one mask drawn at the dropout rate throughout. Each starts from
  the dropout net's initialisation and follows its minibatch order over the whole training
  set (no bootstrap), so it differs from dropout in weight sharing (and in covering M rather
  than all subnetworks). Warde-Farley et al. found dropout better.
- *Fixed masks, tied weights*: the same M masks cycled step by step on one set of weights,
  from the same initialisation and minibatch stream ({steps} steps, {steps // k} per mask).
  Against bagging only the tying differs: given M subnetworks, does sharing help?

The primary test is the TOST of test NLL, dropout's MC average minus the independent
ensemble: the claim is about the *average* of the subnetworks, which the MC average
estimates directly (weight scaling is only an approximation to it, tested alongside), and
NLL scores the whole predictive distribution that an ensemble is meant to improve.
"Mean single member" rows show what averaging buys each ensemble; train columns show whether
every arm fits.

![ensembles](ensembles/ensembles.png)

{table(["method", "test error", "train error", "test NLL", "train NLL", "test ECE"], rows)}
"""


if __name__ == "__main__":
    from .cli import main_for

    main_for(NAME)
