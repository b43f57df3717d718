"""The report's section and figures of the coadaptation experiment, from its results file."""

from __future__ import annotations

import numpy as np

from ..coadaptation import HIST_EDGES, Config
from ..common import (
    ci_str,
    errorbar,
    mlp_str,
    plt,
    table,
)
from ..protocol import arms_note, arms_table, caveats, protocol_str, stopped_by

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = "its temperature's lower bound was set after a review of the first run"


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the coadaptation experiment's figures into its folder.

    ``coadaptation.png``: test accuracy and temperature-scaled test NLL as hidden units are
    removed, survivors rescaled or not (95% intervals over seeds), the normalised interaction R per
    seed, and the distribution of the pairwise interactions of the first seed;
    ``first_layer.png``: the first-layer weights of 16 units of the first seed, each drawn as an
    image over the input (or a curve along a 1-D signal). The first seed is named in the titles.

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}``.
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    labels = {"plain": "plain", "dropout": f"dropout {cfg.rates[1]}"}
    first = (r.get("scale") or {}).get("seed_start", 0)  # the seed the single-seed panels show
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for k, (net, label) in enumerate(labels.items()):
        for mode, ls in (("rescaled", "-"), ("unrescaled", "--")):
            for ax, metric in zip(axes[0], ("acc", "nll"), strict=True):
                curve = r["curves"][net][mode][metric]
                errorbar(ax, cfg.fractions, curve, f"{label}, {mode}", ls=ls, color=f"C{k}")
    axes[0, 0].set(
        xlabel="fraction of hidden units removed",
        ylabel=f"test accuracy (mean of {cfg.draws} draws)",
        title="Removing hidden units (95% CI over seeds)",
    )
    axes[0, 1].set(
        xlabel="fraction of hidden units removed",
        ylabel="test NLL at the fitted temperature (nats)",
        title="... temperature-scaled test NLL",
        yscale="log",
    )
    for x, net in enumerate(labels):
        for part, dx, mk in (("train", -0.12, "s"), ("test", 0.12, "o")):
            vals = r["per_seed"][net][f"norm_{part}"]
            axes[1, 0].plot(
                np.full(len(vals), x + dx),
                vals,
                mk,
                alpha=0.6,
                color=f"C{x}",
                label=f"{labels[net]}, {part}",
            )
    axes[1, 0].set(
        xticks=[0, 1],
        xticklabels=list(labels.values()),
        xlim=(-0.6, 1.6),
        ylabel="R = mean |D_ij| / mean |d_i|",
        title="Normalised interaction, last hidden layer (per seed)",
    )
    axes[1, 0].set_ylim(bottom=0)
    for net, label in labels.items():
        axes[1, 1].stairs(raw_rate(cfg, raw, net)[0]["d_hist"], HIST_EDGES, label=label, alpha=0.8)
    axes[1, 1].set(
        xlabel="D_ij / mean |d_i| (test; outliers in the end bins)",
        ylabel="pairs of units (log scale)",
        title=f"Pairwise interactions, last hidden layer (seed {first})",
        yscale="log",
    )
    for ax in axes.ravel():
        ax.legend(fontsize=7)
    ctx.savefig(fig, "coadaptation.png")
    fig, axes = plt.subplots(2, 16, figsize=(13, 2.0))
    for row, (net, label) in enumerate(labels.items()):
        for j, w in enumerate(raw_rate(cfg, raw, net)[0]["first_layer"]):
            ax = axes[row, j]
            side = round(np.sqrt(len(w)))  # 8 x 8 digits, 28 x 28 MNIST
            if side * side == len(w):
                ax.imshow(np.reshape(w, (side, side)), cmap="RdBu_r")
            else:  # a 1-D signal (MNIST-1D): the weights along it
                ax.plot(w, lw=0.8)
                ax.axhline(0, color="k", lw=0.4)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(
        f"First-layer weights of 16 units (seed {first}), each drawn over the input (an image of "
        "the pixels, red positive, blue negative; or a curve along a 1-D signal)",
        fontsize=9,
    )
    ctx.savefig(fig, "first_layer.png")


def raw_rate(cfg: Config, raw: dict, net: str) -> list[dict]:
    """The raw per-seed measures of ``net`` (``plain`` or ``dropout``).

    Args:
      cfg: the experiment's configuration; ``cfg.rates`` holds the plain and the dropout net's
        drop rates.
      raw: the cells' results, ``{label: result}``.
      net: ``"plain"`` or ``"dropout"``.

    Returns:
      The result of the net's cell (``rate=RATE``): one dict of measures per seed, of the
      nets selected within W.
    """
    return raw[f"rate={cfg.rates[net == 'dropout']}"]["seeds"]


def section(r: dict) -> str:
    """The report's section of the coadaptation experiment, from its results file.

    The set-up, the measures and why they are taken at a fitted temperature, the papers' anchor,
    the figures, tables of the headline metrics, of the interactions and of the other measures per
    net, and the primary test with its limits.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``coadaptation/...``).
    """
    c, n = r["config"], r["nets"]
    w, rate, at = c["width"], c["rates"][1], c["compare_at"]
    label = {"plain": "plain", "dropout": f"dropout {rate}"}
    rows = [
        ("plain", "(one prediction)", "plain", "ws"),
        (label["dropout"], "weight scaling", "dropout", "ws"),
        (label["dropout"], f"MC average, K = {c['mc_k']}", "dropout", "mc"),
    ]
    keys = ("train_acc", "train_nll", "test_acc", "test_nll")
    scaled = lambda net, p: (  # noqa: E731
        [ci_str(n[net]["temperature"]), ci_str(n[net]["test_nll_scaled"])]
        if p == "ws"
        else ["-"] * 2
    )
    headline = table(
        ["net", "predictor", "train acc", "train NLL", "test acc", "test NLL", "temperature T",
         "test NLL at T"],
        [[name, pred, *(ci_str(n[net][f"{k}_{p}"]) for k in keys), *scaled(net, p)]
         for name, pred, net, p in rows],
    )  # fmt: skip
    share = lambda net, part: (  # noqa: E731
        f"{ci_str(n[net][f'neg_single_{part}'])} / "
        f"{ci_str(n[net][f'neg_single_untempered_{part}'])}"
    )
    inter = table(
        ["net", "split", "**R** (normalised)", "mean abs D_ij (nats)", "mean abs d_i (nats)",
         "mean D_ij (nats)", "R without temperature", "share of d_i < 0, at T / without"],
        [[label[net], part, ci_str(n[net][f"norm_{part}"]),
          *(ci_str(n[net][f"{k}_{part}"], 4) for k in ("abs_d", "abs_single", "mean_d")),
          ci_str(n[net][f"norm_untempered_{part}"]), share(net, part)]
         for net in label for part in ("train", "test")],
    )  # fmt: skip
    other = table(
        ["net", f"acc lost, {at:g} removed", f"acc lost, {at:g} removed, rescaled",
         f"NLL increase at T, {at:g} removed", f"NLL increase at T, {at:g} removed, rescaled",
         "mean abs corr (last layer)", "mean activation", "fraction zero", "live units (last)"],
        [[label[net],
          *(ci_str(n[net][f"{q}_{m}"]) for q in ("acc_lost", "nll_gain")
            for m in ("unrescaled", "rescaled")),
          *(ci_str(n[net][k]) for k in ("mean_abs_corr", "mean_activation", "frac_zero")),
          ci_str(n[net]["live_units"], 1)]
         for net in label],
    )  # fmt: skip
    single = {part: ci_str(r["comparisons"][f"abs_single_{part}"], 4) for part in ("train", "test")}
    nets = r["nets"]
    smaller = nets["dropout"]["abs_single_test"]["mean"] < nets["plain"]["abs_single_test"]["mean"]
    more = nets["dropout"]["live_units"]["mean"] > nets["plain"]["live_units"]["mean"]
    scale_words = (
        f"The dropout net's single-unit effects on test are {'smaller' if smaller else 'larger'} "
        f"and its live units {'more' if more else 'fewer'}"
    )
    return f"""{mlp_str(r, [w, w])}, plain vs drop rate {rate}, the same initialisation per
seed, {c["seeds"]} seeds. Both nets train by the study's protocol, tuned each on its own, each
seed stopped by {stopped_by(c["protocol"])}: {protocol_str(c["protocol"])} "Train"
below is the part they trained on; the protocol's validation split also fits the temperatures.

{arms_table(r["arms"])}

{arms_note()}

**Caveats on the primary's arms.** {caveats(r["arms"], c["protocol"]["eval_every"]) or "none."}

**Measures.** Removal-based measures mislead on overconfident nets (removing a unit can *lower*
their NLL), and a net whose single units matter less shows smaller pairwise effects for that
reason alone. So every loss here is the NLL at a temperature T fitted per net and seed on the
validation split (weight-scaled logits; T > 1 means the net was overconfident; T is at least 1,
since that split also chose the stopping step and sharpening a net that makes almost no errors
on it overfits them), and the interaction of two units i, j of the last hidden layer, D_ij =
L(-i,-j) - L(-i) - L(-j) + L, is normalised by the single-unit effects d_i = L(-i) - L: **R =
mean |D_ij| / mean |d_i|**, over the live units (active on some training example) and all their
pairs. R = 0 when the effects of removing units add up; the larger R, the more a unit's worth
depends on which others are present. R is measured on the train split and on test; raw mean
|D_ij| and R at T = 1 (no temperature) are exploratory. Removal takes a random fraction of all
hidden units (both layers, {c["draws"]} draws per fraction, the same units for both nets),
either without rescaling or with each layer's survivors multiplied by n_layer / n_kept (the
layer's expected input to the next preserved; with half the units removed this is exactly a
subnetwork as inverted dropout trained it, survivors at 1/p). Correlations use the last hidden
layer; mean activation and the fraction of zeros both hidden layers; all on test at the expected
mask. Headline metrics come by weight scaling and by the MC average; the co-adaptation measures
are ablations of the weight-scaled net.

**Anchor.** Srivastava et al. (2014) give only visual evidence (cleaner features) and a
sparsity figure: mean hidden activation about 2.0 without dropout vs 0.7 with it, for a
256-unit ReLU autoencoder, so only the direction of the sparsity result is comparable.

![coadaptation](coadaptation/coadaptation.png)

*Top: test accuracy and temperature-scaled test NLL as hidden units are removed (solid:
survivors rescaled; dashed: not). Bottom: R per seed; the distribution of D_ij / mean |d_i|
over pairs (seed {(r.get("scale") or {}).get("seed_start", 0)}, test).*

![first layer](coadaptation/first_layer.png)

{headline}

{inter}

{other}

Mean |d_i|, plain minus dropout: {single["train"]} nats on the train split,
{single["test"]} on test (paired over seeds). The primary test is R on test, plain minus
dropout (claimed > 0), on the nets selected within W, held inconclusive (as every test here)
when a net did not converge or the same test within 2W decides otherwise: of these measures
it is the one that speaks to co-adaptation proper (how far units' effects fail to add), with
each net's overall confidence calibrated by T
(single removals can still lower the NLL: see the share of d_i < 0) and a common scale of its
loss changes divided out. It is not free of every scale: D_ij is second order in
the units' contributions while d_i is first order (on test, where the loss gradient is not 0),
so a net that spreads the same function over more, smaller units has a smaller R without any
change in how its features depend on each other (splitting every unit into k equal copies
divides R by k). {scale_words} (tables above), so part of the difference in R can come from
that, and how much is not measured here: a "supported" verdict says the dropout net's unit
effects add up better, which redundancy alone would also give, not that its units co-adapt
less in any further sense.
Removal robustness is
exploratory: rescaled removal of half the units is what the dropout net was trained on, and
either kind measures redundancy as much as co-adaptation.
"""
