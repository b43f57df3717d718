"""The shrinkage claim's MLP part: weight and function norms of MLPs against the drop
rate and against the L2 strength, under SGD and Adam. See :mod:`.shrinkage`."""

from __future__ import annotations

import jax
import numpy as np

from dropstudy.data import Dataset
from dropstudy.metrics import accuracy, nll
from dropstudy.models import MLP
from dropstudy.predict import weight_scaling
from dropstudy.train import take

from .common import (
    ci,
)
from .evaluate import Evaluator
from .protocol import Protocol, arm_summary, guarded, split, train_arm
from .stats import direction

MEASURES = {
    "frob": "Frobenius norm of all kernels",
    "spec": "product of the kernels' spectral norms",
    "logit": "test logit norm (class-centred)",
}


OPT_NAMES = {"sgd": "SGD", "adam": "Adam"}


MLP_PREDICTED = ("logit",)  # measures of the net's prediction: by weight scaling and by MC


def kernel_norm(params) -> float:
    """Frobenius norm of all weight matrices (biases excluded).

    Args:
      params: the params dict, ``{layer: {"kernel", ...}}``.

    Returns:
      The norm, a float.
    """
    return float(np.sqrt(sum(np.sum(np.square(v["kernel"])) for v in params.values())))


def spectral_product(params) -> float:
    """Product over layers of the largest singular value of each kernel ``(fan_in, fan_out)``.

    Args:
      params: the params dict, ``{layer: {"kernel", ...}}``.

    Returns:
      The product, a float.
    """
    return float(np.prod([np.linalg.norm(np.asarray(v["kernel"]), 2) for v in params.values()]))


def logit_norm(log_probs) -> float:
    """Mean over examples of the L2 norm of ``log_probs`` centred over classes.

    That is the norm of the centred logits (for an MC average, the centred mean of the
    subnetworks' logits).

    Args:
      log_probs: log-probabilities ``(B, C)``.

    Returns:
      The mean norm, a float.
    """
    lp = np.asarray(log_probs, np.float64)
    return float(np.mean(np.linalg.norm(lp - lp.mean(1, keepdims=True), axis=1)))


def norm_cell(
    ds: Dataset,
    rate: float,
    width: int,
    protocol: Protocol,
    seeds: list,
    ev: Evaluator,
    trajectory_every: int,
) -> dict:
    """Per seed, an MLP at drop ``rate`` trained by the protocol: weight and prediction measures.

    The net trains on 80% of the training set at its tuned learning rate (its recipe, with any
    L2 penalty, is ``protocol``'s one); each seed's measures are taken on the variables selected
    within ``W`` and (``*_2w``) within ``2W``: weight measures, test logit norm, test accuracy
    and NLL by weight scaling and (dropout nets) by the MC average, and train accuracy and NLL
    by weight scaling. At rate 0 every mask is all ones, so the MC average is the net itself.

    Args:
      ds: the data set.
      rate: the drop rate of the hidden layers.
      width: units per hidden layer (two layers).
      protocol: the arm's protocol, one recipe (the optimiser the part names).
      seeds: the seeds, trained together.
      ev: the evaluator of the MC average.
      trajectory_every: steps between the points of the weight-norm trajectory (divides 2W).

    Returns:
      ``{"rows", "arm", "trajectory", "steps"}``: one dict per seed with ``frob``, ``spec``,
      ``logit_<p>``, ``test_acc_<p>`` and ``test_nll_<p>`` for ``p`` in ``ws``, ``mc``,
      ``train_acc`` and ``train_nll``, each also as ``<measure>_2w``; the arm's record
      (:func:`.protocol.train_arm`); the Frobenius norm of the kernels along the run,
      ``(S, T)``, and its steps ``(T,)``.
    """
    model = MLP(hidden=(width, width), n_out=ds.n_classes, rate=rate)
    arm = train_arm(ds, model, protocol, seeds, snapshot_every=trajectory_every)
    train, _ = split(ds)
    rows = [{} for _ in seeds]
    for suffix, v in (("", arm.within_w), ("_2w", arm.within_2w)):
        for i, s in enumerate(seeds):
            vi = take(v, i)
            row = _measures(model, vi, ds, train, ev, s, rate)
            rows[i].update({k + suffix: x for k, x in row.items()})
    snaps = arm.history.params  # each leaf (S, T, ...)
    trajectory = [
        [
            kernel_norm(take(snaps, i, t))
            for t in range(len(arm.history.loss[i]) // trajectory_every)
        ]
        for i in range(len(seeds))
    ]
    steps = [trajectory_every * (t + 1) for t in range(len(trajectory[0]))]
    return {"rows": rows, "arm": arm.record, "trajectory": trajectory, "steps": steps}


def _measures(model, vi, ds: Dataset, train: Dataset, ev: Evaluator, s: int, rate: float) -> dict:
    """One seed's weight and prediction measures (:func:`norm_cell`)."""
    p = vi["params"]
    if rate == 0:  # every mask is all ones: the MC average is the net itself
        ws = weight_scaling(model, vi, ds.x_test)
        preds = {"ws": ws, "mc": ws}
    else:
        preds = ev.predict(model, vi, ds.x_test, s)
    row = {"frob": kernel_norm(p), "spec": spectral_product(p)}
    for name, a in preds.items():
        if name == "ws" or rate == 0:  # one prediction: its log-softmax, exact and finite
            lp = a.log_probs("geometric")
        else:  # the MC average's mean probabilities, floored where float32 underflows
            lp = np.log(np.maximum(np.asarray(a.arithmetic), np.finfo(np.float32).tiny))
        row[f"logit_{name}"] = logit_norm(lp)
        row[f"test_acc_{name}"] = accuracy(a.arithmetic, ds.y_test)
        row[f"test_nll_{name}"] = nll(a.arithmetic, ds.y_test)
    train_probs = jax.nn.softmax(model.apply(vi, train.x_train), axis=-1)  # weight scaling
    row["train_acc"] = accuracy(train_probs, train.y_train)
    row["train_nll"] = nll(train_probs, train.y_train)
    return row


def summarise_mlp(cfg, raw: dict) -> tuple[dict, dict]:
    """Per optimiser and net, intervals of every measure, and the tests against the plain net.

    Args:
      cfg: the shrinkage experiment's ``Config``.
      raw: the cells' results, the MLPs' keyed ``<optimiser>_<net>`` (e.g. ``sgd_rate=0.5``).

    Returns:
      ``(out, tests)``: ``out`` is ``{optimiser: {net: {measure: interval, "arm": its
      training (:func:`.protocol.arm_summary`), "trajectory": the weight norm along the run
      (steps, and the mean and 95% interval over seeds at each)}}}``; ``tests`` holds, per
      optimiser, a direction test of drop rate ``test_rate`` minus plain for each measure (a
      decrease supports), and for a prediction's measure one per predictor, on the nets
      selected within W, each held to the protocol (:func:`.protocol.guard`) by the same test
      within 2W.
    """
    out, tests = {}, {}
    for o in cfg.optimizers():
        nets = {k.removeprefix(f"{o}_"): v for k, v in raw.items() if k.startswith(f"{o}_")}
        out[o] = {}
        for net, c in nets.items():
            traj = np.asarray(c["trajectory"])
            out[o][net] = {m: ci([row[m] for row in c["rows"]]) for m in c["rows"][0]} | {
                "arm": arm_summary(c["arm"]),
                "trajectory": {"steps": c["steps"], **{k: [ci(col)[k] for col in traj.T]
                                                       for k in ("mean", "lo", "hi")}},
            }  # fmt: skip
        plain, drop = nets["rate=0.0"], nets[f"rate={cfg.test_rate}"]
        arms = {"plain": plain["arm"], f"drop {cfg.test_rate}": drop["arm"]}
        within = {sfx: {} for sfx in ("", "_2w")}
        for m, words in MEASURES.items():
            for pred in ("ws", "mc") if m in MLP_PREDICTED else ("ws",):
                key = f"{m}_{pred}" if m in MLP_PREDICTED else m
                for sfx, part in within.items():
                    part[f"mlp_{o}_{key}"] = direction(
                        [a[key + sfx] - b[key + sfx]
                         for a, b in zip(drop["rows"], plain["rows"], strict=True)],
                        positive_supports=False,
                        what=f"{words}, drop rate {cfg.test_rate} minus plain, {OPT_NAMES[o]}",
                        # weight norms are no prediction: "-" (not weight scaling)
                        predictor=pred if m in MLP_PREDICTED else "-",
                    )  # fmt: skip
        tests.update(guarded(within[""], within["_2w"], arms))
    return out, tests
