"""Claim: a net trained with dropout copes better when its inputs change.

The tutorial's evolution analogy: the mixing that dropout imposes "avoids extinction when the
environment changes". Read as a testable claim: trained on the same data, a dropout net loses
less accuracy than a plain net when the test inputs shift. Paired nets (same seeds; the plain
net is the same MLP at drop rate 0), each trained by the study's protocol (:mod:`.protocol`:
tuned on the validation split, each seed stopped at its best validation NLL within ``W`` and,
for the twin tests, within ``2W``), are evaluated on test sets shifted with growing strength:

* ``noise``: Gaussian noise added to every feature, its sd a multiple of the training inputs'
  sd;
* ``missing``: a random fraction of each example's features set to 0;
* ``occlusion``: a contiguous run of features in flattened order (for an 8x8 digit, a run of
  pixels in reading order that may wrap to the next row; a window of a 1-D signal) set to 0,
  at a random position per example;
* ``generator`` (MNIST-1D only): the data made again by its own generator with larger
  translation, scale and noise arguments, its test part scored against its own labels (the
  generator's final shuffle differs with its arguments), each regenerated set standardised
  by the generator itself, as the original.

A predictor's *retention* under a shift is how much of its accuracy above chance it keeps:
``(acc_shifted - 1/C) / (acc_clean - 1/C)`` (1: unaffected; 0: down to chance), so a net that
starts more accurate is not penalised for having further to fall. The primary test: the mean
retention over every shift and nonzero strength, the dropout net by weight scaling (the network
as used) minus the plain net (> 0: dropout keeps more); the MC average's beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dropstudy.data import MNIST1D_ARGS, Dataset, mnist1d
from dropstudy.metrics import per_example, scores
from dropstudy.models import MLP
from dropstudy.train import take
from dropstudy.validate import DropstudyError

from .common import (
    MC_K,
    ExperimentConfig,
    cell,
    ci,
    primary_first,
)
from .evaluate import Evaluator
from .protocol import ADAM, TWICE, Protocol, arm_summary, guarded, split, train_arm
from .seeds import study_seeds
from .stats import direction

NAME = "robustness"
CLAIM = (
    "A network trained with dropout is more robust when the environment changes: its "
    "accuracy drops less when the test inputs shift."
)
PREDICTORS = ("plain", "ws", "mc")
LABELS = {"plain": "plain net", "ws": "dropout, weight scaling", "mc": "dropout, MC average"}
TRANSLATION_MAX = 72  # MNIST-1D's signals are 72 points long before their final resampling


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Nets and the shifts' strengths."""

    seeds: int = 10
    hidden: tuple[int, ...] = (64, 64)
    rate: float = 0.5
    # Both nets train by the study's protocol (:mod:`.protocol`), each tuned on its own.
    protocol: Protocol = Protocol(window=8000, eval_every=100, select_by="ws")
    noise: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)  # sd, in training-input sds
    missing: tuple[float, ...] = (0.1, 0.2, 0.4, 0.6)  # fraction of features zeroed
    occlusion: tuple[float, ...] = (0.125, 0.25, 0.375, 0.5)  # fraction of features, one run
    generator: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0)  # MNIST-1D: its shift arguments x s
    # the network as used (weight scaling); the MC average beside it
    primary: str = "retention_ws"
    mc_k: int = MC_K  # subnetworks in the MC average of each dropout net
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "hidden": (16, 16),
        "protocol": Protocol(
            window=100,
            eval_every=50,
            recipes=(replace(ADAM, lrs=(1e-3, 3e-3)),),
            pilot_seeds=(1000, 1001),
        ),
        "noise": (1.0,),
        "missing": (0.4,),
        "occlusion": (0.25,),
        "generator": (2.0,),
    }

    def test_names(self) -> tuple[str, ...]:
        """The tests :func:`summarise` names, from the shifts with strengths.

        Returns:
          Retention and degradation by each predictor (each with its twin on the nets
          selected within 2W, :data:`.protocol.TWICE`), retention per shift (``generator``'s
          on MNIST-1D only) and the error under the shifts.
        """
        kinds = [k for k in ("noise", "missing", "occlusion", "generator") if getattr(self, k)]
        pair = [f"{t}_{p}" for p in ("ws", "mc") for t in ("retention", "degradation")]
        return (*(n + t for n in pair for t in ("", TWICE)),
                *(f"retention_mc_{k}" for k in kinds), "shifted_error_mc")  # fmt: skip


def shifted(x: np.ndarray, kind: str, strength: float, sd: float, seed: int) -> np.ndarray:
    """``x`` under shift ``kind`` at ``strength`` (see the module docstring).

    Args:
      x: inputs ``(B, d)``.
      kind: ``"noise"`` (Gaussian noise of sd ``strength * sd``), ``"missing"`` (each feature
        zeroed with probability ``strength``) or ``"occlusion"`` (a contiguous run of
        ``max(1, round(strength * d))`` features zeroed, at a random position per example).
      strength: the shift's strength.
      sd: the training inputs' sd.
      seed: the seed of the shift's draws.

    Returns:
      The shifted inputs ``(B, d)``, of ``x``'s dtype.

    Raises:
      ValueError: if ``kind`` is none of those.
    """
    r = np.random.default_rng(seed)
    b, d = x.shape
    if kind == "noise":
        return (x + strength * sd * r.standard_normal(x.shape)).astype(x.dtype)
    if kind == "missing":
        return np.where(r.random(x.shape) < strength, 0, x).astype(x.dtype)
    if kind == "occlusion":
        n = max(1, round(strength * d))
        start = r.integers(0, d - n + 1, size=b)
        cols = np.arange(d)
        hide = (cols >= start[:, None]) & (cols < start[:, None] + n)
        return np.where(hide, 0, x).astype(x.dtype)
    raise ValueError(f"unknown shift {kind!r}")


def generator_args(strength: float) -> dict:
    """MNIST-1D's translation, scale and noise arguments multiplied by ``strength``.

    Args:
      strength: the factor.

    Returns:
      ``{"max_translation", "scale_coeff", "corr_noise_scale", "iid_noise_scale"}``; the
      translation rounded and at most :data:`TRANSLATION_MAX`.
    """
    a = MNIST1D_ARGS
    return {
        "max_translation": min(TRANSLATION_MAX, round(a["max_translation"] * strength)),
        "scale_coeff": a["scale_coeff"] * strength,
        "corr_noise_scale": a["corr_noise_scale"] * strength,
        "iid_noise_scale": a["iid_noise_scale"] * strength,
    }


def shift_sets(ds: Dataset, cfg_shifts: dict, seed: int) -> dict[str, list[tuple]]:
    """Every shifted test set of one seed, with its labels.

    A regenerated MNIST-1D set keeps its own labels: the generator's final shuffle depends on
    its arguments, so its examples are not ``ds``'s in the same order.

    Args:
      ds: the data set.
      cfg_shifts: ``{kind: strengths}`` (:func:`shifts_of`).
      seed: the seed the shifts' draws derive from.

    Returns:
      ``{kind: [(x, y) per strength]}``.
    """
    sd = float(ds.x_train.std())
    out = {}
    for i, (kind, levels) in enumerate(cfg_shifts.items()):
        if kind == "generator":
            made = [mnist1d(**generator_args(s)) for s in levels]
            out[kind] = [(m.x_test, m.y_test) for m in made]
        else:
            out[kind] = [
                (shifted(ds.x_test, kind, s, sd, 1000 * seed + 10 * i + j), ds.y_test)
                for j, s in enumerate(levels)
            ]
    return out


def robustness_cell(
    ds: Dataset,
    model: MLP,
    protocol: Protocol,
    shifts: dict,
    seeds: list[int],
    ev: Evaluator,
) -> dict:
    """Per seed: scores of the plain net and of the dropout net, clean, shifted and on train.

    The plain net is ``model`` at drop rate 0; each net trains by the protocol, tuned on its
    own, its variables selected within ``W`` and within ``2W``; the dropout net is judged by
    weight scaling and by the MC average by ``ev``.

    Args:
      ds: the data set.
      model: the dropout net.
      protocol: how to train both nets (:mod:`.protocol`).
      shifts: ``{kind: strengths}`` (:func:`shifts_of`).
      seeds: the seeds, trained together.
      ev: the evaluator of the dropout net.

    Returns:
      ``{"classes": C, "seeds": [row per seed], "errors_ex": [per seed], "seeds_2w",
      "errors_ex_2w", "arms"}``; a row maps each of :data:`PREDICTORS` to ``{"clean",
      "train", kind...: [{"error", "nll"} per strength]}`` (one entry for ``clean`` and
      ``train``, the 80% trained on); ``errors_ex`` maps each predictor to ``{"clean",
      kind...: [each test example's 0/1 error, per strength]}``, for tests whose intervals
      cover the test set's noise; ``*_2w`` the same for the nets selected within 2W;
      ``arms`` the two nets' records (:func:`.protocol.train_arm`).
    """
    plain_model = model.clone(rate=0.0)
    drop = train_arm(ds, model, protocol, seeds)
    plain = train_arm(ds, plain_model, protocol, seeds)
    train, _ = split(ds)
    out = {"classes": ds.n_classes, "arms": {"dropout": drop.record, "plain": plain.record}}
    for sfx, vd, vp in (("", drop.within_w, plain.within_w),
                        ("_2w", drop.within_2w, plain.within_2w)):  # fmt: skip
        rows, errors_ex = [], []
        for i, s in enumerate(seeds):
            sets = {
                "clean": [(ds.x_test, ds.y_test)],
                **shift_sets(ds, shifts, s),
                "train": [(train.x_train, train.y_train)],
            }
            flat = [(kind, x, y) for kind, xys in sets.items() for x, y in xys]
            both = jnp.asarray(np.concatenate([x for _, x, _ in flat]))
            ends = np.cumsum([len(x) for _, x, _ in flat])
            v_drop, v_plain = take(vd, i), take(vp, i)
            preds = ev.predict(model, v_drop, both, s)
            probs = {p: np.asarray(a.arithmetic) for p, a in preds.items()}
            probs["plain"] = np.asarray(jax.nn.softmax(plain_model.apply(v_plain, both)))
            row = {p: {} for p in PREDICTORS}
            ex = {p: {} for p in PREDICTORS}  # each test example's 0/1 error, per set
            for (kind, x, labels), end in zip(flat, ends, strict=True):
                for p in PREDICTORS:
                    q = probs[p][end - len(x) : end]
                    sc = scores(q, labels)
                    row[p].setdefault(kind, []).append(
                        {"error": 1 - sc["accuracy"], "nll": sc["nll"]}
                    )
                    if kind != "train":
                        wrong = per_example(q, labels)["err"].astype(int)
                        ex[p].setdefault(kind, []).append(wrong.tolist())
            rows.append(row)
            errors_ex.append(ex)
        out["seeds" + sfx], out["errors_ex" + sfx] = rows, errors_ex
    return out


def shifts_of(cfg: Config, ds: Dataset) -> dict:
    """The shifts that apply to ``ds``: the generator's only for MNIST-1D itself.

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{kind: strengths}``.
    """
    s = {"noise": cfg.noise, "missing": cfg.missing, "occlusion": cfg.occlusion}
    if ds.name == "mnist1d":
        s["generator"] = cfg.generator
    return s


def plan(cfg: Config, ds: Dataset) -> dict:
    """The experiment's one cell, :func:`robustness_cell`.

    Args:
      cfg: the configuration.
      ds: the data set.

    Returns:
      ``{"robustness": Cell}``.
    """
    model = MLP(hidden=cfg.hidden, n_out=ds.n_classes, rate=cfg.rate)
    return {
        "robustness": cell(
            robustness_cell, ds=ds, model=model, protocol=cfg.protocol, shifts=shifts_of(cfg, ds),
            seeds=study_seeds(cfg.seeds), ev=Evaluator((NAME, "robustness"), cfg.mc_k),
        )
    }  # fmt: skip


def _tests(seeds: list, ex_rows: list, n_classes: int) -> dict:
    """The tests of one selection of the nets (within W, or within 2W).

    Args:
      seeds: the cell's rows per seed (:func:`robustness_cell`'s ``seeds``).
      ex_rows: its per-example errors per seed (``errors_ex``).
      n_classes: the classes, for chance.

    Returns:
      ``{name: test}``: retention and degradation by each predictor, retention per shift and
      the error under the shifts, by the MC average.
    """
    kinds = [k for k in seeds[0]["plain"] if k not in ("clean", "train")]

    def err(p, kind, j=0):
        return np.array([s[p][kind][j]["error"] for s in seeds])

    def err_ex(p, kind, j=0):  # per seed and test example (S, N)
        e = np.array([r[p][kind][j] for r in ex_rows], np.float64)
        n = np.asarray(ex_rows[0][p]["clean"][0]).size
        if e.shape[1] != n:
            raise DropstudyError(
                f"robustness: the {kind} test set has {e.shape[1]} examples, the clean one {n}; "
                "per-example tests pair them by index, so the shifted sets must keep the size"
            )
        return e

    def n_levels(kind):
        return range(len(seeds[0]["plain"][kind]))

    def degradation(p, kind=None):  # (S, N): each example's error lost, mean over shifts
        ks = [kind] if kind else kinds
        return np.mean(
            [err_ex(p, k, j) - err_ex(p, "clean") for k in ks for j in n_levels(k)], axis=0
        )

    chance_error = 1.0 - 1.0 / n_classes

    def retention(p, kind=None):
        """Accuracy kept above chance, mean over shifts and levels, per seed and test example
        ``(S, N)``: each ratio ``U / V`` of means (``U`` above chance under the shift, ``V``
        clean) linearised per example as ``U / V + (u_i - (U / V) v_i) / V`` (the delta
        method), whose mean over the examples is the ratio itself."""
        ks = [kind] if kind else kinds
        v = chance_error - err_ex(p, "clean")
        big_v = v.mean(1, keepdims=True)
        terms = []
        for k in ks:
            for j in n_levels(k):
                u = chance_error - err_ex(p, k, j)
                ratio = u.mean(1, keepdims=True) / big_v
                terms.append(ratio + (u - ratio * v) / big_v)
        return np.mean(terms, axis=0)

    tests = {}
    for p in ("mc", "ws"):
        tests[f"retention_{p}"] = direction(
            retention(p) - retention("plain"),
            predictor=p,
            metric="retention",
            what="share of the accuracy above chance kept under the shifts (mean over shifts "
            "and strengths), dropout minus plain net (> 0: dropout keeps more)",
        )
        tests[f"degradation_{p}"] = direction(
            degradation("plain") - degradation(p),
            predictor=p,
            metric="error",
            what="test error lost to the shifts (mean over shifts and strengths), plain net "
            "minus dropout (> 0: dropout loses less)",
        )
    for kind in kinds:
        tests[f"retention_mc_{kind}"] = direction(
            retention("mc", kind) - retention("plain", kind),
            predictor="mc",
            metric="retention",
            what=f"share of the accuracy above chance kept under {kind} shifts, dropout minus "
            "plain net",
        )
    tests["shifted_error_mc"] = direction(
        np.mean([err_ex("plain", k, j) for k in kinds for j in n_levels(k)], 0)
        - np.mean([err_ex("mc", k, j) for k in kinds for j in n_levels(k)], 0),
        predictor="mc",
        metric="error",
        what="test error under the shifts (mean), plain net minus dropout (> 0: dropout better)",
    )
    return tests


def summarise(cfg: Config, raw: dict) -> dict:
    """The retention and degradation tests and the curves of every predictor.

    Args:
      cfg: the configuration.
      raw: the cells' results, keyed as :func:`plan` names them.

    Returns:
      ``{"kinds", "levels", "curves", "arms", "protocol", "tests", "primary"}``:
      the shifts and their strengths; per predictor and set (``clean``, ``train`` and each
      shift), intervals of error and NLL per strength; each net's training
      (:func:`.protocol.arm_summary`) and the protocol; the tests of
      :meth:`Config.test_names`, the primary first.
    """
    cell_ = raw["robustness"]
    within = {sfx: _tests(cell_["seeds" + sfx], cell_["errors_ex" + sfx], cell_["classes"])
              for sfx in ("", "_2w")}  # fmt: skip
    tests, seeds = within[""], cell_["seeds"]
    kinds = [k for k in seeds[0]["plain"] if k not in ("clean", "train")]
    pair = [f"{t}_{p}" for p in ("ws", "mc") for t in ("retention", "degradation")]
    arms = {"dropout": cell_["arms"]["dropout"], "plain": cell_["arms"]["plain"]}
    tests = guarded({k: tests[k] for k in pair}, within["_2w"], arms) | {
        k: t for k, t in tests.items() if k not in pair
    }
    tests = primary_first(tests, cfg.primary)
    curves = {
        p: {
            kind: [
                {m: ci([s[p][kind][j][m] for s in seeds]) for m in ("error", "nll")}
                for j in range(len(seeds[0][p][kind]))
            ]
            for kind in ("clean", "train", *kinds)
        }
        for p in PREDICTORS
    }
    levels = {"noise": cfg.noise, "missing": cfg.missing, "occlusion": cfg.occlusion,
              "generator": cfg.generator}  # fmt: skip
    return {
        "kinds": kinds,
        "levels": {k: list(levels[k]) for k in kinds},
        "curves": curves,
        "arms": {k: arm_summary(v) for k, v in arms.items()},
        "protocol": cfg.protocol.to_dict(),
        "tests": tests,
        "primary": cfg.primary,
    }


TITLES = {
    "noise": "Gaussian noise (sd in input sds)",
    "missing": "missing features (fraction)",
    "occlusion": "contiguous occlusion (fraction)",
    "generator": "MNIST-1D regenerated (shift x)",
}
