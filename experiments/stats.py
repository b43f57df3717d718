"""Confidence intervals over seeds, power, and every verdict rule of the study.

A verdict is one of :data:`VERDICTS`: *supported*, *contradicted* or *inconclusive*. Each
comes from a test on per-seed values (usually the paired differences between two methods on
the same seeds) through one of two rules:

- :func:`direction`: the claim predicts the sign of an effect. A two-sided one-sample t test;
  supported when the 95% interval excludes 0 on the claimed side, contradicted when it
  excludes 0 on the other, else inconclusive.
- :func:`equivalence`: the claim predicts no effect larger than a margin fixed in the
  experiment's config before it runs. Two one-sided tests (TOST) at level 0.05 each, i.e. the
  90% interval: supported when TOST rejects (its p-value is the only one that enters the
  multiplicity family), contradicted when the 90% interval lies wholly outside +-margin, else
  inconclusive.

**Two sources of noise.** Given per-seed values ``(S,)``, a test's interval covers the seeds
(initialisation, masks, minibatch order). Given per-seed, per-test-example values ``(S, N)``
(e.g. paired differences of each example's loss), it covers the test examples too: the
variance of the grand mean comes from a crossed two-way random-effects model
(:func:`spread`; seed, example and residual components from the two-way mean squares), with
Satterthwaite's degrees of freedom. Power and the seeds needed use the same variance; where the
test set's term alone keeps the target out of reach, more seeds cannot help, and the test says
how many test examples would reach it (``examples_needed``).

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
from dataclasses import dataclass

import numpy as np
from scipy import optimize as _opt
from scipy import stats as _st

from dropstudy.validate import DropstudyError

TWICE = " within 2W"  # a guarded test's twin (.protocol.guarded) on the nets selected within 2W

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
ALPHA = 0.05  # every test's level; equivalence runs each one-sided test at ALPHA
POWER = 0.8  # the power at which detectable effects and seeds needed are stated
MAX_SEEDS = 100_000  # beyond this, "seeds needed" is reported as not reachable
MAX_EXAMPLES = 10_000_000  # beyond this, "examples needed" is reported as not reachable


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


@dataclass(frozen=True)
class Spread:
    """Where the sampling error of a grand mean comes from.

    ``d[s, i] = mu + a_s + b_i + e_si``: a seed effect (variance ``var_seed``), a test-example
    effect (``var_example``) and a residual (``var_resid``). With seeds only, ``var_seed`` is
    the per-seed values' variance and the other two are 0.

    Attributes:
      mean: the grand mean.
      n: seeds.
      n_examples: test examples, or None for per-seed values only.
      var_seed: the seed component.
      var_example: the test-example component.
      var_resid: the residual component.
    """

    mean: float
    n: int
    n_examples: int | None
    var_seed: float
    var_example: float = 0.0
    var_resid: float = 0.0
    ms_seed: float = 0.0  # the per-seed means' variance times N (two-level only)

    def _two_level(self, k: int, m: int) -> float:
        """The components' variance of the mean at k seeds and m examples (no floor)."""
        return self.var_seed / k + self.var_example / m + self.var_resid / (k * m)

    def _seed_floor(self, k: int, m: int) -> float:
        """The per-seed means' own variance of the mean at the observed N (0 at another N):
        a floor, so that clipping a seed component to 0 never makes the interval narrower
        than the seeds alone give."""
        return self.ms_seed / (k * m) if m == self.n_examples else 0.0

    def var(self, seeds: int | None = None, examples: int | None = None) -> float:
        """The variance of the grand mean at ``seeds`` seeds and ``examples`` test examples.

        Args:
          seeds: seeds (default: ``n``).
          examples: test examples (default: ``n_examples``).

        Returns:
          ``var_seed/S + var_example/N + var_resid/(S*N)``, at least the per-seed means'
          variance over S at the observed N (``var_seed/S`` with seeds only).
        """
        k = self.n if seeds is None else seeds
        if self.n_examples is None:
            return self.var_seed / k
        m = self.n_examples if examples is None else examples
        return max(self._two_level(k, m), self._seed_floor(k, m))

    def se(self, seeds: int | None = None, examples: int | None = None) -> float:
        """The standard error of the grand mean (:meth:`var`'s square root)."""
        return math.sqrt(max(self.var(seeds, examples), 0.0))

    def df(self, seeds: int | None = None, examples: int | None = None) -> float:
        """Satterthwaite's degrees of freedom of :meth:`var` at these sizes.

        The mean squares that :meth:`var` combines, at their expectations for these sizes:
        ``n - 1`` with seeds only.

        Args:
          seeds: seeds (default: ``n``).
          examples: test examples (default: ``n_examples``).

        Returns:
          The degrees of freedom (at least 1).
        """
        k = self.n if seeds is None else seeds
        if self.n_examples is None:
            return float(k - 1)
        m = self.n_examples if examples is None else examples
        if self._seed_floor(k, m) >= self._two_level(k, m):  # the per-seed means decide: k - 1
            return float(k - 1)
        # var = [c_a MS_seed + c_b MS_example - (c_a + c_b - 1) MS_resid] / (k m) with the
        # terms whose component is 0 left out (c = 0), so the estimate stays >= 0.
        c_a, c_b = float(self.var_seed > 0), float(self.var_example > 0)
        ms_a = self.var_resid + m * self.var_seed
        ms_b = self.var_resid + k * self.var_example
        terms = [(c_a * ms_a, k - 1), (c_b * ms_b, m - 1),
                 ((1 - c_a - c_b) * self.var_resid, (k - 1) * (m - 1))]  # fmt: skip
        total = sum(t for t, _ in terms)
        denom = sum(t * t / d for t, d in terms if t != 0)
        return float(max(1.0, total * total / denom)) if denom > 0 else float(k - 1)

    def to_dict(self) -> dict:
        """The spread's fields for a test dict.

        Returns:
          ``{"n_examples", "var_seed", "var_example", "var_resid", "se", "df"}``.
        """
        return {"n_examples": self.n_examples, "var_seed": self.var_seed,
                "var_example": self.var_example, "var_resid": self.var_resid,
                "se": self.se(), "df": self.df()}  # fmt: skip


def spread(values) -> Spread:
    """The :class:`Spread` of per-seed ``(S,)`` or per-seed, per-example ``(S, N)`` values.

    For ``(S, N)``: the two-way mean squares of a crossed design without replication, ``MS_s =
    N var(row means)``, ``MS_e = S var(column means)`` and the residual's ``MS_r``, give the
    components ``var_seed = (MS_s - MS_r)/N``, ``var_example = (MS_e - MS_r)/S`` (each clipped at
    0) and ``var_resid = MS_r``. The grand mean's variance is never below the per-seed means'
    own, ``MS_s / (S N)`` (with S - 1 degrees of freedom when that floor decides): a seed
    component clipped at 0 must not make the variance smaller than the seeds alone give. With
    both components clipped, the residual's (S - 1)(N - 1) degrees of freedom stand (the
    coverage test's residual-dominated case), so the interval can be a little narrower than the
    per-seed t interval, whose quantile has S - 1.

    Args:
      values: ``(S,)`` with S >= 2, or ``(S, N)`` with S >= 2 and N >= 2.

    Returns:
      The spread.

    Raises:
      DropstudyError: if there are too few seeds or examples, the array has another rank, or a
        value is NaN or inf (a run diverged).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim not in (1, 2):
        raise DropstudyError(
            f"a test takes per-seed values (S,) or per-seed, per-example values (S, N); got "
            f"shape {v.shape}"
        )
    if v.shape[0] < 2:
        raise DropstudyError(f"a test needs at least 2 seeds, got {v.shape[0]}")
    if v.ndim == 2 and v.shape[1] < 2:
        raise DropstudyError(f"per-example values need at least 2 examples, got {v.shape[1]}")
    if not np.all(np.isfinite(v)):
        raise DropstudyError("a test got NaN or inf: a run diverged; drop or report it first")
    if v.ndim == 1:
        return Spread(float(v.mean()), int(v.size), None, float(v.var(ddof=1)))
    s, n = v.shape
    rows, cols, grand = v.mean(1), v.mean(0), float(v.mean())
    ms_s, ms_e = n * float(rows.var(ddof=1)), s * float(cols.var(ddof=1))
    resid = v - rows[:, None] - cols[None, :] + grand
    ms_r = float((resid * resid).sum()) / ((s - 1) * (n - 1))
    return Spread(grand, s, n, max(0.0, (ms_s - ms_r) / n), max(0.0, (ms_e - ms_r) / s), ms_r,
                  ms_seed=ms_s)  # fmt: skip


def _finite(p, far: float) -> float:
    """``p``, or ``far`` where scipy's noncentral t returns NaN (far in a tail, where the
    probability is 0 or 1)."""
    p = float(p)
    return far if math.isnan(p) else p


def _power_two_sided(effect: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided t test of a mean with standard error ``se`` at true mean
    ``effect`` (noncentral t)."""
    if se == 0:
        return 1.0 if effect != 0 else 0.0
    crit = _st.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) / se
    near = _finite(_st.nct.sf(crit, df, nc), 1.0 if nc > crit else 0.0)
    return near + _finite(_st.nct.cdf(-crit, df, nc), 0.0)


def _power_tost(effect: float, margin: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Power of TOST (both one-sided tests reject) at true mean ``effect`` (noncentral t,
    the usual approximation that treats the two rejections as one event each)."""
    if se == 0:
        return 1.0 if abs(effect) < margin else 0.0
    crit = _st.t.ppf(1 - alpha, df)
    nc_low, nc_up = (effect + margin) / se, (effect - margin) / se
    lower = _finite(_st.nct.sf(crit, df, nc_low), float(nc_low > crit))  # effect <= -m
    upper = _finite(_st.nct.cdf(-crit, df, nc_up), float(nc_up < -crit))  # effect >= m
    return float(max(0.0, lower + upper - 1.0))


def tost_power(t: dict, margin: float) -> float | None:
    """An equivalence test's power to show equivalence within ``margin`` if the true
    difference were 0, from its standard error and degrees of freedom.

    Args:
      t: the test dict (its ``se`` and ``df``).
      margin: the margin.

    Returns:
      The power, or None when the test keeps no ``se`` or ``df``.
    """
    if t.get("se") is None or t.get("df") is None:
        return None
    return _power_tost(0.0, margin, float(t["se"]), float(t["df"]))


def _smallest(power_at, most: int) -> int | None:
    """The smallest n >= 2 with ``power_at(n) >= POWER`` (power grows with n) up to ``most``,
    else None."""
    if power_at(most) < POWER:
        return None
    lo, hi = 2, most
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= POWER else (mid + 1, hi)
    return lo


def _design(sp: Spread, power_of) -> dict:
    """What the design can reach: ``seeds_needed``, and ``examples_needed`` at this many seeds
    where more seeds alone cannot reach the power (None where neither can, or not asked).

    ``power_of(se, df)`` is the test's power at a standard error and degrees of freedom."""
    at = lambda k, m=None: power_of(sp.se(k, m), sp.df(k, m))  # noqa: E731
    seeds = _smallest(lambda k: at(k), MAX_SEEDS)
    examples = None
    if seeds is None and sp.n_examples is not None:
        examples = _smallest(lambda m: at(sp.n, m), MAX_EXAMPLES)
    return {"seeds_needed": seeds, "examples_needed": examples}


def _values_out(v: np.ndarray) -> dict:
    """The values a test keeps: per seed with their sd, and per seed and example when given."""
    per_seed = v if v.ndim == 1 else v.mean(1)
    out = {"sd": float(per_seed.std(ddof=1)), "values": per_seed.tolist()}
    return out if v.ndim == 1 else {**out, "per_example": v}


def direction(values, positive_supports: bool = True, **label) -> dict:
    """The direction rule on per-seed (or per-seed, per-example) ``values``.

    A two-sided t test of the grand mean with the standard error and degrees of freedom of
    :func:`spread`: the outcome is supported when the mean has the claimed sign, else
    contradicted, and the verdict is that outcome when p < :data:`ALPHA`, else inconclusive.

    Args:
      values: the paired differences (or other values) per seed, ``(S,)`` with S >= 2, or per
        seed and test example, ``(S, N)``, so that the interval covers the test set's noise.
      positive_supports: whether the claim predicts a positive effect (else a negative one).
      **label: keys to add to the test (``metric``, ``predictor``, ``what``).

    Returns:
      A test dict: ``rule``, ``n`` (seeds), ``effect`` (the mean), ``lo``/``hi`` (95%
      interval), ``level``, ``sd`` (of the per-seed values), the :class:`Spread`'s fields
      (``n_examples``, ``var_seed``, ``var_example``, ``var_resid``, ``se``, ``df``), ``p``
      (two-sided), ``claimed`` (``"> 0"`` or ``"< 0"``), ``verdict`` (unadjusted),
      ``outcome`` (what a significant result means here: supported when the mean has the
      claimed sign, else contradicted), ``mde`` (the smallest true effect found at 80% power
      with this design), ``seeds_needed`` (for the observed effect; None when the effect is 0
      or out of reach), ``examples_needed`` (at this many seeds, where more seeds cannot reach
      it) and ``values`` (the per-seed values; with ``(S, N)`` input also ``per_example``, the
      array, which the results writer moves to an npz file), plus the ``label`` keys.

    Raises:
      DropstudyError: as :func:`spread`.
    """
    v = np.asarray(values, dtype=np.float64)
    sp = spread(v)
    m, se, df = sp.mean, sp.se(), sp.df()
    half = float(_st.t.ppf(1 - ALPHA / 2, df) * se)
    sign = 1.0 if positive_supports else -1.0
    if se == 0:
        p = 0.0 if m != 0 else 1.0
    else:
        p = float(2 * _st.t.sf(abs(m) / se, df))
    outcome = SUPPORTED if sign * m > 0 else CONTRADICTED
    verdict = outcome if p < ALPHA else INCONCLUSIVE
    if se == 0:
        mde = 0.0
    else:
        hi = (_st.t.ppf(1 - ALPHA / 2, df) + 40) * se
        mde = float(_opt.brentq(lambda d: _power_two_sided(d, se, df) - POWER, 1e-12 * se, hi))
    design = (
        {"seeds_needed": None, "examples_needed": None}
        if m == 0
        else _design(sp, lambda s, d: _power_two_sided(m, s, d))
    )
    return {
        "rule": "direction",
        "claimed": "> 0" if positive_supports else "< 0",
        "n": sp.n,
        "effect": m,
        "lo": m - half,
        "hi": m + half,
        "level": 0.95,
        **sp.to_dict(),
        "p": p,
        "outcome": outcome,
        "verdict": verdict,
        "mde": mde,
        **design,
        **_values_out(v),
        **label,
    }


def equivalence(values, margin: float, **label) -> dict:
    """The equivalence rule (TOST) on per-seed (or per-seed, per-example) ``values``.

    Supported when TOST rejects at :data:`ALPHA` (both one-sided tests; the 90% interval lies
    inside ``+-margin``), contradicted when the 90% interval lies wholly outside ``+-margin``,
    else inconclusive. Only TOST's p-value is the test's ``p`` (the one a multiplicity
    correction takes).

    Args:
      values: ``(S,)`` or ``(S, N)``, as :func:`direction`'s.
      margin: the equivalence margin, > 0.
      **label: keys to add to the test (``metric``, ``predictor``, ``what``).

    Returns:
      A test dict like :func:`direction`'s, with ``margin``, the 90% interval in ``lo``/``hi``,
      ``p`` (TOST's: the larger one-sided p-value), ``p_outside`` (one-sided p-value that the
      effect lies beyond the margin on the side of the mean, for reading only), ``outside``
      (the 90% interval lies wholly outside ``+-margin``), ``outcome`` (supported: what a
      significant ``p`` means), ``verdict``, ``mde`` (the smallest margin shown at 80% power if
      the true effect were 0) and ``seeds_needed``/``examples_needed`` (for ``margin`` at the
      observed effect; None when the observed effect is at or beyond the margin).

    Raises:
      DropstudyError: as :func:`spread`, or if ``margin`` is not > 0.
    """
    v = np.asarray(values, dtype=np.float64)
    sp = spread(v)
    return {**_equivalence(sp, margin, **label), **_values_out(v)}


def equivalence_from(mean: float, sd: float, n: int, margin: float, **label) -> dict:
    """:func:`equivalence` from a per-seed sample's mean, standard deviation and size.

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
    if n < 2:
        raise DropstudyError(f"a test needs at least 2 seeds, got {n}")
    sp = Spread(float(mean), int(n), None, float(sd) ** 2)
    return {**_equivalence(sp, margin, **label), "values": None}


def _equivalence(sp: Spread, margin: float, **label) -> dict:
    if not margin > 0:
        raise DropstudyError(f"an equivalence margin must be > 0, got {margin}")
    m, se, df = sp.mean, sp.se(), sp.df()
    half = float(_st.t.ppf(1 - ALPHA, df) * se)
    lo, hi = m - half, m + half
    if se == 0:
        p_low = p_up = 0.0 if abs(m) < margin else 1.0
        p_out = 0.0 if abs(m) > margin else 1.0
    else:
        p_low = float(_st.t.sf((m + margin) / se, df))  # H0: effect <= -margin
        p_up = float(_st.t.cdf((m - margin) / se, df))  # H0: effect >= +margin
        p_out = float(_st.t.sf((abs(m) - margin) / se, df))  # H0: |effect| <= margin
    p_tost = max(p_low, p_up)
    outside = bool(lo > margin or hi < -margin)
    verdict = SUPPORTED if p_tost < ALPHA else CONTRADICTED if outside else INCONCLUSIVE
    if se == 0:
        mde = 0.0
    else:
        top = 2 * (_st.t.ppf(1 - ALPHA, df) + 40) * se
        mde = float(_opt.brentq(lambda d: _power_tost(0.0, d, se, df) - POWER, 1e-12 * se, top))
    design = (
        {"seeds_needed": None, "examples_needed": None}
        if abs(m) >= margin
        else _design(sp, lambda s, d: _power_tost(m, margin, s, d))
    )
    return {
        "rule": "equivalence",
        "margin": margin,
        "n": sp.n,
        "effect": m,
        "lo": lo,
        "hi": hi,
        "level": 1 - 2 * ALPHA,
        "sd": math.sqrt(sp.var_seed),
        **sp.to_dict(),
        "p": p_tost,
        "p_outside": p_out,
        "outside": outside,
        "outcome": SUPPORTED,
        "verdict": verdict,
        "mde": mde,
        **design,
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


def _adjust(pvalues: list[float | None], method: str) -> list[float | None]:
    """statsmodels' ``multipletests`` over the p-values that are not None, in their order."""
    from statsmodels.stats.multitest import multipletests

    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out = list(pvalues)
    if idx:
        adj = multipletests([pvalues[i] for i in idx], alpha=ALPHA, method=method)[1]
        for i, a in zip(idx, adj, strict=True):
            out[i] = float(a)
    return out


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error), as statsmodels computes them.

    The same arithmetic as ``multipletests(method="holm")`` (sorted p-values times m, m-1,
    ..., 1, made monotone, capped at 1), done here because statsmodels' Holm branch runs a
    full garbage collection on every call: a report adjusts dozens of families, and in a
    process that holds JAX's objects each collection costs tenths of a second.
    ``tests/test_stats.py`` checks the two equal bit for bit.

    Args:
      pvalues: the p-values; None entries (exact checks) are skipped.

    Returns:
      The adjusted p-values in the same order, None where the input has None.
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out = list(pvalues)
    if idx:
        p = np.asarray([pvalues[i] for i in idx], dtype=float)
        order = np.argsort(p)
        adj = np.minimum(np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1)), 1.0)
        for i, a in zip(np.asarray(idx)[order], adj, strict=True):
            out[i] = float(a)
    return out


def bh(pvalues: list[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), by statsmodels.

    Reported beside :func:`holm`'s so that a reader sees which verdicts depend on the
    correction chosen.

    Args:
      pvalues: the p-values; None entries (exact checks) are skipped.

    Returns:
      The adjusted p-values in the same order, None where the input has None.
    """
    return _adjust(pvalues, "fdr_bh")


def decide_unguarded(test: dict, p_adjusted: float | None) -> str:
    """A test's own verdict at ``p_adjusted``, before the protocol's guard (:func:`decide`).

    Args:
      test: a test dict.
      p_adjusted: the p-value it is decided at.

    Returns:
      Its verdict by its rule alone.
    """
    if test["rule"] == "exact":
        return test["verdict"]
    if p_adjusted < ALPHA:
        return test["outcome"]
    if test["rule"] == "equivalence":
        # from the interval itself, so a test without ``outside`` is decided the same way
        m = test["margin"]
        if test.get("outside", test["lo"] > m or test["hi"] < -m):
            return CONTRADICTED
    return INCONCLUSIVE


def held_reasons(test: dict, p_adjusted: float) -> list[str]:
    """Why the training protocol holds a test inconclusive at ``p_adjusted``; empty if it does not.

    A test guarded by the protocol (:func:`.protocol.guard`) carries its twin on the nets
    selected within 2W (``within_2w``) and the arms that did not converge
    (``not_converged``). It is held when an arm did not converge, or when its verdict and its
    twin's differ at the same level: the twin's p-value scaled by the factor that adjustment
    applied to the test's own (``p_adjusted / p``).

    Args:
      test: a test dict.
      p_adjusted: the p-value its verdict is decided at (its own, or Holm-adjusted).

    Returns:
      The reasons, in words.
    """
    if "within_2w" not in test:
        return []
    reasons = list(test.get("not_converged", []))
    twin = test["within_2w"]
    factor = p_adjusted / test["p"] if test["p"] > 0 else 1.0
    v, v2 = decide_unguarded(test, p_adjusted), decide_unguarded(twin, min(1.0, twin["p"] * factor))
    if v != v2:
        reasons.append(
            f"budget-dependent: {v} within W, {v2} within 2W ({twin['effect']:.4g} "
            f"[{twin['lo']:.4g}, {twin['hi']:.4g}] ({round(100 * twin['level'])}%))"
        )
    return reasons


def decide(test: dict, p_adjusted: float | None) -> str:
    """A test's verdict at the adjusted p-value.

    Args:
      test: a test dict.
      p_adjusted: its adjusted p-value (:func:`holm`); None for an exact check.

    Returns:
      Inconclusive when the training protocol holds the test (:func:`held_reasons`: an arm
      that did not converge, or a verdict that differs within twice the budget); else its
      outcome when significant (below :data:`ALPHA`); else, for an equivalence test whose 90%
      interval lies wholly outside the margin, contradicted; else inconclusive. Exact checks
      keep their verdict.
    """
    if test["rule"] != "exact" and held_reasons(test, p_adjusted):
        return INCONCLUSIVE
    return decide_unguarded(test, p_adjusted)


def excludes_zero(t: dict) -> bool:
    """Whether a test's interval (95% for direction, 90% for equivalence) excludes 0.

    Args:
      t: a test dict.

    Returns:
      True when its interval lies wholly above or below 0; False for an exact check.
    """
    return t["rule"] != "exact" and (t["lo"] > 0 or t["hi"] < 0)


def sign_flip(a: dict, b: dict) -> bool:
    """Whether two tests of the same quantity disagree in sign, each interval excluding 0.

    E.g. by weight scaling and by the MC average: a finding to report. Opposite point
    estimates with one interval containing 0 are not a flip: that one may have either sign.

    Args:
      a: a test dict.
      b: a test dict of the same quantity by another predictor.

    Returns:
      True when their effects have opposite signs and both intervals exclude 0.
    """
    return a["effect"] * b["effect"] < 0 and excludes_zero(a) and excludes_zero(b)


def fmt(ci: dict, digits: int = 3) -> str:
    """``mean [lo, hi]`` for tables.

    Args:
      ci: ``{"mean", "lo", "hi"}``.
      digits: decimal places.

    Returns:
      The text.
    """
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"
