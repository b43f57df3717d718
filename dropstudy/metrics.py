"""Scores of probabilistic predictions, gaps between two predictors, and numerics of
logits (a stable cross-entropy, temperature scaling).

The scores take probabilities ``(B, C)`` and integer labels ``(B,)`` and return Python
floats, so results files hold plain numbers.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .validate import DropstudyError

ECE_BINS = 15
_EPS = 1e-12  # floor for log p: a probability of exactly 0 would give an infinite NLL


def _check(probs, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    if hasattr(probs, "probs") and hasattr(probs, "count"):  # an Average, not probabilities
        raise DropstudyError(
            "metrics take probabilities (B, C), got an Average: pass avg.probs() (the "
            "arithmetic mean's) or avg.probs('geometric')"
        )
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
    """Fraction of examples whose most probable class is the label.

    Args:
      probs: predicted probabilities ``(B, C)``.
      labels: integer labels ``(B,)``.

    Returns:
      The accuracy, a float.

    Raises:
      DropstudyError: if ``probs`` is not ``(B, C)`` or holds NaN or inf, or ``labels`` is
        not ``(B,)`` or lies outside ``[0, C)``.
    """
    p, y = _check(probs, labels)
    return float(np.mean(p.argmax(1) == y))


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the labels (nats).

    Probabilities are floored at 1e-12, so a probability of exactly 0 gives a finite NLL.

    Args:
      probs: predicted probabilities ``(B, C)``.
      labels: integer labels ``(B,)``.

    Returns:
      The NLL, a float.

    Raises:
      DropstudyError: if ``probs`` is not ``(B, C)`` or holds NaN or inf, or ``labels`` is
        not ``(B,)`` or lies outside ``[0, C)``.
    """
    return float(np.mean(per_example(probs, labels)["nll"]))


def brier(probs, labels) -> float:
    """Mean over examples of the squared distance to the one-hot label (summed over classes).

    Args:
      probs: predicted probabilities ``(B, C)``.
      labels: integer labels ``(B,)``.

    Returns:
      The Brier score, a float.

    Raises:
      DropstudyError: if ``probs`` is not ``(B, C)`` or holds NaN or inf, or ``labels`` is
        not ``(B,)`` or lies outside ``[0, C)``.
    """
    return float(np.mean(per_example(probs, labels)["brier"]))


def per_example(probs, labels) -> dict[str, np.ndarray]:
    """Each example's NLL, error and Brier score: the terms whose means the scores are.

    A test whose interval must cover the test set's sampling error takes these per seed
    (``(S, N)``, e.g. paired differences of two nets on the same examples).

    Args:
      probs: predicted probabilities ``(B, C)``.
      labels: integer labels ``(B,)``.

    Returns:
      ``{"nll", "err", "brier"}``, each ``(B,)`` float64: ``-log p_y`` (p floored at 1e-12),
      1.0 where the most probable class is not the label else 0.0, and the squared distance to
      the one-hot label.

    Raises:
      DropstudyError: if ``probs`` is not ``(B, C)`` or holds NaN or inf, or ``labels`` is
        not ``(B,)`` or lies outside ``[0, C)``.
    """
    p, y = _check(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    return {
        "nll": -np.log(np.maximum(p[np.arange(len(y)), y], _EPS)),
        "err": (p.argmax(1) != y).astype(np.float64),
        "brier": np.sum((p - onehot) ** 2, axis=1),
    }


def ece(probs, labels, bins: int = ECE_BINS) -> float:
    """Expected calibration error: L1, ``bins`` equal-width confidence bins on [0, 1].

    Args:
      probs: predicted probabilities ``(B, C)``.
      labels: integer labels ``(B,)``.
      bins: the number of bins.

    Returns:
      The ECE, a float.

    Raises:
      DropstudyError: if ``probs`` is not ``(B, C)`` or holds NaN or inf, or ``labels`` is
        not ``(B,)`` or lies outside ``[0, C)``.
    """
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
    """Accuracy, NLL, ECE and Brier score in one dict.

    Args:
      probs: predicted probabilities ``(B, C)``.
      labels: integer labels ``(B,)``.

    Returns:
      ``{"accuracy": ..., "nll": ..., "ece": ..., "brier": ...}``, floats.

    Raises:
      DropstudyError: if ``probs`` is not ``(B, C)`` or holds NaN or inf, or ``labels`` is
        not ``(B,)`` or lies outside ``[0, C)``.
    """
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "ece": ece(probs, labels),
        "brier": brier(probs, labels),
    }


def gaps(p, q) -> dict[str, float]:
    """How far predictor ``p`` is from ``q``.

    Args:
      p: probabilities ``(B, C)``.
      q: the reference probabilities ``(B, C)``.

    Returns:
      ``{"max_abs_prob", "mean_kl", "disagreement"}``, floats: ``max_abs_prob`` the largest
      absolute difference of any probability; ``mean_kl`` the mean KL(q || p) in nats (each
      example's KL clipped at 0, where rounding of nearly equal distributions makes it
      negative); ``disagreement`` the fraction of examples whose argmax differs.

    Raises:
      DropstudyError: if ``p`` or ``q`` is not ``(B, C)`` or holds NaN or inf, or their
        shapes differ.
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


def fit_temperature(
    logits, y, log_t_range: tuple[float, float] = (-5.0, 5.0), bisections: int = 60
) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)``.

    The NLL is convex in ``b = 1/T`` with derivative ``mean(E_softmax(b z)[z] - z_y)``,
    increasing in ``b``: bisection on its sign over ``log T``. Deterministic, float64.

    Args:
      logits: ``(N, C)``.
      y: integer labels ``(N,)``.
      log_t_range: natural-log bounds of the search; the result is clipped to them.
      bisections: halvings of the bracket (60: far below float32 resolution).

    Returns:
      ``T`` as a float.
    """
    z = np.asarray(logits, np.float64)
    zy = z[np.arange(len(z)), np.asarray(y)]

    def slope(log_t: float) -> float:  # d NLL / d b at b = exp(-log_t)
        s = z * np.exp(-log_t)
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return float(np.mean((p * z).sum(1) - zy))

    lo, hi = log_t_range  # slope(lo) is at large b: >= 0 unless the temperature must be lower
    if slope(lo) <= 0:
        return float(np.exp(lo))
    if slope(hi) >= 0:
        return float(np.exp(hi))
    for _ in range(bisections):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) > 0 else (lo, mid)
    return float(np.exp(0.5 * (lo + hi)))


def logit_nll(z, y) -> float:
    """Mean NLL (nats, float64) of integer labels ``y`` under logits ``z``.

    Args:
      z: logits ``(N, C)``.
      y: integer labels ``(N,)``.

    Returns:
      The NLL, a float.
    """
    z = np.asarray(z, np.float64)
    top = z.max(1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(1))
    return float(np.mean(lse - z[np.arange(len(z)), np.asarray(y)]))


def cross_entropy(z, y):
    """Per-example NLL of integer labels ``y`` under logits ``z``.

    As ``m + log1p(sum over the other classes of exp(d_c - m))`` with ``d = z - z_y`` and
    ``m = max d`` (the largest term left out of the sum): a well-fitted example's loss is
    ``log1p`` of a small number, exact in float32, where ``logsumexp(z) - z_y`` would lose
    it to cancellation (losses of 1e-5 are common on the train split).

    Args:
      z: logits ``(N, C)``.
      y: integer labels ``(N,)``.

    Returns:
      ``(N,)``.
    """
    d = z - jnp.take_along_axis(z, y[:, None], -1)
    top = jnp.argmax(d, -1)
    m = jnp.take_along_axis(d, top[:, None], -1)
    rest = jnp.where(jnp.arange(d.shape[-1]) == top[:, None], 0.0, jnp.exp(d - m))
    return m[:, 0] + jnp.log1p(rest.sum(-1))
