"""The report's section and figures of the robustness experiment, from its results file."""

from __future__ import annotations

import numpy as np

from ..common import (
    ci_str,
    mlp_str,
    plt,
    table,
)
from ..protocol import arms_note, arms_table, caveats, protocol_str
from ..robustness import LABELS, PREDICTORS, TITLES, TRANSLATION_MAX, Config

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = "moved to weight scaling's retention after both predictors' results were seen"


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the robustness experiment's figures into its folder.

    ``robustness.png``: one panel per shift: test error against its strength, by each predictor
    (means over seeds, 95% intervals).

    Args:
      cfg: the experiment's configuration (unused here).
      raw: the cells' results, ``{label: result}`` (unused here).
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    kinds = r["kinds"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        xs = [0.0 if kind != "generator" else 1.0, *r["levels"][kind]]
        for i, p in enumerate(PREDICTORS):
            c = [r["curves"][p]["clean"][0]["error"], *[v["error"] for v in r["curves"][p][kind]]]
            m = np.array([v["mean"] for v in c])
            ax.plot(xs, m, marker="o", ms=3, color=f"C{i}", label=LABELS[p])
            ax.fill_between(xs, [v["lo"] for v in c], [v["hi"] for v in c], color=f"C{i}",
                            alpha=0.15)  # fmt: skip
        ax.set(xlabel="strength", ylabel="test error", title=TITLES[kind])
        ax.legend(fontsize=7)
    ctx.savefig(fig, "robustness.png")


def section(r: dict) -> str:
    """The report's section of the robustness experiment, from its results file.

    The set-up and the shifts, the figure, a table of train, clean test and strongest-shift errors
    per predictor, and the primary test.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``robustness/...``).
    """
    c = r["config"]
    rows = []
    for p in PREDICTORS:
        cur = r["curves"][p]
        row = [LABELS[p], ci_str(cur["train"][0]["error"]), ci_str(cur["clean"][0]["error"])]
        row += [ci_str(cur[k][-1]["error"]) for k in r["kinds"]]
        rows.append(row)
    head = ["predictor", "train error", "clean test error"] + [
        f"{k} at {r['levels'][k][-1]:g}" for k in r["kinds"]
    ]
    levels = "; ".join(f"{k}: {', '.join(f'{v:g}' for v in r['levels'][k])}" for k in r["kinds"])
    return f"""{mlp_str(r, c["hidden"])}, hidden drop rate {c["rate"]}, {c["seeds"]} seeds. Each
seed trains a dropout net and a plain net from the same key, each by the study's protocol
(tuned each on its own, so the two may differ in recipe as well as dropout; the table says
which): {protocol_str(c["protocol"])}

{arms_table(r["arms"])}

{arms_note()}

**Caveats on the primary's arms.** {caveats(r["arms"], c["protocol"]["eval_every"]) or "none."}

Shifts and strengths: {levels}. Noise sd is in units of
the training inputs' sd; missing features and occlusions are set to 0 (an occlusion is one
contiguous run of features in flattened order, at a random position per example). The
MNIST-1D generator shift multiplies its translation, scale and noise arguments (translation
capped at {TRANSLATION_MAX}).

![robustness](robustness/robustness.png)

Error (fraction), clean and at each shift's strongest level (means over seeds, 95% CI):

{table(head, rows)}

The primary test: the share of its accuracy above chance that a net keeps under the shifts,
(acc_shifted - 1/C) / (acc_clean - 1/C) averaged over shifts and strengths, the dropout net by
weight scaling (the network as used) minus the plain net, claimed > 0, on the nets selected
within W; held inconclusive when a net did not converge or the same test within 2W decides
otherwise. A share, not the error lost: at strong shifts both
nets fall towards chance, and the one that started more accurate would otherwise count as
losing more. The MC average, each shift alone, the error lost, and the shifted error itself
(which also counts dropout's clean advantage) are exploratory. Regenerated MNIST-1D sets are
scored against their own labels.
"""
