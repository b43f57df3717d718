"""Three ways to turn one set of dropout-trained weights into a prediction.

* :func:`weight_scaling` — the network at the expected mask (one forward pass);
* :func:`mc` — a weighted average over K sampled subnetworks;
* :func:`exact` — the average over all ``2^n`` subnetworks, each weighted by its probability.

MC and exact are the same streaming reduction over a stream of ``(masks, weights)``: chunks
of subnetworks are evaluated with ``vmap`` and folded into running sums inside ``lax.scan``,
so memory is bounded by the chunk size and nothing of size ``2^n x batch x classes`` exists.

For classification the reduction keeps the arithmetic mean of the probabilities and the
mean log-probability (the log of the unnormalised geometric mean); the normalised geometric
mean (NWGM) is its softmax. For regression it keeps the mean and variance of the outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from . import masks as M
from .validate import (
    TASKS,
    DropstudyError,
    check_array,
    check_choice,
    check_positive_int,
)

CHUNK_ELEMENTS = 2**22  # floats per chunk-sized intermediate: about 16 MB in float32


@dataclass(frozen=True)
class Average:
    """An average over subnetworks, for a batch of ``B`` examples.

    Classification (``C`` classes): ``arithmetic`` ``(B, C)`` mean probabilities;
    ``log_geometric`` ``(B, C)`` mean log-probabilities; ``geometric`` ``(B, C)`` the
    normalised geometric mean, ``softmax(log_geometric)``.
    Regression: ``mean`` and ``var`` ``(B, n_out)`` of the outputs over subnetworks.
    ``count`` is the number of subnetworks averaged (K, or ``2^n``).
    """

    task: str
    count: int
    arithmetic: jax.Array | None = None
    log_geometric: jax.Array | None = None
    mean: jax.Array | None = None
    var: jax.Array | None = None

    @property
    def geometric(self) -> jax.Array:
        return jax.nn.softmax(self.log_geometric, axis=-1)


def _check_inputs(model: nn.Module, x, task: str) -> jax.Array:
    check_choice("task", task, TASKS)
    if hasattr(model, "validate"):
        model.validate()
    arr = check_array("x", x)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise DropstudyError(f"x must be a non-empty batch (B, ...), got shape {arr.shape}")
    return jnp.asarray(arr)


def weight_scaling(model: nn.Module, params: Any, x: jax.Array) -> jax.Array:
    """Outputs ``(B, n_out)`` of the network at its expected mask (logits for classifiers).

    Under the inverted convention this is the usual eval-mode forward pass; under the
    standard convention it multiplies each dropped layer's activations by its keep
    probability, i.e. scales the outgoing weights by p.
    """
    x = _check_inputs(model, x, "classification")
    spec = M.mask_spec(model, x)
    return _forward(model, params, x, M.expected_masks(spec, x.dtype))


@partial(jax.jit, static_argnames="model")
def _forward(model, params, x, masks):
    return M.apply(model, params, x, masks)


def default_chunk(x: jax.Array, width: int, total: int) -> int:
    """Subnetworks per chunk so one ``(chunk, B, width)`` intermediate stays near 16 MB."""
    per = max(1, x.shape[0] * max(width, 1))
    return int(max(1, min(total, CHUNK_ELEMENTS // per)))


def resolve_chunk(
    model: nn.Module, params: Any, x: jax.Array, spec: M.MaskSpec, total: int, chunk: int | None
) -> int:
    """Subnetworks per scan step: ``chunk`` if given (validated), else :func:`default_chunk`
    for the widest layer; never more than ``total``."""
    if chunk is None:
        n_out = _out_width(model, params, x, spec)
        chunk = default_chunk(x, max([n_out, *spec.sizes]), total)
    return min(check_positive_int("chunk", chunk), total)


def partial_sums(model, spec, task, source, total, chunk, n_dev, params, x, key, dev):
    """Weighted sums over this device's share of ``total`` subnetworks, ``chunk`` at a time.

    ``source="mc"``: mask ``i`` drawn from ``fold_in(key, i)``, weight ``1/total``.
    ``source="exact"``: mask ``i`` is the binary expansion of ``i``, weight its probability.
    Device ``dev`` of ``n_dev`` takes chunks ``dev, dev + n_dev, ...``; summing the devices'
    results (``psum``) gives the full reduction. Returns ``(s1, s2)``, each ``(B, n_out)``.
    """
    dtype = x.dtype
    n_chunks = math.ceil(total / chunk)

    def masks_for(idx):
        if source == "mc":
            m = M.sample_mask_batch(spec, key, idx, dtype)
            w = jnp.full(idx.shape, 1.0 / total, dtype)
        else:
            m, w = M.enumerate_masks(spec, idx, dtype, max_units=31)
        return m, jnp.where(idx < total, w, 0.0)  # padding past `total` has weight 0

    def body(sums, j):
        idx = (j * n_dev + dev) * chunk + jnp.arange(chunk)
        m, w = masks_for(idx)
        out = jax.vmap(lambda mk: M.apply(model, params, x, mk))(m)  # (chunk, B, n_out)
        if task == "classification":
            logp = jax.nn.log_softmax(out, axis=-1)
            a = jnp.einsum("k,kbc->bc", w, jnp.exp(logp))
            g = jnp.einsum("k,kbc->bc", w, logp)
        else:
            a = jnp.einsum("k,kbc->bc", w, out)
            g = jnp.einsum("k,kbc->bc", w, out * out)
        return (sums[0] + a, sums[1] + g), None

    out_shape = jax.eval_shape(
        lambda: M.apply(model, params, x, M.expected_masks(spec, dtype))
    ).shape
    z = jnp.zeros(out_shape, dtype)
    (s1, s2), _ = jax.lax.scan(body, (z, z), jnp.arange(math.ceil(n_chunks / n_dev)))
    return s1, s2


@partial(jax.jit, static_argnames=("model", "spec", "task", "source", "total", "chunk"))
def _stream(model, spec, task, source, total, chunk, params, x, key):
    """The whole reduction on one device."""
    return partial_sums(model, spec, task, source, total, chunk, 1, params, x, key, 0)


def _average(task: str, count: int, s1, s2) -> Average:
    if task == "classification":
        return Average(task, count, arithmetic=s1, log_geometric=s2)
    return Average(task, count, mean=s1, var=jnp.maximum(s2 - s1 * s1, 0.0))


def mc(
    model: nn.Module,
    params: Any,
    x: jax.Array,
    key: jax.Array,
    k: int,
    *,
    task: str = "classification",
    chunk: int | None = None,
) -> Average:
    """Monte-Carlo average over ``k`` subnetworks, each shared by the whole batch.

    Subnetwork ``i`` uses the mask ``sample_masks(spec, fold_in(key, i))``, so the first
    ``k`` of a larger run are the same subnetworks, whatever ``chunk`` is.
    """
    x = _check_inputs(model, x, task)
    k = check_positive_int("k (number of Monte-Carlo samples)", k)
    spec = M.mask_spec(model, x)
    chunk = resolve_chunk(model, params, x, spec, k, chunk)
    s1, s2 = _stream(model, spec, task, "mc", k, chunk, params, x, key)
    return _average(task, k, s1, s2)


def _out_width(model, params, x, spec) -> int:
    shape = jax.eval_shape(lambda: M.apply(model, params, x[:1], M.expected_masks(spec, x.dtype)))
    return int(shape.shape[-1])


def exact(
    model: nn.Module,
    params: Any,
    x: jax.Array,
    *,
    task: str = "classification",
    chunk: int | None = None,
    max_units: int = M.MAX_EXACT_UNITS,
    method: str = "auto",
) -> Average:
    """Exact average over all ``2^n`` subnetworks (``n`` droppable units), probability-weighted.

    Refused with a clear error when ``n > max_units``. ``method="generic"`` evaluates every
    subnetwork with a full forward pass (any linen model); ``"factorised"`` (MLPs only)
    reuses the work that does not depend on the last dropout layer's mask and does the rest
    as large matrix products, see :mod:`dropstudy.fast_exact`; ``"auto"`` picks the
    factorised path when it applies.
    """
    x = _check_inputs(model, x, task)
    spec = M.mask_spec(model, x)
    n = M.check_enumerable(spec, max_units)
    check_choice("method", method, ("auto", "generic", "factorised"))
    from . import fast_exact  # local: fast_exact builds on this module

    if method != "generic" and fast_exact.applies(model, spec):
        return fast_exact.exact_mlp(model, params, x, spec, task=task)
    if method == "factorised":
        raise DropstudyError(
            "method='factorised' needs a dropstudy MLP whose last hidden layer has droppable "
            "units; use method='generic'"
        )
    total = 2**n
    chunk = resolve_chunk(model, params, x, spec, total, chunk)
    s1, s2 = _stream(model, spec, task, "exact", total, chunk, params, x, jax.random.key(0))
    return _average(task, total, s1, s2)


@partial(jax.jit, static_argnames=("model", "spec", "k", "chunk"))
def _mc_logp(model, spec, k, chunk, params, x, key):
    """Log-probabilities ``(k, B, C)`` of subnetworks ``0..k-1`` of the stream from ``key``."""

    def body(_, c):
        m = M.sample_mask_batch(spec, key, c * chunk + jnp.arange(chunk), x.dtype)
        out = jax.vmap(lambda mk: M.apply(model, params, x, mk))(m)
        return None, jax.nn.log_softmax(out, axis=-1)

    _, logp = jax.lax.scan(body, None, jnp.arange(math.ceil(k / chunk)))
    return logp.reshape(-1, *logp.shape[2:])[:k]


def mc_curve(
    model: nn.Module, params: Any, x: jax.Array, key: jax.Array, ks, *, chunk: int | None = None
) -> dict[int, Average]:
    """Monte-Carlo averages for every K in ``ks`` from one stream of subnetworks (classification).

    The K-sample average is the prefix of the same stream that :func:`mc` uses, so
    ``mc_curve(...)[K]`` equals ``mc(..., K)`` up to summation order. Holds the
    ``(max K, B, C)`` log-probabilities in memory: meant for curves up to a few thousand K.
    """
    x = _check_inputs(model, x, "classification")
    ks = sorted({check_positive_int("K", int(k)) for k in ks})
    kmax = ks[-1]
    spec = M.mask_spec(model, x)
    chunk = resolve_chunk(model, params, x, spec, kmax, chunk)
    logp = _mc_logp(model, spec, kmax, chunk, params, x, key)
    arith = jnp.cumsum(jnp.exp(logp), axis=0)
    geo = jnp.cumsum(logp, axis=0)
    return {
        k: Average("classification", k, arithmetic=arith[k - 1] / k, log_geometric=geo[k - 1] / k)
        for k in ks
    }


def over_masks(
    model: nn.Module, params: Any, x: jax.Array, masks: M.Masks, weights=None
) -> Average:
    """Average over an explicit batch of K subnetworks (masks with a leading K axis).

    ``weights (K,)`` default to 1/K. For small K (fixed-mask ensembles): the ``(K, B, C)``
    outputs are held in memory.
    """
    x = _check_inputs(model, x, "classification")
    logp = jax.nn.log_softmax(jax.vmap(lambda m: _forward(model, params, x, m))(masks), axis=-1)
    k = logp.shape[0]
    w = jnp.full((k,), 1.0 / k, logp.dtype) if weights is None else jnp.asarray(weights)
    return Average(
        "classification",
        k,
        arithmetic=jnp.einsum("k,kbc->bc", w, jnp.exp(logp)),
        log_geometric=jnp.einsum("k,kbc->bc", w, logp),
    )
