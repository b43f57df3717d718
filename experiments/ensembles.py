"""Claim 2a: training with dropout trains many networks, and is equivalent to averaging them.

At matched training compute (gradient steps x examples), on the same data split and the same
initialisation keys per seed:

* a single plain net;
* one dropout net, evaluated by weight scaling and by MC (K = 100);
* a fixed-mask ensemble: K subnetworks whose masks are drawn once, sharing one set of
  weights, trained by cycling through the masks;
* dropout bagging: K masked subnetworks with independent weights, each on a bootstrap sample;
* K independent full nets, averaged (the tutorial's "five result mean").

Each ensemble member trains for 1/K of the steps, so every method costs the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.data import Dataset
from dropstudy.metrics import scores
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, seed_keys, take, train_seeds

from .common import ExperimentConfig, cell, ci, ci_str, errorbar, mlp_str, plt, table, train_str
from .stats import direction_verdict, paired

NAME = "ensembles"
CLAIM = (
    "Training with dropout trains many different networks and is equivalent to "
    "averaging them, which cancels their overfitting."
)
METHODS = (
    "plain",
    "dropout_ws",
    "dropout_mc100",
    "fixed_mask_shared",
    "bagging",
    "independent_nets",
)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the ensembles experiment."""

    seeds: int = 5
    width: int = 64
    rate: float = 0.5
    k: int = 5  # ensemble members; each trains train.steps // k steps
    mc_k: int = 100  # subnetworks of the dropout net's MC average
    train: TrainConfig = TrainConfig(steps=3000, batch_size=128, lr=2e-3)
    QUICK: ClassVar[dict] = {"seeds": 2, "width": 32, "k": 3, "train": train.replace(steps=150)}


def _member_keys(seeds, k):
    """K member keys per seed, ``(S * K,)``: member j of seed s is ``fold_in(key(s), j)``."""
    return jnp.stack(
        [jax.random.fold_in(jax.random.key(s), 100 + j) for s in seeds for j in range(k)]
    )


def method_cell(
    ds: Dataset, method: str, drop: MLP, cfg: TrainConfig, k: int, mc_k: int, seeds: list
) -> list[dict]:
    """Test scores of ``method`` (one of :data:`METHODS`) for every seed."""
    x, y = ds.x_test, ds.y_test
    plain = drop.clone(rate=0.0)
    member_cfg = cfg.replace(steps=cfg.steps // k)
    spec = M.mask_spec(drop, ds.x_train)
    keys = seed_keys(seeds)
    out = []
    if method in ("plain", "dropout_ws", "dropout_mc100"):
        model = plain if method == "plain" else drop
        variables, _ = train_seeds(model, keys, ds.x_train, ds.y_train, cfg, seeds=seeds)
        for i, s in enumerate(seeds):
            v = take(variables, i)
            if method == "dropout_mc100":
                avg = P.mc(model, v, x, key=jax.random.key(7000 + s), k=mc_k)
            else:
                avg = P.weight_scaling(model, v, x)
            out.append(scores(avg.arithmetic, y))
        return out
    if method == "fixed_mask_shared":
        draw = lambda s: M.sample_mask_batch(  # noqa: E731
            spec, jax.random.fold_in(jax.random.key(s), 99), jnp.arange(k)
        )
        masks = jnp.stack([spec.flatten(draw(s)) for s in seeds])  # (S, K, n_units)
        variables, _ = train_seeds(
            drop,
            keys,
            ds.x_train,
            ds.y_train,
            cfg.replace(mask_mode="cycle"),
            cycle_masks=masks,
            seeds=seeds,
        )
        for i in range(len(seeds)):
            avg = P.over_masks(drop, take(variables, i), x, masks=spec.unflatten(masks[i]))
            out.append(scores(avg.arithmetic, y))
        return out
    # K members per seed, vmapped together over seeds x members
    mkeys = _member_keys(seeds, k)
    n = len(ds.x_train)
    if method == "bagging":
        boot = [np.random.default_rng([s, j]).integers(0, n, n) for s in seeds for j in range(k)]
        xs = [ds.x_train[b] for b in boot]
        ys = [ds.y_train[b] for b in boot]
        masks = jnp.stack(
            [spec.flatten(M.sample_masks(spec, jax.random.fold_in(mk, 1))) for mk in mkeys]
        )[:, None]  # (S * K, 1, n_units)
        variables, _ = train_seeds(
            drop,
            mkeys,
            xs,
            ys,
            member_cfg.replace(mask_mode="cycle"),
            cycle_masks=masks,
            per_seed_data=True,
        )
        model = drop
    else:
        masks = jnp.ones((len(mkeys), 1, spec.n_units))
        variables, _ = train_seeds(plain, mkeys, ds.x_train, ds.y_train, member_cfg)
        model = plain
    for i in range(len(seeds)):
        probs = []
        for j in range(k):
            v = take(variables, i * k + j)
            m = spec.unflatten(masks[i * k + j, 0])
            probs.append(jax.nn.softmax(M.apply(model, v, x, m)))
        out.append(scores(jnp.mean(jnp.stack(probs), 0), y))
    return out


def plan(cfg: Config, ds: Dataset) -> dict:
    seeds = list(range(cfg.seeds))
    drop = MLP(hidden=(cfg.width, cfg.width), n_out=ds.n_classes, rate=cfg.rate)
    return {
        f"method={m}": cell(
            method_cell,
            ds=ds,
            method=m,
            drop=drop,
            cfg=cfg.train,
            k=cfg.k,
            mc_k=cfg.mc_k,
            seeds=seeds,
        )
        for m in METHODS
    }


def summarise(cfg: Config, raw: dict) -> dict:
    res = {m: raw[f"method={m}"] for m in METHODS}
    summary = {
        m: {s: ci([r[s] for r in res[m]]) for s in ("accuracy", "nll", "ece", "brier")}
        for m in METHODS
    }
    col = lambda m, s: [r[s] for r in res[m]]  # noqa: E731
    comparisons = {
        "nll_independent_minus_dropout_ws": paired(
            col("independent_nets", "nll"), col("dropout_ws", "nll")
        ),
        "nll_plain_minus_dropout_ws": paired(col("plain", "nll"), col("dropout_ws", "nll")),
        "nll_bagging_minus_fixed_shared": paired(
            col("bagging", "nll"), col("fixed_mask_shared", "nll")
        ),
        "acc_dropout_ws_minus_independent": paired(
            col("dropout_ws", "accuracy"), col("independent_nets", "accuracy")
        ),
    }
    return {
        "k": cfg.k,
        "steps": cfg.train.steps,
        "width": cfg.width,
        "methods": summary,
        "comparisons": comparisons,
        "verdict": direction_verdict(comparisons["nll_independent_minus_dropout_ws"]),
        "verdict_weight_sharing": direction_verdict(comparisons["nll_bagging_minus_fixed_shared"]),
        "verdict_vs_plain": direction_verdict(comparisons["nll_plain_minus_dropout_ws"]),
    }


LABELS = {
    "plain": "plain net",
    "dropout_ws": "dropout, weight scaling",
    "dropout_mc100": "dropout, MC average",
    "fixed_mask_shared": "fixed masks, shared weights",
    "bagging": "dropout bagging (own weights)",
    "independent_nets": "independent nets",
}


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    summary = r["methods"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    for ax, metric, ylabel in zip(
        axes,
        ("accuracy", "nll", "ece"),
        ("test accuracy (fraction)", "test NLL (nats)", "test ECE (15 bins)"),
    ):
        errorbar(ax, range(len(METHODS)), [summary[m][metric] for m in METHODS], metric, ls="")
        ax.set_xticks(
            range(len(METHODS)), [LABELS[m] for m in METHODS], fontsize=8, rotation=30, ha="right"
        )
        ax.set_ylabel(ylabel)
    fig.suptitle(
        f"Matched compute, K = {cfg.k} members: means over {cfg.seeds} seeds with 95% CI",
        fontsize=10,
    )
    ctx.savefig(fig, "ensembles.png")


def section(r: dict) -> tuple[str, str]:
    rows = [
        [LABELS.get(m, m), ci_str(v["accuracy"]), ci_str(v["nll"]), ci_str(v["ece"])]
        for m, v in r["methods"].items()
    ]
    comp = [
        [k.replace("_", " "), ci_str(v), f"{v['frac_positive']:.2f}"]
        for k, v in r["comparisons"].items()
    ]
    w, t = r["width"], r["config"]["train"]
    md = f"""{mlp_str(r, [w, w])}, K = {r["k"]} members, matched compute: single nets
train {r["steps"]} steps, each ensemble member {r["steps"] // r["k"]} steps ({train_str(t)}
for single nets). Per seed, every method sees the same data split; the plain and dropout nets
also share their initialisation, while ensemble members are initialised from their own keys
(and bagging members train on bootstrap samples), so comparisons with the ensembles are
paired by seed only. Warde-Farley et al. 2014 found that dropout beat dropout bagging
(independent masked subnetworks, no weight sharing). The headline verdict is the first
below.

![ensembles](ensembles/ensembles.png)

{table(["method", "accuracy", "NLL", "ECE"], rows)}

{table(["paired comparison (per seed)", "mean [95% CI]", "share of seeds > 0"], comp)}

- Does dropout match an explicit ensemble? Rule: NLL(independent nets) - NLL(dropout, weight
  scaling) has a 95% CI above 0 (dropout better): **{r["verdict"]}**.
- Does weight sharing matter? NLL(bagging) - NLL(fixed-mask shared ensemble) above 0:
  **{r["verdict_weight_sharing"]}**.
- Does averaging the subnetworks cancel overfitting relative to one plain net? NLL(plain) -
  NLL(dropout) above 0: **{r["verdict_vs_plain"]}**.
"""
    return md, r["verdict"]


if __name__ == "__main__":
    from .cli import main_for

    main_for(NAME)
