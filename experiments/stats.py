"""Confidence intervals over seeds and the verdict rule.

Intervals are two-sided 95% Student-t intervals of the mean over independent seeds; paired
comparisons use the per-seed differences (every method sees the same split and init keys).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

from .validate import DropstudyError

SUPPORTED, PARTLY, NOT_SUPPORTED = "supported", "partly supported", "not supported"


def mean_ci(values, level: float = 0.95) -> dict[str, float]:
    """``{"mean", "lo", "hi", "n"}`` of a 1-D sample; one value gives a zero-width interval."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise DropstudyError("mean_ci needs at least one value")
    if not np.all(np.isfinite(v)):
        raise DropstudyError("mean_ci got NaN or inf: a run diverged")
    m = float(v.mean())
    if v.size == 1:
        return {"mean": m, "lo": m, "hi": m, "n": 1}
    half = float(_st.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": int(v.size)}


def paired(a, b) -> dict[str, float]:
    """Interval of the mean of ``a - b`` over seeds, plus the fraction of seeds with a > b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise DropstudyError(f"paired comparison needs equal shapes, got {a.shape} and {b.shape}")
    out = mean_ci(a - b)
    out["frac_positive"] = float(np.mean(a - b > 0))
    return out


def direction_verdict(ci: dict, positive_supports: bool = True) -> str:
    """The verdict rule: the claim predicts the sign of an effect.

    supported — the 95% interval excludes zero in the claimed direction;
    partly supported — the mean lies in the claimed direction but the interval includes 0;
    not supported — the mean lies in the other direction.
    """
    sign = 1.0 if positive_supports else -1.0
    lo, hi, m = sign * ci["lo"], sign * ci["hi"], sign * ci["mean"]
    if min(lo, hi) > 0:
        return SUPPORTED
    if m > 0:
        return PARTLY
    return NOT_SUPPORTED


def fmt(ci: dict, digits: int = 3) -> str:
    """``mean [lo, hi]`` for tables."""
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"
