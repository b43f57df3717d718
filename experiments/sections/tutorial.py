"""The report's section and figures of the tutorial experiment, from its results file."""

from __future__ import annotations

from ..common import (
    ci_str,
    plt,
    table,
    train_str,
)
from ..tutorial import Config

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = "moved back to weight scaling after both predictors' verdicts were seen"


def _shown(cfg: Config, raw: dict, r: dict) -> tuple[dict, dict]:
    """The plain and dropout nets' detail (data, curves, histograms) of the seed shown."""
    seed = str(r["tutorial"]["figure_seed"])
    return tuple(raw[f"tutorial_rate={x}"]["detail"][seed] for x in cfg.rates)


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the tutorial experiment's figures into its folder.

    ``fit.png``: the plain and dropout nets' fits of the seed shown (the dropout net's by weight
    scaling and, where recorded, by the MC average), with the train and test points;
    ``snapshots.png``: both nets' fits at each snapshot step, with their training losses;
    ``histograms.png``: the kernel weights and gradients of every layer at each snapshot step.

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}``.
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    plain, drop = _shown(cfg, raw, r)
    _tutorial_figures(ctx, plain, drop, r["tutorial"]["figure_seed"], cfg.rates, cfg.mc_k)


def _tutorial_figures(ctx, s0p, s0d, seed: int, rates, k: int) -> None:
    lp, ld = (f"drop rate {rates[0]}", f"drop rate {rates[1]}")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(s0p["x"], s0p["y_train"], c="tab:blue", s=50, alpha=0.5, label="train points")
    ax.scatter(s0p["x"], s0p["y_test"], c="tab:red", s=50, alpha=0.5, label="test points")
    ax.plot(s0p["grid"], s0p["snapshots"][-1]["curve"], "r-", lw=2.5, label=lp)
    ax.plot(s0d["grid"], s0d["snapshots"][-1]["curve"], "b--", lw=2.5, label=f"{ld} (WS)")
    if "mc_curve" in s0d:
        mc = s0d["mc_curve"]
        ax.plot(mc["x"], mc["y"], "g:", lw=2.5, label=f"{ld} (MC average, K = {k})")
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


def _ci_at(t: dict, *path: str) -> str:
    """``ci_str`` of ``t[path[0]][path[1]]...``, or "-" where the results have none."""
    for k in path:
        if k not in t:
            return "-"
        t = t[k]
    return ci_str(t)


def _tutorial_rows(a: dict, b: dict, mc_k: int) -> list[list[str]]:
    """Rows of the replication table: ours (``a``) beside the PyTorch reference (``b``)."""
    row = lambda name, *path: [name, _ci_at(a, *path), _ci_at(b, *path)]  # noqa: E731
    count = lambda t: f"{len(t['diverged_plain'])} / {len(t['diverged_dropout'])}"  # noqa: E731
    rows = [
        ["runs diverged, plain / dropout", count(a), count(b)],
        ["seeds compared", str(a["seeds_compared"]), str(b["seeds_compared"])],
        ["median train MSE, plain"] + [f"{t['median_train_mse_plain']:.2e}" for t in (a, b)],
    ]
    preds = (("ws", "weight scaling"), ("mc", f"MC K={mc_k}"))
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
    rows.append([f"share of seeds where dropout's test MSE (MC K={mc_k}) is lower", frac(a),
                 frac(b)])  # fmt: skip
    return rows


def section(r: dict) -> str:
    """The report's section of the tutorial experiment, from its results file.

    The tutorial's setting and how the replication is judged and checked against the tutorial's
    PyTorch code, the figures, and the replication table beside the PyTorch reference.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``tutorial/...``).
    """
    t, ref = r["tutorial"], r["pytorch"]
    cfg = r["config"]
    tut = cfg["train"]
    p0, p1 = cfg["rates"]
    replication = table(
        ["quantity (tutorial regression)", "dropstudy (JAX)", "the tutorial's PyTorch code"],
        _tutorial_rows(t, ref, cfg["mc_k"]),
    )
    return f"""Tutorial setting over {t["seeds"]} seeds: the 1-200-200-200-1 ReLU net with
PyTorch's default initialisation (weights and biases uniform on +-1/sqrt(fan_in)), drop rate
{p0} vs {p1}, {train_str(tut)} on mean squared error; each seed draws new noise and one
initialisation shared by both nets. The tutorial reports that the plain net passes through
every training point and the dropout net is smoother. The dropout net is judged as the tutorial
uses it, by weight scaling (its `model.eval()`, the primary test), and as an ensemble, by its
MC average over {cfg["mc_k"]} subnetworks. Overfitting is measured by test MSE and by
roughness: the total variation of the fitted curve's slope on [-1, 1] (the sum of |second
differences| / spacing over {cfg["rough_points"]} points; the sum of the slope changes at a
ReLU fit's kinks) and by the noise-free risk, the mean squared distance of the fitted curve
from the true y = {cfg["slope"]}x over the same points (test MSE scores 10 noisy labels). The
replication
is checked against the tutorial's own PyTorch code (Linear-ReLU-Dropout blocks, the same
optimiser and steps) run on the same data sets, with its own initialisation
(`torch.manual_seed(seed)`); its MC average is PyTorch's usual one, {cfg["mc_k"]}
training-mode passes
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
