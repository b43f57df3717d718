"""Claim 1 on the tutorial's own example: dropout reduces overfitting.

The tutorial's regression: a 1-200-200-200-1 ReLU MLP on 10 noisy points of y = 1.5x, drop
rate 0 vs 0.5, SGD lr 0.01 momentum 0.9, 2000 full-batch steps, snapshots every 400 steps;
over many seeds, paired (same data, same initialisation). The dropout net is judged as an
ensemble (its MC average over K subnetworks) and by weight scaling; overfitting is measured by
test MSE, by the noise-free risk and by the roughness of the fitted curve. The tutorial's own
PyTorch code runs on the same data sets as the reference the replication is checked against.
The data are the tutorial's own, drawn per seed: the experiment runs once, whatever
``--dataset`` says (the overfitting experiment tests the claim on each data set).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dropstudy import predict as P
from dropstudy.data import tutorial_regression
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, diverged, seed_keys, take, train_seeds
from dropstudy.validate import DropstudyError

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    ci,
    ci_str,
    flips,
    plt,
    predictions,
    table,
    train_str,
)
from .stats import direction, paired

NAME = "tutorial"
CLAIM = "Dropout reduces overfitting: the tutorial's own regression example."
DATA = "the tutorial's 10 noisy points of y = 1.5x, drawn per seed"
GRID = 200  # points on which fitted curves are drawn
HIST_BINS = 40
ROUGH_GRID = 201  # points on [-1, 1] (spacing 0.01) on which roughness and risk are measured
SLOPE = 1.5  # the tutorial's true function y = SLOPE * x


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
    """Seeds, rates and training of the tutorial's regression."""

    seeds: int = 20
    rates: tuple[float, float] = (0.0, 0.5)  # plain, dropout
    train: TrainConfig = tutorial_config(2000, 400)
    primary: str = "tutorial test MSE MC"
    QUICK: ClassVar[dict] = {"seeds": 3, "train": tutorial_config(200, 100)}


def tutorial_sets(seeds) -> tuple[list, np.ndarray, np.ndarray]:
    """One tutorial data set per seed: ``(sets, xs (S, 10, 1), ys (S, 10, 1))``."""
    sets = [
        tutorial_regression(jax.random.fold_in(jax.random.key(s), 1), slope=SLOPE) for s in seeds
    ]
    return sets, np.stack([d.x_train for d in sets]), np.stack([d.y_train for d in sets])


def roughness(curve, spacing: float) -> float:
    """Total variation of the slope of a curve sampled at equal ``spacing``:
    ``sum |f[i+1] - 2 f[i] + f[i-1]| / spacing``. For a piecewise-linear (ReLU) fit it is
    the sum of the absolute slope changes at its kinks inside the grid; a straight line
    scores 0, a curve that bends through every noisy training point scores high."""
    f = np.asarray(curve, np.float64).ravel()
    return float(np.sum(np.abs(np.diff(f, 2))) / spacing)


def rough_grid() -> np.ndarray:
    """``(ROUGH_GRID, 1)`` points on the data's range [-1, 1]."""
    return np.linspace(-1.0, 1.0, ROUGH_GRID, dtype=np.float32)[:, None]


def _fit_measures(out_train, out_test, out_grid, d) -> dict:
    """Train and test MSE, risk (the noise-free MSE against y = SLOPE * x on the grid) and
    roughness of one predictor's outputs on one data set."""
    mse = lambda a, y: float(np.mean((np.asarray(a, np.float64) - y) ** 2))  # noqa: E731
    return {
        "train_mse": mse(out_train, d.y_train),
        "test_mse": mse(out_test, d.y_test),
        "risk": mse(out_grid, SLOPE * rough_grid().astype(np.float64)),
        "roughness": roughness(out_grid, 2.0 / (ROUGH_GRID - 1)),
    }


def tutorial_cell(rate: float, train: TrainConfig, seeds: list[int]) -> dict:
    """The tutorial's net at drop ``rate`` on each seed's own data set: train and test MSE
    and roughness by weight scaling (``ws``) and, with dropout, by the MC average (``mc``)."""
    model = tutorial_net(rate)
    sets, xs, ys = tutorial_sets(seeds)
    # A run that diverges under the tutorial's settings is recorded as diverged (no NaN is
    # kept); the summary reports it as an outcome, with and without it.
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
    predictors = ("ws", "mc") if rate > 0 else ("ws",)
    out = {"diverged": [s for s, b in zip(seeds, bad) if b], "detail": {}}
    out.update(
        {p: {"train_mse": [], "test_mse": [], "risk": [], "roughness": []} for p in predictors}
    )
    every = train.snapshot_every or train.steps
    n = len(sets[0].x_train)
    for i, d in enumerate(sets):
        if bad[i]:
            for p in predictors:
                for k in out[p]:
                    out[p][k].append(None)
            continue
        v_i = take(variables, i)
        x = jnp.concatenate([jnp.asarray(d.x_train), jnp.asarray(d.x_test), rough_grid()])
        preds = predictions(model, v_i, x, jax.random.key(3000 + seeds[i]), task="regression")
        for p in predictors:
            o = np.asarray(preds[p].mean)
            m = _fit_measures(o[:n], o[n : 2 * n], o[2 * n :], d)
            for k, val in m.items():
                out[p][k].append(val)
        out["detail"][str(seeds[i])] = _detail(model, hist, i, d, grid, train.steps // every, every)
        if "mc" in predictors:  # the ensemble's own curve, on [-1, 1], for the fit figure
            out["detail"][str(seeds[i])]["mc_curve"] = {
                "x": rough_grid()[:, 0].tolist(),
                "y": np.asarray(preds["mc"].mean)[2 * n :, 0].tolist(),
            }
    return out


def torch_reference_cell(rate: float, train: TrainConfig, seeds: list[int]) -> dict:
    """The tutorial's own PyTorch code on the same data sets as :func:`tutorial_cell`:
    ``nn.Sequential`` of Linear-ReLU-Dropout blocks (PyTorch's default initialisation,
    ``torch.manual_seed(seed)``), SGD with momentum, full batch, MSE; evaluated in eval mode
    (weight scaling) and, with dropout, by the mean of ``MC_K`` training-mode passes. Those
    draw a mask per *example*, so the MC curve's points carry independent noise and its
    roughness measures that noise: it is left out (dropstudy's MC shares each subnetwork's
    mask across the batch)."""
    try:
        import torch
    except ImportError:
        raise DropstudyError(
            "the tutorial experiment checks its replication against the "
            "tutorial's PyTorch code: install the reference extra, "
            "pip install -e '.[reference]' (make study and make test do)"
        ) from None
    torch.set_num_threads(1)  # deterministic and cheap: the nets are tiny
    sets, _, _ = tutorial_sets(seeds)
    predictors = ("ws", "mc") if rate > 0 else ("ws",)
    out = {"diverged": []}
    out.update(
        {p: {"train_mse": [], "test_mse": [], "risk": [], "roughness": []} for p in predictors}
    )
    if "mc" in predictors:
        del out["mc"]["roughness"]
    width = 200
    for seed, d in zip(seeds, sets):
        torch.manual_seed(seed)
        layers = []
        for fan_in in (1, width, width):
            layers += [torch.nn.Linear(fan_in, width), torch.nn.ReLU(), torch.nn.Dropout(rate)]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
        opt = torch.optim.SGD(net.parameters(), lr=train.lr, momentum=train.momentum)
        xt, yt = torch.tensor(d.x_train), torch.tensor(d.y_train)
        ok = True
        for _ in range(train.steps):
            loss = torch.nn.functional.mse_loss(net(xt), yt)
            if not torch.isfinite(loss):
                ok = False
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        if not ok:
            out["diverged"].append(seed)
            for p in predictors:
                for k in out[p]:
                    out[p][k].append(None)
            continue
        n = len(d.x_train)
        x = torch.from_numpy(np.concatenate([d.x_train, d.x_test, rough_grid()]))
        with torch.no_grad():
            net.eval()
            outs = {"ws": net(x).numpy()}
            if "mc" in predictors:
                net.train()
                outs["mc"] = torch.stack([net(x) for _ in range(MC_K)]).mean(0).numpy()
        for p in predictors:
            m = _fit_measures(outs[p][:n], outs[p][n : 2 * n], outs[p][2 * n :], d)
            for k in out[p]:
                out[p][k].append(m[k])
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


def plan(cfg: Config, ds=None) -> dict:
    seeds = list(range(cfg.seeds))
    cells = {}
    for r in cfg.rates:
        cells[f"tutorial_rate={r}"] = cell(tutorial_cell, rate=r, train=cfg.train, seeds=seeds)
        cells[f"pytorch_rate={r}"] = cell(
            torch_reference_cell, rate=r, train=cfg.train, seeds=seeds
        )
    return cells


def _tutorial(cfg: Config, plain: dict, drop: dict, label: str, source: str):
    """Summary and tests of one implementation's tutorial runs (``label``: ``"tutorial"``
    for ours, ``"pytorch"`` for the reference). Seeds where either net diverged are left
    out of the paired comparisons and counted; when any diverged, one more test counts them
    as losses of the net that diverged."""
    n = cfg.seeds
    ok = [
        i
        for i in range(n)
        if plain["ws"]["test_mse"][i] is not None and drop["ws"]["test_mse"][i] is not None
    ]
    if len(ok) < 2:
        raise DropstudyError(f"{source}: fewer than 2 tutorial seeds trained without diverging")
    pick = lambda r, p, k: [r[p][k][i] for i in ok]  # noqa: E731
    summ = {
        "seeds": n,
        "seeds_compared": len(ok),
        "diverged_plain": plain["diverged"],
        "diverged_dropout": drop["diverged"],
        "plain": {k: ci(pick(plain, "ws", k)) for k in plain["ws"]},
        "median_train_mse_plain": float(np.median(pick(plain, "ws", "train_mse"))),
    }
    tests = {}
    for p in ("ws", "mc"):
        summ[f"dropout_{p}"] = {k: ci(pick(drop, p, k)) for k in drop[p]}
        for k, what in (("test_mse", "test MSE"), ("risk", "risk"), ("roughness", "roughness")):
            if k not in drop[p]:
                continue
            d = paired(pick(plain, "ws", k), pick(drop, p, k))
            summ[f"{k}_plain_minus_dropout_{p}"] = d
            tests[f"{label} {what} {p.upper()}"] = direction(
                np.subtract(pick(plain, "ws", k), pick(drop, p, k)),
                what=f"{what}, plain minus dropout ({source})",
                predictor=p,
            )
    if plain["diverged"] or drop["diverged"]:
        # Per seed: +1 where dropout's test MSE is lower (or only the plain net diverged),
        # -1 where it is higher (or only the dropout net diverged), 0 where both diverged.
        score = []
        for i in range(n):
            a, b = plain["ws"]["test_mse"][i], drop["mc"]["test_mse"][i]
            if a is None or b is None:
                score.append(float(a is None) - float(b is None))
            else:
                score.append(float(np.sign(a - b)))
        tests[f"{label} test MSE MC, divergences counted"] = direction(
            score,
            what=f"sign of test MSE, plain minus dropout, a diverged run counted as a loss "
            f"({source})",
            predictor="mc",
        )
    return summ, tests


def summarise(cfg: Config, raw: dict) -> dict:
    """This replication and the PyTorch reference, and their tests."""
    r0, r1 = cfg.rates
    tut, tests = _tutorial(
        cfg, raw[f"tutorial_rate={r0}"], raw[f"tutorial_rate={r1}"], "tutorial",
        "this replication, JAX",
    )  # fmt: skip
    ref, ref_tests = _tutorial(
        cfg, raw[f"pytorch_rate={r0}"], raw[f"pytorch_rate={r1}"], "pytorch",
        "the tutorial's PyTorch code",
    )  # fmt: skip
    tests.update(ref_tests)
    shown = [raw[f"tutorial_rate={r}"]["detail"] for r in (r0, r1)]
    tut["figure_seed"] = next(i for i in range(cfg.seeds) if all(str(i) in d for d in shown))
    pairs = [(f"{a} {w} WS", f"{a} {w} MC") for a, w in (("tutorial", "test MSE"),
             ("tutorial", "risk"), ("tutorial", "roughness"), ("pytorch", "test MSE"),
             ("pytorch", "risk"))]  # fmt: skip
    return {
        "tutorial": tut,
        "pytorch": ref,
        "tests": tests,
        "primary": cfg.primary,
        "findings": flips(tests, pairs),
    }


def _shown(cfg: Config, raw: dict, r: dict) -> tuple[dict, dict]:
    """The plain and dropout nets' detail (data, curves, histograms) of the seed shown."""
    seed = str(r["tutorial"]["figure_seed"])
    return tuple(raw[f"tutorial_rate={x}"]["detail"][seed] for x in cfg.rates)


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    plain, drop = _shown(cfg, raw, r)
    _tutorial_figures(ctx, plain, drop, r["tutorial"]["figure_seed"], cfg.rates)


def _tutorial_figures(ctx, s0p, s0d, seed: int, rates) -> None:
    lp, ld = (f"drop rate {rates[0]}", f"drop rate {rates[1]}")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(s0p["x"], s0p["y_train"], c="tab:blue", s=50, alpha=0.5, label="train points")
    ax.scatter(s0p["x"], s0p["y_test"], c="tab:red", s=50, alpha=0.5, label="test points")
    ax.plot(s0p["grid"], s0p["snapshots"][-1]["curve"], "r-", lw=2.5, label=lp)
    ax.plot(s0d["grid"], s0d["snapshots"][-1]["curve"], "b--", lw=2.5, label=f"{ld} (WS)")
    if "mc_curve" in s0d:
        mc = s0d["mc_curve"]
        ax.plot(mc["x"], mc["y"], "g:", lw=2.5, label=f"{ld} (MC average, K = {MC_K})")
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


def tensorboard(cfg: Config, label: str, result: dict, logdir: Path) -> None:
    """TensorBoard events of one finished (or reused) cell, as the tutorial logs them: for
    each net and seed a run folder (``plain/seed0``, ``dropout/seed0``, ...) with the training
    loss at every step, train and test MSE at every snapshot, and weight and gradient
    histograms of every layer at every snapshot. A re-run replaces the folders."""
    if not label.startswith("tutorial_rate="):
        return  # the PyTorch reference's cells keep no training curves
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise DropstudyError(
            "--tensorboard needs the optional extra: pip install -e '.[tensorboard]'"
        ) from None
    rate = float(label.removeprefix("tutorial_rate="))
    net = "plain" if rate == cfg.rates[0] else "dropout"
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


def _ci_at(t: dict, *path: str) -> str:
    """``ci_str`` of ``t[path[0]][path[1]]...``, or "-" where the results have none."""
    for k in path:
        if k not in t:
            return "-"
        t = t[k]
    return ci_str(t)


def _tutorial_rows(a: dict, b: dict) -> list[list[str]]:
    """Rows of the replication table: ours (``a``) beside the PyTorch reference (``b``)."""
    row = lambda name, *path: [name, _ci_at(a, *path), _ci_at(b, *path)]  # noqa: E731
    count = lambda t: f"{len(t['diverged_plain'])} / {len(t['diverged_dropout'])}"  # noqa: E731
    rows = [
        ["runs diverged, plain / dropout", count(a), count(b)],
        ["seeds compared", str(a["seeds_compared"]), str(b["seeds_compared"])],
        ["median train MSE, plain"] + [f"{t['median_train_mse_plain']:.2e}" for t in (a, b)],
    ]
    preds = (("ws", "weight scaling"), ("mc", f"MC K={MC_K}"))
    for k, name in (("train_mse", "train MSE"), ("test_mse", "test MSE"),
                    ("risk", "risk (noise-free)"), ("roughness", "roughness")):  # fmt: skip
        rows.append(row(f"{name}, plain", "plain", k))
        rows += [row(f"{name}, dropout, {pn}", f"dropout_{p}", k) for p, pn in preds]
        if k != "train_mse":
            rows += [
                row(f"{name}, plain minus dropout ({pn}), paired", f"{k}_plain_minus_dropout_{p}")
                for p, pn in preds
            ]
    frac = lambda t: f"{t['test_mse_plain_minus_dropout_mc']['frac_positive']:.2f}"  # noqa: E731
    rows.append([f"share of seeds where dropout's test MSE (MC K={MC_K}) is lower", frac(a),
                 frac(b)])  # fmt: skip
    return rows


def section(r: dict) -> str:
    t, ref = r["tutorial"], r["pytorch"]
    cfg = r["config"]
    tut = cfg["train"]
    p0, p1 = cfg["rates"]
    replication = table(
        ["quantity (tutorial regression)", "dropstudy (JAX)", "the tutorial's PyTorch code"],
        _tutorial_rows(t, ref),
    )
    return f"""Tutorial setting over {t["seeds"]} seeds: the 1-200-200-200-1 ReLU net with
PyTorch's default initialisation (weights and biases uniform on +-1/sqrt(fan_in)), drop rate
{p0} vs {p1}, {train_str(tut)} on mean squared error; each seed draws new noise and one
initialisation shared by both nets. The tutorial reports that the plain net passes through
every training point and the dropout net is smoother. The dropout net is an ensemble, so it
is judged by its MC average over {MC_K} subnetworks (the primary test) and by weight scaling
(the tutorial's `model.eval()`). Overfitting is measured by test MSE and by roughness: the total
variation of the fitted curve's slope on [-1, 1] (the sum of |second differences| / spacing
over {ROUGH_GRID} points; the sum of the slope changes at a ReLU fit's kinks) and by the
noise-free risk, the mean squared distance of the fitted curve from the true y = {SLOPE}x over
the same points (test MSE scores 10 noisy labels). The replication
is checked against the tutorial's own PyTorch code (Linear-ReLU-Dropout blocks, the same
optimiser and steps) run on the same data sets, with its own initialisation
(`torch.manual_seed(seed)`); its MC average is PyTorch's usual one, {MC_K} training-mode passes
with a mask per example, so the roughness of its noisy MC curve is not reported. A run whose
loss becomes non-finite is counted as diverged and
left out of the paired rows. The figures show seed {t["figure_seed"]}. The data are the
tutorial's own, so this experiment runs once, whatever the data set; the overfitting
experiment tests the claim on each data set.

![fit](tutorial/fit.png)

{replication}

![snapshots](tutorial/snapshots.png)
![histograms](tutorial/histograms.png)
"""


if __name__ == "__main__":
    from .cli import main_for

    main_for(NAME)
