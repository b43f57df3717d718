"""The report's section and figures of the maskmode experiment, from its results file."""

from __future__ import annotations

import numpy as np

from ..common import (
    cap_rule_str,
    cap_str,
    ci_str,
    derived_margin_caveats,
    margin_origin,
    mlp_str,
    plt,
    reach_str,
    side_str,
    spread_str,
    table,
)
from ..maskmode import LABELS, MODES, PLAIN, Config
from ..protocol import arms_note, arms_table, caveats, protocol_str, stopped_by

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = (
    "its NLL margin became a share of dropout's own validation effect after the results at "
    "0.02 nats were seen"
)


def headline_caveats(r: dict) -> list[str]:
    """What a reader quoting the primary's verdict must know: the design's reach, the
    replaced margin and how sure the margin's scale is
    (:func:`.common.derived_margin_caveats`).

    Args:
      r: the maskmode results file's dict.

    Returns:
      The clauses.
    """
    return derived_margin_caveats(r, r["arms"].get(PLAIN), "nats")


def _margin_words(r: dict) -> str:
    """The NLL margin's derivation from the validation split, in words."""
    m = r["margin_nll"]
    e = m["effect"]
    side = side_str(e, "dropout net")
    return f"""**The NLL margin, from the validation split.** What dropout itself does to the
wide net: the plain net's validation NLL (trained by the same protocol's plain recipes) minus
the per-example dropout net's (the MC average of its {r["protocol"]["select_k"]} fixed selection
subnetworks, as the protocol scores it) is {ci_str(e, 4)} nats (within W, over seeds,
{spread_str(m)};
measured on the 20% held out, no test example read; {side}). The rule takes {m["share"]:g} of
that effect's size, {m["share"]:g} x {abs(e["mean"]):.4g} = {m["derived"]:.4g} nats, and
{cap_rule_str(m, "nats")}. Within it, "equivalent" says switching the
mask mode moves the test NLL by less than {m["share"]:g} of what switching dropout off moves
the validation NLL (at most): a margin as wide as that whole effect could not tell either mode
from no dropout. {reach_str(r["tests"][r["primary"]], m["value"], "nats")} The error margin
(exploratory) stays fixed. In words: {cap_str(r, "nats")}."""


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the maskmode experiment's figures into its folder.

    ``maskmode.png``: test NLL and error of the wide net trained with each mask mode, by weight
    scaling and by the MC average (means over seeds, 95% intervals, and each seed).

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}``.
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in zip(
        axes, ("nll", "accuracy"), ("test NLL (nats)", "test error"), strict=True
    ):
        flip = (lambda v: 1 - v) if metric == "accuracy" else (lambda v: v)
        for j, mode in enumerate(MODES):
            for k, p in enumerate(("ws", "mc")):
                x = 2 * k + j * 0.4
                c = r["rows"][f"wide {mode}"][f"{p} test"][metric]
                m, lo, hi = flip(c["mean"]), flip(c["lo"]), flip(c["hi"])
                ax.errorbar(
                    x, m, yerr=[[m - min(lo, hi)], [max(lo, hi) - m]], marker="o", capsize=3,
                    color=f"C{j}", label=LABELS[mode] if k == 0 else None,
                )  # fmt: skip
                per_seed = [flip(s[p]["test"][metric]) for s in raw["net=wide"][mode]]
                ax.plot(np.full(len(per_seed), x + 0.12), per_seed, ".", color=f"C{j}", alpha=0.5)
        ax.set_xticks([0.2, 2.2], ["weight scaling", f"MC average (K = {cfg.mc_k})"])
        ax.set(ylabel=label, title=f"hidden {cfg.hidden}: mean, 95% CI, dots: seeds")
        ax.legend(fontsize=8)
    ctx.savefig(fig, "maskmode.png")


def section(r: dict) -> str:
    """The report's section of the maskmode experiment, from its results file.

    The set-up (a mask per example against one per minibatch), the figure, a table of errors, NLLs
    and weight scaling's gaps to the average per net and mask mode, and the primary test.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``maskmode/...``).
    """
    c = r["config"]

    def err(v):
        return ci_str({"mean": 1 - v["mean"], "lo": 1 - v["hi"], "hi": 1 - v["lo"]})

    rows = []
    for key, v in r["rows"].items():
        net, mode = key.split(" ")
        hidden = c["hidden"] if net == "wide" else c["small"]
        gaps_ = "; ".join(
            f"{ref[3:]}: KL {ci_str(g['mean_kl'])}, disagree {ci_str(g['disagreement'])}"
            for ref, g in v.items()
            if ref.startswith("ws vs")
        )
        rows.append(
            [mlp_str(r, hidden).split(", ")[1], LABELS[mode],
             err(v["ws test"]["accuracy"]), err(v["mc test"]["accuracy"]),
             err(v["ws train"]["accuracy"]), err(v["mc train"]["accuracy"]),
             ci_str(v["ws test"]["nll"]),
             ci_str(v["mc test"]["nll"]), gaps_]
        )  # fmt: skip
    wide = {k: a for k, a in r["arms"].items() if k.startswith("wide")}
    wide_caveats = caveats(wide, c["protocol"]["eval_every"])
    return f"""{mlp_str(r, c["hidden"])} and a small net {mlp_str(r, c["small"]).split(", ")[1]}
({sum(c["small"])} droppable units), hidden drop rate {c["rate"]}, {c["seeds"]} seeds. Each
seed trains twice from the same key (same initialisation, minibatch order and mask key; the
masks drawn differ in shape, so they are different masks), once with a fresh mask for every
example of a minibatch (`mask_mode="per_example"`, PyTorch's `nn.Dropout`) and once with one
mask for the whole minibatch (`"per_batch"`, the tutorial's description). Each way is an arm
of its own under the study's protocol, each seed stopped by {stopped_by(c["protocol"])}:
{protocol_str(c["protocol"])}

{arms_table(r["arms"])}

{arms_note()}

**Caveats on the primary's arms.** {wide_caveats or "none."}

![maskmode](maskmode/maskmode.png)

{table(["net", "masks in training", "test error WS", f"test error MC (K = {r['config']['mc_k']})",
        "train error WS", "train error MC", "test NLL WS", "test NLL MC",
        "weight scaling vs the average (test)"],
       rows)}

The primary test: test NLL of the MC average, a mask per batch minus a mask per example,
equivalent within +-{r["margin_nll"]["value"]:.4g} nats ({margin_origin(r["margin_nll"])})
and +-{100 * c["margin_err"]:.1f} pp of error (exploratory, fixed before the run), on
the nets selected within W; every test is held
inconclusive when an arm it compares did not converge or the same test within 2W decides
otherwise. "Weight scaling vs the average" is the mean
KL divergence of weight scaling from the net's own average (MC; for the small net also the
exact mean over all subnetworks) and the fraction of test examples on which they disagree.

{_margin_words(r)}
"""  # fmt: skip
