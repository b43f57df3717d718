"""The report's section and figures of the voting experiment, from its results file."""

from __future__ import annotations

from ..common import (
    cap_rule_str,
    cap_str,
    ci_str,
    derived_margin_caveats,
    effect_str,
    margin_origin,
    mlp_str,
    own_verdict,
    plt,
    reach_str,
    spread_str,
    table,
    uncertain_str,
)
from ..protocol import TWICE, arms_note, arms_table, caveats, protocol_str, stopped_by
from ..voting import LABELS, RULES, Config

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = (
    "its error margin became a share of what combining the subnetworks does on the validation "
    "split after the results at 0.5 pp were seen"
)


def headline_caveats(r: dict) -> list[str]:
    """What a reader quoting the primary's verdict must know: the design's reach, the
    replaced margin and how sure the margin's scale is
    (:func:`.common.derived_margin_caveats`).

    Args:
      r: the voting results file's dict.

    Returns:
      The clauses.
    """
    scale = "what combining the subnetworks does to the validation error"
    return derived_margin_caveats(r, None, "of error", "margin_err", scale=scale)


def _margin_words(r: dict) -> str:
    """The primary's error margin's derivation from the validation split, in words."""
    m, c = r["margin_err"], r["config"]
    e = m["effect"]
    return f"""**The primary's margin, from the validation split.** What combining
{c["members"]} subnetworks does at all: the wide net's validation error of one subnetwork (the
mean over {c["members"]} MC subnetworks of a stream of their own) minus that of their arithmetic
mean is {ci_str(e, 4)} (within W, over seeds,
{spread_str(m)}; measured on the 20% held out, no test example
read{uncertain_str(e)}). The rule takes {m["share"]:g} of it, {m["share"]:g} x {e["mean"]:.4g} =
{m["derived"]:.4g}, and {cap_rule_str(m, "of error")}. Within it, "decide alike" says the vote
and the mean differ by less than {m["share"]:g} of what the mean gains over one subnetwork (at
most): a margin as wide as that gain could not tell either rule from one subnetwork alone.
{reach_str(r["tests"][r["primary"]], m["value"], "of error")} The exploratory tests keep the
fixed +-{c["margin_err"]:g}. In words: {cap_str(r, "of error", "margin_err")}."""


def findings(r: dict) -> list[str]:
    """Where the verdict over the first subnetworks depends on the net.

    The primary is on the wide net; the same test on the small net may decide otherwise. The
    nets' own verdicts (before the protocol's hold) are compared on the nets selected within
    W and, from the same runs, within 2W, so a difference that only one budget shows is said;
    whether the protocol holds the primary is the tests table's to say.

    Args:
      r: the voting results file's dict.

    Returns:
      One sentence when the two nets' verdicts differ within W or within 2W, else none.
    """
    tests, m = r["tests"], r["config"]["members"]
    a, b = tests["vote_5"], tests["vote_5_small"]
    a2, b2 = tests.get("vote_5" + TWICE), tests.get("vote_5_small" + TWICE)
    twins = a2 is not None and b2 is not None
    if own_verdict(a) == own_verdict(b) and not (twins and a2["verdict"] != b2["verdict"]):
        return []
    own = " (each test's own, before the protocol's hold)" if "verdict_w" in a else ""
    text = (
        f"The verdict over the first {m} subnetworks depends on the net{own}, *{a['what']}* "
        f"being {own_verdict(a)} ({effect_str(a)}) and *{b['what']}* {own_verdict(b)} "
        f"({effect_str(b)})"
    )
    if twins:
        text += (
            f"; on the nets selected within 2W, {a2['verdict']} ({effect_str(a2)}) and "
            f"{b2['verdict']} ({effect_str(b2)})"
        )
    return [text + "."]  # the protocol's hold, when any, is in the tests table


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the voting experiment's figures into its folder.

    ``voting.png``: for the wide and the small net, test error of the majority vote and of the
    arithmetic and normalised geometric means against K, the number of subnetworks (means over
    seeds, 95% intervals), with weight scaling as a line.

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}`` (unused here).
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    grid = r["grid"]
    for ax, net in zip(axes, ("wide", "small"), strict=True):
        for i, rule in enumerate(RULES[:3]):
            m = [c["mean"] for c in r["curves"][net][rule]]
            lo = [c["lo"] for c in r["curves"][net][rule]]
            hi = [c["hi"] for c in r["curves"][net][rule]]
            ax.plot(grid, m, marker="o", ms=3, label=LABELS[rule], color=f"C{i}")
            ax.fill_between(grid, lo, hi, color=f"C{i}", alpha=0.15)
        ws = r["rows"][net]["test"]["ws"]["mean"]
        ax.axhline(ws, color="k", ls="--", lw=0.8, label="weight scaling")
        hidden = cfg.hidden if net == "wide" else cfg.small
        ax.set(
            xscale="log",
            xlabel="K subnetworks",
            ylabel="test error",
            title=f"hidden {hidden}, drop {cfg.rate}: mean over seeds, 95% CI",
        )
        ax.legend(fontsize=8)
    ctx.savefig(fig, "voting.png")


def _fit_text(r: dict) -> str:
    """The nets' train errors and the small net's exact vote against its exact mean, in
    words computed from the results (not fixed in the text)."""
    rows = r["rows"]
    train = {n: rows[n]["train"]["arithmetic"]["mean"] for n in ("wide", "small")}
    text = (
        f"Train error of the arithmetic mean: {train['wide']:.3f} for the wide net, "
        f"{train['small']:.3f} for the small one."
    )
    exact = rows["small"].get("exact test")
    if exact is None:
        return text
    gap = exact["vote"]["mean"] - exact["arithmetic"]["mean"]
    text += (
        f" Over all subnetworks of the small net the exact vote's test error is "
        f"{exact['vote']['mean']:.3f} against the exact arithmetic mean's "
        f"{exact['arithmetic']['mean']:.3f} ({100 * gap:+.1f} pp)"
    )
    if gap > r["config"]["margin_err"]:
        text += (
            " (a possible reason, not measured here: a vote counts every thinned subnetwork "
            "of a narrow net fully, however unsure it is, while the mean weighs each by its "
            "confidence)"
        )
    return text + "."


def section(r: dict) -> str:
    """The report's section of the voting experiment, from its results file.

    The nets and the rules, the share of tied votes, the figure, a table of errors per net, split
    and rule (with the first subnetworks' test errors), and the primary test.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder (``voting/...``).
    """
    c = r["config"]
    rows = []
    for net, hidden in (("wide", c["hidden"]), ("small", c["small"])):
        for label, by_rule in r["rows"][net].items():
            rows.append(
                [mlp_str(r, hidden).split(", ")[1], label]
                + [ci_str(by_rule[x]) if x in by_rule else "-" for x in RULES]
            )
    at = r["grid"].index(c["members"])
    for net, hidden in (("wide", c["hidden"]), ("small", c["small"])):
        rows.append(
            [mlp_str(r, hidden).split(", ")[1], f"test, first {c['members']} subnetworks"]
            + [ci_str(r["curves"][net][x][at]) for x in RULES[:3]]
            + ["-"]
        )
    ties = r["curves"]["wide"]["tie"][-1]
    ties5 = {n: ci_str(r["curves"][n]["tie"][at]) for n in ("wide", "small")}
    exact_tie = r["exact_tie"]
    tie_exact = "" if exact_tie is None else f", exact vote of the small net {ci_str(exact_tie)}"
    fit_text = _fit_text(r)
    wide_caveats = caveats({"wide": r["arms"]["wide"]}, c["protocol"]["eval_every"])
    return f"""{mlp_str(r, c["hidden"])} and a small net {mlp_str(r, c["small"]).split(", ")[1]}
({sum(c["small"])} droppable units), hidden drop rate {c["rate"]}, {c["seeds"]} seeds. Each net
trains by the study's protocol, each seed stopped by {stopped_by(c["protocol"])}:
{protocol_str(c["protocol"])}

{arms_table(r["arms"])}

{arms_note()}

**Caveats on the primary's net.** {wide_caveats or "none."}

The rules combine the *same* subnetworks: K = {c["k"]} sampled ones (the
MC subnetworks), and for the small net also all 2^{sum(c["small"])}, each weighted by its
probability ("exact" rows). A tied vote counts as breaking the tie at random would (1 - 1/t
of an error for a t-way tie holding the true class): neither rule is handed the ties. The
fraction of test examples with a tied vote: over the first {c["members"]} subnetworks
{ties5["wide"]} (wide net), {ties5["small"]} (small net); at K = {c["k"]} {ci_str(ties)} (wide
net){tie_exact}.

![voting](voting/voting.png)

Error (fraction), mean over seeds with 95% CI:

{table(["net", "split", *[LABELS[x] for x in RULES]], rows)}

The primary test: over {c["members"]} networks, as in the tutorial's "five result mean or
majority voting" (the tutorial's five are independently trained nets; here they are the first
{c["members"]} MC subnetworks of one dropout net, the ensemble the claim is about), the majority
vote is equivalent to the arithmetic mean within +-{r["margin_err"]["value"]:.4g} of test
error ({100 * r["margin_err"]["value"]:.2f} pp; {margin_origin(r["margin_err"])}), on the wide
net; the small net's test at K = {c["members"]} (within the fixed +-{c["margin_err"]:g}) is
exploratory. Every test is on the nets selected within W and held inconclusive when its net
did not converge or the same test within 2W decides otherwise. {fit_text} The same over
K = {c["k"]} subnetworks and over the
exact ensemble of the small net, the vote against weight scaling, and the vote against the
geometric mean are exploratory. The rows for the first {c["members"]} subnetworks are test
error only (no train error was computed at that K).

{_margin_words(r)}
"""
