"""Scores of probabilistic predictions, and gaps between two predictors.

All functions take probabilities ``(B, C)`` and integer labels ``(B,)`` and return Python
floats, so results files hold plain numbers.
"""

from __future__ import annotations

import numpy as np

from .validate import DropstudyError

ECE_BINS = 15
_EPS = 1e-12  # floor for log p: a probability of exactly 0 would give an infinite NLL


def _check(probs, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise DropstudyError(f"probs must have shape (B, C), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise DropstudyError("probs contain NaN or inf: the predictor diverged")
    if labels is None:
        return p, None
    y = np.asarray(labels)
    if y.shape != (p.shape[0],):
        raise DropstudyError(f"labels must have shape ({p.shape[0]},), got {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise DropstudyError(f"labels must lie in [0, {p.shape[1]}), got [{y.min()}, {y.max()}]")
    return p, y.astype(np.int64)


def accuracy(probs, labels) -> float:
    """Fraction of examples whose most probable class is the label."""
    p, y = _check(probs, labels)
    return float(np.mean(p.argmax(1) == y))


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the labels (nats)."""
    p, y = _check(probs, labels)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], _EPS))))


def brier(probs, labels) -> float:
    """Mean over examples of the squared distance to the one-hot label (summed over classes)."""
    p, y = _check(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def ece(probs, labels, bins: int = ECE_BINS) -> float:
    """Expected calibration error: L1, ``bins`` equal-width confidence bins on [0, 1]."""
    p, y = _check(probs, labels)
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    # Right-closed bins: confidence 1.0 falls in the last bin, 1/C never below the first.
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def scores(probs, labels) -> dict[str, float]:
    """accuracy, nll, ece and brier in one dict."""
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "ece": ece(probs, labels),
        "brier": brier(probs, labels),
    }


def gaps(p, q) -> dict[str, float]:
    """How far predictor ``p`` is from ``q`` (both ``(B, C)``).

    ``max_abs_prob``: largest absolute difference of any probability; ``mean_kl``: mean
    KL(q || p) in nats (``q`` the reference; each example's KL clipped at 0, where rounding
    of nearly equal distributions makes it negative); ``disagreement``: fraction of examples whose
    argmax differs.
    """
    a, _ = _check(p)
    b, _ = _check(q)
    if a.shape != b.shape:
        raise DropstudyError(f"cannot compare predictions of shapes {a.shape} and {b.shape}")
    kl = np.sum(b * (np.log(np.maximum(b, _EPS)) - np.log(np.maximum(a, _EPS))), axis=1)
    # KL is >= 0; rounding of nearly equal distributions can make the sum slightly negative.
    return {
        "max_abs_prob": float(np.max(np.abs(a - b))),
        "mean_kl": float(np.mean(np.maximum(kl, 0.0))),
        "disagreement": float(np.mean(a.argmax(1) != b.argmax(1))),
    }
