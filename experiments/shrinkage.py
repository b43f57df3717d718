"""Claim 5: dropout shrinks the weights, like L2 regularisation.

Part A: weight norms of digits MLPs against the drop rate and against the L2 strength.
Part B: linear regression with input dropout (scikit-learn's diabetes data, standardised)
trained by SGD, against the closed-form ridge solution the expected loss predicts. With
inverted dropout at keep p, the expected squared loss is

    ||y - X w - b||^2 + (1 - p) / p * ||diag(X^T X)^(1/2) w||^2,

(the 2014 paper's p(1-p)||Gw||^2 after rescaling w~ = p w), minimised by
w = (X^T X + (1-p)/p diag(X^T X))^-1 X^T y for centred data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dropstudy.data import Dataset, diabetes
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, seed_keys, take, train_seeds

from .common import ExperimentConfig, cell, ci, ci_str, errorbar, mlp_str, plt, table, train_str
from .stats import all_hold, combine, direction_verdict, paired

NAME = "shrinkage"
CLAIM = "Dropout shrinks the weights, like L2 regularisation."


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the shrinkage experiment."""

    seeds: int = 5
    width: int = 64
    rates: tuple[float, ...] = (0.0, 0.2, 0.5, 0.8)
    l2s: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    train: TrainConfig = TrainConfig(steps=3000, batch_size=128, lr=1e-3)
    keeps: tuple[float, ...] = (0.5, 0.8)  # input keep probabilities of the linear model
    linear: TrainConfig = TrainConfig(
        steps=4000,
        batch_size=0,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        task="regression",
        schedule="cosine",
    )
    agree: float = 0.05  # relative distance to ridge that counts as agreement
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "width": 16,
        "rates": (0.0, 0.5),
        "l2s": (1e-3,),
        "train": TrainConfig(steps=300, batch_size=128, lr=1e-3),
        "linear": linear.replace(steps=600),
    }


def kernel_norm(params) -> float:
    """Frobenius norm of all weight matrices (biases excluded)."""
    ks = [v["kernel"] for v in params.values()]
    return float(np.sqrt(sum(float(np.sum(np.square(k))) for k in ks)))


def norm_cell(ds: Dataset, rate: float, width: int, train: TrainConfig, seeds: list) -> list:
    """Kernel norms of ``seeds`` digits MLPs trained at drop ``rate`` (and ``train.l2``)."""
    model = MLP(hidden=(width, width), n_out=ds.n_classes, rate=rate)
    v, _ = train_seeds(model, seed_keys(seeds), ds.x_train, ds.y_train, train, seeds=seeds)
    out = []
    for i in range(len(seeds)):
        p = take(v, i)["params"]
        out.append(
            {
                "norm": kernel_norm(p),
                "layer_norms": [float(np.linalg.norm(p[k]["kernel"])) for k in sorted(p)],
            }
        )
    return out


def ridge_solution(x: np.ndarray, y: np.ndarray, keep: float) -> np.ndarray:
    """The minimiser of the expected inverted-dropout loss (centred data): ``(d,)``."""
    g = np.diag(np.diag(x.T @ x))
    return np.linalg.solve(x.T @ x + (1 - keep) / keep * g, x.T @ y)


def linear_cell(keep: float, train: TrainConfig, seeds: list) -> dict:
    """SGD with input dropout at ``keep`` on diabetes vs the closed-form ridge solution."""
    x, y = diabetes()
    model = MLP(hidden=(), n_out=1, input_rate=1 - keep)
    v, _ = train_seeds(
        model,
        seed_keys(seeds),
        x.astype(np.float32),
        y.astype(np.float32)[:, None],
        train,
        seeds=seeds,
    )
    w = np.asarray(v["params"][model.dense_layers()[-1]]["kernel"][:, :, 0], np.float64)
    w_r = ridge_solution(x, y, keep)
    w_o = np.linalg.solve(x.T @ x, x.T @ y)
    rel = np.linalg.norm(w - w_r, axis=1) / np.linalg.norm(w_r)
    return {
        "w_sgd": w.tolist(),
        "w_ridge": w_r.tolist(),
        "w_ols": w_o.tolist(),
        "rel_to_ridge": rel.tolist(),
        "rel_ols_to_ridge": float(np.linalg.norm(w_o - w_r) / np.linalg.norm(w_r)),
    }


def plan(cfg: Config, ds: Dataset) -> dict:
    seeds = list(range(cfg.seeds))
    cells = {
        f"norm_rate={r}": cell(
            norm_cell, ds=ds, rate=r, width=cfg.width, train=cfg.train, seeds=seeds
        )
        for r in cfg.rates
    }
    for l2 in cfg.l2s:
        cells[f"norm_l2={l2}"] = cell(
            norm_cell, ds=ds, rate=0.0, width=cfg.width, train=cfg.train.replace(l2=l2),
            seeds=seeds,
        )  # fmt: skip
    for k in cfg.keeps:
        cells[f"linear_keep={k}"] = cell(linear_cell, keep=k, train=cfg.linear, seeds=seeds)
    return cells


def summarise(cfg: Config, raw: dict) -> dict:
    norms = {k.removeprefix("norm_"): v for k, v in raw.items() if k.startswith("norm_")}
    lin = {str(k): raw[f"linear_keep={k}"] for k in cfg.keeps}
    norm_summary = {k: ci([r["norm"] for r in v]) for k, v in norms.items()}
    shrink = paired([r["norm"] for r in norms["rate=0.0"]], [r["norm"] for r in norms["rate=0.5"]])
    lin_summary = {
        k: {"rel_to_ridge": ci(v["rel_to_ridge"]), "rel_ols_to_ridge": v["rel_ols_to_ridge"]}
        for k, v in lin.items()
    }
    v_norm = direction_verdict(shrink)
    v_lin = all_hold(
        *(s["rel_to_ridge"]["hi"] < cfg.agree < s["rel_ols_to_ridge"] for s in lin_summary.values())
    )
    return {
        "width": cfg.width,
        "norms": norm_summary,
        "norm_rate0_minus_rate05": shrink,
        "linear": lin_summary,
        "linear_coefficients": {
            k: {
                "ols": v["w_ols"],
                "ridge": v["w_ridge"],
                "sgd_mean": np.mean(v["w_sgd"], 0).tolist(),
            }
            for k, v in lin.items()
        },
        "verdict_norms": v_norm,
        "verdict_ridge": v_lin,
        "verdict": combine(v_norm, v_lin),
        "agree_threshold": cfg.agree,
    }


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    norm_summary, rates, l2s = r["norms"], cfg.rates, cfg.l2s
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    errorbar(axes[0], rates, [norm_summary[f"rate={x}"] for x in rates], "dropout")
    axes[0].set(
        xlabel="drop rate (hidden layers)",
        ylabel="Frobenius norm of all weight matrices",
        title="Norm vs drop rate (95% CI over seeds)",
    )
    errorbar(
        axes[1],
        [0.0, *l2s],
        [norm_summary["rate=0.0"]] + [norm_summary[f"l2={v}"] for v in l2s],
        "L2",
    )
    axes[1].set(
        xlabel="L2 strength (coefficient of ||W||^2 / 2; symlog scale)",
        ylabel="Frobenius norm of all weight matrices",
        title="Norm vs L2, no dropout (95% CI)",
    )
    axes[1].set_xscale("symlog", linthresh=1e-4)
    k0 = str(cfg.keeps[0])
    w = r["linear_coefficients"][k0]
    d = np.arange(len(w["ridge"]))
    axes[2].plot(d, w["ols"], "ks-", label="least squares")
    axes[2].plot(d, w["ridge"], "bo-", label=f"ridge (closed form, keep {k0})")
    axes[2].plot(d, w["sgd_mean"], "r^--", label=f"SGD with input dropout (keep {k0})")
    axes[2].set(
        xlabel="diabetes feature (index)",
        ylabel="coefficient w",
        title="Linear regression with input dropout",
    )
    for ax in axes:
        ax.legend(fontsize=8)
    ctx.savefig(fig, "shrinkage.png")


def section(r: dict) -> tuple[str, str]:
    rows = [[k, ci_str(v, 2)] for k, v in r["norms"].items()]
    lin = [
        [k, ci_str(v["rel_to_ridge"], 4), f"{v['rel_ols_to_ridge']:.3f}"]
        for k, v in r["linear"].items()
    ]
    w = r["width"]
    md = f"""{mlp_str(r, [w, w])} ({train_str(r["config"]["train"])}): total kernel norm at
the end of training, for drop rates (no L2) and L2 strengths (no dropout). Linear regression: SGD
(cosine-decayed, full batch, fresh input masks per example and step) against the closed-form
ridge solution with the data-dependent penalty (Srivastava et al. 2014, section 9.1; Wager
et al. 2013: L2 after scaling by the inverse diagonal Fisher information). The norms are of
the test-time weights, which are the same under both conventions (inverted trains W;
standard trains W/p and multiplies by p at test time).

![shrinkage](shrinkage/shrinkage.png)

{table(["configuration", "norm of all kernels, mean [95% CI]"], rows)}

{
        table(
            [
                "keep p",
                "SGD-with-dropout distance to ridge (relative)",
                "least-squares distance to ridge (relative)",
            ],
            lin,
        )
    }

- Norms (rule: the kernel norm at rate 0 minus at rate 0.5, CI above 0): **{r["verdict_norms"]}**
  (difference {ci_str(r["norm_rate0_minus_rate05"], 2)}).
- Ridge (rule: the CI of the relative distance to the ridge solution lies below
  {r["agree_threshold"]}, while least squares lies farther): **{r["verdict_ridge"]}**.
- Overall (both supported: supported; either at least partly: partly supported):
  **{r["verdict"]}**.
"""
    return md, r["verdict"]


if __name__ == "__main__":
    from .cli import main_for

    main_for(NAME)
