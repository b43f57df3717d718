"""Claim 3: weight scaling (standard) and train-time 1/p scaling (inverted) match the expected
activation.

Part A is the tutorial's demo: 10,000 inputs of 1, dropout 0.5, a bias-free linear unit with
all weights 1, then ReLU: the distribution of training-mode outputs over many keys, and the
exact eval-mode output, for both conventions. Part B checks that the two conventions are the
same function family: trained from matching initialisations (standard's post-dropout weights
= inverted's / p) with SGD whose post-dropout learning rates are scaled by 1/p^2, they stay
the same function; with identical hyper-parameters they drift apart.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.metrics import accuracy, gaps
from dropstudy.models import MLP, MaskedDropout
from dropstudy.stats import NOT_SUPPORTED, SUPPORTED
from dropstudy.train import TrainConfig, train

from .common import ci, ci_str, plt, table

NAME = "scaling"
CLAIM = (
    "Scaling weights by p at test time, or activations by 1/p in training (inverted "
    "dropout), matches the expected activation."
)
N_INPUTS = 10_000


class TutorialUnit(nn.Module):
    """Dropout, then a bias-free linear unit with every weight 1, then ReLU."""

    rate: float = 0.5
    convention: str = "inverted"

    @nn.compact
    def __call__(self, x):
        x = MaskedDropout(self.rate, convention=self.convention)(x)
        return jax.nn.relu(nn.Dense(1, use_bias=False, kernel_init=nn.initializers.ones)(x))


def _demo_cell(convention: str, n_keys: int) -> dict:
    model = TutorialUnit(0.5, convention)
    x = jnp.ones((1, N_INPUTS))
    params, spec = M.init(model, jax.random.key(0), x)
    keys = jax.random.split(jax.random.key(1), n_keys)
    train_out = jax.jit(
        jax.vmap(lambda k: M.apply(model, params, x, M.sample_masks(spec, k, (1,)))[0, 0])
    )(keys)
    train_out = np.asarray(train_out, np.float64)
    eval_out = float(P.weight_scaling(model, params, x)[0, 0])
    counts, edges = np.histogram(train_out, bins=40)
    keep = 0.5
    scale = 1 / keep if convention == "inverted" else 1.0
    return {
        "eval": eval_out,
        "train_mean": ci(train_out),
        "train_sd": float(train_out.std(ddof=1)),
        "first_draw": float(train_out[0]),
        "theory_mean": N_INPUTS * keep * scale,
        "theory_sd": float(np.sqrt(N_INPUTS * keep * (1 - keep)) * scale),
        "hist": {"counts": counts.tolist(), "edges": edges.tolist()},
        "n_keys": n_keys,
    }


def _conventions_cell(ds, steps: int, seed: int) -> dict:
    keep = {"drop_input": 0.8, "drop_0": 0.5, "drop_1": 0.5}
    inv = MLP(hidden=(64, 64), n_out=ds.n_classes, rate=0.5, input_rate=0.2)
    std = inv.clone(convention="standard")
    x = jnp.asarray(ds.x_train)
    p_inv, _ = M.init(inv, jax.random.split(jax.random.key(seed), 3)[0], x)
    # Standard's post-dropout weights are inverted's divided by the keep probability.
    after = {"dense_0": "drop_input", "dense_1": "drop_0", "out": "drop_1"}
    p_std = {k: {**v, "kernel": v["kernel"] / keep[after[k]]} for k, v in p_inv.items()}
    base = TrainConfig(steps=steps, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9)
    matched = base.replace(
        lr_scale=tuple((f"{k}/kernel", 1 / keep[v] ** 2) for k, v in after.items())
    )
    key = jax.random.key(seed)
    out = {}
    for tag, cfg_std in (("matched_lr", matched), ("same_lr", base)):
        a, _ = train(inv, key, ds.x_train, ds.y_train, base, params0=p_inv)
        b, _ = train(std, key, ds.x_train, ds.y_train, cfg_std, params0=p_std)
        pa = jax.nn.softmax(P.weight_scaling(inv, a, ds.x_test))
        pb = jax.nn.softmax(P.weight_scaling(std, b, ds.x_test))
        out[tag] = {
            "max_abs_logit": float(
                jnp.max(
                    jnp.abs(
                        P.weight_scaling(inv, a, ds.x_test) - P.weight_scaling(std, b, ds.x_test)
                    )
                )
            ),
            **gaps(pb, pa),
            "acc_inverted": accuracy(pa, ds.y_test),
            "acc_standard": accuracy(pb, ds.y_test),
        }
    return out


def run(ctx) -> dict:
    ds = ctx.dataset()
    n_keys = ctx.pick(10_000, 1_000)
    steps = ctx.pick(1500, 200)
    ctx.bar(3)
    demo = {
        c: ctx.cell(
            f"demo_{c}", {"convention": c, "n_keys": n_keys}, lambda c=c: _demo_cell(c, n_keys)
        )
        for c in ("inverted", "standard")
    }
    conv = ctx.cell(
        "conventions",
        {"data": ds.name, "steps": steps, "seed": 0},
        lambda: _conventions_cell(ds, steps, 0),
    )

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (c, d) in zip(axes, demo.items()):
        ax.stairs(
            d["hist"]["counts"],
            d["hist"]["edges"],
            fill=True,
            alpha=0.5,
            label=f"training mode ({d['n_keys']} keys)",
        )
        ax.axvline(d["eval"], color="k", ls="--", label=f"eval mode = {d['eval']:.0f}")
        ax.axvline(d["train_mean"]["mean"], color="tab:red", label="training mean")
        ax.set(title=f"{c} dropout, rate 0.5", xlabel="output of the unit", ylabel="keys")
        ax.legend(fontsize=8)
    ctx.savefig(fig, "demo.png")

    # Rule: the eval output equals the expectation exactly, and the training mean's 95% CI
    # contains it, for both conventions; the conventions coincide when trained matched.
    holds = all(
        d["eval"] == d["theory_mean"]
        and d["train_mean"]["lo"] <= d["eval"] <= d["train_mean"]["hi"]
        for d in demo.values()
    )
    same_fn = conv["matched_lr"]["max_abs_logit"] < 1e-3
    return {
        "claim": CLAIM,
        "demo": demo,
        "conventions": conv,
        "verdict": SUPPORTED if holds and same_fn else NOT_SUPPORTED,
    }


def section(r: dict) -> tuple[str, str]:
    rows = [
        [
            c,
            f"{d['eval']:.1f}",
            f"{d['theory_mean']:.0f}",
            ci_str(d["train_mean"], 1),
            f"{d['train_sd']:.1f} (theory {d['theory_sd']:.1f})",
            f"{d['first_draw']:.0f}",
        ]
        for c, d in r["demo"].items()
    ]
    c = r["conventions"]
    conv_rows = [
        [
            tag.replace("_", " "),
            f"{v['max_abs_logit']:.2e}",
            f"{v['max_abs_prob']:.2e}",
            f"{v['disagreement']:.3f}",
            f"{v['acc_inverted']:.3f}",
            f"{v['acc_standard']:.3f}",
        ]
        for tag, v in c.items()
    ]
    md = f"""The tutorial's demo: one draw gave 9,982 in training mode and exactly 10,000 in eval
mode (PyTorch, inverted). Here over many keys:

![demo](scaling/demo.png)

{
        table(
            [
                "convention",
                "eval output",
                "expectation",
                "training mean [95% CI]",
                "training sd",
                "first draw",
            ],
            rows,
        )
    }

For a *linear* unit the expectation passes through, so both conventions are exact. Through a
nonlinearity they are not: see the averaging experiment, where weight scaling and the exact
average over all subnetworks differ.

Conventions as functions (digits, 64-64-10, input keep 0.8, hidden keep 0.5, SGD): trained
from matching initialisations, with the standard net's post-dropout learning rates scaled by
1/p^2 ("matched lr") or not ("same lr"):

{
        table(
            [
                "training",
                "max abs logit diff",
                "max abs prob diff",
                "disagreement",
                "acc inverted",
                "acc standard",
            ],
            conv_rows,
        )
    }

Verdict (rule: eval output equals the expectation and lies in the training mean's 95% CI for
both conventions, and matched training keeps the two conventions within 1e-3 in logits):
**{r["verdict"]}**.
"""
    return md, r["verdict"]


if __name__ == "__main__":
    from . import main_for

    main_for(NAME)
