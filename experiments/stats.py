"""Confidence intervals over seeds, power, and every verdict rule of the study.

A verdict is one of :data:`VERDICTS`: *supported*, *contradicted* or *inconclusive*. Each
comes from a test on per-seed values (usually the paired differences between two methods on
the same seeds) through one of two rules:

- :func:`direction`: the claim predicts the sign of an effect. A two-sided one-sample t test;
  supported when the 95% interval excludes 0 on the claimed side, contradicted when it
  excludes 0 on the other, else inconclusive.
- :func:`equivalence`: the claim predicts no effect larger than a margin fixed in the
  experiment's config before it runs. Two one-sided tests (TOST) at level 0.05 each, i.e. the
  90% interval; supported when both reject (the 90% interval lies inside +-margin),
  contradicted when the 90% interval lies wholly outside the margin, else inconclusive.

Every test records ``n``, the effect, its interval, the p-value of its decisive outcome, and
what the design can detect: for a direction test the smallest effect found at 80% power with
this ``n`` (``mde``) and the seeds the observed effect would need (``seeds_needed``); for an
equivalence test the smallest margin the design shows at 80% power if the true effect were 0,
and the seeds the margin needs given the observed effect.

Each claim has one *primary* test (named in its experiment's config); the report corrects the
primaries for multiplicity with :func:`holm` and decides them with :func:`decide`. Everything
else is exploratory and says so.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize as _opt
from scipy import stats as _st

from dropstudy.validate import DropstudyError

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
ALPHA = 0.05  # every test's level; equivalence runs each one-sided test at ALPHA
POWER = 0.8  # the power at which detectable effects and seeds needed are stated
MAX_SEEDS = 100_000  # beyond this, "seeds needed" is reported as not reachable


def mean_ci(values, level: float = 0.95) -> dict[str, float]:
    """The mean of a 1-D sample with its t interval; one value gives a zero-width interval.

    Args:
      values: the sample, ``(n,)`` (any array-like; flattened).
      level: the interval's confidence level.

    Returns:
      ``{"mean", "lo", "hi", "n"}``.

    Raises:
      DropstudyError: if ``values`` is empty or holds NaN or inf (a run diverged).
    """
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
    """Interval of the mean of ``a - b`` over seeds, plus the fraction of seeds with a > b.

    Args:
      a: per-seed values, ``(S,)``.
      b: the other method's values on the same seeds, the same shape as ``a``.

    Returns:
      :func:`mean_ci` of ``a - b`` (``{"mean", "lo", "hi", "n"}``) with ``frac_positive``.

    Raises:
      DropstudyError: if ``a`` and ``b`` differ in shape, or as :func:`mean_ci`.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise DropstudyError(f"paired comparison needs equal shapes, got {a.shape} and {b.shape}")
    out = mean_ci(a - b)
    out["frac_positive"] = float(np.mean(a - b > 0))
    return out


def _sample(values) -> tuple[np.ndarray, float, float, int]:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2:
        raise DropstudyError(f"a test needs at least 2 seeds, got {v.size}")
    if not np.all(np.isfinite(v)):
        raise DropstudyError("a test got NaN or inf: a run diverged; drop or report it first")
    return v, float(v.mean()), float(v.std(ddof=1)), int(v.size)


def _finite(p, far: float) -> float:
    """``p``, or ``far`` where scipy's noncentral t returns NaN (far in a tail, where the
    probability is 0 or 1)."""
    p = float(p)
    return far if math.isnan(p) else p


def _power_two_sided(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided one-sample t test at true mean ``effect`` (noncentral t)."""
    if sd == 0:
        return 1.0 if effect != 0 else 0.0
    crit = _st.t.ppf(1 - alpha / 2, n - 1)
    nc = abs(effect) * math.sqrt(n) / sd
    near = _finite(_st.nct.sf(crit, n - 1, nc), 1.0 if nc > crit else 0.0)
    return near + _finite(_st.nct.cdf(-crit, n - 1, nc), 0.0)


def _power_tost(effect: float, margin: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of TOST (both one-sided tests reject) at true mean ``effect`` (noncentral t,
    the usual approximation that treats the two rejections as one event each)."""
    if sd == 0:
        return 1.0 if abs(effect) < margin else 0.0
    crit, se = _st.t.ppf(1 - alpha, n - 1), sd / math.sqrt(n)
    nc_low, nc_up = (effect + margin) / se, (effect - margin) / se
    lower = _finite(_st.nct.sf(crit, n - 1, nc_low), float(nc_low > crit))  # effect <= -m
    upper = _finite(_st.nct.cdf(-crit, n - 1, nc_up), float(nc_up < -crit))  # effect >= m
    return float(max(0.0, lower + upper - 1.0))


def _smallest_n(power_at) -> int | None:
    """The smallest n >= 2 with ``power_at(n) >= POWER`` (power grows with n), else None."""
    if power_at(MAX_SEEDS) < POWER:
        return None
    lo, hi = 2, MAX_SEEDS
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= POWER else (mid + 1, hi)
    return lo


def direction(values, positive_supports: bool = True, **label) -> dict:
    """The direction rule on per-seed ``values`` (e.g. paired differences).

    A two-sided one-sample t test: the outcome is supported when the mean has the claimed sign,
    else contradicted, and the verdict is that outcome when p < :data:`ALPHA`, else inconclusive.

    Args:
      values: the per-seed values, ``(S,)`` with S >= 2.
      positive_supports: whether the claim predicts a positive effect (else a negative one).
      **label: keys to add to the test (``metric``, ``predictor``, ``what``).

    Returns:
      A test dict: ``rule``, ``n``, ``effect`` (the mean), ``lo``/``hi`` (95% interval),
      ``level``, ``sd``, ``p`` (two-sided), ``claimed`` (``"> 0"`` or ``"< 0"``), ``verdict``
      (unadjusted), ``outcome`` (what a significant result means here: supported when the mean
      has the claimed sign, else contradicted), ``mde`` (the smallest true effect found at 80%
      power with this n and sd), ``seeds_needed`` (for the observed effect; None when the
      effect is 0) and ``values`` (the per-seed values, so the test can be recomputed from
      the results file), plus the ``label`` keys.

    Raises:
      DropstudyError: if there are fewer than 2 values, or one is NaN or inf.
    """
    v, m, sd, n = _sample(values)
    c = mean_ci(v)
    sign = 1.0 if positive_supports else -1.0
    if sd == 0:
        p = 0.0 if m != 0 else 1.0
    else:
        p = float(2 * _st.t.sf(abs(m) * math.sqrt(n) / sd, n - 1))
    outcome = SUPPORTED if sign * m > 0 else CONTRADICTED
    verdict = outcome if p < ALPHA else INCONCLUSIVE
    if sd == 0:
        mde = 0.0
    else:
        hi = (_st.t.ppf(1 - ALPHA / 2, n - 1) + 40) * sd / math.sqrt(n)
        mde = float(_opt.brentq(lambda d: _power_two_sided(d, sd, n) - POWER, 1e-12 * sd, hi))
    needed = None if m == 0 else _smallest_n(lambda k: _power_two_sided(m, sd, k))
    return {
        "rule": "direction",
        "claimed": "> 0" if positive_supports else "< 0",
        "n": n,
        "effect": m,
        "lo": c["lo"],
        "hi": c["hi"],
        "level": 0.95,
        "sd": sd,
        "p": p,
        "outcome": outcome,
        "verdict": verdict,
        "mde": mde,
        "seeds_needed": needed,
        "values": v.tolist(),
        **label,
    }


def equivalence(values, margin: float, **label) -> dict:
    """The equivalence rule (TOST) on per-seed ``values`` against ``+-margin``.

    Args:
      values: the per-seed values, ``(S,)`` with S >= 2.
      margin: the equivalence margin, > 0.
      **label: keys to add to the test (``metric``, ``predictor``, ``what``).

    Returns:
      A test dict like :func:`direction`'s, with ``margin``, the 90% interval in ``lo``/``hi``,
      ``p_tost`` (the larger one-sided p-value: equivalence shown when it is below 0.05),
      ``p_outside`` (one-sided p-value that the effect lies beyond the margin on the side of the
      mean: non-equivalence shown when below 0.05), ``p`` and ``outcome`` of the smaller of the
      two, ``mde`` (the smallest margin shown at 80% power if the true effect were 0) and
      ``seeds_needed`` (for ``margin`` at the observed effect; None when the observed effect is
      at or beyond the margin) and ``values`` (the per-seed values).

    Raises:
      DropstudyError: if there are fewer than 2 values, one is NaN or inf, or ``margin`` is not
        > 0.
    """
    v, m, sd, n = _sample(values)
    return {**equivalence_from(m, sd, n, margin, **label), "values": v.tolist()}


def equivalence_from(mean: float, sd: float, n: int, margin: float, **label) -> dict:
    """:func:`equivalence` from a sample's mean, standard deviation and size.

    For samples too large to keep (e.g. 10,000 training-mode draws).

    Args:
      mean: the sample's mean.
      sd: its standard deviation (ddof=1).
      n: its size, >= 2.
      margin: the equivalence margin, > 0.
      **label: keys to add to the test.

    Returns:
      The test dict of :func:`equivalence`, its ``values`` None (not kept).

    Raises:
      DropstudyError: if ``margin`` is not > 0, or ``n`` is below 2.
    """
    if not margin > 0:
        raise DropstudyError(f"an equivalence margin must be > 0, got {margin}")
    if n < 2:
        raise DropstudyError(f"a test needs at least 2 seeds, got {n}")
    m, sd, n = float(mean), float(sd), int(n)
    half = 0.0 if sd == 0 else float(_st.t.ppf(1 - ALPHA, n - 1) * sd / math.sqrt(n))
    c = {"lo": m - half, "hi": m + half}
    if sd == 0:
        p_low = p_up = 0.0 if abs(m) < margin else 1.0
        p_out = 0.0 if abs(m) > margin else 1.0
    else:
        se = sd / math.sqrt(n)
        p_low = float(_st.t.sf((m + margin) / se, n - 1))  # H0: effect <= -margin
        p_up = float(_st.t.cdf((m - margin) / se, n - 1))  # H0: effect >= +margin
        p_out = float(_st.t.sf((abs(m) - margin) / se, n - 1))  # H0: |effect| <= margin
    p_tost = max(p_low, p_up)
    outcome, p = (SUPPORTED, p_tost) if p_tost <= p_out else (CONTRADICTED, p_out)
    verdict = outcome if p < ALPHA else INCONCLUSIVE
    if sd == 0:
        mde = 0.0
    else:
        hi = 2 * (_st.t.ppf(1 - ALPHA, n - 1) + 40) * sd / math.sqrt(n)
        mde = float(_opt.brentq(lambda d: _power_tost(0.0, d, sd, n) - POWER, 1e-12 * sd, hi))
    needed = None if abs(m) >= margin else _smallest_n(lambda k: _power_tost(m, margin, sd, k))
    return {
        "rule": "equivalence",
        "margin": margin,
        "n": n,
        "effect": m,
        "lo": c["lo"],
        "hi": c["hi"],
        "level": 1 - 2 * ALPHA,
        "sd": sd,
        "p_tost": p_tost,
        "p_outside": p_out,
        "p": p,
        "outcome": outcome,
        "verdict": verdict,
        "mde": mde,
        "seeds_needed": needed,
        "values": None,
        **label,
    }


def exact_check(holds: bool, **label) -> dict:
    """A claim checked by an identity rather than a sample.

    No sampling error, so no p-value and no Holm step.

    Args:
      holds: whether the identity holds.
      **label: keys to add to the test.

    Returns:
      A test dict: ``rule="exact"``, ``p=None``, and ``outcome`` and ``verdict`` both
      supported when it holds, contradicted when it does not; plus the ``label`` keys.
    """
    v = SUPPORTED if holds else CONTRADICTED
    return {"rule": "exact", "p": None, "outcome": v, "verdict": v, **label}


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values.

    Args:
      pvalues: the p-values; None entries (exact checks) are skipped.

    Returns:
      The adjusted p-values in the same order, None where the input has None.
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    m, out, running = len(order), list(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def decide(test: dict, p_adjusted: float | None) -> str:
    """A test's verdict at the adjusted p-value.

    Args:
      test: a test dict.
      p_adjusted: its adjusted p-value (:func:`holm`); None for an exact check.

    Returns:
      Its outcome when significant (below :data:`ALPHA`), else inconclusive; exact checks keep
      their verdict.
    """
    if test["rule"] == "exact":
        return test["verdict"]
    return test["outcome"] if p_adjusted < ALPHA else INCONCLUSIVE


def excludes_zero(t: dict) -> bool:
    """Whether a test's interval (95% for direction, 90% for equivalence) excludes 0.

    Args:
      t: a test dict.

    Returns:
      True when its interval lies wholly above or below 0; False for an exact check.
    """
    return t["rule"] != "exact" and (t["lo"] > 0 or t["hi"] < 0)


def sign_flip(a: dict, b: dict) -> bool:
    """Whether two tests of the same quantity disagree in sign, with an interval excluding 0.

    E.g. by weight scaling and by the MC average: a finding to report.

    Args:
      a: a test dict.
      b: a test dict of the same quantity by another predictor.

    Returns:
      True when their effects have opposite signs and at least one interval excludes 0.
    """
    return a["effect"] * b["effect"] < 0 and (excludes_zero(a) or excludes_zero(b))


def fmt(ci: dict, digits: int = 3) -> str:
    """``mean [lo, hi]`` for tables.

    Args:
      ci: ``{"mean", "lo", "hi"}``.
      digits: decimal places.

    Returns:
      The text.
    """
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"
