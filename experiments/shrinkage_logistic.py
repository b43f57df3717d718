"""The shrinkage claim's logistic part: dropout on logistic regression against its
second-order penalty, L2 after scaling by the diagonal Fisher information (Wager et al.
2013), and against plain L2 of equal mean strength. See :mod:`.shrinkage`."""

from __future__ import annotations

import numpy as np
from scipy import optimize

from dropstudy.metrics import accuracy, nll
from dropstudy.models import MLP
from dropstudy.train import TrainConfig, seed_keys, train_seeds
from dropstudy.validate import DropstudyError

from .common import (
    ci,
)
from .shrinkage_linear import heterogeneous_diabetes, rel
from .stats import direction, equivalence


def wager_logistic(x: np.ndarray, y: np.ndarray, keep: float, lam: float | None = None):
    """Logistic regression with Wager et al.'s dropout penalty at ``keep``, or a plain L2 one.

    With ``lam`` the penalty is the plain ``lam/2 ||w||^2``; the intercept is not penalised.
    Minimises the summed NLL plus penalty by L-BFGS with the exact gradient.

    Args:
      x: inputs ``(N, d)``.
      y: labels ``(N,)``, 0 or 1.
      keep: the keep probability (1: no penalty, the MLE).
      lam: the plain L2 strength, or None for Wager's penalty.

    Returns:
      ``(w, b)``: the coefficients ``(d,)`` and the intercept, a float.

    Raises:
      DropstudyError: if L-BFGS does not converge.
    """
    c = (1 - keep) / (2 * keep)
    x2 = x * x

    def f(theta):
        w, b = theta[:-1], theta[-1]
        z = x @ w + b
        p = 1 / (1 + np.exp(-z))
        value = np.sum(np.logaddexp(0, z) - y * z)
        grad = np.r_[x.T @ (p - y), np.sum(p - y)]
        if lam is None:
            a, q = p * (1 - p), x2 @ (w * w)  # Bernoulli variance; Fisher-weighted ||w||^2
            da = a * (1 - 2 * p)  # d a / d z
            value += c * np.sum(a * q)
            grad += c * np.r_[x.T @ (da * q) + 2 * w * (x2.T @ a), np.sum(da * q)]
        else:
            value += 0.5 * lam * np.sum(w * w)
            grad[:-1] += lam * w
        return value, grad

    opts = {"maxiter": 20000, "gtol": 1e-10, "ftol": 1e-15}
    r = optimize.minimize(f, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options=opts)
    if not r.success:
        raise DropstudyError(f"the logistic closed form did not converge: {r.message}")
    return r.x[:-1], float(r.x[-1])


def fisher_lambda(x: np.ndarray, w: np.ndarray, b: float, keep: float) -> float:
    """Mean over features of Wager's per-feature L2 coefficient at ``(w, b)``.

    Args:
      x: inputs ``(N, d)``.
      w: coefficients ``(d,)``.
      b: the intercept.
      keep: the keep probability.

    Returns:
      ``(1-p)/p`` times the mean over features ``j`` of ``sum_i p_i(1-p_i) x_ij^2``, a float.
    """
    p = 1 / (1 + np.exp(-(x @ w + b)))
    return (1 - keep) / keep * float(np.mean((x * x).T @ (p * (1 - p))))


def logistic_cell(keep: float, decades: float, scale_seed: int, train: TrainConfig, seeds: list):
    """SGD with input dropout at ``keep`` on logistic regression.

    A two-class softmax, whose logit difference is a logistic regression with
    ``w = w_1 - w_0``, on the labels ``y > 0`` of the heterogeneous data.

    Args:
      keep: the input keep probability.
      decades: the spread of the feature scales (:func:`heterogeneous_diabetes`).
      scale_seed: the permutation of the scales.
      train: how to train.
      seeds: the seeds, trained together.

    Returns:
      ``{"w", "train_acc", "train_nll"}``: per seed, ``w (S, d)`` and the training accuracy
      and NLL of the test-time weights, as lists.
    """
    x, y, _ = heterogeneous_diabetes(decades, scale_seed)
    labels = (y > 0).astype(np.int32)
    model = MLP(hidden=(), n_out=2, input_rate=1 - keep)
    v, _ = train_seeds(model, seed_keys(seeds), x.astype(np.float32), labels, train, seeds=seeds)
    p = v["params"]["out"]
    k, bias = np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64)
    w, b = k[:, :, 1] - k[:, :, 0], bias[:, 1] - bias[:, 0]
    prob = 1 / (1 + np.exp(-(x @ w.T + b)))  # (N, S)
    probs = [np.stack([1 - prob[:, s], prob[:, s]], 1) for s in range(len(seeds))]
    return {
        "w": w.tolist(),
        "train_acc": [accuracy(q, labels) for q in probs],
        "train_nll": [nll(q, labels) for q in probs],
    }


def summarise_logistic(cfg, raw: dict) -> tuple[dict, dict]:
    """Closed forms (Wager's penalty, plain L2), distances and tests of the logistic part.

    Args:
      cfg: the shrinkage experiment's ``Config``.
      raw: the cells' results, with ``logistic_keep=<k>`` for every keep and for keep 1.

    Returns:
      ``(out, tests)``: ``out`` holds the ``mle`` coefficients, ``sanity`` (plain SGD
      against the MLE) and per keep (``keeps``) the plain L2 strength of equal mean, the
      distances to Wager's and the plain solution, training accuracy and NLL, and the
      coefficients; ``tests`` holds ``sanity_mle`` and, per keep, ``wager_keep=<k>`` and
      ``wager_pr_keep=<k>``.
    """
    x, y, _ = heterogeneous_diabetes(cfg.decades, cfg.scale_seed)
    labels = (y > 0).astype(np.float64)
    mle, _ = wager_logistic(x, labels, 1.0)
    plain = raw["logistic_keep=1.0"]
    g_plain = np.asarray(plain["w"])
    out = {
        "mle": mle.tolist(),
        "sanity": {"rel": ci(rel(g_plain, mle)), "train_acc": ci(plain["train_acc"]),
                   "train_nll": ci(plain["train_nll"])},
        "keeps": {},
    }  # fmt: skip
    tests = {
        "sanity_mle": equivalence(
            rel(g_plain, mle), cfg.agree, predictor="-", distance=True,
            what="relative L2 distance of plain logistic SGD (keep 1) to the MLE",
        )
    }  # fmt: skip
    for k in cfg.keeps:
        log = raw[f"logistic_keep={k}"]
        g = np.asarray(log["w"])
        g_wa, b_wa = wager_logistic(x, labels, k)
        lam = fisher_lambda(x, g_wa, b_wa, k)
        g_pr, _ = wager_logistic(x, labels, k, lam=lam)
        d_wa, d_pr = rel(g, g_wa), rel(g, g_pr)
        out["keeps"][str(k)] = {
            "lambda": lam,
            "rel_wager": ci(d_wa),
            "rel_pr": ci(d_pr),
            "wager_vs_pr": float(rel(g_pr, g_wa)),
            "train_acc": ci(log["train_acc"]),
            "train_nll": ci(log["train_nll"]),
            "coef": {"sgd": g.mean(0).tolist(), "wager": g_wa.tolist(), "pr": g_pr.tolist()},
        }
        what = f"logistic SGD with input dropout (keep {k})"
        tests[f"wager_keep={k}"] = equivalence(
            d_wa,
            cfg.agree,
            predictor="ws",
            distance=True,
            what=f"relative L2 distance of {what} to Wager's Fisher-scaled L2 solution",
        )
        tests[f"wager_pr_keep={k}"] = direction(
            d_pr - cfg.apart, predictor="ws",
            what=f"relative L2 distance of {what} from the plain L2 of equal mean strength, "
            f"minus {cfg.apart}",
        )  # fmt: skip
    return out, tests
