"""The report's section and figures of the shrinkage experiment, from its results file."""

from __future__ import annotations

import numpy as np

from ..common import (
    ci_str,
    errorbar,
    mlp_str,
    plt,
    table,
    train_str,
)
from ..protocol import arms_note, arms_table, caveats, protocol_str
from ..shrinkage import Config
from ..shrinkage_mlp import MEASURES, MLP_PREDICTED, OPT_NAMES

# How its primary came to be what it is, where its own result was seen first (Scope says more)
POST_HOC = "moved from the linear ridge to the MLP weight norm after that test was seen"


def _coef_panel(ax, scales: np.ndarray, lines: list, title: str) -> None:
    """Coefficients times their feature's scale (the effect of a one-sd change of the
    feature), features ordered by scale; ``lines`` of ``(coefficients, style, label)``."""
    order = np.argsort(scales)
    for w, style, label in lines:
        ax.plot(np.arange(len(scales)), (np.asarray(w) * scales)[order], style, label=label, ms=4)
    ax.set(xlabel="feature scale (ascending)", ylabel="coefficient x feature scale", title=title)
    ax.set_xticks(np.arange(len(scales)), [f"{v:.2g}" for v in scales[order]], fontsize=7)


def figures(cfg: Config, raw: dict, r: dict, ctx) -> None:
    """Draw the shrinkage experiment's figures into its folder.

    ``shrinkage.png``: for each MLP measure and optimiser, the measure against the drop rate (by
    weight scaling, and also by the MC average for the test logit norm) and against the L2
    strength, with the plain net (no L2) as a line (means over seeds, 95% intervals);
    ``shrinkage_linear.png``: the coefficients of the linear (and, when run, logistic) part at the
    first keep, scaled by their feature's scale, and the relative distances of SGD with dropout
    from the closed forms per keep, against the margin.

    Args:
      cfg: the experiment's configuration.
      raw: the cells' results, ``{label: result}`` (unused here).
      r: the experiment's results (its summary), as its results file holds them.
      ctx: the run's :class:`.common.Context`; it saves each figure and lists it for the results
        file.
    """
    rates, l2s = cfg.rates, cfg.l2s
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for j, (m, words) in enumerate(MEASURES.items()):
        key = f"{m}_ws" if m in MLP_PREDICTED else m
        for i, o in enumerate(cfg.mlp_optimizers):
            res, color = r["mlp"][o], f"C{i}"
            pts = [res[f"rate={x}"][key] for x in rates]
            errorbar(axes[0, j], rates, pts, f"{OPT_NAMES[o]}, WS", color=color)
            if m in MLP_PREDICTED:
                mc = [res[f"rate={x}"][f"{m}_mc"] for x in rates]
                errorbar(axes[0, j], rates, mc, f"{OPT_NAMES[o]}, MC average", color=color, ls="--")
            if l2s:
                pts = [res[f"l2={v}"][key] for v in l2s]
                errorbar(axes[1, j], l2s, pts, f"{OPT_NAMES[o]}, L2", color=color)
            # The plain net (L2 = 0) cannot sit on a log axis: a horizontal line instead.
            axes[1, j].axhline(res["rate=0.0"][key]["mean"], color=color, ls=":",
                               label=f"{OPT_NAMES[o]}, plain (no L2)")  # fmt: skip
        axes[0, j].set(xlabel="drop rate (hidden layers), no L2", ylabel=words)
        axes[1, j].set(xlabel="L2 strength, no dropout", ylabel=words, xscale="log")
        if m == "spec":  # spans more than an order of magnitude
            axes[0, j].set_yscale("log")
            axes[1, j].set_yscale("log")
        axes[0, j].set_title(f"{words} vs drop rate (95% CI)", fontsize=9)
        axes[1, j].set_title(f"{words} vs L2 (95% CI)", fontsize=9)
    for ax in axes.ravel():
        ax.legend(fontsize=7)
    ctx.savefig(fig, "shrinkage.png")
    _trajectory_figure(cfg, r, ctx)

    lin, log = r["linear"], r["logistic"]
    k0, s = str(cfg.keeps[0]), np.asarray(lin["scales"])
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    c = lin["keeps"][k0]["coef"]
    lines = [(lin["ols"], "ks-", "least squares"), (c["dd"], "bo-", "data-dependent ridge"),
             (c["pr"], "gv-", "plain ridge, equal trace"),
             (c["sgd"], "r^--", "SGD with input dropout (seed mean)")]  # fmt: skip
    _coef_panel(axes[0], s, lines, f"Linear regression, keep {k0}")
    bars = [(lin, "rel_dd", "linear: to data-dependent ridge"),
            (lin, "rel_pr", "linear: to plain ridge")]  # fmt: skip
    if log is not None:
        c = log["keeps"][k0]["coef"]
        lines = [(log["mle"], "ks-", "logistic MLE"),
                 (c["wager"], "bo-", "Wager (Fisher-scaled L2)"),
                 (c["pr"], "gv-", "plain L2, equal mean strength"),
                 (c["sgd"], "r^--", "SGD with input dropout (seed mean)")]  # fmt: skip
        _coef_panel(axes[1], s, lines, f"Logistic regression, keep {k0}")
        bars += [(log, "rel_wager", "logistic: to Wager"), (log, "rel_pr", "logistic: to plain L2")]
    else:
        axes[1].set_axis_off()
    keeps = list(lin["keeps"])
    xs, width = np.arange(len(keeps)), 0.8 / len(bars)
    for i, (part, n, label) in enumerate(bars):
        vals = [part["keeps"][k][n] for k in keeps]
        m = np.array([v["mean"] for v in vals])
        err = [m - [v["lo"] for v in vals], np.array([v["hi"] for v in vals]) - m]
        axes[2].bar(xs + width * (i + 0.5) - 0.4, m, width, yerr=err, capsize=3, label=label)
    axes[2].axhline(cfg.agree, color="k", ls=":", label=f"margin {cfg.agree}")
    axes[2].set(
        xticks=xs, xticklabels=[f"keep {k}" for k in keeps], yscale="log",
        ylabel="relative L2 distance of SGD", title="SGD with dropout vs closed forms (95% CI)",
    )  # fmt: skip
    for ax in axes[:2]:
        if ax.has_data():
            ax.legend(fontsize=7)
    axes[2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ctx.savefig(fig, "shrinkage_linear.png")


def _nearest(steps: list[int], targets) -> list[int]:
    """The recorded steps nearest to ``targets``, sorted, each once."""
    return sorted({min(steps, key=lambda x: abs(x - t)) for t in targets})


def _matched_steps(plain: dict, drop: dict, window: int) -> str:
    """The two nets' Frobenius norms at the same steps (from the trajectories), in words."""
    tp, td = plain["trajectory"], drop["trajectory"]
    steps = tp["steps"]
    at = _nearest(steps, (steps[0], window, steps[-1]))
    said = "; ".join(
        f"step {t}: plain {tp['mean'][steps.index(t)]:.1f} [{tp['lo'][steps.index(t)]:.1f}, "
        f"{tp['hi'][steps.index(t)]:.1f}], dropout {td['mean'][steps.index(t)]:.1f} "
        f"[{td['lo'][steps.index(t)]:.1f}, {td['hi'][steps.index(t)]:.1f}]"
        for t in at
    )
    return (
        f"At matched steps, each at its own learning rate (means over seeds, 95% CI): {said}. "
        "The primary reads each net at its own stop."
    )


def _trajectory_figure(cfg: Config, r: dict, ctx) -> None:
    """``shrinkage_trajectory.png``: per optimiser, each net's Frobenius norm against the step
    (mean over seeds, 95% band), the median stop within W dotted, W dashed."""
    opts = cfg.mlp_optimizers
    fig, axes = plt.subplots(1, len(opts), figsize=(6.5 * len(opts), 3.8), squeeze=False)
    for ax, o in zip(axes[0], opts, strict=True):
        for i, (net, v) in enumerate(r["mlp"][o].items()):
            t, color = v["trajectory"], f"C{i}"
            ax.plot(t["steps"], t["mean"], color=color, label=net)
            ax.fill_between(t["steps"], t["lo"], t["hi"], color=color, alpha=0.2)
            ax.axvline(np.median(v["arm"]["stop_w"]), color=color, ls=":", lw=1)
        ax.axvline(cfg.protocol.window, color="k", ls="--", lw=1, label="W")
        ax.set(
            xlabel="step (dotted: each net's median stop within W)",
            ylabel="Frobenius norm of all kernels",
            title=f"Weight norm along the run, {OPT_NAMES[o]} (95% CI)",
        )
        ax.legend(fontsize=7)
    ctx.savefig(fig, "shrinkage_trajectory.png")


def _norm_ratio(lin: dict) -> str:
    """The plain ridge's norm over the data-dependent ridge's, per keep probability."""
    ratio = {
        k: np.linalg.norm(v["coef"]["pr"]) / np.linalg.norm(v["coef"]["dd"])
        for k, v in lin["keeps"].items()
    }
    return ", ".join(f"{x:.2f} at keep {k}" for k, x in ratio.items())


def _linear_md(r: dict) -> str:
    cfg, lin = r["config"], r["linear"]
    rows = [
        [k, f"{v['lambda']:.4g}", ci_str(v["rel_dd"], 4), ci_str(v["rel_pr"], 3),
         f"{v['dd_vs_pr']:.3f}",
         f"{v['closest']['dd_vs_closest']:.3f} (lambda {v['closest']['lambda']:.4g})",
         ci_str(v["closest"]["rel"], 3), ci_str(v["norm"], 1), ci_str(v["norm_plain"], 1),
         ci_str(v["train_mse"], 1), f"{v['mse_dd']:.1f}", f"{v['mse_pr']:.1f}"]
        for k, v in lin["keeps"].items()
    ]  # fmt: skip
    san = lin["sanity"]
    rows.append(
        ["1 (plain SGD)", "0", f"to least squares: {ci_str(san['rel'], 4)}", "-", "-", "-", "-",
         "-", "-",
         ci_str(san["train_mse"], 1), f"{san['mse']:.1f} (least squares)", "-"]
    )  # fmt: skip
    head = ["keep p", "lambda of the plain ridge", "SGD to data-dependent ridge",
            "SGD to plain ridge", "data-dependent to plain ridge",
            "data-dependent to the closest plain ridge", "SGD to the closest plain ridge",
            "norm of w, dropout SGD",
            "norm of w, plain SGD", "train MSE, SGD", "train MSE, data-dependent ridge",
            "train MSE, plain ridge"]  # fmt: skip
    return f"""**Linear part: dropout's penalty is a data-dependent ridge.** With input dropout
at keep p, the expected squared loss of linear regression is ridge with the penalty
(1-p)/p w^T diag(X^T X) w (Srivastava et al. 2014, section 9.1; the inverted convention's form
of their p(1-p)||Gw||^2, G = diag(X^T X)^(1/2)), minimised by the **data-dependent ridge**
w = (X^T X + (1-p)/p diag(X^T X))^-1 X^T y. On standardised features diag(X^T X) = nI and
this *is* plain ridge, so here the standardised diabetes features are multiplied by fixed
scales spread over {cfg["decades"]} orders of magnitude ({min(lin["scales"]):.3g} to
{max(lin["scales"]):.3g}, in a fixed random order): the penalty on each coefficient grows with
its feature's squared scale. The **plain ridge of equal trace** penalises lambda ||w||^2 with
lambda = (1-p)/p trace(X^T X)/d, the same total strength spread evenly; the **closest plain
ridge** is the one, over lambda from 1e-4 to 1e4 times that (161 values, log-spaced), nearest
the data-dependent ridge. Training:
{train_str(cfg["linear"])}, cosine-decayed, a fresh input mask per example and step;
{cfg["seeds"]} seeds vary the initialisation and the mask stream, the data are fixed.
Distances are relative to the reference's norm, ||w - w_ref|| / ||w_ref||: SGD's distance to
a ridge divides by that ridge's norm, a ridge-to-ridge distance by the data-dependent ridge's
norm (the plain ridge's norm over the data-dependent ridge's is {_norm_ratio(lin)}: the
scale of "SGD to plain ridge"); per seed, mean [95% CI]. A linear
model's MC average equals weight scaling exactly, so its coefficients are the prediction.
Plain SGD (keep 1) against least squares checks that the optimiser converges.

{table(head, rows)}"""


def _logistic_md(r: dict) -> str:
    cfg, log = r["config"], r["logistic"]
    if log is None:
        return "**Logistic part**: not run in this configuration (`logistic` is None)."
    rows = [
        [k, f"{v['lambda']:.4g}", ci_str(v["rel_wager"], 4), ci_str(v["rel_pr"], 3),
         f"{v['wager_vs_pr']:.3f}", ci_str(v["train_acc"], 3), ci_str(v["train_nll"], 3)]
        for k, v in log["keeps"].items()
    ]  # fmt: skip
    san = log["sanity"]
    rows.append(
        ["1 (plain SGD)", "0", f"to the MLE: {ci_str(san['rel'], 4)}", "-", "-",
         ci_str(san["train_acc"], 3), ci_str(san["train_nll"], 3)]
    )  # fmt: skip
    head = ["keep p", "lambda of the plain L2", "SGD to Wager", "SGD to plain L2",
            "Wager to plain L2", "train accuracy, SGD", "train NLL, SGD"]  # fmt: skip
    return f"""**Logistic part (Wager et al. 2013).** Labels y > mean, the same features. To
second order, dropout adds (1-p)/(2p) sum_j w_j^2 sum_i p_i(1-p_i) x_ij^2 to the summed NLL
(p_i the model's probability): L2 scaled by the diagonal Fisher information. Its minimiser
(L-BFGS, exact gradient) is compared with SGD ({train_str(cfg["logistic"])}, cosine) and
with plain L2, lambda/2 ||w||^2, lambda the mean over features of the Fisher-scaled
coefficients (1-p)/p sum_i p_i(1-p_i) x_ij^2 at Wager's solution. The approximation is second
order, so part of any distance is the approximation's, not SGD's.

{table(head, rows)}"""


def _mlp_md(r: dict) -> str:
    cfg, w = r["config"], r["width"]
    parts = []
    nets = [f"rate={x}" for x in cfg["rates"]] + [f"l2={x}" for x in cfg["l2s"]]
    for o in cfg["mlp_optimizers"]:
        res = r["mlp"][o]
        rows = [
            [net, ci_str(v["frob"], 2), ci_str(v["frob_2w"], 2), ci_str(v["spec"], 1),
             ci_str(v["logit_ws"], 2), ci_str(v["logit_mc"], 2), ci_str(v["train_acc"], 3),
             ci_str(v["test_acc_ws"], 3), ci_str(v["test_acc_mc"], 3), ci_str(v["train_nll"], 3),
             ci_str(v["test_nll_ws"], 3), ci_str(v["test_nll_mc"], 3)]
            for net, v in ((n, res[n]) for n in nets)
        ]  # fmt: skip
        head = ["net", "Frobenius norm", "Frobenius norm, within 2W", "product of spectral norms",
                "test logit norm, WS", "test logit norm, MC", "train acc (WS)", "test acc, WS",
                "test acc, MC", "train NLL (WS)", "test NLL, WS", "test NLL, MC"]  # fmt: skip
        arms = arms_table({net: res[net]["arm"] for net in nets})
        plain, drop = res["rate=0.0"], res[f"rate={r['test_rate']}"]
        notes = caveats({"plain": plain["arm"], f"drop {r['test_rate']}": drop["arm"]},
                        cfg["protocol"]["eval_every"])  # fmt: skip
        matched = _matched_steps(plain, drop, cfg["protocol"]["window"])
        parts.append(f"{OPT_NAMES[o]}: each net's training ({arms_note()})\n\n{arms}\n\n"
                     f"**Caveats on the primary's arms.** {notes or 'none.'} {matched}\n\n"
                     f"and its measures (nets "
                     f"selected within W unless stated)\n\n{table(head, rows)}")  # fmt: skip
    tables = "\n\n".join(parts)
    opts = " and by ".join(OPT_NAMES[o] for o in cfg["mlp_optimizers"])
    return f"""**MLP part.** {mlp_str(r, [w, w])}, hidden drop rates {list(cfg["rates"])} (no
L2) and L2 strengths {list(cfg["l2s"])} (no dropout; l2/2 ||W||^2 added to the loss, under Adam
too: coupled L2, not decoupled weight decay), trained by {opts}, each arm by the study's
protocol within its optimiser's learning-rate grid (no max-norm: it bounds the norms measured
here): {
        protocol_str(
            {**r["config"]["protocol"], "recipes": [r["config"][o] for o in cfg["mlp_optimizers"]]}
        )
    } Measures of the test-time
weights (the same under both dropout conventions): the Frobenius norm of all kernels and the
product of their spectral norms (a bound on the net's Lipschitz constant); and of the
function: the mean test logit norm, the L2 norm of the class-centred logits (for the MC
average over K subnetworks, the class-centred log of its mean probabilities).
Accuracy and NLL by weight scaling (WS) and by the MC average (MC; a plain net's MC is the
net itself). The tests compare drop rate {r["test_rate"]} with the plain net, per optimiser
and measure, paired by seed (same initialisation), claimed < 0, on the nets selected within W;
each is held inconclusive when an arm did not converge or its verdict within 2W differs. The
trajectory figure shows each net's weight norm along the whole run of 2W steps, so a reader
sees whether the sign depends on when one looks. Each net's norm is read at its own stop and
learning rate: early stopping itself limits the norm (a net stopped sooner has grown less), so
a difference here is dropout's together with where each net's validation NLL bottoms out; the
trajectories show the norms at matched steps.

{tables}

![trajectory](shrinkage/shrinkage_trajectory.png)"""


def section(r: dict) -> str:
    """The report's section of the shrinkage experiment, from its results file.

    The linear, logistic and MLP parts, each with its table, the figures, and the primary test.

    Args:
      r: the experiment's results file, as a dict.

    Returns:
      The section's Markdown; its figure links are relative to the results folder
      (``shrinkage/...``).
    """
    primary = r["tests"][r["primary"]]
    apart = min(v["dd_vs_pr"] for v in r["linear"]["keeps"].values()) > 0.5
    dd_words = (
        "so agreement with it tests the data-dependent part, which standardised features could not"
        if apart
        else "close enough that agreement with it cannot tell the data-dependent part from "
        "plain ridge"
    )
    dd_pr = ", ".join(f"{v['dd_vs_pr']:.2f} at keep {k}" for k, v in r["linear"]["keeps"].items())
    return f"""{_linear_md(r)}

{_logistic_md(r)}

![linear](shrinkage/shrinkage_linear.png)

{_mlp_md(r)}

![shrinkage](shrinkage/shrinkage.png)

The primary test is *{primary["what"]}* (claimed < 0): the claim is the tutorial's, that
dropout shrinks the square norm of its networks' weights like L2, and the tutorial's net has
hidden dropout and trains with SGD and momentum. The linear part tests the mechanism the papers
derive for linear models: there dropout acts as ridge with a data-dependent penalty, and on
these heterogeneous features that solution lies {dd_pr} (relative distance) from the plain
ridge of equal trace, {dd_words}. The
other tests are exploratory, each reported on its own: none is folded into an aggregate
verdict.
"""


def headline_caveats(r: dict) -> list[str]:
    """What a reader quoting the primary's verdict must know, from its numbers.

    The primary reads each net's weight norm at its own stop, after its own learning rate;
    where the dropout net's norm minus the plain net's has the other sign at matched steps
    (the end of W and of 2W, means over seeds), the verdict reflects when each net stopped
    and how fast it learned, not dropout alone, and a second list of seeds, tuned and stopped
    alike, cannot test that.

    Args:
      r: the results file's dict.

    Returns:
      One sentence, or none when the signs agree.
    """
    t = r["tests"][r["primary"]]
    arms = r["mlp"]["sgd"]
    tp, td = arms["rate=0.0"]["trajectory"], arms[f"rate={r['test_rate']}"]["trajectory"]
    steps = tp["steps"]
    at = [steps.index(s) for s in _nearest(steps, (r["config"]["protocol"]["window"], steps[-1]))]
    other = [i for i in at if np.sign(td["mean"][i] - tp["mean"][i]) == -np.sign(t["effect"])]
    if not other:
        return []
    said = "; ".join(
        f"step {steps[i]}: dropout {td['mean'][i]:.1f}, plain {tp['mean'][i]:.1f}" for i in other
    )
    return [
        f"the primary's sign ({t['effect']:.4g}, dropout minus plain at each net's own stop "
        f"and learning rate) is the other way at matched steps ({said}): the verdict "
        "reflects when each net stopped and how fast it learned, not dropout alone, and a "
        "second list of seeds, tuned and stopped alike, cannot test that"
    ]
