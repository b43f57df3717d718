"""The one result type every predictor returns, and the streamed sums behind it.

Like optax's ``GradientTransformation``, :class:`Average` is the shape everything shares:
weight scaling (one network), Monte-Carlo and exact averages (many subnetworks), an average
over given masks, sharded or not, all return one. The reduction is a stream of chunks of
``(masks, weights)``: each chunk of subnetworks is evaluated with ``vmap`` and folded into
running sums inside ``lax.scan``, so memory is bounded by the chunk size and nothing of size
``2^n x batch x classes`` exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from . import masks as M
from .progress import masked_scan, run
from .validate import (
    TASKS,
    DropstudyError,
    check_array,
    check_choice,
    check_hashable,
    check_positive_int,
)

CHUNK_ELEMENTS = 2**22  # floats per chunk-sized intermediate: about 16 MB in float32
MEANS = ("arithmetic", "geometric")


@dataclass(frozen=True)
class Average:
    """A prediction for a batch of ``B`` examples, averaged over ``count`` subnetworks.

    :attr:`geometric` ``(B, C)`` is the normalised geometric mean (NWGM),
    ``softmax(log_geometric)``; :meth:`probs` and :meth:`log_probs` give either
    classification mean by name.

    Attributes:
      task: ``"classification"`` (a binary net's average too, over its two classes) or
        ``"regression"``.
      count: the number of subnetworks averaged (1 for weight scaling, K for MC, ``2^n`` for
        the exact average).
      arithmetic: classification (``C`` classes): ``(B, C)`` mean probabilities.
      log_geometric: classification: ``(B, C)`` mean log-probabilities (the log of the
        unnormalised geometric mean).
      mean: regression: ``(B, n_out)`` mean of the outputs over subnetworks.
      var: regression: ``(B, n_out)`` variance of the outputs over subnetworks.
    """

    task: str
    count: int
    arithmetic: jax.Array | None = None
    log_geometric: jax.Array | None = None
    mean: jax.Array | None = None
    var: jax.Array | None = None

    @property
    def geometric(self) -> jax.Array:
        """The normalised geometric mean (NWGM) ``softmax(log_geometric)``, ``(B, C)``."""
        return jax.nn.softmax(self.log_geometric, axis=-1)

    @property
    def std(self) -> jax.Array:
        """Regression: the spread (standard deviation) of the outputs over subnetworks.

        ``(B, n_out)``: the square root of :attr:`var`.
        """
        return jnp.sqrt(self.var)

    def probs(self, mean: str = "arithmetic") -> jax.Array:
        """Class probabilities of the ``arithmetic`` or ``geometric`` mean.

        Args:
          mean: ``"arithmetic"`` or ``"geometric"``.

        Returns:
          ``(B, C)``.

        Raises:
          DropstudyError: for a regression average, or an unknown ``mean``.
        """
        self._need_classification()
        check_choice("mean", mean, MEANS)
        return self.arithmetic if mean == "arithmetic" else self.geometric

    def log_probs(self, mean: str = "arithmetic") -> jax.Array:
        """Log class probabilities of the ``arithmetic`` or ``geometric`` mean.

        Args:
          mean: ``"arithmetic"`` or ``"geometric"``.

        Returns:
          ``(B, C)``.

        Raises:
          DropstudyError: for a regression average, or an unknown ``mean``.
        """
        self._need_classification()
        check_choice("mean", mean, MEANS)
        if mean == "arithmetic":
            return jnp.log(self.arithmetic)
        return jax.nn.log_softmax(self.log_geometric, axis=-1)

    def _need_classification(self) -> None:
        if self.task != "classification":
            raise DropstudyError("probabilities belong to classification; use .mean and .var")

    @classmethod
    def of_one(cls, task: str, out: jax.Array) -> Average:
        """One network's outputs as an average over one subnetwork.

        Args:
          task: ``"classification"``, ``"binary"`` or ``"regression"``.
          out: the outputs ``(B, n_out)`` (logits for classification, ``(B, 1)`` for binary).

        Returns:
          An :class:`Average` with ``count=1``: both means are the softmax of ``out`` (binary:
          of its two-class logits, :func:`class_logits`); the spread is 0.
        """
        if task != "regression":
            out = class_logits(task, out)
            return cls(
                "classification",
                1,
                arithmetic=jax.nn.softmax(out, axis=-1),
                log_geometric=jax.nn.log_softmax(out, axis=-1),
            )
        return cls(task, 1, mean=out, var=jnp.zeros_like(out))

    @classmethod
    def from_sums(cls, task: str, count: int, s1: jax.Array, s2: jax.Array) -> Average:
        """An :class:`Average` from weighted sums over subnetworks.

        Args:
          task: ``"classification"``, ``"binary"`` (its sums are the two classes') or
            ``"regression"``.
          count: the number of subnetworks averaged.
          s1: ``E[p]`` (classification) or ``E[y]`` (regression), ``(B, n_out)``.
          s2: ``E[log p]`` (classification) or ``E[y^2]`` (regression), ``(B, n_out)``.

        Returns:
          The :class:`Average`; a regression variance ``E[y^2] - E[y]^2`` is clipped at 0.
        """
        if task != "regression":
            return cls("classification", count, arithmetic=s1, log_geometric=s2)
        return cls(task, count, mean=s1, var=jnp.maximum(s2 - s1 * s1, 0.0))


def check_inputs(model: nn.Module, variables: Any, x, task: str | None) -> jax.Array:
    """Validate a predictor's arguments.

    Args:
      model: the model (hashable; its ``validate()`` is run when it has one).
      variables: the model's variables dict.
      x: inputs ``(B, ...)``.
      task: ``"classification"``, ``"binary"``, ``"regression"`` or ``None`` (resolved
        later, from the model's outputs).

    Returns:
      ``x`` as a JAX array (integer or boolean inputs, pixel values say, as float32, as
      weight scaling's forward pass would take them).

    Raises:
      DropstudyError: if ``task`` is unknown, ``variables`` is not a variables dict, the
        model is not hashable or invalid, or ``x`` is not a non-empty, finite numeric batch.
    """
    if task is not None:
        check_choice("task", task, TASKS)
    M.check_variables(variables)
    check_hashable("the model", model)
    if hasattr(model, "validate"):
        model.validate()
    arr = check_array("x", x)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise DropstudyError(f"x must be a non-empty batch (B, ...), got shape {arr.shape}")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float32)
    return jnp.asarray(arr)


def default_chunk(x: jax.Array, width: int, total: int) -> int:
    """Subnetworks per chunk so one ``(chunk, B, width)`` intermediate stays near 16 MB.

    Args:
      x: inputs ``(B, ...)``.
      width: the widest per-example layer output.
      total: the number of subnetworks.

    Returns:
      The chunk, at least 1 and at most ``total``.
    """
    per = max(1, x.shape[0] * max(width, 1))
    return int(max(1, min(total, CHUNK_ELEMENTS // per)))


def widest(model: Any, variables: Any, x: jax.Array, spec: M.MaskSpec) -> int:
    """Largest per-example size of any layer's output (traced, not computed).

    A dense layer's width, a conv layer's spatial size times its channels. A linen model
    reports every layer's output; another model (an NNX net through
    :func:`dropstudy.nnx.pure`) reports its output, and its droppable layers' unit counts.

    Args:
      model: the model.
      variables: the model's variables dict.
      x: inputs ``(B, ...)``.
      spec: the model's mask layout.

    Returns:
      The size, at least 1.
    """
    masks = M.expected_masks(spec, x.dtype)
    if isinstance(model, nn.Module):
        _, state = jax.eval_shape(
            lambda: M.apply(
                model,
                variables,
                x[:1],
                masks,
                capture_intermediates=True,
                mutable=["intermediates"],
            )
        )
        outs = jax.tree.leaves(state.get("intermediates", {}))
    else:
        outs = [jax.eval_shape(lambda: M.apply(model, variables, x[:1], masks))]
    return max([1, *(math.prod(a.shape[1:]) for a in outs), *spec.sizes])


def resolve_chunk(
    model: nn.Module,
    variables: Any,
    x: jax.Array,
    spec: M.MaskSpec,
    *,
    total: int,
    chunk: int | None,
) -> int:
    """Subnetworks per scan step: ``chunk`` if given (validated), else :func:`default_chunk`.

    :func:`default_chunk` sizes it for the widest layer output (:func:`widest`).

    Args:
      model: the model.
      variables: the model's variables dict.
      x: inputs ``(B, ...)``.
      spec: the model's mask layout.
      total: the number of subnetworks.
      chunk: the chunk asked for, or ``None``.

    Returns:
      The chunk, never more than ``total``.

    Raises:
      DropstudyError: if ``chunk`` is given and is not an integer >= 1.
    """
    if chunk is None:
        chunk = default_chunk(x, widest(model, variables, x, spec), total)
    return min(check_positive_int("chunk", chunk), total)


def class_logits(task: str, out: jax.Array) -> jax.Array:
    """Logits over the classes: ``out`` itself, or for a binary net's one logit ``z`` the two
    classes' ``[0, z]``, whose softmax is ``[1 - sigmoid(z), sigmoid(z)]``.

    So a binary net averages as a two-class classifier: the arithmetic mean of
    ``sigmoid(z)``, and the normalised geometric mean ``sigmoid(E[z])``.

    Args:
      task: ``"classification"`` or ``"binary"``.
      out: the outputs ``(..., C)``, or ``(..., 1)`` for binary.

    Returns:
      ``(..., C)``, or ``(..., 2)`` for binary.
    """
    if task == "binary":
        return jnp.concatenate([jnp.zeros_like(out), out], axis=-1)
    return out


def n_terms(task: str, out_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the sums of :func:`weighted_terms` for outputs of ``out_shape``.

    Args:
      task: ``"classification"``, ``"binary"`` or ``"regression"``.
      out_shape: the model's output shape ``(B, n_out)``.

    Returns:
      ``out_shape``, with 2 classes for binary.
    """
    return (*out_shape[:-1], 2) if task == "binary" else tuple(out_shape)


def weighted_terms(task: str, out: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Subnetworks' weighted terms of :meth:`Average.from_sums`.

    Args:
      task: ``"classification"``, ``"binary"`` or ``"regression"``.
      out: the subnetworks' outputs, ``(..., n_out)`` (logits for classification, one
        logit for binary).
      w: the weights; they broadcast against ``out``.

    Returns:
      Classification ``(w p, w log p)`` from the logits (binary: from its two classes',
      :func:`class_logits`), regression ``(w y, w y^2)``, each of :func:`n_terms`' shape.
    """
    if task != "regression":
        logp = jax.nn.log_softmax(class_logits(task, out), axis=-1)
        return w * jnp.exp(logp), w * logp
    return w * out, w * out * out


def pairwise_sum(terms: jax.Array) -> jax.Array:
    """Sum ``terms`` over the leading axis by halving (pairwise summation).

    A float32 running sum of n terms drifts by up to ``n * eps``; pairwise summation's error
    grows like ``log2(n) * eps``, so K = 20,000 probabilities still sum to 1 within 1e-6.
    The adds are the same n; the halving costs ``log2(n)`` short passes.

    Args:
      terms: ``(n, ...)``.

    Returns:
      The sum, ``(...)``.
    """
    n = terms.shape[0]
    while n > 1:
        if n % 2:
            terms = jnp.concatenate([terms, jnp.zeros_like(terms[:1])])
            n += 1
        terms = terms[: n // 2] + terms[n // 2 :]
        n //= 2
    return terms[0]


def kahan_add(carry, terms):
    """One step of compensated (Kahan) summation for a pytree of running sums.

    The compensation keeps the low-order bits that a float32 add drops, so thousands of scan
    steps add no drift (XLA does not reassociate float adds, so ``(t - s) - y`` is not
    simplified away).

    Args:
      carry: ``(sums, compensations)``; start both at zeros.
      terms: the terms to add, the same pytree as ``sums``.

    Returns:
      The new carry ``(sums, compensations)``.
    """
    sums, comp = carry
    y = jax.tree.map(jnp.subtract, terms, comp)
    new = jax.tree.map(jnp.add, sums, y)
    comp = jax.tree.map(lambda t, s, y: (t - s) - y, new, sums, y)
    return new, comp


def scan_length(total: int, chunk: int, n_dev: int = 1) -> int:
    """Scan steps of :func:`partial_sums`: ``total`` subnetworks, ``chunk`` per step, dealt
    out over ``n_dev`` devices.

    Args:
      total: the number of subnetworks.
      chunk: subnetworks per scan step.
      n_dev: the number of devices sharing the work.

    Returns:
      ``ceil(ceil(total / chunk) / n_dev)``.
    """
    return math.ceil(math.ceil(total / chunk) / n_dev)


@partial(jax.jit, static_argnames=("model", "spec", "task"))
def zero_sums(model, spec, variables, x, task="classification"):
    """The carry :func:`partial_sums` starts from: ``((s1, s2), compensations)``, all zeros.

    Args:
      model: the model.
      spec: the model's mask layout.
      variables: the model's variables dict.
      x: inputs ``(B, ...)``.
      task: ``"classification"``, ``"binary"`` or ``"regression"``.

    Returns:
      Four zero arrays of the sums' shape (:func:`n_terms`: the model's output shape
      ``(B, n_out)``, 2 classes for binary), as ``((z, z), (z, z))`` (jitted: the model is
      traced once per set-up, not on every call).
    """
    out_shape = jax.eval_shape(
        lambda: M.apply(model, variables, x, M.expected_masks(spec, x.dtype))
    ).shape
    z = jnp.zeros(n_terms(task, out_shape), x.dtype)
    return (z, z), (z, z)


def partial_sums(
    model, spec, *, task, source, total, chunk, n_dev, variables, x, key, dev, first=0,
    steps=None, carry=None,
):  # fmt: skip
    """Weighted sums over this device's share of ``total`` subnetworks, ``chunk`` at a time.

    Device ``dev`` of ``n_dev`` takes chunks ``dev, dev + n_dev, ...``; summing the devices'
    results (``psum``) gives the full reduction. Sums within a chunk are pairwise and across
    chunks compensated, so neither a long chunk nor many chunks drift (:func:`pairwise_sum`,
    :func:`kahan_add`).

    Args:
      model: the model.
      spec: the model's mask layout.
      task: ``"classification"``, ``"binary"`` or ``"regression"``.
      source: ``"mc"``: mask ``i`` drawn from ``fold_in(key, i)``, weight ``1/total``;
        ``"exact"``: mask ``i`` is the binary expansion of ``i``, weight its probability.
      total: the number of subnetworks.
      chunk: subnetworks per scan step.
      n_dev: the number of devices sharing the work.
      variables: the model's variables dict.
      x: inputs ``(B, ...)``.
      key: the stream's PRNG key (``"mc"``; unused by ``"exact"``).
      dev: this device's index in ``[0, n_dev)``.
      first: the first scan step (:mod:`dropstudy.progress` runs the scan in segments).
      steps: scan steps to run (default: all :func:`scan_length` of them).
      carry: the carry before step ``first`` (default: :func:`zero_sums`).

    Returns:
      The carry ``((s1, s2), compensations)``, ``s1`` and ``s2`` each ``(B, n_out)``: this
      device's terms of :meth:`Average.from_sums` so far.
    """
    dtype = x.dtype
    n_steps = scan_length(total, chunk, n_dev)

    def masks_for(idx):
        if source == "mc":
            m = M.sample_mask_batch(spec, key, idx, dtype)
            w = jnp.full(idx.shape, 1.0 / total, dtype)
        else:
            m, w = M.enumerate_masks(spec, idx, dtype, max_units=31)
        return m, jnp.where(idx < total, w, 0.0)  # padding past `total` has weight 0

    def body(carry, j):
        idx = (j * n_dev + dev) * chunk + jnp.arange(chunk)
        m, w = masks_for(idx)
        out = jax.vmap(lambda mk: M.apply(model, variables, x, mk))(m)  # (chunk, B, n_out)
        a, g = weighted_terms(task, out, w[:, None, None])
        return kahan_add(carry, (pairwise_sum(a), pairwise_sum(g)))

    carry = zero_sums(model, spec, variables, x, task) if carry is None else carry
    steps = n_steps if steps is None else steps
    return masked_scan(body, carry, n_steps=n_steps, first=first, steps=steps)


@partial(jax.jit, static_argnames=("model", "spec", "task", "source", "total", "chunk"))
def stream(model, spec, *, task, source, total, chunk, variables, x, key):
    """The whole reduction on one device: ``(s1, s2)`` for :meth:`Average.from_sums`.

    Args:
      model: the model.
      spec: the model's mask layout.
      task: ``"classification"``, ``"binary"`` or ``"regression"``.
      source: ``"mc"`` or ``"exact"``, as in :func:`partial_sums`.
      total: the number of subnetworks.
      chunk: subnetworks per scan step.
      variables: the model's variables dict.
      x: inputs ``(B, ...)``.
      key: the stream's PRNG key (``"mc"``; unused by ``"exact"``).

    Returns:
      ``(s1, s2)``, each ``(B, n_out)``.
    """
    return partial_sums(
        model, spec, task=task, source=source, total=total, chunk=chunk, n_dev=1,
        variables=variables, x=x, key=key, dev=0,
    )[0]  # fmt: skip


@partial(jax.jit, static_argnames=("model", "spec", "task", "source", "total", "chunk"))
def stream_segment(
    model, spec, *, task, source, total, chunk, steps, variables, x, key, first, carry
):
    """Scan steps ``first .. first + steps - 1`` of :func:`stream` from ``carry``.

    Args:
      model: the model.
      spec: the model's mask layout.
      task: ``"classification"``, ``"binary"`` or ``"regression"``.
      source: ``"mc"`` or ``"exact"``, as in :func:`partial_sums`.
      total: the number of subnetworks.
      chunk: subnetworks per scan step.
      steps: scan steps in this segment (traced: one compile serves every segment).
      variables: the model's variables dict.
      x: inputs ``(B, ...)``.
      key: the stream's PRNG key.
      first: the first step.
      carry: the carry before it (:func:`zero_sums` at step 0).

    Returns:
      The carry after the segment.
    """
    return partial_sums(
        model, spec, task=task, source=source, total=total, chunk=chunk, n_dev=1,
        variables=variables, x=x, key=key, dev=0, first=first, steps=steps, carry=carry,
    )  # fmt: skip


def describe(source: str, total: int) -> str:
    """What a streamed average computes, for its estimate and progress bar.

    Args:
      source: ``"mc"`` or ``"exact"``.
      total: the number of subnetworks.

    Returns:
      E.g. ``"MC average over 1,000 subnetworks"``.
    """
    name = "MC average" if source == "mc" else "exact average"
    return f"{name} over {total:,} subnetworks"


def streamed(model, spec, *, task, source, total, chunk, variables, x, key, progress=None):
    """:func:`stream` run in segments (:func:`dropstudy.progress.run`): the same sums bit
    for bit, with a time estimate and a progress bar for long runs.

    Args:
      model: the model.
      spec: the model's mask layout.
      task: ``"classification"``, ``"binary"`` or ``"regression"``.
      source: ``"mc"`` or ``"exact"``, as in :func:`partial_sums`.
      total: the number of subnetworks.
      chunk: subnetworks per scan step.
      variables: the model's variables dict.
      x: inputs ``(B, ...)``.
      key: the stream's PRNG key (``"mc"``; unused by ``"exact"``).
      progress: as :func:`dropstudy.progress.run` takes it.

    Returns:
      ``(s1, s2)``, each ``(B, n_out)``.
    """

    def segment(carry, first, steps):
        return stream_segment(
            model, spec, task=task, source=source, total=total, chunk=chunk, steps=steps,
            variables=variables, x=x, key=key, first=first, carry=carry,
        )  # fmt: skip

    carry = run(
        segment, zero_sums(model, spec, variables, x, task), scan_length(total, chunk),
        desc=describe(source, total), progress=progress,
        subnetworks=(chunk, total),
    )  # fmt: skip
    return carry[0]
