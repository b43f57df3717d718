"""The report's section and figures of the ensembles experiment, from its results file."""

from __future__ import annotations

import numpy as np

from ..common import (
    cap_rule_str,
    cap_str,
    ci_str,
    margin_caveats,
    mlp_str,
    plt,
    reach_str,
    table,
    train_str,
)
from ..ensembles import LABELS, ROWS, Config
from ..protocol import arms_note, arms_table, caveats, protocol_str, stopped_by

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = (
    "moved to the protocol's nets after the matched-compute result was seen; its NLL margin "
    "became a share of the ensemble's validation gain after the results at 0.02 nats were seen"
)


def findings(r: dict) -> list[str]:
    """Where a margin is at least what ensembling buys.

    Args:
      r: the ensembles results file's dict.

    Returns:
      A sentence when the matched-compute NLL margin is at least that ensemble's gain over
      its mean member (from the rows' mean test NLLs), and one per metric (NLL, error) whose
      margin on the protocol's nets is at least the independent ensemble's own gain over its
      mean single member (``member_gain``): equivalence within such a margin could not tell
      the ensemble from one of its members.
    """
    out = []
    rows = r["rows"]  # matched compute: the ensemble's members train 1/k of the steps
    matched = (
        rows["independent_member"]["test"]["nll"]["mean"]
        - rows["independent"]["test"]["nll"]["mean"]
    )
    if r["config"]["margin_nll_matched"] >= matched:
        out.append(
            f"At matched compute the NLL margin (+-{r['config']['margin_nll_matched']:g}) is "
            f"at least that ensemble's own gain over its mean single member ({matched:.4f}, "
            "the difference of their mean test NLLs): equivalence within it there could not "
            "tell the ensemble from one of its members."
        )
    for metric, key, margin in (("NLL", "nll", r["margin_nll"]["value"]),
                                ("error", "error", r["config"]["margin_err"])):  # fmt: skip
        gain = r["member_gain"][key]
        if margin >= gain["mean"]:
            out.append(
                f"The {metric} margin (+-{margin:g}) is at least the independent ensemble's "
                f"own gain over its mean single member ({gain['mean']:.4f} "
                f"[{gain['lo']:.4f}, {gain['hi']:.4f}]; the protocol's nets): equivalence "
                "within it could not tell the ensemble from one of its members."
            )
    return out


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the ensembles experiment's figures into its folder.

    ``ensembles.png``: test and train NLL and error of every arm (means over seeds, 95% intervals),
    and test NLL of dropout (by weight scaling and by the MC average) minus the independent
    ensemble: each seed, the mean paired difference with its 90% interval, and the equivalence
    margin.

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}``.
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    # the protocol's nets (the primary's) first, then the matched-compute arms
    rows = {**{f"tuned {k}": v for k, v in r["tuned"].items()}, **r["rows"]}
    names = list(rows)
    xs = np.arange(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, metric, ylabel in zip(
        axes[:2], ("nll", "accuracy"), ("NLL (nats)", "error (fraction)"), strict=True
    ):
        flip = (lambda v: 1.0 - v) if metric == "accuracy" else (lambda v: v)
        for split, mk, off in (("test", "o", -0.1), ("train", "s", 0.1)):
            c = [rows[k][split][metric] for k in names]
            m = np.array([flip(v["mean"]) for v in c])
            lo, hi = np.array([flip(v["lo"]) for v in c]), np.array([flip(v["hi"]) for v in c])
            yerr = [m - np.minimum(lo, hi), np.maximum(lo, hi) - m]
            ax.errorbar(xs + off, m, yerr=yerr, ls="", marker=mk, capsize=3, label=split)
        ax.set_xticks(xs, [_label(k) for k in names], fontsize=7, rotation=35, ha="right")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    ax = axes[2]
    names = [("nll_equiv_ws", "weight scaling"), ("nll_equiv_mc", "MC average")]
    rows_raw = raw["cell=protocol"]["rows"]
    nll = lambda name: np.array([s["test"]["nll"] for s in rows_raw[name]])  # noqa: E731
    for i, (t, _) in enumerate(names):
        tt = r["tests"][t]
        per_seed = nll(f"dropout_{t[-2:]}") - nll("independent")
        ax.plot(np.full(len(per_seed), i + 0.12), per_seed, ".", color="C1", alpha=0.6)
        ax.errorbar(
            i,
            tt["effect"],
            yerr=[[tt["effect"] - tt["lo"]], [tt["hi"] - tt["effect"]]],
            marker="o",
            capsize=4,
            color="C0",
        )
    m = r["margin_nll"]["value"]
    ax.axhspan(-m, m, color="C2", alpha=0.15, label="equivalence margin")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(names)), [n[1] for n in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("test NLL, dropout - independent ensemble (nats)")
    ax.set_title("mean paired difference, 90% interval (TOST); dots: seeds", fontsize=9)
    ax.legend(fontsize=8)
    fig.suptitle(
        f"M = {cfg.k} members; 'tuned': the protocol's nets, the rest at matched compute: "
        f"means over {cfg.seeds} seeds with 95% CI",
        fontsize=10,
    )
    ctx.savefig(fig, "ensembles.png")


def _label(row: str) -> str:
    """A figure's or table's label of a row: the protocol's nets are ``tuned <row>``."""
    if row.startswith("tuned "):
        return "protocol: " + LABELS[row[len("tuned ") :]]
    return LABELS[row]


def headline_caveats(r: dict) -> list[str]:
    """What a reader quoting the primary's verdict must know (:func:`.common.margin_caveats`).

    Args:
      r: the ensembles results file's dict.

    Returns:
      The clauses.
    """
    return margin_caveats(r, "nats")


def section(r: dict) -> str:
    """The report's section of the ensembles experiment, from its results file.

    The primary's nets (by the protocol) with their training and the primary test, then the
    matched-compute set-up and its arms, the figure, and tables of test and train error and NLL
    and test ECE per arm.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``ensembles/...``).
    """

    def err_str(c: dict) -> str:  # accuracy interval as an error interval
        return ci_str({"mean": 1 - c["mean"], "lo": 1 - c["hi"], "hi": 1 - c["lo"]})

    def table_rows(named: dict) -> list:
        return [
            [
                _label(k),
                err_str(v["test"]["accuracy"]),
                err_str(v["train"]["accuracy"]),
                ci_str(v["test"]["nll"]),
                ci_str(v["train"]["nll"]),
                ci_str(v["test"]["ece"]),
            ]
            for k, v in named.items()
        ]

    head = ["method", "test error", "train error", "test NLL", "train NLL", "test ECE"]
    n_seeds = len(r["arms"]["dropout"]["stop_w"])
    members = np.asarray(r["arms"]["independent"]["stop_w"]).reshape(-1, n_seeds)  # (M, S)
    cost = (
        f"up to their stops within W, a seed's {members.shape[0]} plain nets took "
        f"{np.median(members.sum(0)):,.0f} training steps (median over seeds) against the "
        f"dropout net's {np.median(r['arms']['dropout']['stop_w']):,.0f} (every run trained "
        f"2W = {2 * r['arms']['dropout']['window']:,} steps)."
    )
    tuned = table_rows({f"tuned {k}": v for k, v in r["tuned"].items()})
    primary_arms = {k: r["arms"][k] for k in ("dropout", "independent")}
    np_words = (
        f" An exploratory dropout net of {r['config']['np_width']} units per layer "
        "(Srivastava et al.'s n/p: the width over the keep probability), trained by the same "
        "protocol, is compared with the same ensemble (the *n/p* rows): whether the verdict "
        "is the dropout net's capacity."
        if "dropout n/p" in r["arms"]
        else ""
    )
    matched = table_rows({k: r["rows"][k] for k in ROWS})
    c, t = r["config"], r["config"]["train"]
    k, steps, w = r["k"], r["steps"], r["width"]
    evals = steps * t["batch_size"]
    margin = r["margin_nll"]
    return f"""{mlp_str(r, [w, w])}, drop rate {c["rate"]}, M = {k} members, {c["seeds"]} seeds.

**The primary's nets, each at its own best.** The dropout net and M plain nets per seed, each
trained by the study's protocol, tuned on its own: the dropout net stopped by
{stopped_by(c["protocol"])} (the ensemble the claim is about), each plain net by its own
validation NLL: {protocol_str(c["protocol"])} Member j of seed s is the plain net of seed
s + j x {c["seeds"]}; member 0 shares the dropout net's initialisation and minibatch order
(the *plain net* row). These are the nets of voting (the dropout net) and diversity (both).

{arms_table(r["arms"])}

{arms_note()}

**Caveats on the primary's arms.** {caveats(primary_arms, c["protocol"]["eval_every"]) or "none."}

The primary test is the TOST of test NLL, dropout's MC average minus the independent
ensemble of M nets, within +-{margin["value"]:.4g} nats (and +-{100 * c["margin_err"]:.1f} pp
of test error, exploratory, fixed before the run), on the nets selected within W, held
inconclusive when an arm did not converge or the same test within 2W decides otherwise: the
claim is about the *average* of the subnetworks, which the MC average estimates directly
(weight scaling is only an approximation to it, tested alongside), and NLL scores the whole
predictive distribution that an ensemble is meant to improve. Each net is at its own best,
not at equal compute: {cost}{np_words}

**The NLL margin, from the validation split.** What ensembling buys here: the independent
ensemble's validation NLL is {ci_str(margin["gain"], 4)} nats below its members' mean (within
W, over seeds; measured on the 20% held out, no test example read). The rule takes
{margin["share"]:g} of that gain, {margin["share"]:g} x {margin["gain"]["mean"]:.4g} =
{margin["derived"]:.4g} nats, and {cap_rule_str(margin, "nats")}. Within it,
"equivalent" says the dropout net's test NLL lies nearer the ensemble's than
{margin["share"]:g} of the way to its members' (at most).
{reach_str(r["tests"][r["primary"]], margin["value"], "nats")} The gain is
measured on the split that chose each member's stop and learning rate, where the members are
at their best, so it may understate the gain on fresh data; on the test set it is
{ci_str(r["member_gain"]["nll"], 4)} nats. The n/p net's NLL equivalence takes this margin
too; the matched-compute arms keep a fixed +-{c["margin_nll_matched"]:g} nats (each member
trains 1/{k} of the steps there, so this gain is not their scale). In words: {cap_str(r, "nats")}.

{table(head, tuned)}

**At matched compute** (exploratory: a fixed budget by design, so these tests may depend on
where it falls). Every arm makes {steps} x {t["batch_size"]} = {evals} example-gradient
evaluations. Single nets train with {train_str(t)}; each ensemble member trains
{steps // k} steps at the same batch size. Every arm sees the same data split per seed.

- *Plain net* vs *dropout* (same initialisation and minibatch order): does dropout's average
  cancel overfitting?
- *Dropout* (weight scaling, and the MC average over {c["mc_k"]} subnetworks) vs the
  *independent ensemble* (M plain nets, own initialisations and minibatch orders,
  probabilities averaged).
- *Dropout bagging* (Warde-Farley et al. 2014: dropout's subnetworks with untied weights):
  M members, member j keeping one mask drawn at the dropout rate throughout. Each starts from
  the dropout net's initialisation and follows its minibatch order over the whole training
  set (no bootstrap), so it differs from dropout in weight sharing (and in covering M rather
  than all subnetworks). Warde-Farley et al. found dropout better.
- *Fixed masks, tied weights*: the same M masks cycled step by step on one set of weights,
  from the same initialisation and minibatch stream ({steps} steps, {steps // k} per mask).
  Against bagging only the tying differs: given M subnetworks, does sharing help?

"Mean single member" rows show what averaging buys each ensemble.

![ensembles](ensembles/ensembles.png)

{table(head, matched)}
"""
