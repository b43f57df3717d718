"""Confidence intervals over seeds and every verdict rule of the study.

Intervals are two-sided 95% Student-t intervals of the mean over independent seeds; paired
comparisons use the per-seed differences (every method sees the same split and init keys).
Each rule is a small function from numbers to one of :data:`VERDICTS`; experiments call
these and write no verdict logic of their own.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

from dropstudy.validate import DropstudyError

SUPPORTED, PARTLY, NOT_SUPPORTED = "supported", "partly supported", "not supported"
VERDICTS = (SUPPORTED, PARTLY, NOT_SUPPORTED)


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


def equivalence_verdict(ci: dict, margin: float) -> str:
    """The claim predicts no effect: supported when the 95% interval lies within
    ``+-margin``, not supported when it lies entirely outside, partly supported otherwise."""
    if -margin <= ci["lo"] and ci["hi"] <= margin:
        return SUPPORTED
    if ci["lo"] > margin or ci["hi"] < -margin:
        return NOT_SUPPORTED
    return PARTLY


def all_hold(*conditions: bool) -> str:
    """An exact claim: supported when every condition holds, else not supported."""
    return SUPPORTED if all(conditions) else NOT_SUPPORTED


def combine(*verdicts: str) -> str:
    """A claim resting on several tests: supported when all are, not supported when none
    is even partly, partly supported otherwise."""
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if any(v in (SUPPORTED, PARTLY) for v in verdicts):
        return PARTLY
    return NOT_SUPPORTED


def choice_verdict(value, supported: tuple, partly: tuple) -> str:
    """A claim naming typical values: supported when ``value`` is one of ``supported``,
    partly when it is one of ``partly``, else not supported."""
    if value in supported:
        return SUPPORTED
    return PARTLY if value in partly else NOT_SUPPORTED


def fmt(ci: dict, digits: int = 3) -> str:
    """``mean [lo, hi]`` for tables."""
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"
