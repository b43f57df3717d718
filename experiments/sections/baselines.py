"""The report's section and figures of the baselines experiment, from its results file."""

from __future__ import annotations

import numpy as np

from ..baselines import MODELS, Config
from ..common import ci_str, fixed_margin_headline, margin_source, plt, seeds_str, table

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = (
    "its seeds rose from 5 to 10, the study's floor for every primary, after the 5-seed check "
    "was seen"
)


# the primary's margin is fixed: where its verdict would differ
headline_caveats = fixed_margin_headline(
    Config.primary,
    "pp",
    "the replication's stated tolerance around the published figure",
    100,
    family=False,  # a check, decided alone
    design=Config.margin,
)


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the baselines experiment's figure into its folder.

    ``baselines.png``: each seed's test accuracy per model, the published figure and the
    margin around it.

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}`` (unused here).
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, name in enumerate(MODELS):
        row = r["rows"][name]
        acc = row["per_seed"]["test_acc"]
        ax.plot(
            np.full(len(acc), i),
            acc,
            "o",
            alpha=0.6,
            color=f"C{i}",
            label="seeds" if i == 0 else None,
        )
        p = row["published"]
        ax.hlines(p, i - 0.3, i + 0.3, color="k", label="published" if i == 0 else None)
        ax.fill_between([i - 0.3, i + 0.3], p - cfg.margin, p + cfg.margin, color="C2", alpha=0.15,
                        label=f"margin +-{100 * cfg.margin:g} pp" if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(MODELS)), [r["rows"][m]["label"] for m in MODELS], fontsize=8)
    ax.set(ylabel="test accuracy", title="MNIST-1D: the anchor's models, their training")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "baselines.png")


def section(r: dict) -> str:
    """The report's section of the baselines experiment, from its results file.

    The models and training, the figure, and a table of published and reproduced accuracies.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``baselines/...``).
    """
    c, t, n = r["config"], r["train"], r["data_sizes"]
    rows = [
        [
            v["label"],
            f"{v['published']:.0%}",
            ci_str(v["test_acc"]),
            ci_str(v["train_acc"]),
        ]
        for v in (r["rows"][m] for m in MODELS)
    ]
    below = {
        m: sum(a < r["rows"][m]["published"] for a in r["rows"][m]["per_seed"]["test_acc"])
        for m in MODELS
    }

    def side(m: str) -> str:
        """Where the published figure lies against the 95% interval of the mean."""
        acc, pub = r["rows"][m]["test_acc"], r["rows"][m]["published"]
        return "below" if pub < acc["lo"] else "above" if pub > acc["hi"] else "inside"

    where = "; ".join(
        f"{m.upper()}: {below[m]} of {c['seeds']} seeds below its published figure, which lies "
        f"{side(m)} the 95% interval of the mean"
        for m in MODELS
    )
    origin = margin_source(r, f"+-{100 * Config.margin:g} points")
    return f"""The reference rows for the study's MNIST-1D nets, a check of the set-up rather than
a claim about dropout (decided alone, outside the claims' family): the anchor
repository's MLP ({n["n_features"]}-{c["hidden"]}-{c["hidden"]}-10, second layer residual)
and CNN (three 1-D convolutions of {c["channels"]} channels, kernel 5, then 3 and 3, stride 2,
padding 1, and a linear head), trained as its notebooks train them: {t["optimizer"]} at lr
{t["lr"]:g}, batch {t["batch_size"]}, {t["steps"]} steps, PyTorch's default initialisation,
the last step's net. Differences: minibatches here come from a fresh permutation per epoch
(the repository walks the training set in order), {seeds_str(r, c["seeds"])} (the
repository trains one), the convolutions are computed as strided patches times a matrix
(the same function as a convolution layer's, to float rounding, which training amplifies:
the same seeds trained with linen's convolution end elsewhere), and the data are this
study's MNIST-1D (the package's generator, default arguments: {n["n_train"]:,} training
and {n["n_test"]:,} test signals), not checked against the repository's own data file.
Plain nets.

A model reproduces its published figure when its mean test accuracy is equivalent to it
within +-{100 * c["margin"]:g} percentage points ({origin}: a single run's
accuracy on the test set has a sampling error of under one point, and the published figures
are single runs rounded to whole points). The intervals cover seed variation only, not the
test set's sampling or the published run's own noise. The CNN is the primary: the harder
figure to reach. An *inconclusive* verdict means equivalence within the margin is not shown;
whether the mean lies below the published figure is a separate question: {where}.

![baselines](baselines/baselines.png)

{table(["model", "published test accuracy", "test accuracy here", "train accuracy here"], rows)}
"""  # fmt: skip
