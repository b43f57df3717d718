"""Factorised exact average for :class:`~dropstudy.models.MLP`.

The generic exact average runs a full forward pass per subnetwork. For an MLP most of that
work does not depend on the last dropout layer's mask: with ``a`` the last hidden
activation (``(B, H)``, which depends only on the earlier masks), the logits of the
subnetwork with last-layer mask ``m`` are

    z[m, c, b] = base[c, b] + sum_j m_j t[j, c, b],    t[j, c, b] = s_j a[b, j] W[j, c]

with ``s`` the convention's scale. The masks split into *outer* ones (input, earlier layers,
and the last layer's units beyond the inner block), one per scan step, and ``D`` *inner*
units of the last layer, whose ``2^D`` states are handled at once.

Classification needs no exponential per subnetwork. Since ``z`` is affine in the inner mask,
``exp(z[m]) = exp(base) * prod over kept j of exp(t_j)``. The inner units split in two: the
first ``lo`` (by default two thirds), whose ``Nl`` states form a table ``L`` by products of
``2 lo`` exponentials (doubling over the units), and the rest, whose few ``Nh`` states each
get their exponential ``H`` directly. Inner mask ``(h, l)`` has the values
``H[h, c, b] L[l, c, b]``, so the normaliser is a contraction over the classes,
``S[b, h, l] = sum_c H[h, c, b] L[l, c, b]``, and

    E[p]      = sum_{h,l} H[h] (p_hl / S[h, l]) L[l]     (one reciprocal per (mask, example))
    E[log p]  = base + E[m] @ t  -  (E[log S] + shift)    (z is linear in the mask)

are matrix products per example: the ``(2^D, C, B)`` table of values is never built (with
fewer than ``CONTRACT_CLASSES`` classes it is, and summed: a contraction over two classes
costs more than the table).

A reference class first: a softmax does not change when a constant per (subnetwork,
example) is subtracted from every class, so ``base`` and each ``t_j`` are taken relative to
one class ``r[b]`` per outer mask and example, the one that wins at the inner units' mean
mask: ``t_j[c, b] - t_j[r[b], b]``. Class ``r`` then has the same logit in every inner
subnetwork, and a trained net, whose units mostly push its predicted class up, keeps every
other class near or below it: the confident logits that spread over hundreds (a binary
task's, a net trained long) mostly cancel (``benchmarks/RESULTS.md`` shows trained nets'
spreads with and without it). ``E[log p]`` and ``E[p]`` are unchanged; regression keeps the
raw outputs.

Overflow: every factor is taken relative to the largest logit a subnetwork can reach. The
high part is exact per state ``h`` (its units' contributions summed by a small matrix
product), the low part bounded:
``top[h, c, b] = base + sum_{high kept in h} t_j + sum_{low j} max(t_j, 0)``, shifted by its
max over the classes, ``shift[h, b]``. Then ``H = exp(top - shift) <= 1``, a kept low unit
contributes ``exp(min(t_j, 0))`` and a dropped one ``exp(-max(t_j, 0))``, both <= 1, so no
product exceeds 1 and none is smaller than the final value. Underflow: a class whose final
value falls below float32's smallest normal number (``exp(-87.3)``) becomes 0, and that
loses at most ``exp(spread - 87.3)`` of its probability (``C - 1`` times that in all), where
the spread is the widest gap between a shift and the largest logit of a subnetwork under it
(whose own value keeps the normaliser ``>= exp(-spread)``); only the low part's units widen
it. The kernel measures it; with the default ``lo = 2D // 3`` low units it is below
``SAFE_SPREAD = 60`` (loss ``<= 1.4e-12``) for the trained nets we know of. Past it, units
move from the low part to the high one until a cheap pass over the outer masks
(:func:`max_spread`, no tables) finds the spread below the limit (:func:`choose_low`), and
the kernel runs again; fewer low units cost more exponentials (``2^(D - lo)`` per class and
example; with none, every inner subnetwork has its own exact shift and the spread is 0).
Below ``MIN_LOW_UNITS`` low units an exponential per logit (every subnetwork its own max)
is faster and takes over, as it does should the kernel ever disagree with the pass: no
logit is too large, only the rare net that spreads that far runs at that path's speed.

``D`` is chosen so one outer step's block stays within a budget: the normalisers and tables
here (:func:`products_floats`; ``PRODUCTS_FLOATS`` with many classes, ``TABLE_FLOATS`` with
few; with fewer low units than the default, inner units move to the outer ones until it
fits, :func:`fit_block`), the ``(2^D, C, B)`` logits on the exponential path
(``TABLE_FLOATS``). The outer masks are dealt out over the devices of a mesh when one is
given (each device sums its share, then one ``psum``), and every running sum is compensated
(Kahan), so thousands of outer steps do not drift.
"""

from __future__ import annotations

import functools
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from . import masks as M
from . import sharding
from .average import Average, kahan_add
from .models import MLP
from .progress import masked_scan, run

HIGHEST = jax.lax.Precision.HIGHEST  # full float32 products (no TF32 on a GPU)

MAX_INNER_UNITS = 12  # 4096 inner subnetworks per outer step, at most
TABLE_FLOATS = 2**20  # one step's (inner masks, classes, examples) block: ~4 MB in float32
# Past this spread a class could underflow with more than exp(60 - 87.3) ~ 1.4e-12 of
# probability (87.3 = -log of float32's smallest normal): then fewer low units.
SAFE_SPREAD = 60.0
# Below this many low units the products lose to an exponential per logit: 2^(D - lo) high
# states each take an exponential per class and example (half or more of the 2^D the
# exponential path takes at lo <= 1), and the contractions come on top (measured: at lo = 0
# about twice the exponential path's time).
MIN_LOW_UNITS = 3
# From this many classes on, the products path contracts over the classes per example
# (batched matrix products); below, it builds the small (masks, classes, examples) table.
CONTRACT_CLASSES = 4
# The contracting products' block (normalisers and tables): ~16 MB in float32. On a 2-core
# CPU, MNIST-1D's 1000 test signals x 10 classes ran fastest near it (10-11 inner units;
# 8 took 1.5x the time, 6 three times).
PRODUCTS_FLOATS = 2**22


def _last_drop(model: MLP) -> str:
    return model.dropout_layers()[-1]


def low_units(d: int) -> int:
    """Inner units in the low part (the product table): two thirds of ``d``.

    So that the high part's few states (each an exponential per class and example) stay few.

    Args:
      d: inner units.

    Returns:
      ``(2 * d) // 3``.
    """
    return (2 * d) // 3


def products_floats(d: int, n_out: int, batch: int, lo: int | None = None) -> int:
    """Floats of one outer mask's block on the products path.

    Args:
      d: inner units.
      n_out: classes ``C``.
      batch: examples ``B``.
      lo: low units (``None``: :func:`low_units` of ``d``).

    Returns:
      With ``CONTRACT_CLASSES`` or more classes the ``(B, 2^d)`` normalisers and the two
      tables (``(Nl + Nh) C B``), with fewer the ``(2^d, C, B)`` table of values and the high
      part's ``(Nh, C, B)``.
    """
    lo = low_units(d) if lo is None else lo
    if n_out < CONTRACT_CLASSES:
        return (2**d + 2 ** (d - lo)) * n_out * batch
    return batch * (2**d + (2**lo + 2 ** (d - lo)) * n_out)


def products_budget(n_out: int) -> int:
    """The products path's block budget, in floats.

    Args:
      n_out: classes ``C``.

    Returns:
      ``PRODUCTS_FLOATS`` where it contracts over the classes (``CONTRACT_CLASSES`` or more),
      else ``TABLE_FLOATS``.
    """
    return PRODUCTS_FLOATS if n_out >= CONTRACT_CLASSES else TABLE_FLOATS


def products_inner_size(n_out: int, batch: int) -> int:
    """Inner units per step on the products path.

    Args:
      n_out: classes ``C``.
      batch: examples ``B``.

    Returns:
      The most (up to ``MAX_INNER_UNITS``) whose block (:func:`products_floats`) fits its
      budget (:func:`products_budget`), and at least 1.
    """
    fits = [
        d
        for d in range(1, MAX_INNER_UNITS + 1)
        if products_floats(d, n_out, batch) <= products_budget(n_out)
    ]
    return max(fits, default=1)


def applies(model, spec: M.MaskSpec) -> bool:
    """Whether the factorised path can average ``model``.

    Args:
      model: the model.
      spec: its mask layout.

    Returns:
      True for an :class:`~dropstudy.models.MLP` with at least one hidden layer and droppable
      units in its last one. Not for a subclass: it may compute something else (its own
      ``__call__``), which only the generic path runs.
    """
    if type(model) is not MLP or not model.hidden or _last_drop(model) not in spec.names:
        return False
    last = M.layer_units(spec, _last_drop(model))
    return any(spec.keep[u] < 1.0 for u in last)


def inner_size(n_out: int, batch: int) -> int:
    """Inner units per step on the exponential path and for regression.

    Args:
      n_out: classes ``C`` (outputs, for regression).
      batch: examples ``B``.

    Returns:
      The most (up to ``MAX_INNER_UNITS``) whose table ``(2^D, n_out, batch)`` fits in
      ``TABLE_FLOATS``, and at least 1.
    """
    fit = math.floor(math.log2(max(TABLE_FLOATS // max(n_out * batch, 1), 1)))
    return max(1, min(MAX_INNER_UNITS, fit))


def split_units(
    model: MLP, spec: M.MaskSpec, max_inner: int = MAX_INNER_UNITS
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split the droppable flat units into outer and inner ones.

    Args:
      model: the MLP.
      spec: its mask layout.
      max_inner: the most inner units.

    Returns:
      ``(outer, inner)``: inner = up to ``max_inner`` droppable units of the last hidden
      layer, outer = every other droppable unit.
    """
    last = set(M.layer_units(spec, _last_drop(model)).tolist())
    inner = tuple(u for u in spec.droppable if u in last)[:max_inner]
    outer = tuple(u for u in spec.droppable if u not in set(inner))
    return outer, inner


def exact_mlp(
    model: MLP,
    variables: Any,
    x: jax.Array,
    spec: M.MaskSpec,
    *,
    task: str = "classification",
    mesh: Mesh | None = None,
    progress: bool | None = None,
) -> Average:
    """Exact average over all subnetworks of an MLP, factorised as in the module docstring.

    Args:
      model: the MLP.
      variables: the model's variables dict.
      x: inputs ``(B, d_in)``.
      spec: its mask layout.
      task: ``"classification"`` or ``"regression"``.
      mesh: a one-axis mesh to deal the outer masks out over its devices, or ``None``.
      progress: as :func:`dropstudy.progress.run` takes it (each pass of the kernel).

    Returns:
      An :class:`~dropstudy.average.Average` over ``count=2^n`` subnetworks (``n``
      droppable units).
    """
    # one pass of the kernel, on one device or dealt out over the mesh
    sums = partial(
        segmented_sums if mesh is None else partial(_sharded_sums, mesh=mesh), progress=progress
    )
    batch = x.shape[0]
    # The products' largest block is (2^D, B) normalisers, the exponential path's and
    # regression's a (2^D, C, B) table of logits: each path takes its own inner block.
    per_logit = split_units(model, spec, inner_size(model.n_out, batch))
    if task != "classification":
        outer, inner = per_logit
        s1, s2, _ = sums(
            model, spec, task=task, outer=outer, inner=inner, lo=None, variables=variables, x=x
        )
        return Average.from_sums(task, 2 ** (len(outer) + len(inner)), s1, s2)
    outer, inner = split_units(model, spec, products_inner_size(model.n_out, batch))
    # The default low part first: relative to the reference class a trained net's spread
    # is rarely near the limit, and the kernel measures its own spread, so the usual call
    # is one pass. A net past the limit pays that pass again with fewer low units.
    s1, s2, spread = sums(
        model, spec, task=task, outer=outer, inner=inner, lo=low_units(len(inner)),
        variables=variables, x=x,
    )  # fmt: skip
    if not float(spread) < SAFE_SPREAD:
        inner, lo = choose_low(
            model, spec, outer=outer, inner=inner, variables=variables, x=x, spread=float(spread)
        )
        if lo >= MIN_LOW_UNITS:
            outer, inner = fit_block(outer, inner, lo, model.n_out, batch)
            s1, s2, spread = sums(
                model, spec, task=task, outer=outer, inner=inner, lo=lo, variables=variables, x=x
            )
    # Logits so spread that fewer than MIN_LOW_UNITS units stay in the products (or, never
    # expected, a kernel that disagrees with max_spread): an exponential per logit.
    if not float(spread) < SAFE_SPREAD:
        outer, inner = per_logit
        s1, s2, _ = sums(
            model, spec, task=task, outer=outer, inner=inner, lo=None, variables=variables, x=x
        )
    return Average.from_sums(task, 2 ** (len(outer) + len(inner)), s1, s2)


def choose_low(
    model: MLP,
    spec: M.MaskSpec,
    *,
    outer,
    inner,
    variables: Any,
    x: jax.Array,
    spread: float | None = None,
) -> tuple[tuple[int, ...], int]:
    """The inner units' order and the most low units whose spread stays below ``SAFE_SPREAD``.

    At most :func:`low_units` of ``D`` low units.

    Args:
      model: the MLP.
      spec: its mask layout.
      outer: the outer flat units of :func:`split_units`.
      inner: the inner flat units of :func:`split_units`.
      variables: the model's variables.
      x: inputs ``(B, ...)``.
      spread: the spread at the default low part, when already measured (the kernel
        measures it); ``None``: one cheap pass (:func:`max_spread`) measures it.

    Returns:
      ``(inner, lo)`` for :func:`exact_sums`: ``inner`` as given when the default low part
      is safe, else reordered so that the units with the narrowest logit ranges
      (:func:`unit_ranges`) are the low ones, and ``lo`` in ``[0, low_units(D)]``. Each
      further try is one pass. The search stops below ``MIN_LOW_UNITS``: there the
      exponential path takes over (:func:`exact_mlp`), so a smaller ``lo`` is returned
      unchecked.
    """
    lo = low_units(len(inner))
    if spread is None and lo > 0:
        spread = float(
            max_spread(model, spec, outer=outer, inner=inner, lo=lo, variables=variables, x=x)
        )
    if lo == 0 or spread < SAFE_SPREAD:
        return inner, lo
    ranges = np.asarray(
        unit_ranges(model, spec, outer=outer, inner=inner, variables=variables, x=x)
    )
    inner = tuple(inner[i] for i in np.argsort(ranges, kind="stable"))
    while lo >= MIN_LOW_UNITS:
        spread = float(
            max_spread(model, spec, outer=outer, inner=inner, lo=lo, variables=variables, x=x)
        )
        if spread < SAFE_SPREAD:
            break
        # the spread grows about in proportion to the low units: jump to that proportion
        lo = min(lo - 1, math.floor(lo * 0.9 * SAFE_SPREAD / spread))
    return inner, max(lo, 0)


def fit_block(
    outer, inner, lo: int, n_out: int, batch: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Move the last inner units to the outer ones until the block fits its budget.

    The block with ``lo`` low units (:func:`products_floats`) must fit
    :func:`products_budget`: fewer low units mean more high states, ``2^(D - lo)``
    exponentials per class and example, and ``D`` was sized for the default low part. The
    last inner units are the widest, after :func:`choose_low`; at least ``max(lo, 1)`` stay
    inner.

    Args:
      outer: the outer flat units.
      inner: the inner flat units.
      lo: low units.
      n_out: classes ``C``.
      batch: examples ``B``.

    Returns:
      ``(outer, inner)``, the moved units sorted into ``outer``.
    """
    outer, inner = tuple(outer), tuple(inner)
    while len(inner) > max(lo, 1) and products_floats(
        len(inner), n_out, batch, lo
    ) > products_budget(n_out):
        outer, inner = tuple(sorted((*outer, inner[-1]))), inner[:-1]
    return outer, inner


def _max_over_outer(
    model, spec, *, outer, inner, variables, x, measure, shape, per_mask: int, reference=True
):
    """The elementwise max of ``measure(base, t)`` (of ``shape``) over every outer mask,
    ``per_mask`` the floats one mask's measure takes (it sizes the chunk of masks per step)."""
    hidden, split = _setup(
        model, spec, inner=inner, variables=variables, x=x, task="classification",
        reference=reference,
    )  # fmt: skip
    total = 2 ** len(outer)
    chunk = min(total, 256, max(1, PRODUCTS_FLOATS // per_mask))

    def body(mx, c):
        flat, _ = M.enumerate_units(spec, outer, c * chunk + jnp.arange(chunk), x.dtype)
        # indices past the end enumerate real masks again (bits wrap), so their values are real
        got = jax.vmap(lambda f: measure(*split(hidden(f))))(flat)
        return jnp.maximum(mx, jnp.max(got, axis=0)), None

    init = jnp.full(shape, -jnp.inf, x.dtype)
    return jax.lax.scan(body, init, jnp.arange(-(-total // chunk)))[0]


@partial(jax.jit, static_argnames=("model", "spec", "outer", "inner", "lo", "reference"))
def max_spread(model, spec, *, outer, inner, lo, variables, x, reference: bool = True):
    """The widest spread over every outer mask (module docstring), without the tables.

    The first ``lo`` inner units are low; one hidden pass per outer mask and the bounds of
    the inner logits.

    Args:
      model: the MLP.
      spec: its mask layout.
      outer: the outer flat units of :func:`split_units`.
      inner: the inner flat units of :func:`split_units`.
      lo: low units.
      variables: the model's variables.
      x: inputs ``(B, ...)``.
      reference: relative to the reference class, as the kernel measures it; false gives
        the raw logits' spread (to show what the reference class saves).

    Returns:
      A scalar: the spread.
    """
    shifts = _shifts(spec, inner, lo, x.dtype)
    per_mask = 2 ** (len(inner) - lo) * model.n_out * x.shape[0]  # one mask's (Nh, C, B)
    measure = lambda base, t: shifts(base, t)[2]  # noqa: E731
    return _max_over_outer(
        model, spec, outer=outer, inner=inner, variables=variables, x=x, measure=measure,
        shape=(), per_mask=per_mask, reference=reference,
    )  # fmt: skip


@partial(jax.jit, static_argnames=("model", "spec", "outer", "inner"))
def unit_ranges(model, spec, *, outer, inner, variables, x):
    """Each inner unit's widest logit range: how much the unit alone can widen a spread.

    The max over outer masks and examples of ``max_c t_j - min_c t_j`` (relative to the
    reference class).

    Args:
      model: the MLP.
      spec: its mask layout.
      outer: the outer flat units of :func:`split_units`.
      inner: the inner flat units of :func:`split_units`.
      variables: the model's variables.
      x: inputs ``(B, ...)``.

    Returns:
      ``(D,)``.
    """
    measure = lambda base, t: jnp.max(jnp.max(t, 1) - jnp.min(t, 1), axis=-1)  # noqa: E731
    per_mask = len(inner) * model.n_out * x.shape[0]
    shape = (len(inner),)
    return _max_over_outer(
        model, spec, outer=outer, inner=inner, variables=variables, x=x, measure=measure,
        shape=shape, per_mask=per_mask,
    )  # fmt: skip


def _setup(model, spec, *, inner, variables, x, task, reference: bool = True):
    """``hidden(flat_mask) -> a (B, H)`` and ``split(a) -> (base (C, B), t (D, C, B))``, for
    classification relative to the reference class (module docstring) unless
    ``reference`` is false."""
    dtype = x.dtype
    last = M.layer_units(spec, _last_drop(model))
    first_last = int(last[0])
    inner_local = np.asarray(inner) - first_last  # positions within the last layer
    scale = (
        1.0 / jnp.asarray(np.asarray(spec.keep)[last], dtype)
        if model.convention == "inverted"
        else jnp.ones(len(last), dtype)
    )
    is_inner = np.zeros(len(last), bool)
    is_inner[inner_local] = True
    out = variables["params"][model.dense_layers()[-1]]
    w_out, b_out = out["kernel"], out["bias"]  # (H, C), (C,)
    keep_in = jnp.asarray(np.asarray(spec.keep)[np.asarray(inner)], dtype)  # E[m], (D,)

    def hidden(flat):
        """Last hidden activation for one flat mask, masked and scaled except inner units."""
        a = M.apply(
            model,
            variables,
            x,
            spec.unflatten(flat),
            upto=len(model.hidden) - 1,
            method=MLP.features,
        )
        return a * (flat[first_last : first_last + len(last)] * scale)

    def split(a):
        """Mask-free logits (bias and outer units) and each inner unit's contribution."""
        base = (jnp.where(is_inner, 0.0, a) @ w_out + b_out).T
        t = jnp.einsum("bd,dc->dcb", a[:, inner_local], w_out[inner_local])
        if task != "classification" or not reference:
            return base, t
        # The class that wins at the inner units' mean mask, per example; every logit is
        # taken relative to it (a softmax is unchanged), which cancels most of a confident
        # net's spread.
        mean_logits = base + jnp.einsum("d,dcb->cb", keep_in, t)
        # one-hot (C, B) of the winning class; a sum over the classes picks its values (a
        # gather per outer mask ran far slower on CPU)
        pick = (mean_logits == jnp.max(mean_logits, axis=0)).astype(dtype)
        pick = pick * (jnp.cumsum(pick, axis=0) == 1)  # ties: the first class only
        base = base - jnp.sum(base * pick, axis=0)
        t = t - jnp.sum(t * pick, axis=1, keepdims=True)
        return base, t

    return hidden, split


def _bounds(base, t):
    """The largest and the smallest logit any inner mask reaches, ``(C, B)`` each:
    ``base`` plus the positive (negative) contributions. Summed unit by unit: D <= 12 adds
    fuse into one pass, where a reduction over the unit axis runs far slower on CPU."""
    upper, lower = base, base
    for j in range(t.shape[0]):
        upper = upper + jnp.maximum(t[j], 0.0)
        lower = lower + jnp.minimum(t[j], 0.0)
    return upper, lower


def inner_parts(spec, inner, lo, dtype):
    """The inner units' states in two parts: the first ``lo`` units (low) and the rest (high).

    The high part has few states: each costs an exponential per class and example, see
    :func:`_shifts`.

    Args:
      spec: the mask layout.
      inner: the ``D`` inner flat units.
      lo: low units, ``0 <= lo <= D``.
      dtype: float dtype.

    Returns:
      ``(m_high (Nh, D - lo), p_pair (Nh, Nl))``: inner mask ``l + Nl h`` (bit order of
      :func:`~dropstudy.masks.enumerate_units`) sets the low units by ``l`` and the high ones
      by ``h``, with probability ``p_pair[h, l]``.
    """
    d = len(inner)
    flat, p = M.enumerate_units(spec, inner, jnp.arange(2**d), dtype)
    m = flat[:, np.asarray(inner)]  # (2^D, D)
    return m[:: 2**lo, lo:], p.reshape(2 ** (d - lo), 2**lo)


def _shifts(spec, inner, lo, dtype):
    """``shifts(base, t) -> (top (Nh, C, B), shift (Nh, B), spread)``: per state ``h`` of the
    high part, ``top`` is the largest logit any state of the low part reaches (the high
    units' exact contribution plus the low units' positive ones), ``shift`` its max over the
    classes, and ``spread`` the widest gap between a shift and the largest logit of a
    subnetwork that shares it (module docstring). Shifting per high state, not per example,
    leaves only the low part's ``lo`` units in the spread."""
    m_high, _ = inner_parts(spec, inner, lo, dtype)

    def shifts(base, t):
        d = t.shape[0]
        upper, lower = _bounds(base, t[:lo])  # (C, B): low units at their extremes
        zh = jnp.matmul(m_high, t[lo:].reshape(d - lo, base.size), precision=HIGHEST)
        zh = zh.reshape(-1, *base.shape)  # (Nh, C, B): the high units' exact contributions
        top = zh + upper
        shift = jnp.max(top, axis=1)
        spread = jnp.max(shift - jnp.max(zh + lower, axis=1))
        return top, shift, spread

    return shifts


def product_table(f0, kept, dropped):
    """Products over ``d`` units by doubling.

    Row ``i`` takes ``kept[u]`` where bit ``u`` of ``i`` is set and ``dropped[u]`` where it
    is not (the bit order of :func:`~dropstudy.masks.enumerate_units`).

    Args:
      f0: the starting factor, ``(C, B)``.
      kept: each unit's factor when kept, ``(d, C, B)``.
      dropped: each unit's factor when dropped, ``(d, C, B)``.

    Returns:
      ``(2^d, C, B)``.
    """
    f = f0[None]
    for u in range(kept.shape[0]):
        f = jnp.concatenate([f * dropped[u], f * kept[u]])
    return f


def _schedule(*, task, outer, inner, lo, n_out, batch, n_dev) -> tuple[int, int]:
    """``(per_step, n_steps)``: outer masks per scan step of :func:`_partial_sums`, and its
    scan steps. Narrow last layers take several outer masks per step, so each step's block
    stays near the cache-sized table and the loop runs few iterations."""
    d = len(inner)
    total_outer = 2 ** len(outer)
    if task == "classification" and lo is not None:
        block, budget = products_floats(d, n_out, batch, lo), products_budget(n_out)
    else:
        block, budget = 2**d * n_out * batch, TABLE_FLOATS
    per_step = min(-(-total_outer // n_dev), max(1, budget // block))
    return per_step, -(-total_outer // (per_step * n_dev))


def _zero_carry(n_out, batch, dtype):
    """The carry :func:`_partial_sums` starts from: zero Kahan sums ``(C * B,)`` and a spread
    of ``-inf``."""
    z0 = jnp.zeros((n_out * batch,), dtype)
    return ((z0, z0), (z0, z0)), jnp.asarray(-jnp.inf, dtype)


def _partial_sums(
    model, spec, *, task, outer, inner, lo, variables, x, n_dev, dev, first=0, steps=None,
    carry=None,
):  # fmt: skip
    """This device's share of the weighted sums, as the carry ``(((s1, s2), compensations),
    spread)``, ``s1`` and ``s2`` each ``(C * B,)`` (class-major): outer masks ``dev, dev +
    n_dev, ...``; classification by the products with ``lo`` low units, or (``lo=None``) an
    exponential per logit. Scan steps ``first .. first + steps - 1`` (default: all) from
    ``carry`` (default: :func:`_zero_carry`), so :mod:`dropstudy.progress` can run it in
    segments."""
    dtype = x.dtype
    hidden, split = _setup(model, spec, inner=inner, variables=variables, x=x, task=task)
    n_out, batch = model.n_out, x.shape[0]
    d = len(inner)
    flat_in, p_in = M.enumerate_units(spec, inner, jnp.arange(2**d), dtype)
    m_in = flat_in[:, np.asarray(inner)]  # (Mi, D)
    n_in = m_in.shape[0]
    mean_m_in = p_in @ m_in  # (D,) = E[m] over the inner units
    products_path = task == "classification" and lo is not None
    if products_path:
        _, p_pair = inner_parts(spec, inner, lo, dtype)
        shifts = _shifts(spec, inner, lo, dtype)
    total_outer = 2 ** len(outer)
    per_step, n_steps = _schedule(
        task=task, outer=outer, inner=inner, lo=lo, n_out=n_out, batch=batch, n_dev=n_dev
    )

    def products(base, t):
        """Exp-free classification sums for one outer mask (module docstring), and the
        widest gap between a shift and a subnetwork's largest logit."""
        top, shift, spread = shifts(base, t)  # (Nh, C, B), (Nh, B)
        high = jnp.exp(top - shift[:, None, :])  # (Nh, C, B), each <= 1
        kept, dropped = jnp.exp(jnp.minimum(t[:lo], 0.0)), jnp.exp(-jnp.maximum(t[:lo], 0.0))
        low = product_table(jnp.ones_like(base), kept, dropped)  # (Nl, C, B), each <= 1
        # Inner mask (h, l) has the values high[h] * low[l], its normaliser their sum over
        # the classes.
        if n_out >= CONTRACT_CLASSES:
            # Many classes: contractions per example, never building the (masks, classes,
            # examples) table; the sums over masks are matrix products too.
            s = jnp.einsum("hcb,lcb->bhl", high, low, precision=HIGHEST)  # (B, Nh, Nl)
            w = p_pair[None] / s
            arith = jnp.einsum("hcb,bhl,lcb->cb", high, w, low, precision=HIGHEST)
        else:  # few classes: a contraction over 2 is all overhead; the table is small
            e = high[:, None] * low[None]  # (Nh, Nl, C, B)
            s = jnp.moveaxis(jnp.sum(e, axis=2), -1, 0)  # (B, Nh, Nl)
            w = p_pair[None] / s
            # the sum over masks as a matrix-vector product: far faster on CPU than a
            # strided reduce over the leading axes
            weighted = e * jnp.moveaxis(w, 0, -1)[:, :, None, :]
            arith = jnp.ones(n_in, dtype) @ weighted.reshape(n_in, -1)
        lse = jnp.einsum("hl,bhl->b", p_pair, jnp.log(s)) + jnp.sum(p_pair, 1) @ shift
        geo = jnp.einsum("d,dcb->cb", mean_m_in, t) + base - lse
        return arith.reshape(-1), geo.reshape(-1), spread

    def per_mask_max(base, t):
        """Every subnetwork's own max and an exponential per logit: the guard, should the
        products ever meet a spread past ``SAFE_SPREAD`` that their pass did not find."""
        z = (m_in @ t.reshape(d, -1) + base.reshape(1, -1)).reshape(n_in, n_out, batch)
        mx = jnp.max(z, axis=1, keepdims=True)
        e = jnp.exp(z - mx)
        se = jnp.sum(e, axis=1, keepdims=True)
        arith = p_in @ (e / se).reshape(n_in, -1)
        lse = p_in @ (jnp.log(se) + mx).reshape(n_in, batch)
        geo = jnp.einsum("d,dcb->cb", mean_m_in, t) + base - lse
        return arith, geo.reshape(-1), jnp.zeros((), dtype)

    def moments(base, t):
        """Regression: E[y] is linear in the mask; E[y^2] over the inner masks."""
        z = m_in @ t.reshape(d, -1) + base.reshape(1, -1)  # (Mi, C * B)
        mean = mean_m_in @ t.reshape(d, -1) + base.reshape(-1)
        return mean, p_in @ (z * z), jnp.zeros((), dtype)

    one = moments if task == "regression" else products if products_path else per_mask_max

    def body(carry, j):
        sums, spread = carry
        idx = (j * n_dev + dev) * per_step + jnp.arange(per_step)
        flat_o, p_o = M.enumerate_units(spec, outer, idx, dtype)
        p_o = jnp.where(idx < total_outer, p_o, 0.0)  # padding past the end weighs 0
        s1, s2, gap = jax.vmap(lambda f: one(*split(hidden(f))))(flat_o)
        # padded steps repeat real masks, so their gaps are real ones
        return (kahan_add(sums, (p_o @ s1, p_o @ s2)), jnp.maximum(spread, jnp.max(gap)))

    carry = _zero_carry(n_out, batch, dtype) if carry is None else carry
    steps = n_steps if steps is None else steps
    return masked_scan(body, carry, n_steps=n_steps, first=first, steps=steps)


def _to_rows(s, n_out, batch):
    return s.reshape(n_out, batch).T


@partial(jax.jit, static_argnames=("model", "spec", "task", "outer", "inner", "lo"))
def exact_sums(model, spec, *, task, outer, inner, lo, variables, x):
    """The compiled kernel behind :func:`exact_mlp` on one device.

    Args:
      model: the MLP.
      spec: its mask layout.
      task: ``classification`` or ``regression``.
      outer: the outer flat units of :func:`split_units`.
      inner: the inner flat units of :func:`split_units`.
      lo: classification's low units (:func:`choose_low`), or ``None`` for an exponential
        per logit (each subnetwork its own max; regression ignores it).
      variables: the model's variables.
      x: inputs ``(B, ...)``.

    Returns:
      ``(s1, s2, spread)``: the sums ``(B, C)`` each for :meth:`Average.from_sums`, and the
      widest spread met (the products are safe when it is below ``SAFE_SPREAD``). Exposed
      for profiling with ``.lower(...)``.
    """
    ((s1, s2), _), spread = _partial_sums(
        model, spec, task=task, outer=outer, inner=inner, lo=lo, variables=variables, x=x,
        n_dev=1, dev=0,
    )  # fmt: skip
    return _to_rows(s1, model.n_out, x.shape[0]), _to_rows(s2, model.n_out, x.shape[0]), spread


@partial(jax.jit, static_argnames=("model", "spec", "task", "outer", "inner", "lo"))
def exact_segment(model, spec, *, task, outer, inner, lo, steps, variables, x, first, carry):
    """Scan steps ``first .. first + steps - 1`` of :func:`exact_sums` from ``carry``.

    Args:
      model: the MLP.
      spec: its mask layout.
      task: ``classification`` or ``regression``.
      outer: the outer flat units of :func:`split_units`.
      inner: the inner flat units of :func:`split_units`.
      lo: low units, or ``None``, as :func:`exact_sums` takes them.
      steps: scan steps in this segment (traced: one compile serves every segment).
      variables: the model's variables.
      x: inputs ``(B, ...)``.
      first: the first step.
      carry: the carry before it (zeros and a spread of ``-inf`` at step 0).

    Returns:
      The carry after the segment: ``(((s1, s2), compensations), spread)``.
    """
    return _partial_sums(
        model, spec, task=task, outer=outer, inner=inner, lo=lo, variables=variables, x=x,
        n_dev=1, dev=0, first=first, steps=steps, carry=carry,
    )  # fmt: skip


def _desc(outer, inner) -> str:
    return f"exact average over {2 ** (len(outer) + len(inner)):,} subnetworks"


def _counted(outer, inner, per_step: int, n_dev: int) -> tuple[int, int]:
    """Subnetworks per scan step (every device's) and in all, for the progress bar."""
    return per_step * 2 ** len(inner) * n_dev, 2 ** (len(outer) + len(inner))


def segmented_sums(model, spec, *, task, outer, inner, lo, variables, x, progress=None):
    """:func:`exact_sums` run in segments (:func:`dropstudy.progress.run`): the same sums bit
    for bit, with a time estimate and a progress bar for long runs.

    Args:
      model: the MLP.
      spec: its mask layout.
      task: ``classification`` or ``regression``.
      outer: the outer flat units of :func:`split_units`.
      inner: the inner flat units of :func:`split_units`.
      lo: low units, or ``None``, as :func:`exact_sums` takes them.
      variables: the model's variables.
      x: inputs ``(B, ...)``.
      progress: as :func:`dropstudy.progress.run` takes it.

    Returns:
      ``(s1, s2, spread)`` as :func:`exact_sums` returns them.
    """
    n_out, batch = model.n_out, x.shape[0]
    per_step, n_steps = _schedule(
        task=task, outer=outer, inner=inner, lo=lo, n_out=n_out, batch=batch, n_dev=1
    )
    f = partial(exact_segment, model, spec, task=task, outer=outer, inner=inner, lo=lo)
    carry = run(
        lambda c, first, steps: f(steps=steps, variables=variables, x=x, first=first, carry=c),
        _zero_carry(n_out, batch, x.dtype), n_steps, desc=_desc(outer, inner),
        progress=progress, subnetworks=_counted(outer, inner, per_step, 1),
    )  # fmt: skip
    ((s1, s2), _), spread = carry
    return _to_rows(s1, n_out, batch), _to_rows(s2, n_out, batch), spread


def _sharded_sums(model, spec, *, task, outer, inner, lo, variables, x, mesh, progress=None):
    """:func:`segmented_sums` with the outer masks dealt out over ``mesh``'s devices (a
    carry per device), then ``psum`` (the spread: ``pmax``)."""
    n_out, batch = model.n_out, x.shape[0]
    per_step, n_steps = _schedule(
        task=task, outer=outer, inner=inner, lo=lo, n_out=n_out, batch=batch, n_dev=mesh.size
    )
    f = _sharded_kernel(model, spec, task=task, outer=outer, inner=inner, lo=lo, mesh=mesh)
    variables, x = sharding.replicate((variables, jnp.asarray(x)), mesh)
    carry = run(
        lambda c, first, steps: f(variables, x, first, steps, c),
        sharding.per_device(_zero_carry(n_out, batch, x.dtype), mesh), n_steps,
        desc=_desc(outer, inner), progress=progress,
        subnetworks=_counted(outer, inner, per_step, mesh.size),
    )  # fmt: skip
    (sums, _), spread = carry
    s1, s2 = sharding.psum_per_device(sums, mesh)
    spread = jnp.max(sharding.gather(spread))
    return _to_rows(s1, n_out, batch), _to_rows(s2, n_out, batch), spread


@functools.lru_cache(maxsize=32)
def _sharded_kernel(model, spec, *, task, outer, inner, lo, mesh):
    """The compiled, sharded segment (each device's carry its own), built once per static
    set-up (a new ``jax.jit`` of a new closure would compile again on every call)."""
    (axis,) = mesh.axis_names
    n_dev = mesh.shape[axis]

    def local(variables, x, first, steps, carry):
        return _partial_sums(
            model, spec, task=task, outer=outer, inner=inner, lo=lo, variables=variables, x=x,
            n_dev=n_dev, dev=jax.lax.axis_index(axis), first=first, steps=steps, carry=carry,
        )  # fmt: skip

    return sharding.per_device_kernel(local, mesh, n_shared=4)
