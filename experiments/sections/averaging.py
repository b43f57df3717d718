"""The report's section and figures of the averaging experiment, from its results file."""

from __future__ import annotations

import numpy as np

from ..averaging import MEANS, Config
from ..common import (
    ci_str,
    clip_off_scale,
    effect_str,
    errorbar,
    fixed_margin_headline,
    own_verdict,
    plt,
    table,
    train_str,
)
from ..protocol import arms_note, arms_table, caveats, protocol_str, stopped_by
from ..stats import CONTRADICTED, SUPPORTED

# how an equivalence verdict reads in a sentence
_EQUIVALENT = {SUPPORTED: "equivalent to", CONTRADICTED: "not equivalent to"}


# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = "its nets moved onto the protocol after the fixed-budget verdict was seen"


# the primary's margin is fixed: where its verdict would differ
headline_caveats = fixed_margin_headline(
    Config.primary, "pp", "a stated difference in test error", 100, design=Config.margin
)


def findings(r: dict) -> list[str]:
    """Where the primary net's NLL tells another story than its test error, and where averaging
    gains nothing on the validation split.

    Args:
      r: the averaging results file's dict.

    Returns:
      A sentence when weight scaling on the primary net is shown equivalent to an exact mean
      in test error but not in NLL (each test's own verdict, before the protocol's hold); one
      per net and metric whose exact mean does no better than its mean subnetwork on the
      validation split; one per net without an exact mean (the wide net) whose weight-scaling
      test error differs from its MC arithmetic mean's at the largest K by more than the
      primary's error margin.
    """
    tests, out = r["tests"], []
    pairs = [
        (MEANS[m], tests[f"primary err WS-{m}"], tests[f"primary nll WS-{m}"])
        for m in MEANS
        if f"primary err WS-{m}" in tests and f"primary nll WS-{m}" in tests
    ]
    if any(own_verdict(e) == SUPPORTED != own_verdict(n) for _, e, n in pairs):
        rel = lambda t: _EQUIVALENT.get(own_verdict(t), "not shown equivalent to")  # noqa: E731
        nll = " and ".join(
            f"{rel(n)} the {mean} ({own_verdict(n)}, {effect_str(n)})" for mean, _, n in pairs
        )
        errs = {own_verdict(e) for _, e, _ in pairs}
        err = (
            f", although in test error it is equivalent to {'both' if len(pairs) > 1 else 'it'}"
            if errs == {SUPPORTED}
            else "; in test error it is "
            + " and ".join(f"{rel(e)} the {mean} ({own_verdict(e)})" for mean, e, _ in pairs)
        )
        guarded = any("verdict_w" in n for _, _, n in pairs)
        own = " (each test's own verdict, before the protocol's hold)" if guarded else ""
        out.append(f"In NLL, weight scaling on the primary net{own} is {nll}{err}.")
    out += [
        f"On the validation split the exact mean of {tag} does no better than its mean "
        f"subnetwork in {'error' if m == 'err' else 'NLL'} (gain {g['gain']:.4g}): there "
        "averaging gains nothing for weight scaling to approximate."
        for tag, sm in r["nets"].items()
        if sm.get("validation")
        for m, g in sm["validation"].items()
        if g["gain"] <= 0
    ]
    k, margin = r["config"]["ks"][-1], r["config"]["margin"]
    for tag, sm in r["nets"].items():
        if sm["config"].get("exact", True) or not sm.get("mc"):
            continue
        w, m = sm["ws"]["err"], sm["mc"]["a_err"][-1]
        ws, mc = w["mean"], m["mean"]
        pct = lambda c: f"{100 * c['mean']:.2f}% [{100 * c['lo']:.2f}, {100 * c['hi']:.2f}]"  # noqa: E731
        if abs(ws - mc) > margin:
            out.append(
                f"On the net {tag}, weight scaling's mean test error lies "
                f"{100 * abs(ws - mc):.2f} pp {'above' if ws > mc else 'below'} its MC "
                f"arithmetic mean's over K = {k} subnetworks ({pct(w)} against {pct(m)}, 95% "
                f"intervals over {sm['n_seeds']} seeds), more than the primary's "
                f"+-{100 * margin:g} pp margin: an exploratory observation (the two are not "
                "paired here, and no test decides it)."
            )
    return out


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the averaging experiment's figures into its folder.

    ``mc_vs_exact_error.png`` and ``mc_vs_exact_nll.png``: for every net, test error and NLL of the
    MC arithmetic and geometric means against K (means and 95% intervals over seeds), with weight
    scaling and the exact means as horizontal lines; ``ws_minus_exact.png``: for the nets with
    exact means, weight scaling minus the exact arithmetic mean in error and NLL (means, 95%
    intervals), against the equivalence margins where a test uses them.

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
    for ax, metric, scale, fixed, ylabel in (
        (axes[0], "err", 100, cfg.margin, "test error difference (percentage points)"),
        (axes[1], "nll", 1, cfg.nll_margin, "test NLL difference (nats)"),
    ):  # fmt: skip
        key = f"{metric}_ws_minus_exact_a"
        cis = [{k: summaries[t][key][k] * scale for k in ("mean", "lo", "hi")} for t in exact]
        # the margin where a test uses it: a stress case has an error test only
        tested = [metric == "err" or summaries[t]["config"]["role"] != "stress" for t in exact]
        errorbar(ax, range(len(exact)), cis, "seed mean, 95% CI", ls="")
        clip_off_scale(ax, range(len(exact)), cis, scale * fixed)
        band = scale * fixed
        for x in (x for x, on in enumerate(tested) if on):
            label = f"margin +-{band:g}" if x == 0 else None
            ax.fill_between([x - 0.3, x + 0.3], -band, band, color="tab:green", alpha=0.15,
                            label=label)  # fmt: skip
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(exact)), exact, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
    axes[1].legend(fontsize=8)
    axes[0].legend(fontsize=8, loc="lower left")
    axes[0].set_title("Error: weight scaling minus exact arithmetic mean", fontsize=10)
    axes[1].set_title("NLL: weight scaling minus exact arithmetic mean", fontsize=10)
    ctx.savefig(fig, "ws_minus_exact.png")


def _k(k: int | None, kmax: int) -> str:
    return f"> {kmax}" if k is None else str(k)


def _one_layer_kl(r: dict) -> float | None:
    """The largest mean KL(G || WS) over the one-hidden-layer nets with exact means (where
    weight scaling *is* the normalised geometric mean), or None when there is none."""
    kls = [s["gap_ws_vs_exact_g"]["mean_kl"]["mean"] for s in r["nets"].values()
           if len(s["config"]["hidden"]) == 1 and "gap_ws_vs_exact_g" in s]  # fmt: skip
    return max(kls) if kls else None


def section(r: dict) -> str:
    """The report's section of the averaging experiment, from its results file.

    The set-up and the papers it follows, how the nets were trained (the protocol's arms for
    the primary and multiclass nets, a fixed budget for the others), the figures, a table of
    train and test errors by every predictor with K* per net, a table of NLLs, KL divergences
    and disagreements for the nets with exact means, and how to read the primary test.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``averaging/...``).
    """
    cfg, ks = r["config"], r["ks"]
    kmax = ks[-1]
    rows, nll_rows, arms = [], [], {}
    for tag in (n["tag"] for n in cfg["nets"]):
        s = r["nets"][tag]
        ex = lambda name, m="err", s=s: ci_str(s[name][m]) if name in s else "-"  # noqa: E731
        k = s["k_star"]
        net_arms = {f"{tag} [{task}]": a for task, a in s.get("arms", {}).items()}
        arms |= net_arms
        how = "fixed budget" if not net_arms else (
            "protocol" + ("" if all(a["converged"] for a in net_arms.values())
                          else ", **not converged**"))  # fmt: skip
        rows.append(
            [
                tag,
                s["config"]["role"],
                how,
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
        ["net", "role", "training", "seeds", "train error WS", f"train error MC K={kmax}",
         "test error WS", f"test error MC K={kmax} (mean of {cfg['mc_keys']} streams)",
         "exact arith.", "exact geom.", "K* [95% CI]"],
        rows,
    )  # fmt: skip
    nll_table = table(
        ["net", "NLL WS", f"NLL MC K={kmax}", "NLL exact arith.", "NLL exact geom.",
         "KL(A || WS)", "KL(G || WS)", "disagreement WS vs A", "WS vs G", "frac G<=NWGM<=A"],
        nll_rows,
    )  # fmt: skip
    scale_rows = [
        [tag, *(f"{g[k]:.4f}" for m in ("err", "nll") for g in [s["validation"][m]]
                for k in ("exact", "subnetwork", "gain")),
         f"{cfg['margin'] / g_err:.2f}" if (g_err := s["validation"]["err"]["gain"]) > 0
         else "-",
         f"{cfg['nll_margin'] / g_nll:.2f}" if (g_nll := s["validation"]["nll"]["gain"]) > 0
         else "-"]
        for tag, s in r["nets"].items() if s.get("validation")
    ]  # fmt: skip
    scale_table = table(
        ["net", "val. error, exact arith.", "val. error, mean subnetwork", "gain (error)",
         "val. NLL, exact arith.", "val. NLL, mean subnetwork", "gain (NLL)",
         "error margin / gain", "NLL margin / gain"],
        scale_rows,
    )  # fmt: skip
    primary = next(s for s in r["nets"].values() if s["config"]["role"] == "primary")
    shares = [
        s["frac_g_le_nwgm_le_a"]["mean"]
        for s in r["nets"].values()
        if s is not primary and s.get("frac_g_le_nwgm_le_a")
    ]
    low, high = (f"{min(shares):.2f}", f"{max(shares):.2f}") if shares else ("", "")
    others_share = f": {low}-{high}" if low != high else f": {low}" if shares else ": none measured"
    pairs = ", ".join(primary["tasks"])
    pv = primary["validation"]["err"]
    primary_arms = {f"{primary['config']['tag']} [{t}]": a for t, a in primary["arms"].items()}
    # each pair's arm alone: caveats() reads several arms as arms compared with each other
    every = cfg["protocol"]["eval_every"]
    primary_caveats = " ".join(
        c for c in (caveats({k: a}, every) for k, a in primary_arms.items()) if c
    )
    stress = [n for n in cfg["nets"] if n["role"] == "stress"]
    stress_words = (
        "; the stress cases' tests, test error only at the same margin, are exploratory too"
        if stress
        else ""
    )
    stress_seeds = (
        f" The stress nets' intervals come from {cfg['stress_seeds']} seeds." if stress else ""
    )
    pe = primary["exact_a"]["err"]["mean"]
    chance = 1 - 1 / r.get("data", {}).get("classes", 10)
    multi = [(t, x["exact_a"]["err"]["mean"]) for t, x in r["nets"].items()
             if x["config"]["role"] == "multiclass" and "exact_a" in x]  # fmt: skip
    multi_words = (
        "; the multiclass nets' exact means misclassify "
        + ", ".join(f"{100 * e:.1f}% ({t})" for t, e in multi)
        + f" of the test set (chance: {100 * chance:.0f}%)"
        if multi
        else ""
    )
    margin_rel = f"{cfg['margin'] / pe:.0%} of it" if pe > 0 else "a margin above 0 errors"
    of_error = (
        f", so the margin is {cfg['margin'] / pv['exact']:.2f} times that error"
        if pv["exact"] > 0
        else ""
    )
    primary_share = (
        f"{cfg['margin'] / pv['gain']:.2f}" if pv["gain"] > 0 else "not a share (no gain)"
    )
    fixed = [n["tag"] for n in cfg["nets"] if "arms" not in r["nets"][n["tag"]]]
    wide = ", ".join(n["tag"] for n in cfg["nets"] if n["role"] == "wide") or "none in this run"
    kl1 = _one_layer_kl(r)
    kl1_note = (
        f" (in these float32 runs the largest mean KL(G || WS) of a one-layer net is "
        f"{kl1:.1e} nats)"
        if kl1 is not None
        else ""
    )
    return f"""Every net is trained with dropout and evaluated on the same weights by weight
scaling (WS), by Monte-Carlo averages over K sampled subnetworks ({cfg["mc_keys"]} mask streams
per seed, averaged) and by the exact arithmetic (A) and normalised geometric (G) means over all
2^n subnetworks. Warde-Farley et al. 2014 enumerated 2^20 subnetworks of a 2x10 ReLU net at keep
0.5 on binary MNIST digit pairs and found the geometric mean comparable to the arithmetic mean;
Srivastava et al. 2014 (MNIST) found that MC reaches the weight-scaling error at about K = 50, on
wide nets with input keep 0.8 and hidden keep 0.5: the wide net here ({wide}) takes that
setting, and its K* stands beside their ~50.

The primary net repeats Warde-Farley et al.'s set-up on digit pairs ({pairs}: the pairs whose
training-set class means are closest, chosen from the training set only; each seed's value is
the mean over the pairs; a seed's pair nets share its key, so its initialisation and mask
stream). The primary and multiclass nets (every class of the data set) train
by the study's protocol, each pair task an arm of its own, each seed stopped by
{stopped_by(cfg["protocol"])}: {protocol_str(cfg["protocol"])} Their tables' numbers are the
nets selected within W; their train errors are on the 80% trained on. The stress cases (nets
too small for the classes at their drop rate, other activations and depths) and the wide net
keep a fixed budget ({train_str(cfg["train"])}, the whole training set): the stress cases are
small by design and their tests are exploratory, and the wide net gives K* alone. At that
budget: {"; ".join(fixed) or "none"}. For one hidden layer, weight scaling *is* the
normalised geometric mean (an identity the unit tests check in float64{kl1_note}); for linear
nets it is the exact mean of the logits.

{arms_table(arms)}

{arms_note()}

**Caveats on the primary's arms** (one per pair task, tuned each on its own; they are not
compared with each other). {primary_caveats or "none."}

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
states, compared within a relative 1e-4 (float32 rounding). The bound is proved for a
logistic output (a two-class softmax) whose outputs are at most 0.5. With two classes the
NWGM and A each sum to 1, so where the NWGM lies below A for one class it lies above it for
the other: at most half the entries are ordered, beyond ties within the tolerance (the
binary pairs' share: {primary["frac_g_le_nwgm_le_a"]["mean"]:.2f}). With more classes the
NWGM normalised over the classes is not the logistic one, and no ordering is proved
(the other nets' share{others_share}).

The primary test is the equivalence of test error, WS minus the exact arithmetic mean, on the
primary net (margin +-{100 * cfg["margin"]:g} percentage point, fixed in the config); NLL
(margin +-{cfg["nll_margin"]:g} nats, for the primary and multiclass nets) and the geometric
mean are exploratory{stress_words}. The nets are stopped by their MC average, the ensemble
the claim is about: where weight scaling and the exact mean differ, that choice favours the
exact mean. On the primary's binary tasks the exact mean's test error is
{100 * pe:.1f}% (chance: 50%), so the error margin lets weight scaling's error exceed it by
{margin_rel}{multi_words}. **The margins' scale.** The table below gives what averaging does
on each net on the protocol, on its validation split (the nets selected within W; each of
{cfg["scale_k"]} sampled subnetworks scored on its own for the mean subnetwork): the exact
arithmetic mean's gain over its mean subnetwork, and the fixed margin as a share of it (below
1: weight scaling within the margin keeps part of averaging's gain, at least one minus that
share; the gain is a validation number, the tests' differences are test-set numbers). On the
primary the error margin is {primary_share} of that gain; the exact mean's validation error
is {100 * pv["exact"]:.2f}%{of_error}. A margin derived from that gain was considered and not
used: it grows with the subnetworks' disagreement, which is also what pulls weight scaling
from the exact mean.

{scale_table}

The tests of the nets on the protocol are held inconclusive when an arm did not converge or
the same test on the nets selected within 2W decides otherwise (each is followed by that
twin). Test error changes only where a top class flips, so its test can hold while
probabilities part; NLL and the KL of weight scaling from the exact arithmetic mean, in the
tables, measure the gap in probabilities.{stress_seeds}
"""
