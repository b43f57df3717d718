"""The report's section and figures of the overfitting experiment, from its results file."""

from __future__ import annotations

from ..common import (
    ci_str,
    effect_str,
    errorbar,
    mlp_str,
    plt,
    table,
)
from ..overfitting import Config
from ..protocol import arms_note, arms_table, caveats, protocol_str

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = "moved to the test NLL by weight scaling after both predictors' results were seen"


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the overfitting experiment's figures into its folder.

    ``sweeps.png``: train and test accuracy against the drop rate, the train-test accuracy gap
    against the training-set size at the two rates compared, and train and test NLL (the
    primary's measure) against the drop rate (means over seeds, 95% intervals).

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}`` (unused here).
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    sizes = sorted(int(n) for n in r["sizes"])
    _sweep_figure(ctx, cfg.rates, r["rates"], sizes, r["sizes"], cfg.size_rates)


def _sweep_figure(ctx, rates, rates_summary, sizes, sizes_summary, size_rates) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    # the primary's quantity first: test NLL (with train NLL) against the drop rate
    errorbar(axes[2], rates, [rates_summary[str(r)]["train_nll"] for r in rates], "train")
    errorbar(axes[2], rates, [rates_summary[str(r)]["test_nll"] for r in rates], "test")
    for rate in size_rates:
        axes[2].axvline(rate, color="0.6", ls=":", lw=1)
    axes[2].set(
        xlabel="drop rate (dotted: the two the primary compares)",
        ylabel="NLL (nats)",
        title="NLL vs drop rate, the primary's measure (95% CI)",
    )
    axes[2].legend()
    errorbar(axes[0], rates, [rates_summary[str(r)]["train_acc"] for r in rates], "train")
    errorbar(axes[0], rates, [rates_summary[str(r)]["test_acc"] for r in rates], "test")
    axes[0].set(
        xlabel="drop rate (hidden layers)",
        ylabel="accuracy (fraction)",
        title="Accuracy vs drop rate (95% CI)",
    )
    axes[0].legend()
    for key, rate in zip(("gap_plain", "gap_dropout"), size_rates, strict=True):
        errorbar(axes[1], sizes, [sizes_summary[str(n)][key] for n in sizes], f"drop rate {rate}")
    axes[1].set_xscale("log")
    axes[1].set(
        xlabel="training examples (log scale)",
        ylabel="train minus test accuracy",
        title="Generalisation gap vs data size (95% CI)",
    )
    axes[1].legend()
    ctx.savefig(fig, "sweeps.png")


def section(r: dict) -> str:
    """The report's section of the overfitting experiment, from its results file.

    The set-up, the primary test and the papers' results, with a note on underfitting when the
    dropout net's train accuracy is more than 0.02 below the plain net's, the figure, and tables of
    the rate sweep and the size sweep.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``overfitting/...``).
    """
    rates = table(
        ["drop rate", "train acc", "test acc (WS)", f"test acc (MC K={r['config']['mc_k']})",
         "train - test acc (WS)", "test NLL (WS)", f"test NLL (MC K={r['config']['mc_k']})"],
        [
            [
                k,
                ci_str(v["train_acc"]),
                ci_str(v["test_acc"]),
                ci_str(v["mc_test_acc"]) if "mc_test_acc" in v else "-",
                ci_str(v["gap_acc"]),
                ci_str(v["test_nll"]),
                ci_str(v["mc_test_nll"]) if "mc_test_nll" in v else "-",
            ]
            for k, v in r["rates"].items()
        ],
    )  # fmt: skip
    sizes = table(
        ["train examples", "gap, drop 0", "gap, drop 0.5",
         "test acc gain of dropout (dropout minus plain; seeds only)",
         "test NLL gain of dropout (plain minus dropout; seeds only)"],
        [
            [
                k,
                ci_str(v["gap_plain"]),
                ci_str(v["gap_dropout"]),
                ci_str(v["test_acc_gain"]),
                ci_str(v["test_nll_gain"]),
            ]
            for k, v in sorted(r["sizes"].items(), key=lambda kv: int(kv[0]))
        ],
    )  # fmt: skip
    cfg = r["config"]
    w = cfg["width"]
    s0, s1 = cfg["size_rates"]
    fit0, fit1 = (r["rates"][str(x)]["train_acc"]["mean"] for x in (s0, s1))
    underfit = (
        f" Here the drop-{s1} net fits its training set worse than the plain net (train "
        f"accuracy {fit1:.3f} vs {fit0:.3f}); the rate sweep's table shows the other rates."
        if fit0 - fit1 > 0.02
        else ""
    )
    arms = arms_table({f"drop {k}": v["arm"] for k, v in r["rates"].items()})
    size_arms = arms_table(
        {f"n={n}, {a}": v for n, s in r["sizes"].items() for a, v in s["arms"].items()}
    )
    twice = table(
        ["test", "within W", "within 2W"],
        [
            [
                name,
                f"{effect_str(t)} ({t['verdict_w']})",
                f"{effect_str(t['within_2w'])} ({t['within_2w']['verdict']})",
            ]
            for name, t in r["tests"].items()
            if "within_2w" in t
        ],
    )
    return f"""{mlp_str(r, [w, w])} on the data set's own test set, each arm trained by the
study's protocol: {protocol_str(r["protocol"])} Accuracy, NLL and the train-test gap against
the drop rate, and against the training-set size (weight scaling; the MC average over
{cfg["mc_k"]} subnetworks beside it at full size). The primary test: test NLL at drop {s0}
minus the drop-{s1} net's by weight scaling (the network as used), paired by seed and test
example (> 0: dropout generalises better); the MC average's is beside it. Drop {s0} and drop
{s1} are tuned each on its own; every other rate (exploratory) trains at the drop-{s1}
arm's recipe and learning rate, stopped by its own validation loss; the size sweep's nets
take their full-size arm's choice. So the typical-rates tests compare drop {s1} at its own
tuned settings with rates at borrowed ones, a bias towards the typical rates, and the size
sweep's small sets run at settings tuned on the full one: both are exploratory. The arms may
pick different recipes (the table says which), so the primary compares each net at its best,
recipe included, not dropout alone at one recipe. Train accuracy (on the 80% trained on) is
in the rate sweep's table, so that a gain cannot hide a net that does not fit.{
        underfit
    } Srivastava et
al. 2014 report that error is flat for keep 0.4-0.8 and that dropout gives no gain at 100 or 500
examples, a gain that grows and then shrinks with more data. The tutorial's typical-rates
claim (rates {" and ".join(str(x) for x in cfg["typical_rates"])} for fully connected layers) is
tested against every other rate on test NLL, by weight scaling and by the MC average: a rate
with a significantly lower NLL than the typical rates' mean contradicts it. The tutorial's own
regression example is the tutorial experiment's. The size sweep uses weight scaling only.

![sweeps](overfitting/sweeps.png)

Each arm's training. {arms_note()}

{arms}

The size sweep's nets (the full training set's are the rate sweep's):

{size_arms}

**Caveats on the primary's arms.** {
        caveats(
            {f"drop {k}": r["rates"][str(k)]["arm"] for k in (s0, s1)}, r["protocol"]["eval_every"]
        )
        or "none."
    } Rates other than {s0} and {s1} inherit drop {s1}'s choice and show its tuning
scores.

The primary pair on the nets selected within W (the verdict's; its own verdict before the
protocol's guard) and within 2W (twice the budget, at the learning rate tuned within W; a
verdict that changes at the level it is decided is reported inconclusive, budget-dependent):

{twice}

{rates}

{sizes}
"""
