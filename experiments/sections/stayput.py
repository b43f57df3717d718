"""The report's section and figures of the stayput experiment, from its results file."""

from __future__ import annotations

import numpy as np

from ..common import ci_str, fixed_margin_headline, mlp_str, plt, table
from ..stayput import LABELS, OPTIMIZERS, Config

# the primary's margin is fixed: where its verdict would differ
headline_caveats = fixed_margin_headline(
    Config.primary,
    "in the ratio",
    "a stated share of a kept unit's movement",
    family=False,  # a check, decided alone
    design=Config.margin,
)


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the stayput experiment's figures into its folder.

    ``stayput.png``: the dropped units' movement over the kept units', per step (mean over seeds)
    and averaged over the steps (each seed) for each optimiser, against the margin.

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}``.
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for o in OPTIMIZERS:
        curve = np.asarray(raw[f"optimizer={o}"]["curve_ratio"])
        ax.plot(np.arange(1, len(curve) + 1), curve, label=LABELS[o], lw=1)
    ax.axhline(cfg.margin, color="C2", ls="--", lw=0.8, label=f"margin {cfg.margin:g}")
    ax.set(xlabel="step", ylabel="dropped / kept movement", title="per step, mean over seeds")
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, o in enumerate(OPTIMIZERS):
        per_seed = raw[f"optimizer={o}"]["ratio"]
        ax.plot(np.full(len(per_seed), i), per_seed, "o", alpha=0.6, color=f"C{i}")
    ax.axhspan(0, cfg.margin, color="C2", alpha=0.15, label="equivalence margin")
    ax.set_xticks(range(len(OPTIMIZERS)), [LABELS[o] for o in OPTIMIZERS], fontsize=8)
    ax.set(ylabel="dropped / kept movement (per seed)", title="averaged over steps")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "stayput.png")


def _decay_words(v: dict) -> str:
    """What weight decay's row measured: dropped units left bitwise unchanged, and the ratio."""
    still = v["still_fraction"]["mean"]
    kept = (
        "no dropped unit stays bitwise put"
        if still == 0
        else f"{100 * still:.1f}% of dropped units stay bitwise put"
    )
    return f"here {kept}, and its ratio is {v['ratio']['mean']:.3g}"


def section(r: dict) -> str:
    """The report's section of the stayput experiment, from its results file.

    The set-up and the measure of movement, the figure, a table of movements and errors per
    optimiser, and the primary test.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``stayput/...``).
    """
    c = r["config"]
    rows = [
        [
            LABELS[o],
            ci_str(v["ratio"]),
            ci_str(v["still_fraction"]),
            "yes" if v["all_still"] else "no",
            ci_str(v["kept_movement"]),
            ci_str(v["train_error"]),
            ci_str(v["test_error"]),
        ]
        for o, v in ((o, r["rows"][o]) for o in OPTIMIZERS)
    ]
    return f"""{mlp_str(r, c["hidden"])}, hidden drop rate {c["rate"]}, one mask per minibatch
(`mask_mode="per_batch"`: a dropped unit is dropped for every example of the step), batch
{c["batch_size"]}, {c["steps"]} steps from initialisation, {c["seeds"]} seeds. Learning rates:
plain SGD and SGD with weight decay {c["lr_sgd"]} (decay {c["weight_decay"]:g}, every
parameter), SGD with momentum 0.9 (the tutorial's) lr {c["lr_momentum"]}, Adam lr
{c["lr_adam"]}. Weight decay acts on dropped units too: {_decay_words(r["rows"]["sgd_wd"])};
the margin decides whether that counts as staying put.

A dropped unit's gradient is exactly zero on its incoming weights and bias and its outgoing
weights; whether those parameters stay put depends on the optimiser. *Movement* of a unit in a
step: the mean absolute change of those parameters. The measure: the mean movement of the
units dropped in the step over that of the units kept, averaged over the steps (0: dropped
units stay put; 1: they move as much as the kept ones).

![stayput](stayput/stayput.png)

{table(["optimiser", "dropped / kept movement", "dropped units bitwise unchanged (fraction)",
        "all unchanged, every step", "kept units' movement", "train error (WS)",
        "test error (WS)"], rows)}

The primary test is the tutorial's own optimiser (SGD with momentum 0.9): the ratio is
equivalent to 0 within +-{c["margin"]:g} (dropped units moving less than {c["margin"]:g} times
as much as kept ones) if the claim holds for it. Plain SGD's identity is an exact check; the
other optimisers' ratios are exploratory. Under momentum and Adam the outcome follows from
the optimiser's algebra (a dropped unit's update is its velocity, or its moment estimates,
from earlier steps); the measure says how large that is beside the kept units' updates. Train
and test error (weight scaling, after the {c["steps"]} steps) show what the nets had learnt
while they were measured.
"""  # fmt: skip
