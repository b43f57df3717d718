"""Claim 1: dropout reduces overfitting (and claim 6: typical rates 0.3-0.5 work best).

Part A reproduces the tutorial: a 1-200-200-200-1 ReLU MLP on 10 noisy points of y = 1.5x,
drop rate 0 vs 0.5, SGD lr 0.01 momentum 0.9, 2000 full-batch steps, snapshots every 400
steps; over many seeds, paired (same data, same initialisation). Part B measures the
train-test gap on digits against the drop rate and against the training-set size.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dropstudy import predict as P
from dropstudy.data import Dataset, tutorial_regression
from dropstudy.metrics import accuracy, nll
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, diverged, seed_keys, take, train_seeds
from dropstudy.validate import DropstudyError

from .common import ExperimentConfig, cell, ci, ci_str, errorbar, mlp_str, plt, table, train_str
from .stats import choice_verdict, direction_verdict, paired

NAME = "overfitting"
CLAIM = "Dropout reduces overfitting."
GRID = 200  # points on which fitted curves are drawn
HIST_BINS = 40


def tutorial_net(rate: float) -> MLP:
    """The tutorial's 1-200-200-200-1 ReLU net, PyTorch's default initialisation."""
    return MLP(hidden=(200, 200, 200), n_out=1, rate=rate, weight_init="torch")


def tutorial_config(steps: int, every: int = 0) -> TrainConfig:
    """The tutorial's training: full-batch SGD, lr 0.01, momentum 0.9, mean squared error."""
    return TrainConfig(
        steps=steps,
        batch_size=0,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        task="regression",
        snapshot_every=every,
    )


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the overfitting experiment."""

    seeds: int = 5  # digits seeds
    tutorial_seeds: int = 20
    tutorial_rates: tuple[float, float] = (0.0, 0.5)  # plain, dropout
    tutorial: TrainConfig = tutorial_config(2000, 400)
    width: int = 100
    digits: TrainConfig = TrainConfig(steps=2000, batch_size=128, lr=1e-3)
    rates: tuple[float, ...] = (0.0, 0.2, 0.3, 0.5, 0.8)
    sizes: tuple[int, ...] = (100, 200, 500, 1000)  # plus the full training set
    size_rates: tuple[float, float] = (0.0, 0.5)
    typical_rates: tuple[float, ...] = (0.3, 0.5)  # the tutorial's "typical" rates
    near_typical: tuple[float, ...] = (0.2, 0.8)
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "tutorial_seeds": 3,
        "tutorial": tutorial_config(200, 100),
        "width": 32,
        "digits": TrainConfig(steps=150, batch_size=128, lr=1e-3),
        "rates": (0.0, 0.5),
        "sizes": (100,),
    }

    def with_seeds(self, n: int):
        return replace(self, seeds=n, tutorial_seeds=n)


def tutorial_sets(seeds) -> tuple[list, np.ndarray, np.ndarray]:
    """One tutorial data set per seed: ``(sets, xs (S, 10, 1), ys (S, 10, 1))``."""
    sets = [tutorial_regression(jax.random.fold_in(jax.random.key(s), 1)) for s in seeds]
    return sets, np.stack([d.x_train for d in sets]), np.stack([d.y_train for d in sets])


def tutorial_cell(rate: float, train: TrainConfig, seeds: list[int]) -> dict:
    """The tutorial's net at drop ``rate`` on each seed's own data set."""
    model = tutorial_net(rate)
    sets, xs, ys = tutorial_sets(seeds)
    # A run that diverges under the tutorial's settings is recorded as diverged (no NaN is
    # kept) and left out of the paired comparison.
    variables, hist = train_seeds(
        model,
        seed_keys(seeds),
        xs,
        ys,
        train,
        per_seed_data=True,
        seeds=seeds,
        allow_divergence=True,
    )
    bad = diverged(hist.loss)
    grid = jnp.linspace(-1.2, 1.2, GRID)[:, None]
    out = {
        "train_mse": [],
        "test_mse": [],
        "train_loss_dropout_mode": [],
        "diverged": [s for s, b in zip(seeds, bad) if b],
        "detail": {},
    }
    every = train.snapshot_every or train.steps
    for i, d in enumerate(sets):
        if bad[i]:
            for k in ("train_mse", "test_mse", "train_loss_dropout_mode"):
                out[k].append(None)
            continue
        v_i = take(variables, i)
        mse = lambda x, y, v=v_i: float(  # noqa: E731
            np.mean((P.weight_scaling(model, v, x, task="regression").mean - y) ** 2)
        )
        out["train_mse"].append(mse(d.x_train, d.y_train))
        out["test_mse"].append(mse(d.x_test, d.y_test))
        out["train_loss_dropout_mode"].append(float(hist.loss[i, -1]))
        out["detail"][str(seeds[i])] = _detail(model, hist, i, d, grid, train.steps // every, every)
    return out


def robust_histogram(values, bins: int = HIST_BINS, tail: float = 1.0) -> dict:
    """Counts over the central ``100 - 2 * tail`` percent of ``values``; the tails are
    clipped into the end bins (``clipped`` is their share), so a few outliers cannot squash
    the rest into one spike."""
    v = np.asarray(values, np.float64).ravel()
    lo, hi = np.percentile(v, [tail, 100 - tail])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    clipped = float(np.mean((v < lo) | (v > hi)))
    return {"counts": counts.tolist(), "edges": edges.tolist(), "clipped": clipped}


def _detail(model, hist, i, d, grid, n_snap, every) -> dict:
    """One seed in detail: data, curves at every snapshot, weight and gradient histograms."""
    snaps = []
    for k in range(n_snap):
        p0 = take(hist.params, i, k)
        g0 = take(hist.grads, i, k)
        layers = {}
        for layer in p0:
            for kind, tree in (("weight", p0), ("grad", g0)):
                layers[f"{layer}/{kind}"] = robust_histogram(tree[layer]["kernel"])

        def mse(x, y, p=p0):
            out = P.weight_scaling(model, {"params": p}, x, task="regression").mean
            return float(np.mean((np.asarray(out) - y) ** 2))

        snaps.append(
            {
                "step": (k + 1) * every,
                "curve": np.asarray(
                    P.weight_scaling(model, {"params": p0}, grid, task="regression").mean
                )[:, 0].tolist(),
                "loss": float(hist.loss[i, (k + 1) * every - 1]),
                "train_mse": mse(d.x_train, d.y_train),
                "test_mse": mse(d.x_test, d.y_test),
                "hist": layers,
            }
        )
    return {
        "loss": np.asarray(hist.loss[i]).tolist(),  # every step, dropout active
        "x": d.x_train[:, 0].tolist(),
        "y_train": d.y_train[:, 0].tolist(),
        "y_test": d.y_test[:, 0].tolist(),
        "grid": np.asarray(grid)[:, 0].tolist(),
        "snapshots": snaps,
    }


def digits_cell(
    ds: Dataset, rate: float, width: int, train: TrainConfig, seeds: list[int], n_train
) -> dict:
    """Train and test accuracy and NLL of digits MLPs at drop ``rate`` (weight scaling), on
    the full training set or (``n_train``) a different random subset per seed."""
    model = MLP(hidden=(width, width), n_out=ds.n_classes, rate=rate)
    if n_train is None:
        xs, ys, per_seed = ds.x_train, ds.y_train, False
    else:  # a different random subset per seed, the same for every rate (paired)
        subs = [ds.subset(n_train, seed=s) for s in seeds]
        xs, ys, per_seed = [d.x_train for d in subs], [d.y_train for d in subs], True
    variables, _ = train_seeds(
        model, seed_keys(seeds), xs, ys, train, per_seed_data=per_seed, seeds=seeds
    )
    out = {k: [] for k in ("train_acc", "test_acc", "train_nll", "test_nll")}
    for i in range(len(seeds)):
        v = take(variables, i)
        xtr = xs[i] if per_seed else xs
        ytr = ys[i] if per_seed else ys
        ptr = P.weight_scaling(model, v, xtr).arithmetic
        pte = P.weight_scaling(model, v, ds.x_test).arithmetic
        out["train_acc"].append(accuracy(ptr, ytr))
        out["test_acc"].append(accuracy(pte, ds.y_test))
        out["train_nll"].append(nll(ptr, ytr))
        out["test_nll"].append(nll(pte, ds.y_test))
    return out


def plan(cfg: Config, ds: Dataset) -> dict:
    reg_seeds, seeds = list(range(cfg.tutorial_seeds)), list(range(cfg.seeds))
    cells = {
        f"tutorial_rate={r}": cell(tutorial_cell, rate=r, train=cfg.tutorial, seeds=reg_seeds)
        for r in cfg.tutorial_rates
    }
    digits = dict(ds=ds, width=cfg.width, train=cfg.digits, seeds=seeds)
    for r in cfg.rates:
        cells[f"digits_rate={r}"] = cell(digits_cell, rate=r, n_train=None, **digits)
    n_full = len(ds.x_train)
    for n in (*cfg.sizes, n_full):
        for r in cfg.size_rates:
            cells[f"digits_n={n}_rate={r}"] = cell(
                digits_cell, rate=r, n_train=None if n == n_full else n, **digits
            )
    return cells


def summarise(cfg: Config, raw: dict) -> dict:
    """Paired intervals over the seeds where neither tutorial net diverged, the digits
    sweeps, and the verdicts."""
    reg_seeds = list(range(cfg.tutorial_seeds))
    plain, drop = (raw[f"tutorial_rate={r}"] for r in cfg.tutorial_rates)
    ok = [
        i
        for i in range(len(reg_seeds))
        if plain["test_mse"][i] is not None and drop["test_mse"][i] is not None
    ]
    if len(ok) < 2:
        raise DropstudyError("fewer than 2 tutorial seeds trained without diverging")
    pick = lambda r, k: [r[k][i] for i in ok]  # noqa: E731
    test_diff = paired(pick(plain, "test_mse"), pick(drop, "test_mse"))  # > 0: dropout better
    train_diff = paired(pick(drop, "train_mse"), pick(plain, "train_mse"))  # > 0: fits less
    shown = str(reg_seeds[ok[0]])
    rates, sizes = cfg.rates, _sizes(raw, cfg.size_rates[0])
    rate_sweep = {r: raw[f"digits_rate={r}"] for r in rates}
    rates_summary = {
        str(r): {k: ci(v) for k, v in rate_sweep[r].items()}
        | {"gap_acc": ci(np.subtract(rate_sweep[r]["train_acc"], rate_sweep[r]["test_acc"]))}
        for r in rates
    }
    r0, r1 = cfg.size_rates
    if not {r0, r1} <= set(rates):
        raise DropstudyError(f"rates {rates} must include the compared rates {cfg.size_rates}")
    nll_gain_05 = paired(rate_sweep[r0]["test_nll"], rate_sweep[r1]["test_nll"])
    sizes_summary = {}
    for n in sizes:
        p0, p5 = raw[f"digits_n={n}_rate={r0}"], raw[f"digits_n={n}_rate={r1}"]
        sizes_summary[str(n)] = {
            "test_acc_gain": paired(p5["test_acc"], p0["test_acc"]),
            "test_nll_gain": paired(p0["test_nll"], p5["test_nll"]),
            "gap_plain": ci(np.subtract(p0["train_acc"], p0["test_acc"])),
            "gap_dropout": ci(np.subtract(p5["train_acc"], p5["test_acc"])),
        }
    best_rate = min(rates, key=lambda r: rates_summary[str(r)]["test_nll"]["mean"])
    return {
        "tutorial": {
            "seeds": len(reg_seeds),
            "steps": cfg.tutorial.steps,
            "seeds_compared": len(ok),
            "diverged_plain": plain["diverged"],
            "diverged_dropout": drop["diverged"],
            "figure_seed": int(shown),
            "test_mse_plain": ci(pick(plain, "test_mse")),
            "test_mse_dropout": ci(pick(drop, "test_mse")),
            "train_mse_plain": ci(pick(plain, "train_mse")),
            "train_mse_dropout": ci(pick(drop, "train_mse")),
            "test_mse_plain_minus_dropout": test_diff,
            "train_mse_dropout_minus_plain": train_diff,
            "frac_seeds_dropout_lower_test": test_diff["frac_positive"],
        },
        "digits_rates": rates_summary,
        "digits_nll_gain_rate_0.5": nll_gain_05,
        "digits_sizes": sizes_summary,
        "best_rate_by_test_nll": best_rate,
        "verdict": direction_verdict(test_diff),
        "verdict_digits": direction_verdict(nll_gain_05),
        "verdict_typical_rates": choice_verdict(best_rate, cfg.typical_rates, cfg.near_typical),
    }


def _sizes(raw: dict, rate: float) -> list[int]:
    """The training-set sizes of the size sweep (``digits_n={n}_rate={rate}`` cells)."""
    labels = [k for k in raw if k.startswith("digits_n=") and k.endswith(f"_rate={rate}")]
    return sorted(int(k.split("_")[1].removeprefix("n=")) for k in labels)


def _shown(cfg: Config, raw: dict, r: dict) -> tuple[dict, dict]:
    """The plain and dropout nets' detail (data, curves, histograms) of the seed shown."""
    seed = str(r["tutorial"]["figure_seed"])
    return tuple(raw[f"tutorial_rate={x}"]["detail"][seed] for x in cfg.tutorial_rates)


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    sizes = [int(n) for n in r["digits_sizes"]]
    seed = r["tutorial"]["figure_seed"]
    plain, drop = _shown(cfg, raw, r)
    rates = cfg.tutorial_rates
    _tutorial_figures(ctx, plain, drop, seed, rates)
    _digits_figure(ctx, cfg.rates, r["digits_rates"], sizes, r["digits_sizes"], cfg.size_rates)


def _tutorial_figures(ctx, s0p, s0d, seed: int, rates) -> None:
    lp, ld = (f"drop rate {rates[0]}", f"drop rate {rates[1]}")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(s0p["x"], s0p["y_train"], c="tab:blue", s=50, alpha=0.5, label="train points")
    ax.scatter(s0p["x"], s0p["y_test"], c="tab:red", s=50, alpha=0.5, label="test points")
    ax.plot(s0p["grid"], s0p["snapshots"][-1]["curve"], "r-", lw=2.5, label=lp)
    ax.plot(s0d["grid"], s0d["snapshots"][-1]["curve"], "b--", lw=2.5, label=f"{ld} (WS)")
    ax.set_ylim(-2.5, 2.5)
    step = s0p["snapshots"][-1]["step"]
    ax.set(xlabel="x", ylabel="y", title=f"Tutorial fit, seed {seed}, after {step} steps")
    ax.legend(loc="upper left")
    ctx.savefig(fig, "fit.png")

    n = len(s0p["snapshots"])
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.3), sharey=True, squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.scatter(s0p["x"], s0p["y_train"], c="tab:blue", s=20, alpha=0.5)
        ax.scatter(s0p["x"], s0p["y_test"], c="tab:red", s=20, alpha=0.5)
        ax.plot(s0p["grid"], s0p["snapshots"][k]["curve"], "r-", lw=2, label=lp)
        ax.plot(s0d["grid"], s0d["snapshots"][k]["curve"], "b--", lw=2, label=ld)
        ax.set_ylim(-2.5, 2.5)
        ax.set_xlabel("x")
        ax.set_title(
            f"step {s0p['snapshots'][k]['step']}; training loss (MSE)\n"
            f"{s0p['snapshots'][k]['loss']:.4f} / {s0d['snapshots'][k]['loss']:.4f}",
            fontsize=8,
        )
    axes[0, 0].set_ylabel("y")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Tutorial fits during training, seed {seed}", fontsize=10)
    ctx.savefig(fig, "snapshots.png")

    layers = sorted({name.split("/")[0] for name in s0p["snapshots"][-1]["hist"]})
    fig, axes = plt.subplots(len(layers), 4, figsize=(14, 2.6 * len(layers)), squeeze=False)
    for row, layer in enumerate(layers):
        for col, (src, kind, tag) in enumerate(
            ((s0p, "weight", lp), (s0d, "weight", ld), (s0p, "grad", lp), (s0d, "grad", ld))
        ):
            ax = axes[row, col]
            for k, snap in enumerate(src["snapshots"]):
                h = snap["hist"][f"{layer}/{kind}"]
                ax.stairs(
                    h["counts"],
                    h["edges"],
                    alpha=0.35 + 0.65 * k / max(1, n - 1),
                    label=f"step {snap['step']}",
                )
            ax.set_title(f"{layer} {kind}s, {tag}", fontsize=9)
            ax.set_xlabel("weight value" if kind == "weight" else "gradient value")
            ax.set_ylabel("entries")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        f"Kernel weights and gradients of every layer, seed {seed}, at each snapshot step; "
        "x range: 1st to 99th percentile (tails counted in the end bins)",
        fontsize=10,
    )
    ctx.savefig(fig, "histograms.png")


def _digits_figure(ctx, rates, rates_summary, sizes, sizes_summary, size_rates) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    errorbar(axes[0], rates, [rates_summary[str(r)]["train_acc"] for r in rates], "train")
    errorbar(axes[0], rates, [rates_summary[str(r)]["test_acc"] for r in rates], "test")
    axes[0].set(
        xlabel="drop rate (hidden layers)",
        ylabel="accuracy (fraction)",
        title="Digits: accuracy vs drop rate (95% CI)",
    )
    axes[0].legend()
    for key, rate in zip(("gap_plain", "gap_dropout"), size_rates, strict=True):
        errorbar(axes[1], sizes, [sizes_summary[str(n)][key] for n in sizes], f"drop rate {rate}")
    axes[1].set_xscale("log")
    axes[1].set(
        xlabel="training examples (log scale)",
        ylabel="train minus test accuracy",
        title="Digits: generalisation gap vs data size (95% CI)",
    )
    axes[1].legend()
    ctx.savefig(fig, "digits.png")


def tensorboard(cfg: Config, label: str, result: dict, logdir: Path) -> None:
    """TensorBoard events of one finished (or reused) cell, as the tutorial logs them: for
    each net and seed a run folder (``plain/seed0``, ``dropout/seed0``, ...) with the training
    loss at every step, train and test MSE at every snapshot, and weight and gradient
    histograms of every layer at every snapshot. A re-run replaces the folders."""
    if not label.startswith("tutorial_rate="):
        return  # the digits cells keep no training curves
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise DropstudyError(
            "--tensorboard needs the optional extra: pip install -e '.[tensorboard]'"
        ) from None
    rate = float(label.removeprefix("tutorial_rate="))
    net = "plain" if rate == cfg.tutorial_rates[0] else "dropout"
    for seed, d in result["detail"].items():
        run = Path(logdir) / net / f"seed{seed}"
        shutil.rmtree(run, ignore_errors=True)  # replace, never append
        with SummaryWriter(str(run)) as w:
            for step, value in enumerate(d["loss"], 1):
                w.add_scalar("loss/train_dropout_active", value, step)
            for snap in d["snapshots"]:
                w.add_scalar("mse/train_weight_scaling", snap["train_mse"], snap["step"])
                w.add_scalar("mse/test_weight_scaling", snap["test_mse"], snap["step"])
                for name, h in snap["hist"].items():
                    layer, kind = name.split("/")
                    edges = np.asarray(h["edges"])
                    counts = np.asarray(h["counts"], dtype=float)
                    centers = 0.5 * (edges[1:] + edges[:-1])
                    w.add_histogram_raw(
                        f"{'weights' if kind == 'weight' else 'gradients'}/{layer}",
                        min=float(edges[0]),
                        max=float(edges[-1]),
                        num=float(counts.sum()),
                        sum=float((counts * centers).sum()),
                        sum_squares=float((counts * centers**2).sum()),
                        bucket_limits=edges[1:].tolist(),
                        bucket_counts=counts.tolist(),
                        global_step=snap["step"],
                    )


def section(r: dict) -> tuple[str, str]:
    t = r["tutorial"]
    rows = [
        ["test MSE, drop 0", ci_str(t["test_mse_plain"])],
        ["test MSE, drop 0.5", ci_str(t["test_mse_dropout"])],
        ["test MSE, drop 0 minus drop 0.5 (paired)", ci_str(t["test_mse_plain_minus_dropout"])],
        ["train MSE, drop 0", ci_str(t["train_mse_plain"])],
        ["train MSE, drop 0.5", ci_str(t["train_mse_dropout"])],
        ["seeds where dropout's test MSE is lower", f"{t['frac_seeds_dropout_lower_test']:.2f}"],
    ]
    rates = table(
        ["drop rate", "train acc", "test acc", "train - test acc", "test NLL"],
        [
            [
                k,
                ci_str(v["train_acc"]),
                ci_str(v["test_acc"]),
                ci_str(v["gap_acc"]),
                ci_str(v["test_nll"]),
            ]
            for k, v in r["digits_rates"].items()
        ],
    )
    sizes = table(
        [
            "train examples",
            "gap, drop 0",
            "gap, drop 0.5",
            "test acc gain of dropout",
            "test NLL gain of dropout",
        ],
        [
            [
                k,
                ci_str(v["gap_plain"]),
                ci_str(v["gap_dropout"]),
                ci_str(v["test_acc_gain"]),
                ci_str(v["test_nll_gain"]),
            ]
            for k, v in sorted(r["digits_sizes"].items(), key=lambda kv: int(kv[0]))
        ],
    )
    cfg = r["config"]
    tut, dig = cfg["tutorial"], cfg["digits"]
    p0, p1 = cfg["tutorial_rates"]
    n_div = len(t["diverged_dropout"]) + len(t["diverged_plain"])
    diverged = (
        f"{len(t['diverged_dropout'])} dropout and {len(t['diverged_plain'])} plain runs "
        f"diverged (seeds {t['diverged_dropout'] + t['diverged_plain']}); the comparison uses "
        f"the {t['seeds_compared']} seeds where neither did"
        if n_div
        else f"no run diverged; all {t['seeds_compared']} seeds are compared"
    )
    w = cfg["width"]
    md = f"""Tutorial setting over {t["seeds"]} seeds: the 1-200-200-200-1 ReLU net with
PyTorch's default initialisation (weights and biases uniform on +-1/sqrt(fan_in)), drop rate
{p0} vs {p1}, {train_str(tut)} on mean squared error; each seed draws new noise and one
initialisation shared by both nets; evaluation by weight scaling. The tutorial reports that
the plain net passes through every training point and the dropout net is smoother. With its
settings {diverged}. The figures show seed {t["figure_seed"]}.

![fit](overfitting/fit.png)

{table(["quantity (tutorial regression)", "mean [95% CI]"], rows)}

![snapshots](overfitting/snapshots.png)
![histograms](overfitting/histograms.png)

{mlp_str(r, [w, w])} ({train_str(dig)}): accuracy and gap against the drop rate, and
against the training-set size. Srivastava et al. 2014 report that error is flat for keep
0.4-0.8 and that dropout gives no gain at 100 or 500 examples, a gain that grows and then
shrinks with more data.

![digits](overfitting/digits.png)

{rates}

{sizes}

- Verdict on the tutorial data (rule: paired test-MSE difference, plain minus dropout, 95% CI
  above 0): **{r["verdict"]}**. This is the claim's headline verdict.
- Verdict on {r.get("data", {}).get("name", "digits")} (test NLL, drop {p0} minus drop {p1},
  CI above 0): **{r["verdict_digits"]}**.
- Claim 6, typical rates (rule: the rate with the lowest mean test NLL is one of
  {cfg["typical_rates"]}; one of {cfg["near_typical"]} is partial): best rate
  {r["best_rate_by_test_nll"]}, **{r["verdict_typical_rates"]}**.
"""
    return md, r["verdict"]


if __name__ == "__main__":
    from .cli import main_for

    main_for(NAME)
