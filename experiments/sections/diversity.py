"""The report's section and figures of the diversity experiment, from its results file."""

from __future__ import annotations

from ..common import (
    cap_rule_str,
    cap_str,
    ci_str,
    derived_margin_caveats,
    margin_origin,
    mlp_str,
    own_verdict,
    plt,
    reach_str,
    spread_str,
    table,
    uncertain_str,
)
from ..diversity import KINDS, LABELS, STATS, Config
from ..protocol import arms_note, arms_table, caveats, protocol_str, stopped_by
from ..stats import CONTRADICTED

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = (
    "its margin became a share of the independent nets' own share on the validation split "
    "after the results at 0.05 were seen"
)


def headline_caveats(r: dict) -> list[str]:
    """What a reader quoting the primary's verdict must know: the design's reach, the
    replaced margin and how sure the margin's scale is
    (:func:`.common.derived_margin_caveats`).

    Args:
      r: the diversity results file's dict.

    Returns:
      The clauses.
    """
    scale = "the independent nets' validation share"
    return derived_margin_caveats(r, None, "of share", "margin", scale=scale)


def _margin_words(r: dict) -> str:
    """The primary's margin's derivation from the validation split, in words."""
    m, c = r["margin"], r["config"]
    e = m["effect"]
    return f"""**The primary's margin, from the validation split.** What averaging independent
nets removes: the share of {c["members"]} independent plain nets' mean validation Brier score
that averaging them removes is {ci_str(e, 4)} (within W, over seeds,
{spread_str(m)}; measured on the 20% held
out, no test example read{uncertain_str(e)}). The rule takes {m["share"]:g} of it, {m["share"]:g} x
{e["mean"]:.4g} = {m["derived"]:.4g}, and {cap_rule_str(m, "of share")}. Within it, "as
independent nets do" says dropout's share differs from theirs by less than {m["share"]:g} of
theirs (at most): a margin as wide as their share could not tell dropout's subnetworks from
members that offset nothing. {reach_str(r["tests"][r["primary"]], m["value"], "of share")} In
words: {cap_str(r, "of share", "margin")}."""


def findings(r: dict) -> list[str]:
    """Which way the share's equivalence fails, when it does.

    Args:
      r: the diversity results file's dict.

    Returns:
      One sentence when the share equivalence is contradicted (its own verdict, before the
      protocol's hold): whether dropout's subnetworks offset each other more or less than
      independent nets, with each kind's single-member test error at ``members``; else none.
    """
    t = r["tests"]["share_equiv"]
    if own_verdict(t) != CONTRADICTED:
        return []
    more = "more" if t["effect"] > 0 else "less"
    shares, m = r["shares"], str(r["config"]["members"])
    errs = {
        kind: r["curves"][kind]["test"]["member_error"][r["grids"][kind].index(m)]["mean"]
        for kind in KINDS
    }
    held = " (before the protocol's hold)" if t["verdict"] != CONTRADICTED else ""
    return [
        f"Averaging removes {more} of the members' Brier score for dropout's subnetworks "
        f"({shares['dropout']['mean']:.3f}) than for independent nets "
        f"({shares['independent']['mean']:.3f}): on its own evidence{held} the equivalence is "
        f"contradicted, the subnetworks offsetting each other {more}. The share is relative "
        f"to the members' own score: a single subnetwork's test error is "
        f"{errs['dropout']:.4f}, against {errs['independent']:.4f} for a single independent net."
    ]


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the diversity experiment's figures into its folder.

    ``diversity.png``: for each kind of members, the test Brier score of the ensemble and of the
    mean member, the ambiguity, and the error correlation and disagreement, against the number of
    members K (means over seeds, shaded: 95% intervals over seeds).

    Args:
      cfg: the experiment's configuration (unused here).
      raw: the cells' results, ``{label: result}`` (unused here).
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, kind in enumerate(KINDS):
        # the results list the Ks as the strings of JSON keys ("10" before "2"): in K order
        order = sorted(range(len(r["grids"][kind])), key=lambda j: int(r["grids"][kind][j]))
        ks = [int(r["grids"][kind][j]) for j in order]
        c = r["curves"][kind]["test"]
        for ax, stat, ls in (
            (axes[0], "ensemble", "-"),
            (axes[0], "member", ":"),
            (axes[1], "ambiguity", "-"),
            (axes[2], "error_corr", "-"),
            (axes[2], "disagreement", "--"),
        ):
            cis = [c[stat][j] for j in order]
            ax.plot(
                ks, [v["mean"] for v in cis], ls=ls, marker="o", ms=3, color=f"C{i}",
                label=f"{LABELS[kind]}: {stat.replace('_', ' ')}",
            )  # fmt: skip
            ax.fill_between(
                ks, [v["lo"] for v in cis], [v["hi"] for v in cis], color=f"C{i}", alpha=0.15
            )
    axes[0].set(ylabel="test Brier score", title="ensemble (solid) vs mean member (dotted)")
    fig.suptitle("Means over seeds; shaded: 95% intervals over seeds", fontsize=9)
    axes[1].set(ylabel="ambiguity (test)", title="diversity: ensemble = member - ambiguity")
    axes[2].set(ylabel="mean over pairs", title="error correlation, disagreement")
    for ax in axes:
        ax.set(xscale="log", xlabel="K members")
        ax.legend(fontsize=7)
    ctx.savefig(fig, "diversity.png")


def section(r: dict) -> str:
    """The report's section of the diversity experiment, from its results file.

    The members compared, the figure, a table of the Brier decomposition, errors, disagreement and
    error correlation at the configured number of members, per kind and split, the share of the
    Brier score that averaging removes, and the tests.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``diversity/...``).
    """
    c = r["config"]
    m = str(c["members"])
    rows, defined = [], []
    for kind in KINDS:
        for split in ("test", "train"):
            j = r["grids"][kind].index(m)
            v = {st: r["curves"][kind][split][st][j] for st in STATS}
            has = v["corr_defined"]["mean"] > 0
            if has:
                defined.append(v["corr_defined"]["mean"])
            rows.append(
                [LABELS[kind], split, ci_str(v["member"]), ci_str(v["ambiguity"]),
                 ci_str(v["ensemble"]), ci_str(v["member_error"]), ci_str(v["ensemble_error"]),
                 ci_str(v["disagreement"]), ci_str(v["error_corr"]) if has else "-"]
            )  # fmt: skip
    return f"""{mlp_str(r, c["hidden"])}, {c["seeds"]} seeds. Members: the first K subnetworks
of one dropout net (hidden drop rate {c["rate"]}; the MC stream's masks), and K independently
trained plain nets of the same architecture (own initialisation and minibatch order among the
members; member 0 of each seed starts from the dropout net's initialisation and minibatch
order). Both kinds train by the study's protocol, tuned each on its own, the dropout net
stopped by {stopped_by(c["protocol"])}, each plain net by its own validation NLL (it has one
subnetwork): {protocol_str(c["protocol"])}

{arms_table(r["arms"])}

{arms_note()}

**Caveats on the primary's arms.** {caveats(r["arms"], c["protocol"]["eval_every"]) or "none."}

The Brier score's ambiguity decomposition is an identity: ensemble = mean member - ambiguity.

![diversity](diversity/diversity.png)

At K = {m} members (means over seeds, 95% CI):

{table(["members", "split", "mean member Brier", "ambiguity", "ensemble Brier",
        "member error", "ensemble error", "disagreement", "error correlation"], rows)}

Share of the members' mean test Brier score that averaging {m} of them removes: dropout's
subnetworks {ci_str(r["shares"]["dropout"])}, independent nets
{ci_str(r["shares"]["independent"])}. The primary test: that share, dropout minus independent,
equivalent within +-{r["margin"]["value"]:.4g} ({margin_origin(r["margin"])}), on the nets
selected within W; every
test is held inconclusive when an arm did not converge or the same test within 2W decides
otherwise. Whether averaging dropout's
subnetworks lowers the 0/1 test error below their mean (the Brier score's gain is the
ambiguity, never negative, so it is no test), and whether their errors are less correlated
than independent nets', are exploratory. The error correlation is the mean over the pairs of
members where it is defined (neither member always right or always wrong): at least
{min(defined, default=0):.0%} of the pairs in the rows that show one (mean over seeds); "-"
where no pair has one.

{_margin_words(r)}
"""  # fmt: skip
