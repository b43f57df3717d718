"""Claim 2b: weight scaling approximates averaging the ensemble of 2^n subnetworks.

On trained dropout nets, the same weights are evaluated by weight scaling, by Monte-Carlo
averages over K sampled subnetworks (K = 1 ... 1000, several mask streams), and by the exact
arithmetic and normalised geometric means over all 2^n subnetworks (n <= ~20 droppable
units). The 2014 paper's MC-vs-weight-scaling figure, with the exact lines added, across
drop rates, activations and depths; and a wide net where only MC is possible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import numpy as np

from dropstudy import predict as P
from dropstudy.data import Dataset
from dropstudy.metrics import accuracy, gaps, nll
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, seed_keys, take, train_seeds

from .common import ExperimentConfig, cell, ci, ci_str, errorbar, plt, table
from .stats import equivalence_verdict, paired

NAME = "averaging"
CLAIM = "Weight scaling approximates the average of the 2^n subnetworks that dropout trains."


@dataclass(frozen=True)
class Net:
    """One network of the sweep: hidden widths, activation, drop rate, and whether its
    subnetworks are few enough to enumerate exactly."""

    tag: str
    hidden: tuple[int, ...]
    activation: str = "relu"
    rate: float = 0.5
    exact: bool = True

    def to_dict(self) -> dict:
        return {"tag": self.tag, "hidden": list(self.hidden), "activation": self.activation,
                "rate": self.rate, "exact": self.exact}  # fmt: skip


NETS = (
    *(Net(f"relu 2x10, drop {r}", (10, 10), "relu", r) for r in (0.2, 0.5, 0.8)),
    *(Net(f"{a} 2x10, drop 0.5", (10, 10), a) for a in ("tanh", "sigmoid", "linear")),
    Net("relu 1x20, drop 0.5", (20,)),
    Net("relu 3x(7,7,6), drop 0.5", (7, 7, 6)),
    Net("relu 2x256, drop 0.5 (MC only)", (256, 256), exact=False),
)
QUICK_NETS = (
    Net("relu 2x6, drop 0.5", (6, 6)),
    Net("relu 1x8, drop 0.5", (8,)),
    Net("relu 2x64, drop 0.5 (MC only)", (64, 64), exact=False),
)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the averaging experiment."""

    seeds: int = 5
    nets: tuple[Net, ...] = NETS
    main: str = "relu 2x10, drop 0.5"  # the net whose verdict is the claim's
    train: TrainConfig = TrainConfig(steps=3000, batch_size=128, lr=3e-3)
    ks: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    mc_keys: int = 3  # independent MC streams per exact-enumerable net (1 for MC-only nets)
    margin: float = 0.01  # equivalence margin on the test error (1 percentage point)
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "nets": QUICK_NETS,
        "main": "relu 2x6, drop 0.5",
        "train": train.replace(steps=300),
        "mc_keys": 2,
    }


def _bounds(ws, ex) -> dict:
    """Where weight scaling sits relative to the exact means, entry by entry ``(B, C)``."""
    g = np.exp(np.asarray(ex.log_geometric, np.float64))
    nwgm = np.asarray(ex.geometric, np.float64)
    a = np.asarray(ex.arithmetic, np.float64)
    ws = np.asarray(ws, np.float64)
    tol = 1e-6
    lo, hi = np.minimum(nwgm, a), np.maximum(nwgm, a)
    return {
        "frac_g_le_nwgm_le_a": float(np.mean((g <= nwgm + tol) & (nwgm <= a + tol))),
        "frac_ws_between_nwgm_and_a": float(np.mean((ws >= lo - tol) & (ws <= hi + tol))),
        "mean_abs_ws_minus_nwgm": float(np.mean(np.abs(ws - nwgm))),
        "mean_abs_ws_minus_a": float(np.mean(np.abs(ws - a))),
        "mean_abs_nwgm_minus_a": float(np.mean(np.abs(nwgm - a))),
    }


def net_cell(ds: Dataset, net: Net, train: TrainConfig, ks: list, mc_keys: int, seeds: list):
    """Weight scaling, MC curves and (when enumerable) exact means of ``net`` per seed."""
    c = net.to_dict()
    model = MLP(hidden=net.hidden, n_out=ds.n_classes, activation=net.activation, rate=net.rate)
    variables, _ = train_seeds(model, seed_keys(seeds), ds.x_train, ds.y_train, train, seeds=seeds)
    x, y = ds.x_test, ds.y_test
    per_seed = []
    for i, s in enumerate(seeds):
        v = take(variables, i)
        ws = np.asarray(P.weight_scaling(model, v, x).arithmetic)
        row = {"ws": {"err": 1 - accuracy(ws, y), "nll": nll(ws, y)}}
        if net.exact:
            ex = P.exact(model, v, x)
            for name, q in (("exact_a", ex.arithmetic), ("exact_g", ex.geometric)):
                row[name] = {"err": 1 - accuracy(q, y), "nll": nll(q, y)}
            row["bounds"] = _bounds(ws, ex)
            row["gap_ws_vs_exact_a"] = gaps(ws, ex.arithmetic)
            row["gap_ws_vs_exact_g"] = gaps(ws, ex.geometric)
            row["gap_exact_g_vs_exact_a"] = gaps(ex.geometric, ex.arithmetic)
        curves = {"a_err": [], "a_nll": [], "g_err": [], "g_nll": []}
        for j in range(mc_keys if net.exact else 1):
            key = jax.random.fold_in(jax.random.key(1000 + s), j)
            cur = P.mc_curve(model, v, x, key=key, ks=ks)
            curves["a_err"].append([1 - accuracy(cur[k].arithmetic, y) for k in ks])
            curves["a_nll"].append([nll(cur[k].arithmetic, y) for k in ks])
            curves["g_err"].append([1 - accuracy(cur[k].geometric, y) for k in ks])
            curves["g_nll"].append([nll(cur[k].geometric, y) for k in ks])
        row["mc"] = {k: np.mean(v, axis=0).tolist() for k, v in curves.items()}
        row["mc_band"] = {
            k: [np.min(v, axis=0).tolist(), np.max(v, axis=0).tolist()] for k, v in curves.items()
        }
        per_seed.append(row)
    return {"config": c, "seeds": per_seed}


def _summary(cell: dict, ks: list, margin: float) -> dict:
    rows = cell["seeds"]
    out = {"config": cell["config"]}
    for name in ("ws", "exact_a", "exact_g"):
        if name in rows[0]:
            out[name] = {m: ci([r[name][m] for r in rows]) for m in ("err", "nll")}
    out["mc"] = {
        m: [ci([r["mc"][m][i] for r in rows]) for i in range(len(ks))]
        for m in ("a_err", "a_nll", "g_err", "g_nll")
    }
    # smallest K whose mean MC (arithmetic) error is at or below weight scaling's
    ws_err = out["ws"]["err"]["mean"]
    hit = [k for k, c in zip(ks, out["mc"]["a_err"]) if c["mean"] <= ws_err]
    out["k_mc_reaches_ws_err"] = hit[0] if hit else None
    if "exact_a" in out:
        out["err_ws_minus_exact_a"] = paired(
            [r["ws"]["err"] for r in rows], [r["exact_a"]["err"] for r in rows]
        )
        out["nll_ws_minus_exact_a"] = paired(
            [r["ws"]["nll"] for r in rows], [r["exact_a"]["nll"] for r in rows]
        )
        out["nll_ws_minus_exact_g"] = paired(
            [r["ws"]["nll"] for r in rows], [r["exact_g"]["nll"] for r in rows]
        )
        for k in rows[0]["bounds"]:
            out[k] = ci([r["bounds"][k] for r in rows])
        for g in ("gap_ws_vs_exact_a", "gap_ws_vs_exact_g", "gap_exact_g_vs_exact_a"):
            out[g] = {m: ci([r[g][m] for r in rows]) for m in rows[0][g]}
        out["verdict"] = equivalence_verdict(out["err_ws_minus_exact_a"], margin)
    return out


def plan(cfg: Config, ds: Dataset) -> dict:
    seeds = list(range(cfg.seeds))
    return {
        f"net={n.tag}": cell(
            net_cell,
            ds=ds,
            net=n,
            train=cfg.train,
            ks=list(cfg.ks),
            mc_keys=cfg.mc_keys,
            seeds=seeds,
        )
        for n in cfg.nets
    }


def summarise(cfg: Config, raw: dict) -> dict:
    summaries = {n.tag: _summary(raw[f"net={n.tag}"], list(cfg.ks), cfg.margin) for n in cfg.nets}
    verdicts = {t: s["verdict"] for t, s in summaries.items() if "verdict" in s}
    return {
        "ks": list(cfg.ks),
        "nets": summaries,
        "main": cfg.main,
        "verdict": summaries[cfg.main]["verdict"],
        "verdicts": verdicts,
        "margin": cfg.margin,
    }


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    summaries, KS = r["nets"], r["ks"]
    tags = list(summaries)
    cols = 3
    rows = -(-len(tags) // cols)
    for metric, fname in (("err", "mc_vs_exact_error.png"), ("nll", "mc_vs_exact_nll.png")):
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
        for ax, tag in zip(axes.ravel(), tags):
            s = summaries[tag]
            for kind, label, color in (
                ("a", "MC arithmetic mean", "tab:blue"),
                ("g", "MC geometric mean (NWGM)", "tab:orange"),
            ):
                cis = s["mc"][f"{kind}_{metric}"]
                m = np.array([c["mean"] for c in cis])
                ax.plot(KS, m, color=color, label=label)
                ax.fill_between(
                    KS, [c["lo"] for c in cis], [c["hi"] for c in cis], color=color, alpha=0.2
                )
            for name, label, style in (
                ("ws", "weight scaling", "k--"),
                ("exact_a", "exact arithmetic mean", "b:"),
                ("exact_g", "exact geometric mean", "r:"),
            ):
                if name in s:
                    ax.axhline(s[name][metric]["mean"], ls=style[1:], color=style[0], label=label)
            ax.set_xscale("log")
            ax.set_title(tag, fontsize=9)
            ax.set_xlabel("K, subnetworks averaged (log scale)")
            ax.set_ylabel("test error (fraction)" if metric == "err" else "test NLL (nats)")
        for ax in axes.ravel()[len(tags) :]:
            ax.axis("off")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle(
            "Monte-Carlo averages vs K; lines: means over seeds, shaded: 95% CI over seeds; "
            "horizontal lines: weight scaling and the exact means (seed means)",
            fontsize=9,
        )
        ctx.savefig(fig, fname)
    exact = [t for t in tags if "verdict" in summaries[t]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, scale, ylabel in (
        (axes[0], "err_ws_minus_exact_a", 100, "test error difference (percentage points)"),
        (axes[1], "nll_ws_minus_exact_a", 1, "test NLL difference (nats)"),
    ):
        cis = [{k: summaries[t][key][k] * scale for k in ("mean", "lo", "hi")} for t in exact]
        errorbar(ax, range(len(exact)), cis, "mean over seeds, 95% CI", ls="")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(exact)), exact, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
    axes[0].axhspan(-100 * r["margin"], 100 * r["margin"], color="tab:green", alpha=0.15,
                    label=f"equivalence margin +-{100 * r['margin']:.0f} pp")  # fmt: skip
    axes[0].legend(fontsize=8)
    axes[0].set_title("Error: weight scaling minus exact arithmetic mean", fontsize=10)
    axes[1].set_title("NLL: weight scaling minus exact arithmetic mean", fontsize=10)
    ctx.savefig(fig, "ws_minus_exact.png")


def section(r: dict) -> tuple[str, str]:
    rows = []
    for tag, s in r["nets"].items():
        ex_a = ci_str(s["exact_a"]["err"]) if "exact_a" in s else "-"
        ex_g = ci_str(s["exact_g"]["err"]) if "exact_g" in s else "-"
        mc = s["mc"]["a_err"][-1]
        rows.append(
            [
                tag,
                ci_str(s["ws"]["err"]),
                ci_str(mc),
                ex_a,
                ex_g,
                str(s["k_mc_reaches_ws_err"]),
                s.get("verdict", "-"),
            ]
        )
    err_table = table(
        [
            "net",
            "error WS",
            f"error MC K={r['ks'][-1]}",
            "error exact arith.",
            "error exact geom.",
            "K: MC reaches WS",
            "verdict",
        ],
        rows,
    )
    nll_rows = []
    for tag, s in r["nets"].items():
        if "exact_a" not in s:
            continue
        nll_rows.append(
            [
                tag,
                ci_str(s["ws"]["nll"]),
                ci_str(s["exact_a"]["nll"]),
                ci_str(s["exact_g"]["nll"]),
                ci_str(s["gap_ws_vs_exact_g"]["max_abs_prob"]),
                ci_str(s["gap_ws_vs_exact_a"]["max_abs_prob"]),
                ci_str(s["frac_g_le_nwgm_le_a"]),
                ci_str(s["frac_ws_between_nwgm_and_a"]),
            ]
        )
    nll_table = table(
        [
            "net",
            "NLL WS",
            "NLL exact arith.",
            "NLL exact geom.",
            "max abs diff WS vs NWGM",
            "max abs diff WS vs arith.",
            "frac G<=NWGM<=A",
            "frac WS between NWGM and A",
        ],
        nll_rows,
    )
    md = f"""Every net is trained once per seed with dropout and evaluated on the same weights.
Srivastava et al. 2014 (MNIST) found that MC reaches the weight-scaling error at about K = 50
and is marginally better beyond; Warde-Farley et al. 2014 enumerated 2^20 subnetworks at keep
0.5 only and found the geometric mean comparable to the arithmetic mean. Here the exact means
are added at drop rates 0.2, 0.5, 0.8, four activations and three depths. For one hidden
layer, weight scaling *is* the normalised geometric mean (an identity the tests check to
float64 precision); for linear nets it is the exact mean of the logits.

![error](averaging/mc_vs_exact_error.png)
![nll](averaging/mc_vs_exact_nll.png)
![ws-exact](averaging/ws_minus_exact.png)

{err_table}

{nll_table}

"frac G<=NWGM<=A" is the share of (example, class) entries where the unnormalised geometric
mean, the NWGM and the arithmetic mean are ordered as Baldi & Sadowski's bound states (it is
proved for a logistic output with outputs <= 0.5; here the outputs are 10-way softmaxes).

Verdict rule (equivalence): supported when the 95% CI of error(WS) - error(exact arithmetic)
lies within +-{r["margin"] * 100:.0f} percentage point, not supported when it lies entirely
outside, partly supported otherwise. Main net ({r["main"]}): **{r["verdict"]}**.
"""
    return md, r["verdict"]


if __name__ == "__main__":
    from .cli import main_for

    main_for(NAME)
