"""The report's section and figures of the averaging experiment, from its results file."""

from __future__ import annotations

import numpy as np

from ..averaging import Config
from ..common import (
    ci_str,
    clip_off_scale,
    errorbar,
    plt,
    table,
    train_str,
)


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the averaging experiment's figures into its folder.

    ``mc_vs_exact_error.png`` and ``mc_vs_exact_nll.png``: for every net, test error and NLL of the
    MC arithmetic and geometric means against K (means and 95% intervals over seeds), with weight
    scaling and the exact means as horizontal lines; ``ws_minus_exact.png``: for the nets with
    exact means, weight scaling minus the exact arithmetic mean in error and NLL (means, 95%
    intervals), against the equivalence margins.

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}`` (unused here).
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    summaries, KS = r["nets"], r["ks"]
    tags = [n.tag for n in cfg.nets]
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
    exact = [t for t in tags if "exact_a" in summaries[t]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, scale, margin, ylabel in (
        (axes[0], "err_ws_minus_exact_a", 100, 100 * cfg.margin,
         "test error difference (percentage points)"),
        (axes[1], "nll_ws_minus_exact_a", 1, cfg.nll_margin, "test NLL difference (nats)"),
    ):  # fmt: skip
        cis = [{k: summaries[t][key][k] * scale for k in ("mean", "lo", "hi")} for t in exact]
        errorbar(ax, range(len(exact)), cis, "seed mean, 95% CI", ls="")
        clip_off_scale(ax, range(len(exact)), cis, margin)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(exact)), exact, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
    axes[0].axhspan(-100 * cfg.margin, 100 * cfg.margin, color="tab:green", alpha=0.15,
                    label=f"margin +-{100 * cfg.margin:g} pp")  # fmt: skip
    axes[1].axhspan(-cfg.nll_margin, cfg.nll_margin, color="tab:green", alpha=0.15,
                    label=f"margin +-{cfg.nll_margin:g} nats")  # fmt: skip
    axes[1].legend(fontsize=8)
    axes[0].legend(fontsize=8, loc="lower left")
    axes[0].set_title("Error: weight scaling minus exact arithmetic mean", fontsize=10)
    axes[1].set_title("NLL: weight scaling minus exact arithmetic mean", fontsize=10)
    ctx.savefig(fig, "ws_minus_exact.png")


def _k(k: int | None, kmax: int) -> str:
    return f"> {kmax}" if k is None else str(k)


def section(r: dict) -> str:
    """The report's section of the averaging experiment, from its results file.

    The set-up and the papers it follows, the figures, a table of train and test errors by every
    predictor with K* per net, a table of NLLs, KL divergences and disagreements for the nets with
    exact means, and how to read the primary test, with a note when the primary net does not fit
    its training set.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``averaging/...``).
    """
    cfg, ks = r["config"], r["ks"]
    kmax = ks[-1]
    rows, nll_rows = [], []
    for tag in (n["tag"] for n in cfg["nets"]):
        s = r["nets"][tag]
        ex = lambda name, m="err", s=s: ci_str(s[name][m]) if name in s else "-"  # noqa: E731
        k = s["k_star"]
        role = s["config"]["role"] + ("" if s["fits"] else " (does not fit)")
        rows.append(
            [
                tag,
                role,
                str(s["n_seeds"]),
                ci_str(s["train_err"]["ws"]),
                ci_str(s["train_err"]["mc"]),
                ci_str(s["ws"]["err"]),
                ci_str(s["mc"]["a_err"][-1]),
                ex("exact_a"),
                ex("exact_g"),
                f"{_k(k['k'], kmax)} [{_k(k['lo'], kmax)}, {_k(k['hi'], kmax)}]",
            ]
        )
        if "exact_a" in s:
            a, g = s["gap_ws_vs_exact_a"], s["gap_ws_vs_exact_g"]
            nll_rows.append(
                [
                    tag,
                    ci_str(s["ws"]["nll"]),
                    ci_str(s["mc"]["a_nll"][-1]),
                    ex("exact_a", "nll"),
                    ex("exact_g", "nll"),
                    ci_str(a["mean_kl"]),
                    ci_str(g["mean_kl"]),
                    ci_str(a["disagreement"]),
                    ci_str(g["disagreement"]),
                    ci_str(s["frac_g_le_nwgm_le_a"]),
                ]
            )
    err_table = table(
        ["net", "role", "seeds", "train error WS", f"train error MC K={kmax}", "test error WS",
         f"test error MC K={kmax} (mean of {cfg['mc_keys']} streams)", "exact arith.",
         "exact geom.", "K* [95% CI]"],
        rows,
    )  # fmt: skip
    nll_table = table(
        ["net", "NLL WS", f"NLL MC K={kmax}", "NLL exact arith.", "NLL exact geom.",
         "KL(A || WS)", "KL(G || WS)", "disagreement WS vs A", "WS vs G", "frac G<=NWGM<=A"],
        nll_rows,
    )  # fmt: skip
    primary = next(s for s in r["nets"].values() if s["config"]["role"] == "primary")
    pairs = ", ".join(primary["tasks"])
    train_err = primary["train_err"]["ws"]["mean"]
    fit_note = (
        f" the primary net does not fit its training set here (train error "
        f"{100 * train_err:.1f}% by WS), so its test measures averaging on a net that "
        "underfits;"
        if train_err > cfg["fit_error"]
        else ""
    )
    return f"""Every net is trained once per seed with dropout ({train_str(cfg["train"])}) and
evaluated on the same weights by weight scaling (WS), by Monte-Carlo averages over K sampled
subnetworks ({cfg["mc_keys"]} mask streams per seed, averaged) and by the exact arithmetic (A)
and normalised geometric (G) means over all 2^n subnetworks. Warde-Farley et al. 2014
enumerated 2^20 subnetworks of a 2x10 ReLU net at keep 0.5 on binary MNIST digit pairs and
found the geometric mean comparable to the arithmetic mean; Srivastava et al. 2014 (MNIST)
found that MC reaches the weight-scaling error at about K = 50, on wide nets with input keep
0.8 and hidden keep 0.5: the wide net here takes that setting (2x512, input drop 0.2, hidden
drop 0.5), and its K* stands beside their ~50.

The primary net repeats Warde-Farley et al.'s set-up on digit pairs ({pairs}: the pairs whose
training-set class means are closest, chosen from the training set only; each seed's value is
the mean over the pairs). A comparison of averages means something only on nets that
fit their training set, so the table gives train error beside test error, and a net's role says
whether it fits (mean train error by WS at most {cfg["fit_error"]:g}). The stress cases are
too small for 10 classes at their drop rate, or use other activations and depths: their errors
mostly measure which units the training left dead, not averaging. For one hidden layer, weight
scaling *is* the normalised geometric mean (an identity the unit tests check in float64; in
these float32 runs KL(G || WS) is of order 1e-8); for linear nets it is the exact mean of the
logits.

![error](averaging/mc_vs_exact_error.png)
![nll](averaging/mc_vs_exact_nll.png)
![ws-exact](averaging/ws_minus_exact.png)

{err_table}

K* is the smallest K whose mean MC test error (arithmetic) is at most the mean WS error plus
{100 * cfg["k_delta"]:g} percentage points, with a 95% bootstrap interval over seeds
({cfg["bootstrap"]} resamples); "> {kmax}" when no K up to {kmax} reaches it. MC converges to
the exact arithmetic mean, so K* = "> {kmax}" is expected wherever A's error exceeds WS's by
more than that tolerance; over a few seeds the MC curve's noise can still cross it below
{kmax}.

{nll_table}

KL(A || WS) is the mean over test examples of KL(exact arithmetic mean || weight scaling), in
nats; "frac G<=NWGM<=A" is the share of (example, class) entries where the unnormalised
geometric mean, the NWGM and the arithmetic mean are ordered as Baldi & Sadowski's bound
states (proved for a logistic output with outputs <= 0.5; on the binary pairs one of the two
classes has outputs above 0.5, and the share is {primary["frac_g_le_nwgm_le_a"]["mean"]:.2f}
there), compared within a relative 1e-4 (float32 rounding).

The primary test is the equivalence of test error, WS minus the exact arithmetic mean, on the
primary net (margin +-{100 * cfg["margin"]:g} percentage point, fixed in the config); NLL
(margin +-{cfg["nll_margin"]:g} nats) and the geometric mean are exploratory. Read the primary
with its limits: test error is the least sensitive of these measures (on the binary pairs it
is {100 * primary["ws"]["err"]["mean"]:.1f}% here, against a {100 * cfg["margin"]:g}-point
margin; WS's NLL and its KL from the exact arithmetic mean, in the tables, are where WS and
the exact mean part);{fit_note}
the stress nets'
intervals come from {cfg["stress_seeds"]} seeds (t with {cfg["stress_seeds"] - 1} degrees of
freedom) and say little; and a net "fits" by its mean train error alone, however close to the
{100 * cfg["fit_error"]:g}% threshold.
"""
