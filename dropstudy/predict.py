"""Predictors: ways to turn one set of dropout-trained weights into a prediction.

Every predictor has the same shape, like every optax optimiser is a
``GradientTransformation``::

    predictor(model, variables, x, **options) -> Average

``variables`` is the model's variables dict (``{"params": ..., "batch_stats": ...}``, as
``model.init`` returns it, without the masks), ``x`` a batch ``(B, ...)``, and the result an
:class:`~dropstudy.average.Average` (classification: the arithmetic and geometric means'
probabilities; regression: the mean and spread over subnetworks; the number of
subnetworks averaged). They are registered by name in :data:`PREDICTORS`:

* ``weight_scaling`` — the network at the expected mask (one forward pass);
* ``mc`` — an average over K sampled subnetworks (``key=``, ``k=``);
* ``exact`` — the average over all ``2^n`` subnetworks, each weighted by its probability;
* ``over_masks`` — an average over given masks (``masks=``), e.g. a fixed-mask ensemble.

``mc`` and ``exact`` deal their subnetworks out over the devices of ``mesh=`` when given.
Adding a predictor is one function decorated with :func:`register` (and its test).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from . import fast_exact, fast_mc, sharding
from . import masks as M
from .average import (
    Average,
    check_inputs,
    class_logits,
    describe,
    partial_sums,
    resolve_chunk,
    scan_length,
    streamed,
    zero_sums,
)
from .models import MLP
from .progress import check_force, check_progress, check_work, run
from .validate import (
    DropstudyError,
    binary_shape_message,
    check_array,
    check_choice,
    check_key,
    check_positive_int,
)

Predictor = Callable[..., Average]
# Below this width a batched dense pass over many subnetworks beats one gathered
# subnetwork per step (measured on 2 CPU cores: about even at 64 units, 2x faster at 512).
GATHER_MIN_WIDTH = 64
PREDICTORS: dict[str, Predictor] = {}
# mc_curve's (max K, B, C) log-probabilities in memory: at most 1 GiB of float32.
MAX_CURVE_FLOATS = 2**28
# The MC stream numbers its subnetworks, and the padding of its last step, with 32-bit
# integers: the padding is less than k, so k up to 2^30 keeps every number below 2^31.
MAX_K = 2**30


def register(name: str) -> Callable[[Predictor], Predictor]:
    """Decorator: register ``fn(model, variables, x, **options) -> Average`` as ``name``.

    Args:
      name: the name to register the predictor under, in :data:`PREDICTORS`.

    Returns:
      The decorator; it registers ``fn`` and returns it unchanged.

    Raises:
      DropstudyError: when the decorator is applied, if a predictor named ``name`` is
        already registered.
    """

    def add(fn: Predictor) -> Predictor:
        if name in PREDICTORS:
            raise DropstudyError(f"a predictor named {name!r} is already registered")
        PREDICTORS[name] = fn
        return fn

    return add


def get(name: str) -> Predictor:
    """The predictor registered as ``name``.

    Args:
      name: a name in :data:`PREDICTORS`.

    Returns:
      The predictor, ``fn(model, variables, x, **options) -> Average``.

    Raises:
      DropstudyError: if no predictor is registered as ``name``.
    """
    return PREDICTORS[check_choice("predictor", name, tuple(PREDICTORS))]


def predict(name: str, model: nn.Module, variables: Any, x, **options) -> Average:
    """Run the predictor registered as ``name``: ``predict("mc", model, v, x, key=k, k=100)``.

    Args:
      name: a name in :data:`PREDICTORS`.
      model: the model.
      variables: the model's variables dict, without the masks.
      x: inputs ``(B, ...)``.
      **options: the predictor's keyword arguments.

    Returns:
      The predictor's :class:`~dropstudy.average.Average`.

    Raises:
      DropstudyError: if no predictor is registered as ``name``, or the predictor refuses
        its arguments.
    """
    return get(name)(model, variables, x, **options)


@partial(jax.jit, static_argnames="model")
def _forward(model, variables, x, masks):
    return M.apply(model, variables, x, masks)


def output_shape(model: nn.Module, variables: Any, x: jax.Array, spec: M.MaskSpec) -> tuple:
    """The model's output shape for one example at its expected mask (traced, not computed).

    Args:
      model: the model.
      variables: its variables dict.
      x: inputs ``(B, ...)``.
      spec: its mask layout.

    Returns:
      ``(1, ...)``. Variables of another model get flax's refusal here.
    """
    masks = M.expected_masks(spec, x.dtype)
    return tuple(jax.eval_shape(lambda: M.apply(model, variables, x[:1], masks)).shape)


def resolve_task(
    model: nn.Module, variables: Any, x: jax.Array, spec: M.MaskSpec, task: str | None
) -> str:
    """The task to average for, never guessed where a guess could be silently wrong.

    A softmax over one output is 1 for every input, so a one-output model (a regression
    net, or a binary classifier with one logit) averaged as a classifier would give
    probabilities of 1 everywhere: refused, naming what to do instead (``"binary"`` or
    ``"regression"``).

    Args:
      model: the model.
      variables: its variables dict.
      x: inputs ``(B, ...)``.
      spec: its mask layout.
      task: ``"classification"``, ``"binary"``, ``"regression"`` or ``None``.

    Returns:
      ``task``, or for ``None`` ``"classification"``.

    Raises:
      DropstudyError: if the model has one output and ``task`` is ``None`` or
        ``"classification"``, or ``task`` is ``"binary"`` and the model has more than one.
    """
    if task == "regression":
        return task
    n_out, ndim = getattr(model, "n_out", None), 2
    if not isinstance(n_out, int):  # another model: its output's width, traced
        out = output_shape(model, variables, x, spec)
        n_out, ndim = int(np.prod(out[1:])), len(out)
    if task == "binary":
        if n_out == 1 and ndim != 2:
            raise DropstudyError(binary_shape_message(out))
        if n_out != 1:
            raise DropstudyError(
                f"task='binary' takes a model with one output (the logit of class 1); "
                f"{type(model).__name__} has {n_out}: a model with one logit per class is "
                "task='classification'"
            )
        return task
    if n_out == 1:
        raise DropstudyError(
            f"{type(model).__name__} has one output: averaged as a classifier its softmax is "
            "1 for every input. Pass task='binary' for a binary classifier with one logit "
            "(sigmoid), or task='regression' for a regression net"
        )
    return task or "classification"


def _two_classes(model: MLP, variables: Any) -> tuple[MLP, Any]:
    """A binary MLP as the two-class MLP with the same probabilities: its output layer gains
    a zero column, so the logits are ``[0, z]`` (:func:`~dropstudy.average.class_logits`),
    and the MLP-only fast paths average it as a classifier."""
    name = model.dense_layers()[-1]
    out = variables["params"][name]
    two = {
        "kernel": jnp.concatenate([jnp.zeros_like(out["kernel"]), out["kernel"]], axis=1),
        "bias": jnp.concatenate([jnp.zeros_like(out["bias"]), out["bias"]]),
    }
    return model.clone(n_out=2), {**variables, "params": {**variables["params"], name: two}}


@register("weight_scaling")
def weight_scaling(
    model: nn.Module, variables: Any, x: jax.Array, *, task: str | None = None
) -> Average:
    """The network at its expected mask, as an average over one network (``count=1``).

    Under the inverted convention this is the usual eval-mode forward pass; under the
    standard convention it multiplies each dropped layer's activations by its keep
    probability, i.e. scales the outgoing weights by p. Its logits are
    ``model.apply(variables, x)`` (a dropout layer with no mask uses its expectation).

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers, or a
        :class:`dropstudy.nnx.Pure`.
      variables: the model's variables dict (``{"params": ..., ...}``), without the masks.
      x: inputs ``(B, ...)``; integer or boolean inputs are taken as float32.
      task: ``"classification"``, ``"binary"`` (one logit, averaged as the two classes
        ``[1 - sigmoid(z), sigmoid(z)]``) or ``"regression"``; ``None``: classification for a
        model with two or more outputs (one output is refused, see :func:`resolve_task`).

    Returns:
      An :class:`~dropstudy.average.Average` with ``count=1``: for classification both means
      are the softmax of the logits, ``(B, C)`` (binary: ``C = 2``); for regression the
      outputs ``(B, n_out)`` with variance 0.

    Raises:
      DropstudyError: if an argument is invalid.
    """
    x = check_inputs(model, variables, x, task)
    spec = M.mask_spec(model, x)
    task = resolve_task(model, variables, x, spec, task)
    return _plain(model, variables, x, spec, task)


def _plain(model, variables, x, spec, task) -> Average:
    """The network at its expected mask, ``count=1``: weight scaling, and every predictor's
    average of a network without dropout layers (the one subnetwork of itself)."""
    return Average.of_one(task, _forward(model, variables, x, M.expected_masks(spec, x.dtype)))


@register("mc")
def mc(
    model: nn.Module,
    variables: Any,
    x: jax.Array,
    *,
    key: jax.Array,
    k: int,
    task: str | None = None,
    chunk: int | None = None,
    mesh: Mesh | None = None,
    method: str = "auto",
    progress: bool | None = None,
    force: bool = False,
) -> Average:
    """Monte-Carlo average over ``k`` subnetworks, each shared by the whole batch.

    Subnetwork ``i`` uses the mask ``sample_masks(spec, fold_in(key, i))``, so the first
    ``k`` of a larger run are the same subnetworks, whatever the method or ``chunk``.
    ``method="dense"`` evaluates ``chunk`` subnetworks per step as one batched forward pass
    (any linen model); ``"gathered"`` (MLPs only) computes only the units each subnetwork
    keeps, one subnetwork per step, see :mod:`dropstudy.fast_mc`; ``"auto"`` takes the
    gathered path for an MLP whose widest hidden layer has at least ``GATHER_MIN_WIDTH`` (64)
    units, when no ``chunk`` is given. With ``mesh`` the subnetworks are dealt out over
    its devices (then one ``psum``).

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers, or a
        :class:`dropstudy.nnx.Pure`.
      variables: the model's variables dict (``{"params": ..., ...}``), without the masks.
      x: inputs ``(B, ...)``; integer or boolean inputs are taken as float32.
      key: a scalar PRNG key, the stream of subnetworks.
      k: the number of subnetworks.
      task: ``"classification"``, ``"binary"`` (one logit, averaged as the two classes
        ``[1 - sigmoid(z), sigmoid(z)]``) or ``"regression"``; ``None``: classification for a
        model with two or more outputs (one output is refused, see :func:`resolve_task`).
      chunk: subnetworks per step of the dense path (default: sized by
        :func:`~dropstudy.average.resolve_chunk`); the gathered path takes none.
      mesh: a one-axis ``jax.sharding.Mesh`` to deal the subnetworks out over.
      method: ``"auto"``, ``"dense"`` or ``"gathered"``.
      progress: ``None``: a progress bar when the run's estimate (timed on its segments
        after the first, :mod:`dropstudy.progress`) passes a few seconds on a terminal or in
        a notebook; ``True``: a bar after the first (compiling) segment; ``False``: none
        (and one segment).
      force: run even past the bound of :data:`dropstudy.progress.MAX_WORK` subnetworks x
        examples.

    Returns:
      An :class:`~dropstudy.average.Average` over ``count=k`` subnetworks: ``(B, C)`` means
      for classification, ``(B, n_out)`` mean and variance for regression. A model without
      dropout layers is its own one subnetwork: ``count=1``.

    Raises:
      DropstudyError: if an argument is invalid, ``k`` is past ``2^30`` (the stream
        numbers its subnetworks in 32 bits) or ``k`` times the examples past the bound
        without ``force``, ``method="gathered"`` is asked of a model it does not apply to or
        with a ``chunk``, or ``mesh`` is not a one-axis mesh.
    """
    x = check_inputs(model, variables, x, task)
    k = check_positive_int("k (number of Monte-Carlo samples)", k)
    if k > MAX_K:
        raise DropstudyError(
            f"k = {k:,} subnetworks is past the stream's {MAX_K:,} (2^30; subnetworks are "
            "numbered in 32 bits): average several runs with different keys instead"
        )
    progress, force = check_progress(progress), check_force(force)
    check_key("key", key)
    check_choice("method", method, ("auto", "dense", "gathered"))
    _check_mesh(mesh)
    spec = M.mask_spec(model, x)
    task = resolve_task(model, variables, x, spec, task)
    _check_fast(
        method, fast="gathered", general="dense", applies=fast_mc.applies(model, spec),
        needs="a dropstudy MLP with droppable units", chunk=chunk,
    )  # fmt: skip
    if not spec.paths:
        return _plain(model, variables, x, spec, task)
    check_work("this MC average", k, x.shape[0], force=force, fix="use a smaller k")
    gather = method == "gathered" or (
        method == "auto"
        and chunk is None
        and fast_mc.applies(model, spec)
        and max(model.hidden, default=0) >= GATHER_MIN_WIDTH
    )
    if gather:
        net, v, kind = model, variables, task
        if task == "binary":
            (net, v), kind = _two_classes(model, variables), "classification"
        s1, s2 = fast_mc.mc_average(
            net, spec, task=kind, k=k, variables=v, x=x, key=key, mesh=mesh, progress=progress
        )
        return Average.from_sums(task, k, s1, s2)
    chunk = resolve_chunk(model, variables, x, spec, total=k, chunk=chunk)
    if mesh is not None:
        return _sharded(
            model, spec, task=task, source="mc", total=k, chunk=chunk, variables=variables,
            x=x, key=key, mesh=mesh, progress=progress,
        )  # fmt: skip
    s1, s2 = streamed(
        model, spec, task=task, source="mc", total=k, chunk=chunk, variables=variables, x=x,
        key=key, progress=progress,
    )  # fmt: skip
    return Average.from_sums(task, k, s1, s2)


@register("exact")
def exact(
    model: nn.Module,
    variables: Any,
    x: jax.Array,
    *,
    task: str | None = None,
    chunk: int | None = None,
    max_units: int = M.MAX_EXACT_UNITS,
    method: str = "auto",
    mesh: Mesh | None = None,
    progress: bool | None = None,
    force: bool = False,
) -> Average:
    """Exact average over all ``2^n`` subnetworks (``n`` droppable units), probability-weighted.

    ``method="generic"`` evaluates every subnetwork with a full forward pass (any linen
    model); ``"factorised"`` (MLPs only) reuses the work that does not depend on the last
    dropout layer's mask and needs no exponential per subnetwork, see
    :mod:`dropstudy.fast_exact`; ``"auto"`` picks the factorised path when it applies and no
    ``chunk`` is given. With ``mesh`` either path deals its work out over the mesh's devices
    (the generic path its chunks, the factorised one its outer masks), then one ``psum``.

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers, or a
        :class:`dropstudy.nnx.Pure`.
      variables: the model's variables dict (``{"params": ..., ...}``), without the masks.
      x: inputs ``(B, ...)``; integer or boolean inputs are taken as float32.
      task: ``"classification"``, ``"binary"`` (one logit, averaged as the two classes
        ``[1 - sigmoid(z), sigmoid(z)]``) or ``"regression"``; ``None``: classification for a
        model with two or more outputs (one output is refused, see :func:`resolve_task`).
      chunk: subnetworks per step; applies to the generic path only (default: sized by
        :func:`~dropstudy.average.resolve_chunk`).
      max_units: the most droppable units allowed.
      method: ``"auto"``, ``"generic"`` or ``"factorised"``.
      mesh: a one-axis ``jax.sharding.Mesh`` to deal the work out over.
      progress: ``None``: a progress bar when the run's estimate (timed on its segments
        after the first, :mod:`dropstudy.progress`) passes a few seconds on a terminal or in
        a notebook; ``True``: a bar after the first (compiling) segment; ``False``: none
        (and one segment).
      force: run even past the bound of :data:`dropstudy.progress.MAX_WORK` subnetworks x
        examples.

    Returns:
      An :class:`~dropstudy.average.Average` over ``count=2^n`` subnetworks: ``(B, C)``
      means for classification, ``(B, n_out)`` mean and variance for regression (``count=1``
      for a model without dropout layers).

    Raises:
      DropstudyError: refused with a clear error when ``n > max_units``, or ``2^n`` times
        the examples is past the bound without ``force``; also if an argument is invalid,
        ``method="factorised"`` is asked of a model it does not apply to or with a
        ``chunk``, ``mesh`` is not a one-axis mesh, or the variables do not fit the model.
    """
    x = check_inputs(model, variables, x, task)
    progress, force = check_progress(progress), check_force(force)
    check_choice("method", method, ("auto", "generic", "factorised"))
    _check_mesh(mesh)
    spec = M.mask_spec(model, x)
    task = resolve_task(model, variables, x, spec, task)
    _check_fast(
        method, fast="factorised", general="generic", applies=fast_exact.applies(model, spec),
        needs="a dropstudy MLP whose last hidden layer has droppable units", chunk=chunk,
    )  # fmt: skip
    if not spec.paths:
        return _plain(model, variables, x, spec, task)
    n = M.check_enumerable(spec, max_units)
    total = 2**n
    check_work(
        "this exact average", total, x.shape[0], force=force,
        fix="average over fewer examples at a time, or use Monte-Carlo averaging (mc)",
    )  # fmt: skip
    if method == "factorised" or (
        method == "auto" and chunk is None and fast_exact.applies(model, spec)
    ):
        # The factorised path reads the output layer's parameters itself: one traced
        # forward pass first, so variables of another model get flax's clear refusal.
        output_shape(model, variables, x, spec)
        if task == "binary":
            net, v = _two_classes(model, variables)
            return fast_exact.exact_mlp(
                net, v, x, spec, task="classification", mesh=mesh, progress=progress
            )
        return fast_exact.exact_mlp(
            model, variables, x, spec, task=task, mesh=mesh, progress=progress
        )
    chunk = resolve_chunk(model, variables, x, spec, total=total, chunk=chunk)
    key = jax.random.key(0)  # unused by the enumeration
    if mesh is not None:
        return _sharded(
            model, spec, task=task, source="exact", total=total, chunk=chunk,
            variables=variables, x=x, key=key, mesh=mesh, progress=progress,
        )  # fmt: skip
    s1, s2 = streamed(
        model, spec, task=task, source="exact", total=total, chunk=chunk, variables=variables,
        x=x, key=key, progress=progress,
    )  # fmt: skip
    return Average.from_sums(task, total, s1, s2)


def _check_fast(method, *, fast, general, applies, needs, chunk) -> None:
    """Refuse ``method=fast`` where that path does not apply, or with a ``chunk`` (which
    only the ``general`` path takes)."""
    if method != fast:
        return
    if not applies:
        raise DropstudyError(f"method={fast!r} needs {needs}; use method={general!r}")
    if chunk is not None:
        raise DropstudyError(
            f"chunk sets the {general} path's subnetworks per step; the {fast} path sizes its "
            f"own steps and takes none: drop chunk, or pass method={general!r}"
        )


def _check_mesh(mesh) -> None:
    if mesh is None:
        return
    if not isinstance(mesh, Mesh):
        raise DropstudyError(
            f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}; build one with "
            "dropstudy.sharding.mesh(devices=...)"
        )
    if len(mesh.axis_names) != 1:
        raise DropstudyError(
            f"mesh must have one axis, got {mesh.axis_names}; build one with "
            "dropstudy.sharding.mesh()"
        )


def _sharded(
    model, spec, *, task, source, total, chunk, variables, x, key, mesh, progress
) -> Average:
    """The streamed reduction with chunks dealt out over ``mesh``'s devices, in segments
    (:func:`dropstudy.progress.run`, a carry per device), then ``psum``."""
    f = _sharded_kernel(model, spec, task=task, source=source, total=total, chunk=chunk, mesh=mesh)
    variables, x, key = sharding.replicate((variables, jnp.asarray(x), key), mesh)
    carry = run(
        lambda c, first, steps: f(variables, x, key, np.asarray([first, steps], np.int32), c),
        sharding.per_device(zero_sums(model, spec, variables, x, task), mesh),
        scan_length(total, chunk, mesh.size), desc=describe(source, total),
        progress=progress, subnetworks=(chunk * mesh.size, total),
    )  # fmt: skip
    s1, s2 = sharding.psum_per_device(carry[0], mesh)
    return Average.from_sums(task, total, s1, s2)


@functools.lru_cache(maxsize=32)
def _sharded_kernel(model, spec, *, task, source, total, chunk, mesh):
    """The compiled, sharded segment of the reduction (each device's carry its own), built
    once per static set-up (a new ``jax.jit`` of a new closure would compile again on every
    call)."""
    (axis,) = mesh.axis_names
    n_dev = mesh.shape[axis]

    def local(variables, x, key, span, carry):
        first, steps = span[0], span[1]  # one argument: local keeps to five positional ones
        return partial_sums(
            model, spec, task=task, source=source, total=total, chunk=chunk, n_dev=n_dev,
            variables=variables, x=x, key=key, dev=jax.lax.axis_index(axis), first=first,
            steps=steps, carry=carry,
        )  # fmt: skip

    return sharding.per_device_kernel(local, mesh, n_shared=4)


@register("over_masks")
def over_masks(
    model: nn.Module,
    variables: Any,
    x: jax.Array,
    *,
    masks: M.Masks,
    weights=None,
    task: str | None = None,
) -> Average:
    """Average over an explicit batch of K subnetworks (``masks`` with a leading K axis).

    For small K (fixed-mask ensembles): the ``(K, B, C)`` outputs are held in memory.

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers, or a
        :class:`dropstudy.nnx.Pure`.
      variables: the model's variables dict (``{"params": ..., ...}``), without the masks.
      x: inputs ``(B, ...)``; integer or boolean inputs are taken as float32.
      masks: a masks pytree, each layer's masks ``(K, *U)``.
      weights: ``(K,)`` non-negative weights summing to 1 (default: 1/K each).
      task: ``"classification"``, ``"binary"`` (one logit, averaged as the two classes
        ``[1 - sigmoid(z), sigmoid(z)]``) or ``"regression"``; ``None``: classification for a
        model with two or more outputs (one output is refused, see :func:`resolve_task`).

    Returns:
      An :class:`~dropstudy.average.Average` with ``count=K``: ``(B, C)`` means for
      classification, ``(B, n_out)`` mean and variance for regression.

    Raises:
      DropstudyError: if an argument is invalid, ``masks`` lack the leading K axis or do not
        fit the model, or ``weights`` are not a distribution over the K masks.
    """
    x = check_inputs(model, variables, x, task)
    spec = M.mask_spec(model, x)
    task = resolve_task(model, variables, x, spec, task)
    if not spec.paths:  # a plain network: no masks to give, one subnetwork
        if jax.tree_util.tree_leaves(masks) or weights is not None:
            raise DropstudyError(
                f"{type(model).__name__} has no dropout layers, so it takes no masks or "
                "weights: it is its own one subnetwork (pass masks={})"
            )
        return _plain(model, variables, x, spec, task)
    flat = spec.flatten(masks)
    if flat.ndim != 2:
        raise DropstudyError(
            f"masks must carry a leading K axis (K subnetworks), got {flat.ndim - 1} leading "
            "axes; stack them, e.g. masks with shape (K, *unit shape) per layer"
        )
    k = flat.shape[0]
    if weights is None:
        w = jnp.full((k,), 1.0 / k, x.dtype)
    else:
        w = jnp.asarray(check_array("weights", weights, ndim=1), x.dtype)
        if w.shape != (k,) or bool(jnp.any(w < 0)) or abs(float(jnp.sum(w)) - 1) > 1e-5:
            raise DropstudyError(
                f"weights must be {k} non-negative numbers summing to 1 (a distribution over "
                f"the masks), got shape {w.shape} and sum {float(jnp.sum(w)):.6g}"
            )
    out = jax.vmap(lambda m: _forward(model, variables, x, m))(masks)
    if task == "regression":
        mean = jnp.einsum("k,kbc->bc", w, out)
        return Average.from_sums(task, k, mean, jnp.einsum("k,kbc->bc", w, out * out))
    logp = jax.nn.log_softmax(class_logits(task, out), axis=-1)
    return Average.from_sums(
        task, k, jnp.einsum("k,kbc->bc", w, jnp.exp(logp)), jnp.einsum("k,kbc->bc", w, logp)
    )


@partial(jax.jit, static_argnames=("model", "spec", "task", "k", "chunk"))
def _mc_logp(model, spec, *, task, k, chunk, variables, x, key):
    """Log-probabilities ``(k, B, C)`` of subnetworks ``0..k-1`` of the stream from ``key``."""

    def body(_, c):
        m = M.sample_mask_batch(spec, key, c * chunk + jnp.arange(chunk), x.dtype)
        out = jax.vmap(lambda mk: M.apply(model, variables, x, mk))(m)
        return None, jax.nn.log_softmax(class_logits(task, out), axis=-1)

    _, logp = jax.lax.scan(body, None, jnp.arange(math.ceil(k / chunk)))
    return logp.reshape(-1, *logp.shape[2:])[:k]


def mc_curve(
    model: nn.Module,
    variables: Any,
    x: jax.Array,
    *,
    key: jax.Array,
    ks: Iterable[int],
    chunk: int | None = None,
    task: str | None = None,
) -> dict[int, Average]:
    """The ``mc`` predictor for every K in ``ks`` from one stream of subnetworks (classification).

    The K-sample average is the prefix of the same stream that :func:`mc` uses, so
    ``mc_curve(...)[K]`` equals ``mc(..., k=K)`` up to summation order. Holds the
    ``(max K, B, C)`` log-probabilities in memory: meant for curves up to a few thousand K,
    and refused past ``MAX_CURVE_FLOATS`` of them (1 GiB).

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers, or a
        :class:`dropstudy.nnx.Pure`.
      variables: the model's variables dict (``{"params": ..., ...}``), without the masks.
      x: inputs ``(B, ...)``; integer or boolean inputs are taken as float32.
      key: a scalar PRNG key, the stream of subnetworks.
      ks: the numbers of subnetworks K, each >= 1.
      chunk: subnetworks per step (default: sized by
        :func:`~dropstudy.average.resolve_chunk`).
      task: ``"classification"`` or ``"binary"`` (one logit); ``None``: classification for a
        model with two or more outputs.

    Returns:
      ``{K: Average}`` for every distinct K, each with ``(B, C)`` means.

    Raises:
      DropstudyError: if an argument is invalid, the task is regression, or the
        log-probabilities would pass ``MAX_CURVE_FLOATS``.
    """
    x = check_inputs(model, variables, x, task)
    check_key("key", key)
    ks = sorted({check_positive_int("K", int(k)) for k in ks})
    kmax = ks[-1]
    spec = M.mask_spec(model, x)
    task = resolve_task(model, variables, x, spec, task)
    if task == "regression":
        raise DropstudyError("mc_curve averages classifiers; for regression call mc for each K")
    if not spec.paths:
        return {k: _plain(model, variables, x, spec, task) for k in ks}
    width = 2 if task == "binary" else int(np.prod(output_shape(model, variables, x, spec)[1:]))
    floats = kmax * x.shape[0] * width
    if floats > MAX_CURVE_FLOATS:
        raise DropstudyError(
            f"mc_curve up to K = {kmax:,} holds {floats:.3g} log-probabilities in memory, past "
            f"{MAX_CURVE_FLOATS:.3g} (dropstudy.predict.MAX_CURVE_FLOATS): call mc for each "
            "large K (it streams), or use fewer examples"
        )
    chunk = resolve_chunk(model, variables, x, spec, total=kmax, chunk=chunk)
    logp = _mc_logp(model, spec, task=task, k=kmax, chunk=chunk, variables=variables, x=x, key=key)
    arith = jnp.cumsum(jnp.exp(logp), axis=0)
    geo = jnp.cumsum(logp, axis=0)
    return {k: Average.from_sums(task, k, arith[k - 1] / k, geo[k - 1] / k) for k in ks}
