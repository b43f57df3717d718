"""The shrinkage claim's linear part: input dropout on linear regression against the
data-dependent ridge it equals in expectation (Srivastava et al. 2014, section 9.1), and
against plain ridge of equal total strength. See :mod:`.shrinkage`."""

from __future__ import annotations

import numpy as np

from dropstudy.data import diabetes
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, seed_keys, train_seeds

from .common import (
    ci,
)
from .stats import direction, equivalence


def heterogeneous_diabetes(decades: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised diabetes features times fixed per-feature scales.

    The scales are ``10^u``, ``u`` evenly spaced on ``[-decades/2, decades/2]``, permuted by
    ``seed`` (so the scale is unrelated to the feature's index).

    Args:
      decades: the spread of the scales, in orders of magnitude.
      seed: the seed of the permutation.

    Returns:
      ``(x, y, scales)``: ``x (442, 10)`` centred, ``y (442,)`` centred, ``scales (10,)``.
    """
    x, y = diabetes()
    u = np.linspace(-decades / 2, decades / 2, x.shape[1])
    scales = 10.0 ** u[np.random.default_rng(seed).permutation(x.shape[1])]
    return x * scales, y, scales


def dd_ridge(x: np.ndarray, y: np.ndarray, keep: float) -> np.ndarray:
    """The data-dependent ridge ``(X^T X + (1-p)/p diag(X^T X))^-1 X^T y``.

    Args:
      x: centred inputs ``X (N, d)``.
      y: centred targets ``(N,)``.
      keep: the keep probability ``p``.

    Returns:
      The coefficients ``(d,)``.
    """
    xtx = x.T @ x
    return np.linalg.solve(xtx + (1 - keep) / keep * np.diag(np.diag(xtx)), x.T @ y)


def equal_trace_lambda(x: np.ndarray, keep: float) -> float:
    """``(1-p)/p * trace(X^T X) / d``: the plain ridge of equal trace.

    Its penalty matrix has the trace of the data-dependent one.

    Args:
      x: inputs ``X (N, d)``.
      keep: the keep probability ``p``.

    Returns:
      ``lambda``, a float.
    """
    return (1 - keep) / keep * float(np.trace(x.T @ x)) / x.shape[1]


def plain_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """The plain ridge ``(X^T X + lam I)^-1 X^T y``; ``lam = 0`` is least squares.

    Args:
      x: centred inputs ``X (N, d)``.
      y: centred targets ``(N,)``.
      lam: the penalty ``lambda``.

    Returns:
      The coefficients ``(d,)``.
    """
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def rel(w: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Relative L2 distance ``||w - ref|| / ||ref||`` of each row of ``w``.

    Args:
      w: coefficients ``(S, d)`` (or one row ``(d,)``).
      ref: the reference ``(d,)``.

    Returns:
      The distances ``(S,)`` (a scalar for one row).
    """
    return np.linalg.norm(w - ref, axis=-1) / np.linalg.norm(ref)


def linear_cell(keep: float, decades: float, scale_seed: int, train: TrainConfig, seeds: list):
    """SGD with input dropout at ``keep`` (keep 1: plain SGD) on the heterogeneous data.

    Args:
      keep: the input keep probability.
      decades: the spread of the feature scales (:func:`heterogeneous_diabetes`).
      scale_seed: the permutation of the scales.
      train: how to train (a regression ``TrainConfig``).
      seeds: the seeds, trained together.

    Returns:
      ``{"w", "train_mse"}``: per seed, the coefficients ``w (S, d)`` and their training MSE
      ``(S,)``, as lists.
    """
    x, y, _ = heterogeneous_diabetes(decades, scale_seed)
    model = MLP(hidden=(), n_out=1, input_rate=1 - keep)
    v, _ = train_seeds(
        model, seed_keys(seeds), x.astype(np.float32), y.astype(np.float32)[:, None], train,
        seeds=seeds,
    )  # fmt: skip
    p = v["params"]["out"]
    w = np.asarray(p["kernel"][:, :, 0], np.float64)
    b = np.asarray(p["bias"][:, 0], np.float64)
    mse = np.mean((x @ w.T + b - y[:, None]) ** 2, axis=0)
    return {"w": w.tolist(), "train_mse": mse.tolist()}


def summarise_linear(cfg, raw: dict) -> tuple[dict, dict]:
    """Closed forms, distances and tests of the linear regressions.

    Args:
      cfg: the shrinkage experiment's ``Config``.
      raw: the cells' results, with ``linear_keep=<k>`` for every keep and for keep 1.

    Returns:
      ``(out, tests)``: ``out`` holds the feature ``scales``, the least-squares ``ols``
      coefficients, ``sanity`` (plain SGD against least squares) and per keep (``keeps``)
      the ridge strength, distances to each closed form and to the closest plain ridge over
      a grid of lambda, training MSE, coefficient norms and the coefficients; ``tests``
      holds ``sanity_ols`` and, per keep, ``ridge_dd``, ``ridge_pr``, ``ridge_closest`` and
      ``linear_shrink`` (each ``_keep=<k>``).
    """
    x, y, scales = heterogeneous_diabetes(cfg.decades, cfg.scale_seed)
    mse = lambda w: float(np.mean((x @ w - y) ** 2))  # noqa: E731  (centred: no intercept)
    ols, plain = plain_ridge(x, y, 0.0), raw["linear_keep=1.0"]
    w_plain = np.asarray(plain["w"])
    out = {
        "scales": scales.tolist(),
        "ols": ols.tolist(),
        "sanity": {
            "rel": ci(rel(w_plain, ols)), "train_mse": ci(plain["train_mse"]), "mse": mse(ols),
        },
        "keeps": {},
    }  # fmt: skip
    tests = {
        "sanity_ols": equivalence(
            rel(w_plain, ols), cfg.agree, distance=True,
            what="relative L2 distance of plain SGD (keep 1) to least squares", predictor="-",
        )
    }  # fmt: skip
    for k in cfg.keeps:
        lin = raw[f"linear_keep={k}"]
        w, lam = np.asarray(lin["w"]), equal_trace_lambda(x, k)
        w_dd, w_pr = dd_ridge(x, y, k), plain_ridge(x, y, lam)
        d_dd, d_pr = rel(w, w_dd), rel(w, w_pr)
        # The plain ridge closest to the data-dependent one over a log grid of lambda: the
        # hardest plain-ridge alternative, not just the one of equal trace.
        lams = lam * np.logspace(-4, 4, 161)
        near = [float(rel(plain_ridge(x, y, v), w_dd)) for v in lams]
        best = int(np.argmin(near))
        w_near = plain_ridge(x, y, lams[best])
        closest = {"lambda": float(lams[best]), "dd_vs_closest": near[best],
                   "rel": ci(rel(w, w_near))}  # fmt: skip
        norm, norm_plain = np.linalg.norm(w, axis=1), np.linalg.norm(w_plain, axis=1)
        out["keeps"][str(k)] = {
            "lambda": lam,
            "rel_dd": ci(d_dd),
            "rel_pr": ci(d_pr),
            "dd_vs_pr": float(rel(w_pr, w_dd)),
            "closest": closest,
            "train_mse": ci(lin["train_mse"]),
            "mse_dd": mse(w_dd),
            "mse_pr": mse(w_pr),
            "norm": ci(norm),
            "norm_plain": ci(norm_plain),
            "coef": {"sgd": w.mean(0).tolist(), "dd": w_dd.tolist(), "pr": w_pr.tolist()},
        }
        # A linear model's MC average equals weight scaling exactly (the output is linear
        # in the mask): the learned coefficients are the prediction of either.
        what = f"SGD with input dropout (keep {k})"
        tests[f"ridge_dd_keep={k}"] = equivalence(
            d_dd,
            cfg.agree,
            predictor="ws",
            distance=True,
            what=f"relative L2 distance of {what} to the data-dependent ridge",
        )
        tests[f"ridge_pr_keep={k}"] = direction(
            d_pr - cfg.apart,
            predictor="ws",
            what=f"relative L2 distance of {what} from the plain ridge of equal trace, "
            f"minus {cfg.apart}",
        )
        tests[f"ridge_closest_keep={k}"] = direction(
            rel(w, w_near) - cfg.apart,
            predictor="ws",
            what=f"relative L2 distance of {what} from the closest plain ridge (any lambda), "
            f"minus {cfg.apart}",
        )
        tests[f"linear_shrink_keep={k}"] = direction(
            norm - norm_plain, positive_supports=False, predictor="ws",
            what=f"L2 norm of the linear coefficients, {what} minus plain SGD",
        )  # fmt: skip
    return out, tests
