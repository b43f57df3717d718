"""Claim 4: dropout prevents co-adaptation: units must be useful in random subsets of the
others, so the net tolerates losing any of them.

Plain and dropout nets of equal size (two ReLU hidden layers), the same initialisation per
seed, each trained by the study's protocol (:mod:`.protocol`: tuned on its own on the
validation split, each seed stopped by the network as used, weight scaling, within ``W`` and,
for the twin tests, within ``2W``); the nets train on the training set less that split.
Every measurement is a forward pass with a mask: removing a unit is a zero in the expected
mask. The measures are made scale-free, so that a net that is merely more (over)confident
does not look more co-adapted:

* **temperature**: one temperature ``T >= 1`` per net and seed minimises the validation NLL
  of the weight-scaled logits (bisection on the sign of d NLL / d(1/T), which is monotone
  because the NLL is convex in 1/T; clipped at 1, so that it only undoes overconfidence: the
  validation split also chose the stopping step, and sharpening a net that makes almost no
  errors there overfits them). Every loss below is the NLL of ``softmax(logits / T)``;
* **interactions** of the last hidden layer's units ``i, j`` (its ``h`` units, all pairs),
  on the train split and on test: ``D_ij = L(-i,-j) - L(-i) - L(-j) + L`` with single-unit
  effects ``d_i = L(-i) - L``. The **normalised interaction** is
  ``R = mean_{i<j} |D_ij| / mean_i |d_i|`` over the *live* units (units active on at least
  one training example; a dead unit has ``d_i = D_ij = 0`` exactly and would only dilute
  both means): how far removing two units departs from the sum of removing each, in units
  of what removing one does. ``R = 0`` for units whose effects add. Raw ``mean |D_ij|`` is
  kept as exploratory. The output layer is linear, so the logits without a set ``S`` of
  last-layer units are ``z - sum_{i in S} u_i w_i`` (``u`` the layer's output, ``w_i`` row
  ``i`` of the output kernel): every pair costs one subtraction, not one forward pass;
* **removal** of a random fraction of all hidden units (both layers) without rescaling,
  and with the survivors of each layer multiplied by ``n_layer / n_kept`` so the layer's
  expected input to the next is preserved; test accuracy and temperature-scaled test NLL;
* correlation of last-layer activations, sparsity (mean activation, fraction of zeros) and
  first-layer weights drawn as images (8 x 8 for digits).

Headline metrics (accuracy and NLL on train and test) are given by weight scaling and by the
MC average over ``MC_K`` subnetworks for the dropout net; the co-adaptation measures are
ablations of the weight-scaled net (an MC average per ablated pair would cost ``MC_K`` times
as much).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dropstudy import masks as M
from dropstudy.data import Dataset
from dropstudy.metrics import accuracy, cross_entropy, fit_temperature, logit_nll, nll
from dropstudy.models import MLP
from dropstudy.train import take
from dropstudy.validate import DropstudyError

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    ci,
)
from .evaluate import Evaluator
from .protocol import (
    NET_AS_USED,
    QUICK_PROTOCOL,
    TWICE,
    Protocol,
    arm_summary,
    guarded,
    shared_arm,
    split,
)
from .seeds import study_seeds
from .stats import direction, paired

NAME = "coadaptation"
CLAIM = (
    "Dropout reduces co-adaptation: each unit must work with random subsets of the "
    "others, so the net tolerates losing any of them."
)
CHUNK = 256  # subnetworks (or unit pairs) per vmapped step
HIST_EDGES = np.linspace(-3.0, 3.0, 61)  # bins of D_ij / mean |d_i|; outliers in end bins


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the co-adaptation experiment."""

    seeds: int = 10  # the primary needs few; the exploratory NLL and error tests need ~6-10
    width: int = 128
    rates: tuple[float, float] = (0.0, 0.5)  # plain, dropout
    # Both nets by the protocol, stopped by the network as used (the claim is about the net
    # whose units are removed); its validation split also fits the temperatures.
    protocol: Protocol = NET_AS_USED
    fractions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    draws: int = 5  # random removals per fraction
    compare_at: float = 0.5  # removal fraction at which robustness is tested (in fractions)
    primary: str = "norm_interaction_test"
    mc_k: int = MC_K  # subnetworks in the MC average of each dropout net
    QUICK: ClassVar[dict] = {"seeds": 2, "width": 16, "protocol": QUICK_PROTOCOL}

    def check(self) -> None:
        """Refuse a configuration no run could use, when it is built.

        The generic field rules of :meth:`ExperimentConfig.check`, then that ``compare_at`` is
        one of ``fractions``.

        Raises:
          DropstudyError: naming what is wrong.
        """
        super().check()
        if self.compare_at not in self.fractions:
            raise DropstudyError(
                f"compare_at={self.compare_at} must be one of fractions {self.fractions}"
            )

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names (fixed).

        Returns:
          The co-adaptation measures, and test NLL and error by each predictor.
        """
        names = ("norm_interaction_test", "norm_interaction_untempered",
                 "norm_interaction_train", "abs_d_test",
                 "acc_lost_rescaled", "acc_lost_unrescaled", "mean_abs_corr", "mean_activation",
                 "test_nll_ws", "test_err_ws", "test_nll_mc", "test_err_mc")  # fmt: skip
        return tuple(n + t for n in names for t in ("", TWICE))


# --- pieces (pure functions, unit-tested) -----------------------------------------------------


@jax.jit
def unit_interactions(u, w, b, y, temps, parts):
    """Losses of the last layer's ablations: every unit removed alone, and every pair.

    Losses are the NLL of ``softmax((u @ w + b) / t)`` for each of ``temps``, averaged with
    the weights of each row of ``parts`` (e.g. the indicator of the train split over its
    size): one compiled call serves every split. Removing unit ``i`` subtracts
    ``u[:, i] w[i]`` from the logits, exactly, because the output layer is linear. Jitted.

    Args:
      u: the layer's output ``(N, h)`` (after its dropout, at the expected mask).
      w: the linear output layer's kernel ``(h, C)``.
      b: its bias ``(C,)``.
      y: labels ``(N,)``.
      temps: temperatures ``(R,)``.
      parts: per-example weights ``(S, N)``, one row per split.

    Returns:
      ``(L, L(-i), L(-i,-j))``: ``(R, S)``, ``(R, S, h)`` and ``(R, S, h*(h-1)/2)``, pairs in
      ``np.triu_indices(h, 1)`` order.
    """
    h = u.shape[1]
    ii, jj = np.triu_indices(h, 1)
    pad = (-len(ii)) % CHUNK  # padded with pair (0, 1), cut off below
    ii, jj = (
        jnp.asarray(np.concatenate([a, np.full(pad, v)]).reshape(-1, CHUNK))
        for a, v in ((ii, 0), (jj, 1))
    )

    def at(t):
        z0 = (u @ w + b) / t
        c = u[:, :, None] * w[None] / t  # (N, h, C): each unit's share of the logits
        loss = lambda z: parts @ cross_entropy(z, y)  # noqa: E731
        l1 = jax.vmap(lambda i: loss(z0 - c[:, i]))(jnp.arange(h))
        pair = jax.vmap(lambda i, j: loss(z0 - c[:, i] - c[:, j]))
        l2 = jax.lax.map(lambda ij: pair(*ij), (ii, jj)).reshape(-1, parts.shape[0])
        return loss(z0), l1.T, l2[: h * (h - 1) // 2].T

    return jax.lax.map(at, temps)


def interaction_measures(l0, l1, l2, live) -> dict:
    """Scale-free and raw interaction measures from :func:`unit_interactions`' losses.

    Only the units where ``live`` is true count; with fewer than two live units nothing
    interacts: every measure is 0 and ``d_over`` is empty.

    Args:
      l0: the loss with no unit removed, a scalar.
      l1: the losses with each unit removed ``(h,)``.
      l2: the losses with each pair removed ``(h*(h-1)/2,)``, in ``np.triu_indices`` order.
      live: which units are live ``(h,)``, booleans.

    Returns:
      ``{"norm", "abs_d", "mean_d", "abs_single", "neg_single", "d_over"}``: ``norm``
      (R = mean |D_ij| / mean |d_i|, 0 when mean |d_i| is 0), ``abs_d`` (mean |D_ij|),
      ``mean_d`` (mean D_ij), ``abs_single`` (mean |d_i|), ``neg_single`` (the share of
      units whose removal *lowers* the loss) and the normalised pairs ``d_over``
      (D_ij / mean |d_i|, an array for histograms).
    """
    l1, l2 = np.asarray(l1, np.float64), np.asarray(l2, np.float64)
    ii, jj = np.triu_indices(len(l1), 1)
    keep = live[ii] & live[jj]
    single = l1[live] - float(l0)
    d = (l2 - l1[ii] - l1[jj] + float(l0))[keep]
    if d.size == 0:  # fewer than two live units: nothing interacts
        zero = dict.fromkeys(("norm", "abs_d", "mean_d", "abs_single", "neg_single"), 0.0)
        return zero | {"d_over": d}
    scale = float(np.mean(np.abs(single)))
    return {
        "neg_single": float(np.mean(single < 0)),
        "norm": float(np.mean(np.abs(d)) / scale) if scale > 0 else 0.0,
        "abs_d": float(np.mean(np.abs(d))),
        "mean_d": float(np.mean(d)),
        "abs_single": scale,
        "d_over": d / scale if scale > 0 else d,
    }


def removal_mask(base, layers: list[np.ndarray], gone: np.ndarray, rescale: bool) -> np.ndarray:
    """Flat mask ``(n_units,)``: ``base`` with the units ``gone`` set to 0.

    With ``rescale`` the survivors of each layer in ``layers`` are multiplied by
    ``n_layer / n_kept`` so that the layer's expected output is preserved.

    Args:
      base: the flat mask to start from ``(n_units,)``.
      layers: the flat unit indices of each layer to rescale.
      gone: the flat indices of the units removed.
      rescale: whether to rescale the survivors.

    Returns:
      The mask ``(n_units,)``, float32.
    """
    m = np.array(base, np.float32)
    m[gone] = 0.0
    if rescale:
        for units in layers:
            kept = len(units) - np.isin(units, gone).sum()
            m[units] *= len(units) / max(kept, 1)
    return m


@partial(jax.jit, static_argnames=("model", "spec"))
def _mask_scores(model, spec, variables, x, y, t, flat):
    def one(m):
        out = M.apply(model, variables, x, spec.unflatten(m))
        return jnp.mean(cross_entropy(out / t, y)), jnp.mean(jnp.argmax(out, -1) == y)

    k = flat.shape[0]
    pad = (-k) % CHUNK
    flat = jnp.concatenate([flat, jnp.ones((pad, flat.shape[1]), flat.dtype)])
    loss, acc = jax.lax.map(jax.vmap(one), flat.reshape(-1, CHUNK, flat.shape[1]))
    return loss.reshape(-1)[:k], acc.reshape(-1)[:k]


def mask_scores(model, spec, variables, x, y, t: float, flat) -> tuple[np.ndarray, np.ndarray]:
    """NLL of ``softmax(logits / t)`` and accuracy of every subnetwork in ``flat``.

    Args:
      model: the model.
      spec: its mask spec, :func:`dropstudy.masks.mask_spec`.
      variables: the model's variables dict.
      x: inputs ``(N, d)``.
      y: labels ``(N,)``.
      t: the temperature.
      flat: flat masks ``(K, n_units)``.

    Returns:
      ``(nll, accuracy)``, each ``(K,)``.
    """
    out = _mask_scores(
        model, spec, variables, jnp.asarray(x), jnp.asarray(y), jnp.float32(t), jnp.asarray(flat)
    )
    return tuple(np.asarray(a) for a in out)


# --- one net ----------------------------------------------------------------------------------


def _headline(model, v, fit: Dataset, ev: Evaluator, seed: int, dropout: bool) -> dict:
    """Train (fit split) and test accuracy and NLL by weight scaling, and for a dropout net
    by the MC average too: ``{predictor: {train_acc, train_nll, test_acc, test_nll}}``."""
    x = np.concatenate([fit.x_train, fit.x_test])
    n = len(fit.x_train)
    preds = ev.predict(model, v, x, seed)
    out = {}
    for name in ("ws", "mc") if dropout else ("ws",):
        p = np.asarray(preds[name].arithmetic)
        out[name] = {
            f"{part}_{metric}": f(q, yy)
            for part, q, yy in (("train", p[:n], fit.y_train), ("test", p[n:], fit.y_test))
            for metric, f in (("acc", accuracy), ("nll", nll))
        }
    return out


@partial(jax.jit, static_argnames=("model", "spec"))
def _forward(model, spec, v, x):
    """At the expected mask: logits ``(N, C)``, the output of the last hidden layer's dropout
    ``(N, h)`` and every hidden layer's activation before its dropout ``[(N, h_l)]``."""
    m = M.expected_masks(spec)
    acts = [M.apply(model, v, x, m, upto=i, method=MLP.features) for i in range(len(model.hidden))]
    return M.apply(model, v, x, m), M.apply(model, v, x, m, method=MLP.features), acts


def _net_measures(
    model, spec, v, fit: Dataset, val, seed: int, cfg: Config, dropout: bool, ev: Evaluator
):
    """Every measure of one trained net (``v``): a dict of floats and lists."""
    sizes = np.cumsum([len(val[0]), len(fit.x_train)])
    z, u, acts = _forward(model, spec, v, np.concatenate([val[0], fit.x_train, fit.x_test]))
    (z_val, _, z_test), (_, u_fit, _) = np.split(z, sizes), np.split(u, sizes)
    # T >= 1: a temperature here only undoes overconfidence. The validation split also chose
    # the stopping step, and a net that makes almost no errors on it is "improved" there by
    # sharpening (T < 1), which overfits those few errors and inflates every loss on test.
    t = fit_temperature(z_val, val[1], log_t_range=(0.0, 5.0))
    layers = [M.layer_units(spec, d) for d in model.dropout_layers()[1:]]  # input's is first
    hidden = np.concatenate(layers)
    base = np.asarray(spec.flatten(M.expected_masks(spec)))
    # (a) removal of random fractions of hidden units (the same for both nets of a seed)
    rng = np.random.default_rng(5000 + seed)
    gones = [
        rng.permutation(hidden)[: round(f * len(hidden))]
        for f in cfg.fractions
        for _ in range(cfg.draws)
    ]
    removal, shape = {}, (len(cfg.fractions), cfg.draws)
    for mode, rescale in (("unrescaled", False), ("rescaled", True)):
        flat = np.stack([removal_mask(base, layers, g, rescale) for g in gones])
        loss, acc = mask_scores(model, spec, v, fit.x_test, fit.y_test, t, flat)
        removal[mode] = {"acc": acc.reshape(shape).mean(1).tolist()}
        removal[mode]["nll"] = loss.reshape(shape).mean(1).tolist()
    # (b) pairwise interactions in the last hidden layer, on the fit split and on test
    out_layer = v["params"][model.dense_layers()[-1]]
    live = np.asarray(u_fit).max(0) > 0
    n_fit, n_test = len(fit.x_train), len(fit.x_test)
    parts = np.zeros((2, n_fit + n_test), np.float32)
    parts[0, :n_fit], parts[1, n_fit:] = 1 / n_fit, 1 / n_test
    y = np.concatenate([fit.y_train, fit.y_test])
    temps = jnp.asarray([t, 1.0], jnp.float32)
    l0, l1, l2 = (
        np.asarray(a)
        for a in unit_interactions(
            u[sizes[0] :], out_layer["kernel"], out_layer["bias"], y, temps, parts
        )
    )
    inter = {}
    for s, part in enumerate(("train", "test")):
        scaled = interaction_measures(l0[0, s], l1[0, s], l2[0, s], live)
        untempered = interaction_measures(l0[1, s], l1[1, s], l2[1, s], live)
        inter[part] = {k: x for k, x in scaled.items() if k != "d_over"}
        inter[part] |= {
            "norm_untempered": untempered["norm"],
            "abs_d_untempered": untempered["abs_d"],
            "neg_single_untempered": untempered["neg_single"],
        }
    hist = np.histogram(np.clip(scaled["d_over"], HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)
    # (c, d) activations of every hidden layer at the expected mask, on test
    acts = [np.asarray(a)[sizes[1] :] for a in acts]
    a = acts[-1]
    alive = a.std(0) > 1e-8
    corr = np.corrcoef(a[:, alive].T) if alive.sum() > 1 else np.zeros((1, 1))
    off = np.abs(corr[~np.eye(len(corr), dtype=bool)])
    return {
        "temperature": t,
        "val_nll": logit_nll(z_val, val[1]),
        "val_nll_scaled": logit_nll(z_val / t, val[1]),
        "test_nll_scaled": logit_nll(z_test / t, fit.y_test),
        "headline": _headline(model, v, fit, ev, seed, dropout),
        "removal": removal,
        "interactions": inter,
        "live_units": int(live.sum()),
        "d_hist": hist[0].tolist(),
        "mean_abs_corr": float(off.mean()) if off.size else 0.0,
        "mean_activation": float(np.mean([ac.mean() for ac in acts])),
        "frac_zero": float(np.mean([(ac <= 0).mean() for ac in acts])),
        "first_layer": np.asarray(
            v["params"][model.dense_layers()[0]]["kernel"][:, :16]
        ).T.tolist(),
    }


def rate_cell(ds: Dataset, rate: float, cfg: Config, seeds: list[int], ev: Evaluator) -> dict:
    """Every measure for the ``seeds``' nets trained at drop ``rate`` by the protocol.

    Args:
      ds: the data set; the protocol's validation split (:func:`.protocol.split`) is held
        out of training and fits the temperatures.
      rate: the drop rate (0: a plain net).
      cfg: the configuration.
      seeds: the seeds (:func:`.seeds.study_seeds` of ``cfg.seeds``).
      ev: the evaluator of the MC average.

    Returns:
      ``{"seeds": [per seed], "seeds_2w": [...], "arm": record}``: per seed, one dict of
      floats and lists for the variables selected within ``W`` (``seeds``) and ``2W``: the
      temperature, validation and test NLL, the headline accuracy and NLL per predictor,
      removal curves, interactions, live units, the histogram of normalised interactions,
      activation statistics and first-layer weights; ``arm`` the net's record
      (:func:`.protocol.train_arm`).
    """
    fit, val = split(ds)
    model = MLP(hidden=(cfg.width, cfg.width), n_out=ds.n_classes, rate=rate)
    arm = shared_arm(ds, model, cfg.protocol, seeds)
    spec = M.mask_spec(model, fit.x_train)
    out = {"arm": arm.record}
    for sfx, v in (("", arm.within_w), ("_2w", arm.within_2w)):
        out["seeds" + sfx] = [
            _net_measures(model, spec, take(v, i), fit, val, s, cfg, rate > 0, ev)
            for i, s in enumerate(seeds)
        ]
    return out


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's cells: one :func:`rate_cell` per drop rate.

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{"rate=<r>": Cell}`` for each of ``cfg.rates``.
    """
    return {
        f"rate={r}": cell(
            rate_cell,
            ds=ds,
            rate=r,
            cfg=cfg,
            seeds=study_seeds(cfg.seeds),
            ev=Evaluator((NAME, f"rate={r}"), cfg.mc_k),
        )
        for r in cfg.rates
    }


# --- summary ----------------------------------------------------------------------------------


def _per_seed(cfg: Config, raw: dict, sfx: str = "") -> dict:
    """``{net: {quantity: [per seed]}}`` for net in ``plain``, ``dropout``, of the nets
    selected within W (``sfx`` empty) or within 2W (``"_2w"``)."""
    at = list(cfg.fractions).index(cfg.compare_at)
    out = {}
    for net, rate in zip(("plain", "dropout"), cfg.rates, strict=True):
        ms = raw[f"rate={rate}"]["seeds" + sfx]
        q: dict[str, list] = {}
        for m in ms:
            row = {
                "temperature": m["temperature"],
                "val_nll": m["val_nll"],
                "val_nll_scaled": m["val_nll_scaled"],
                "test_nll_scaled": m["test_nll_scaled"],
                "live_units": m["live_units"],
                "mean_abs_corr": m["mean_abs_corr"],
                "mean_activation": m["mean_activation"],
                "frac_zero": m["frac_zero"],
            }
            for pred in ("ws", "mc"):  # the plain net's one prediction stands for both
                h = m["headline"].get(pred, m["headline"]["ws"])
                row |= {f"{k}_{pred}": val for k, val in h.items()}
            for part, d in m["interactions"].items():
                row |= {f"{k}_{part}": val for k, val in d.items()}
            for mode, d in m["removal"].items():
                row[f"acc_lost_{mode}"] = d["acc"][0] - d["acc"][at]
                row[f"nll_gain_{mode}"] = d["nll"][at] - d["nll"][0]
            for k, val in row.items():
                q.setdefault(k, []).append(val)
        out[net] = q
    return out


def _tests(cfg: Config, s: dict) -> dict:
    """The plain-minus-dropout tests of one selection of the nets.

    Args:
      cfg: the configuration.
      s: :func:`_per_seed` of that selection.

    Returns:
      ``{name: test}`` for the tests of :meth:`Config.test_names` without their twins.
    """
    p, d = s["plain"], s["dropout"]
    diff = lambda k: np.subtract(p[k], d[k])  # noqa: E731
    half = f"{cfg.compare_at:g} of the hidden units removed"
    tests = {
        "norm_interaction_test": direction(
            diff("norm_test"),
            what="normalised interaction R = mean|D_ij| / mean|d_i| (test, T-scaled NLL, "
            "last hidden layer), plain minus dropout",
            predictor="ws",
        ),
        "norm_interaction_untempered": direction(
            diff("norm_untempered_test"),
            what="normalised interaction R on test at T = 1 (no temperature), plain minus dropout",
            predictor="ws",
        ),
        "norm_interaction_train": direction(
            diff("norm_train"),
            what="normalised interaction R (train split), plain minus dropout",
            predictor="ws",
        ),
        "abs_d_test": direction(
            diff("abs_d_test"),
            what="raw mean |D_ij| (test, nats), plain minus dropout",
            predictor="ws",
        ),
        "acc_lost_rescaled": direction(
            diff("acc_lost_rescaled"),
            what=f"test accuracy lost, {half}, survivors rescaled, plain minus dropout",
            predictor="ws",
        ),
        "acc_lost_unrescaled": direction(
            diff("acc_lost_unrescaled"),
            what=f"test accuracy lost, {half}, not rescaled, plain minus dropout",
            predictor="ws",
        ),
        "mean_abs_corr": direction(
            diff("mean_abs_corr"),
            what="mean |correlation| of last-layer activations (test), plain minus dropout",
            predictor="ws",
        ),
        "mean_activation": direction(
            diff("mean_activation"),
            what="mean hidden activation (test, both layers), plain minus dropout",
            predictor="ws",
        ),
    }
    for pred in ("ws", "mc"):
        tests[f"test_nll_{pred}"] = direction(
            diff(f"test_nll_{pred}"), what="test NLL, plain minus dropout", predictor=pred
        )
        tests[f"test_err_{pred}"] = direction(
            np.subtract(d[f"test_acc_{pred}"], p[f"test_acc_{pred}"]),
            what="test error, plain minus dropout",
            predictor=pred,
        )
    return tests


def summarise(cfg: Config, raw: dict) -> dict:
    """The plain-minus-dropout tests, intervals over seeds and removal curves.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"arms", "protocol", "tests", "primary", "nets", "per_seed", "curves",
      "comparisons"}``: both nets' training (:func:`.protocol.arm_summary`) and the protocol;
      the direction tests of :meth:`Config.test_names` (each guarded, with its twin within
      2W); per net (``plain``, ``dropout``)
      the interval of every quantity, the per-seed normalised interactions, and the removal
      curves' intervals of accuracy and NLL over ``fractions``; the paired comparisons of
      mean |d_i| on test and train.
    """
    s = _per_seed(cfg, raw)
    p, d = s["plain"], s["dropout"]
    arms = {net: raw[f"rate={rate}"]["arm"] for net, rate in zip(("plain", "dropout"),
            cfg.rates, strict=True)}  # fmt: skip
    tests = guarded(_tests(cfg, s), _tests(cfg, _per_seed(cfg, raw, "_2w")), arms)
    nets = {net: {k: ci(v) for k, v in q.items()} for net, q in s.items()}
    curves = {
        net: {
            mode: {
                metric: [
                    ci([m["removal"][mode][metric][i] for m in raw[f"rate={rate}"]["seeds"]])
                    for i in range(len(cfg.fractions))
                ]
                for metric in ("acc", "nll")
            }
            for mode in ("unrescaled", "rescaled")
        }
        for net, rate in zip(("plain", "dropout"), cfg.rates, strict=True)
    }
    return {
        "arms": {k: arm_summary(v) for k, v in arms.items()},
        "protocol": cfg.protocol.to_dict(),
        "tests": tests,
        "primary": cfg.primary,
        "nets": nets,
        "per_seed": {net: {k: q[k] for k in ("norm_test", "norm_train")} for net, q in s.items()},
        "curves": curves,
        "comparisons": {k: paired(p[k], d[k]) for k in ("abs_single_test", "abs_single_train")},
    }


# --- figures and section ----------------------------------------------------------------------
