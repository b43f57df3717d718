"""The report's section and figures of the conv experiment, from its results file."""

from __future__ import annotations

from ..common import (
    cap_rule_str,
    cap_str,
    ci_str,
    derived_margin_caveats,
    effect_str,
    margin_origin,
    plt,
    reach_str,
    side_str,
    spread_str,
    table,
)
from ..conv import Config
from ..protocol import arms_note, arms_table, caveats, protocol_str

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = (
    "moved to weight scaling after both predictors' results were seen; its NLL margin became a "
    "share of dense dropout's own validation effect after the results at 0.02 nats were seen"
)
# The plain arm's name in the arms table
PLAIN = "no dropout (the margin's scale)"


def headline_caveats(r: dict) -> list[str]:
    """What a reader quoting the primary's verdict must know: the design's reach, the
    replaced margin and how sure the margin's scale is
    (:func:`.common.derived_margin_caveats`).

    Args:
      r: the conv results file's dict.

    Returns:
      The clauses.
    """
    scale = "dense dropout's own validation effect"
    return derived_margin_caveats(r, r.get("plain_arm"), "nats", scale=scale)


def _margin_words(r: dict) -> str:
    """The NLL margin's derivation from the validation split, in words."""
    m = r["margin_nll"]
    e = m["effect"]
    side = side_str(e, "dense-only dropout net")
    return f"""**The NLL margin, from the validation split.** What dense dropout itself does to
this conv net: the validation NLL of the same conv net trained without any dropout (by the same
protocol's plain recipes, tuned on its own) minus the dense-only dropout net's (by weight
scaling, as the protocol selects) is {ci_str(e, 4)} nats (within W, over seeds,
{spread_str(m)}; measured on
the 20% held out, no test example read; {side}). The rule takes {m["share"]:g} of that
effect's size, {m["share"]:g} x {abs(e["mean"]):.4g} = {m["derived"]:.4g} nats, and
{cap_rule_str(m, "nats")}. Within it, "adds little" says conv dropout moves the test NLL by
less than {m["share"]:g} of what dense dropout moves the validation NLL (at most): a margin as
wide as that whole effect could not tell conv dropout's contribution from dense dropout's.
{reach_str(r["tests"][r["primary"]], m["value"], "nats")} In words: {cap_str(r, "nats")}."""


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the conv experiment's figures into its folder.

    ``conv.png``: test NLL and error against the conv channel drop rate, by weight scaling and by
    the MC average, and train by weight scaling (means over seeds, 95% intervals).

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}`` (unused here).
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    rates = sorted(float(k) for k in r["rows"])  # keys are strings: in rate order
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, m, label in zip(axes, ("nll", "accuracy"), ("NLL (nats)", "error"), strict=True):
        flip = (lambda v: 1 - v) if m == "accuracy" else (lambda v: v)
        for i, (part, name) in enumerate((("test_ws", "test, weight scaling"),
                                          ("test_mc", f"test, MC (K = {cfg.mc_k})"),
                                          ("train", "train, weight scaling"))):  # fmt: skip
            c = [r["rows"][str(rate)][part][m] for rate in rates]
            mean = [flip(v["mean"]) for v in c]
            ax.plot(rates, mean, marker="o", ms=4, color=f"C{i}", label=name)
            lo = [min(flip(v["lo"]), flip(v["hi"])) for v in c]
            hi = [max(flip(v["lo"]), flip(v["hi"])) for v in c]
            ax.fill_between(rates, lo, hi, color=f"C{i}", alpha=0.15)
        ax.set(xlabel="channel drop rate in the conv layers", ylabel=label)
        ax.legend(fontsize=8)
    fig.suptitle(f"dense drop rate {cfg.dense_rate}; {cfg.seeds} seeds, 95% CI", fontsize=10)
    ctx.savefig(fig, "conv.png")


def section(r: dict) -> str:
    """The report's section of the conv experiment, from its results file.

    The nets (a 2-D conv net for square images, else a 1-D one), the figure, a table of train and
    test errors and test NLLs per conv drop rate, the primary test and its limits, with a note on
    underfitting when conv dropout raises the primary rate's train error by more than 0.02.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder (``conv/...``).
    """
    c = r["config"]

    def err(v):
        return ci_str({"mean": 1 - v["mean"], "lo": 1 - v["hi"], "hi": 1 - v["lo"]})

    rows = [
        [rate, err(v["train"]["accuracy"]), err(v["test_ws"]["accuracy"]),
         err(v["test_mc"]["accuracy"]), ci_str(v["test_ws"]["nll"]), ci_str(v["test_mc"]["nll"])]
        for rate, v in r["rows"].items()
    ]  # fmt: skip
    t = r["tests"]
    # Train error at the primary rate vs dense-only: a net that fits worse with conv dropout
    # measures underfitting (width, training length) as much as the claim.
    tr = {k: 1 - v["train"]["accuracy"]["mean"] for k, v in r["rows"].items()}
    p_rate, base = str(c["primary_rate"]), str(0.0)
    underfit = (
        f" (3) With conv dropout these nets fit their training set worse: train error "
        f"{tr[p_rate]:.3f} at conv rate {p_rate} against {tr[base]:.3f} without it (table "
        "above). At this width and training length the primary then measures underfitting as "
        "much as what conv dropout adds to a net that fits; wider or longer-trained nets would "
        "be needed to separate the two."
        if p_rate in tr and base in tr and tr[p_rate] > tr[base] + 0.02
        else ""
    )
    mc_primary = effect_str(t["nll_mc"])
    gap_base = effect_str(t["ws_vs_mc_0.0"])
    gap_primary = effect_str(t[f"ws_vs_mc_{c['primary_rate']}"])
    d = r.get("data", {})
    side = round(d.get("features", 0) ** 0.5)
    image = side * side == d.get("features")
    net = (
        f"2-D conv net on {side}x{side} images, channels {list(c['channels_2d'])}, 3x3 kernels"
        if image
        else f"1-D conv net on {d.get('features')}-point signals, channels "
        f"{list(c['channels_1d'])}, kernel {c['kernel_1d']}"
    )
    return f"""{d.get("name")}: {net}, ReLU, a dense layer of {c["dense_width"]} at drop rate
{c["dense_rate"]}; channel dropout (whole feature maps) after each conv layer at the rates
below; {c["seeds"]} seeds, each net by the study's protocol: {protocol_str(c["protocol"])}
Conv rate 0 and conv rate {c["primary_rate"]} are tuned each on its own; the other rates
(exploratory) train at conv rate {c["primary_rate"]}'s recipe and learning rate, which favours
the tuned rate over them. The two tuned arms may differ in recipe as well as conv dropout (the
table says which).

![conv](conv/conv.png)

Each arm's training. {arms_note()}

{arms_table({f"conv {k}": v["arm"] for k, v in r["rows"].items()} | {PLAIN: r["plain_arm"]})}

**Caveats on the primary's arms.** {caveats(
    {f"conv {k}": r["rows"][str(k)]["arm"] for k in (0.0, c["primary_rate"])},
    c["protocol"]["eval_every"],
) or "none."}

{table(["conv channel drop rate", "train error (WS)", "test error WS",
        f"test error MC (K = {c['mc_k']})", "test NLL WS", "test NLL MC"], rows)}

The primary test: test NLL by weight scaling (the network as used) at conv rate
{c["primary_rate"]} minus dense-only dropout (conv rate 0), equivalent within
+-{r["margin_nll"]["value"]:.4g} nats ({margin_origin(r["margin_nll"])}), on the nets selected
within W: the claim that
conv dropout adds little; an interval above the margin means conv dropout *hurts* test NLL,
below it that it helps. It is held inconclusive when an arm did not converge or the same test
on the nets selected within 2W decides otherwise (within 2W: {effect_str(t["nll_ws"]["within_2w"])},
{t["nll_ws"]["within_2w"]["verdict"]}). The other rates, the MC average, and weight scaling vs
the MC average at each rate are exploratory: there, "contradicted" means weight scaling's NLL is
*lower* than the MC average's. Srivastava et al. found MC reaching weight scaling at about
K = 50 on wide MNIST MLPs, and Goodfellow et al. (maxout nets) found weight scaling better even
at K = 1000; these conv nets are small (few channels), so each dropped channel removes a large
share of a layer, which may widen the gap. Train error is by weight scaling only.

Limits of the primary. (1) It is measured by weight scaling; by the MC average the same
difference is {mc_primary}. The two differ by how far weight scaling is from the MC average at
each conv rate (WS minus MC: {gap_base} at rate 0, {gap_primary} at rate {c["primary_rate"]}),
so a change in that gap, not in the nets alone, can carry the primary's effect. (2) The conv
dropout here drops whole channels (feature maps) of narrow layers; the papers' conv dropout
(Srivastava et al.) drops single units in wider layers, and a verdict here does not carry over
to that set-up untested.{underfit}

{_margin_words(r)}
"""  # fmt: skip
