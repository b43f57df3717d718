"""Mask specifications, sampling, expectation and exact enumeration.

Masks are a pytree shaped like the model's ``"masks"`` collection: one array per dropout
layer, of the layer's unit shape ``U`` (one subnetwork for the whole batch) or with leading
axes (a batch of subnetworks, or one per example). Every function here is pure; randomness
comes from an explicit key.

Keep probability ``p`` (the 2014 paper's notation) is ``1 - rate``.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from . import rng
from .models import MASKS, MaskedDropout, recording_masks
from .validate import DropstudyError

MAX_EXACT_UNITS = 24

Masks = Any  # a pytree of arrays, the model's "masks" collection


@dataclass(frozen=True)
class MaskSpec:
    """Layer names, unit shapes and keep probabilities of a model's dropout layers.

    Layers are listed in the order they run (input first), so flat unit ``i`` of
    :meth:`flatten` counts from the first dropout layer a forward pass meets. Hashable (all
    fields are tuples), so it can be a static argument of ``jax.jit``.

    Attributes:
      paths: key path of each layer's mask in the ``"masks"`` collection, e.g.
        ``("drop_0", "mask")``, in the order the layers run.
      shapes: unit shape of each layer.
      keep: keep probability of every unit, flattened in layer order (length ``n_units``).
    """

    paths: tuple[tuple[str, ...], ...]
    shapes: tuple[tuple[int, ...], ...]
    keep: tuple[float, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """``/``-joined module path of each dropout layer, in the order they run."""
        return tuple("/".join(p[:-1]) for p in self.paths)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of units of each layer (the product of its unit shape)."""
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def n_units(self) -> int:
        """Number of units of all the layers together."""
        return sum(self.sizes)

    @property
    def droppable(self) -> tuple[int, ...]:
        """Flat indices of the units that can be dropped (keep < 1)."""
        return tuple(i for i, k in enumerate(self.keep) if k < 1.0)

    @property
    def n_droppable(self) -> int:
        """Number of units that can be dropped (keep < 1)."""
        return len(self.droppable)

    def layer_keep(self, i: int) -> np.ndarray:
        """Keep probabilities of one layer's units.

        Args:
          i: the layer's position in :attr:`paths` (the order the layers run).

        Returns:
          A numpy array of the layer's unit shape ``shapes[i]``.
        """
        start = sum(self.sizes[:i])
        return np.asarray(self.keep[start : start + self.sizes[i]]).reshape(self.shapes[i])

    def flatten(self, masks: Masks) -> jax.Array:
        """Flatten a masks pytree into one array, the layers' units in order.

        Args:
          masks: a masks pytree with leading axes ``L``: each layer's mask ``(*L, *U)``.

        Returns:
          An array ``(*L, n_units)``.

        Raises:
          DropstudyError: if a layer has no mask, ``masks`` holds another number of layers, or
            a mask's trailing shape is not its layer's unit shape.
        """
        leaves = []
        for name, path in zip(self.names, self.paths, strict=True):
            node = masks
            try:
                for k in path:
                    node = node[k]
            except (KeyError, TypeError, IndexError):
                raise DropstudyError(
                    f"masks have no entry for dropout layer {name}; the model's layers are "
                    f"{list(self.names)}"
                ) from None
            leaves.append(jnp.asarray(node))
        if len(jax.tree_util.tree_leaves(masks)) != len(self.paths):
            raise DropstudyError(
                f"masks have {len(jax.tree_util.tree_leaves(masks))} layers, the model has "
                f"{len(self.paths)}: {list(self.names)}"
            )
        lead = leaves[0].shape[: leaves[0].ndim - len(self.shapes[0])]
        flat = []
        for name, leaf, shape in zip(self.names, leaves, self.shapes, strict=True):
            if tuple(leaf.shape[len(lead) :]) != shape:
                raise DropstudyError(
                    f"mask for {name} has shape {leaf.shape}; expected (..., {shape})"
                )
            flat.append(leaf.reshape(*lead, -1))
        return jnp.concatenate(flat, axis=-1)

    def unflatten(self, flat: jax.Array) -> Masks:
        """Unflatten an array ``(*L, n_units)`` into a masks pytree with leading axes ``L``.

        Args:
          flat: the flat masks, ``(*L, n_units)``.

        Returns:
          The masks as nested dicts, each layer's mask ``(*L, *U)``.

        Raises:
          DropstudyError: if the last axis of ``flat`` is not ``n_units`` long.
        """
        if flat.shape[-1] != self.n_units:
            raise DropstudyError(f"flat mask has {flat.shape[-1]} units; expected {self.n_units}")
        lead = flat.shape[:-1]
        out: dict = {}
        start = 0
        for path, shape, size in zip(self.paths, self.shapes, self.sizes, strict=True):
            node = out
            for k in path[:-1]:
                node = node.setdefault(k, {})
            node[path[-1]] = flat[..., start : start + size].reshape(*lead, *shape)
            start += size
        return out


def _key_path(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", k)) for k in path)


def spec_from_masks(expected: Masks, order=None) -> MaskSpec:
    """Build a :class:`MaskSpec` from a model's expected-mask collection (from ``init``).

    Args:
      expected: the ``"masks"`` collection, each leaf its layer's keep probabilities.
      order: module paths (tuples of names) in the order the layers run; layers are listed in
        that order (default: the collection's sorted key order).

    Returns:
      The :class:`MaskSpec`.

    Raises:
      DropstudyError: if a mask entry belongs to no module path of ``order``.
    """
    paths_leaves, _ = jax.tree_util.tree_flatten_with_path(expected)
    items = [(_key_path(path), np.asarray(leaf, dtype=np.float64)) for path, leaf in paths_leaves]
    if order is not None:
        rank = {tuple(p): i for i, p in enumerate(order)}
        missing = [p for p, _ in items if p[:-1] not in rank]
        if missing:
            raise DropstudyError(f"mask entries {missing} belong to no dropout layer that ran")
        items.sort(key=lambda it: rank[it[0][:-1]])
    paths, shapes, keep = [], [], []
    for path, arr in items:
        paths.append(path)
        shapes.append(tuple(arr.shape))
        keep.extend(float(v) for v in arr.ravel())
    return MaskSpec(tuple(paths), tuple(shapes), tuple(keep))


def _traced_init(model: nn.Module, key, x, rng_streams=()) -> tuple[dict, dict]:
    """``model.init``, recording each dropout layer's path and drop rate in call order.

    A model that is not a linen module (e.g. :class:`dropstudy.nnx.Pure`, an NNX model as a
    pure function) provides ``init(key, x)``, ``apply(variables, x, **kw)`` and
    ``dropout_rates(x) -> {mask path without "mask": drop rate}`` in call order; its
    ``flax_dropout(x)``, when it has one, names the ``nnx.Dropout`` layers that ran.
    """
    if not isinstance(model, nn.Module):
        if not hasattr(model, "dropout_rates"):
            raise DropstudyError(
                f"the model must be a linen Module (or dropstudy.nnx.pure's view of an NNX "
                f"model), got {type(model).__name__}: to fix an argument such as train=, make "
                "it an attribute of the module (or wrap the module in one that sets it)"
            )
        variables = model.init(key, x)
        if MASKS not in variables:
            flax_dropout = getattr(model, "flax_dropout", lambda x: [])(x)
            if flax_dropout:
                raise _flax_dropout_refusal(model, flax_dropout, "dropstudy.nnx.MaskedDropout")
            variables = {**variables, MASKS: {}}  # a plain network
        return variables, dict(model.dropout_rates(x))
    try:  # the predictors and the trainer call the model on x alone
        inspect.signature(type(model).__call__).bind(model, x)
    except TypeError as e:
        raise DropstudyError(
            f"{type(model).__name__} cannot be called on x alone ({e}): the predictors and the "
            "trainer call model.apply(variables, x); give the argument a default or make it "
            "an attribute of the module (e.g. training: bool = False)"
        ) from None
    layers: dict[tuple[str, ...], float] = {}
    sites: dict[tuple[str, ...], set] = {}
    flax_dropout: list[str] = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__":
            if isinstance(context.module, MaskedDropout):
                path = tuple(context.module.path)
                layers.setdefault(path, float(context.module.rate))
                sites.setdefault(path, set()).add(call_site())
            elif isinstance(context.module, nn.Dropout) and context.module.rate > 0:
                flax_dropout.append("/".join(context.module.path))
        return next_fun(*args, **kwargs)

    rngs = {"params": key, **{s: key for s in rng_streams}}
    try:
        with nn.intercept_methods(record), flax_errors(model), recording_masks():
            variables = model.init(rngs, x)
    except DropstudyError:
        # an nn.Dropout layer that draws during init, with no rng for it: say what to change
        if flax_dropout and not layers:
            raise _flax_dropout_refusal(model, flax_dropout) from None
        raise
    if MASKS not in variables:
        if flax_dropout:
            raise _flax_dropout_refusal(model, flax_dropout)
        # No dropout at all: a plain network, the one subnetwork of itself.
        variables = {**variables, MASKS: {}}
    warn_shared_masks(type(model).__name__, {"/".join(p): len(v) for p, v in sites.items()})
    return variables, layers


def call_site() -> tuple[str, int]:
    """The line of the model's code that called a dropout layer: the first frame up the stack
    outside flax, JAX and this library's tracing. Traces of one line (``nn.scan`` traces its
    body twice, ``lax.cond`` each branch) are one site.

    Returns:
      ``(file name, line number)``.
    """
    frame = sys._getframe(1)
    # The library's own folder from this function's code, not from __file__: a path among
    # the module's constants would enter every cell's code key (a clone elsewhere, another
    # key).
    library = os.path.dirname(os.path.abspath(call_site.__code__.co_filename))
    skip = (f"{os.sep}flax{os.sep}", f"{os.sep}jax{os.sep}", f"{os.sep}jaxlib{os.sep}")
    while frame is not None:
        name = frame.f_code.co_filename
        ours = os.path.dirname(os.path.abspath(name)) == library and os.path.basename(name) in (
            "masks.py",
            "nnx.py",
        )
        if not ours and not any(s in name for s in skip):
            return name, frame.f_lineno
        frame = frame.f_back
    return "?", 0


def warn_shared_masks(model_name: str, calls: dict[str, int]) -> None:
    """Warn of a dropout layer that runs at several sites: they share its one mask.

    Args:
      model_name: names the model in the warning.
      calls: ``{layer path: the lines of code that call it in one forward pass}``.
    """
    shared = {p: n for p, n in calls.items() if n > 1}
    if shared:
        warnings.warn(
            f"{model_name}: dropout layer(s) {shared} are called from several lines each and "
            "every site shares the layer's one mask, so the predictors average over fewer "
            "subnetworks than independent layers would have (nn.Dropout draws anew at each "
            "call): give each site a layer of its own unless one mask is meant (as in "
            "variational dropout over time steps)",
            stacklevel=4,
        )


def _flax_dropout_refusal(
    model, paths: list[str], replacement: str = "dropstudy.models.MaskedDropout"
) -> DropstudyError:
    return DropstudyError(
        f"{type(model).__name__} has flax Dropout layers {sorted(set(paths))}, whose masks no "
        f"predictor can set: replace each with {replacement} (same arguments: rate, "
        "broadcast_dims, deterministic, rng_collection; given no mask it draws as flax's "
        "Dropout does)"
    )


def _spec(masks: Masks, layers: dict) -> MaskSpec:
    """The spec of a masks collection (arrays or shapes), keep = 1 - each layer's rate."""

    def fill(path, leaf):
        return np.full(np.shape(leaf), 1.0 - layers[_key_path(path)[:-1]])

    return spec_from_masks(jax.tree_util.tree_map_with_path(fill, masks), list(layers))


def init(model: nn.Module, key: jax.Array, x: jax.Array) -> tuple[dict, MaskSpec]:
    """Initialise ``model`` on inputs like ``x``: its variables and its mask spec.

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers, or a
        :class:`dropstudy.nnx.Pure`.
      key: the initialisation key.
      x: inputs ``(B, ...)``; only the first example is used.

    Returns:
      ``(variables, spec)``: ``variables`` holds every collection but the masks
      (``"params"``, and e.g. a BatchNorm's ``"batch_stats"``), what :func:`apply` and the
      predictors take; ``spec`` is the model's :class:`MaskSpec`.

    Raises:
      DropstudyError: if the model draws masks in nn.Dropout layers (no predictor can set
        them; a model without dropout has an empty spec), or flax
        refuses it (see :func:`flax_errors`).
    """
    variables, layers = _traced_init(model, key, jnp.asarray(x[:1]))
    rest = {k: v for k, v in variables.items() if k != MASKS}
    return rest, _spec(variables[MASKS], layers)


def mask_spec(model: nn.Module, x: jax.Array, rng_streams: tuple[str, ...] = ()) -> MaskSpec:
    """The :class:`MaskSpec` of ``model`` applied to inputs like ``x``.

    The model is only traced (``jax.eval_shape``): no parameter is computed.

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers, or a
        :class:`dropstudy.nnx.Pure`.
      x: inputs ``(B, ...)`` or a ``jax.ShapeDtypeStruct`` of them; only one example's shape
        and the dtype are used.
      rng_streams: streams the model draws from besides its masks (training's
        ``TrainConfig.rng_streams``).

    Returns:
      The :class:`MaskSpec`, layers in the order they run.

    Raises:
      DropstudyError: if the model draws masks in nn.Dropout layers (no predictor can set
        them; a model without dropout has an empty spec), or flax
        refuses it (see :func:`flax_errors`).
    """
    x = jnp.asarray(x[:1]) if not isinstance(x, jax.ShapeDtypeStruct) else x
    x1 = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
    box = {}

    def trace(x1):
        variables, box["layers"] = _traced_init(model, jax.random.key(0), x1, rng_streams)
        return variables[MASKS]

    return _spec(jax.eval_shape(trace, x1), box["layers"])


def check_variables(variables: Any) -> dict:
    """Check the model's variables dict ``{"params": ..., other collections}``.

    Args:
      variables: the variables.

    Returns:
      ``variables`` unchanged.

    Raises:
      DropstudyError: if ``variables`` is not a mapping with a ``"params"`` entry (e.g. bare
        parameters).
    """
    if not isinstance(variables, Mapping) or "params" not in variables:
        keys = list(variables)[:6] if isinstance(variables, Mapping) else type(variables)
        raise DropstudyError(
            "expected the model's variables dict {'params': params, ...} (as model.init "
            f"returns it), got {keys}: wrap bare parameters as {{'params': params}}"
        )
    return variables


def apply(model: nn.Module, variables: Any, x: jax.Array, masks: Masks, **kwargs) -> jax.Array:
    """The subnetwork selected by ``masks`` evaluated on ``x``.

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers, or a
        :class:`dropstudy.nnx.Pure`.
      variables: the model's variables dict (``{"params": ..., ...}``), without the masks.
      x: inputs ``(B, ...)``.
      masks: a masks pytree, each layer's mask of its unit shape ``U`` (one subnetwork for the
        batch) or ``(B, *U)`` (one per example).
      **kwargs: passed to ``model.apply`` (``rngs=``, ``mutable=``, ``method=``).

    Returns:
      The outputs ``(B, n_out)`` (with ``mutable=``, what ``model.apply`` returns:
      ``(outputs, updated collections)``).

    Raises:
      DropstudyError: if ``variables`` is not a variables dict, or flax refuses the call (see
        :func:`flax_errors`).
    """
    variables = check_variables(variables)
    with flax_errors(model):
        return model.apply({**variables, MASKS: masks}, x, **kwargs)


@contextmanager
def flax_errors(model):
    """Flax's errors about a model's variables and randomness, as what to do about them.

    A context manager. Inside it, flax's ``InvalidRngError`` (the model draws random numbers
    besides its masks), ``ModifyScopeVariableError`` (it updates its variables when applied,
    as BatchNorm does in training mode) and ``ScopeParamShapeError`` (the variables do not fit
    the model on these inputs) are raised again as :class:`DropstudyError`.

    Args:
      model: the model, named in the messages.

    Raises:
      DropstudyError: in place of those three flax errors.
    """
    name = type(model).__name__
    try:
        yield
    except flax.errors.InvalidRngError as e:
        raise DropstudyError(
            f"{name} draws random numbers besides its masks ({str(e).splitlines()[0]}). To "
            "train it, name the streams: TrainConfig(rng_streams=('dropout',)); to average "
            "its subnetworks, evaluate it deterministically (e.g. nn.Dropout(deterministic="
            "True)): the predictors vary only the masks"
        ) from None
    except flax.errors.ModifyScopeVariableError as e:
        raise DropstudyError(
            f"{name} updates its variables when applied ({str(e).splitlines()[0]}), as "
            "BatchNorm does in training mode; evaluate it in eval mode "
            "(use_running_average=True)"
        ) from None
    except flax.errors.ScopeParamShapeError as e:
        raise DropstudyError(
            f"the variables do not fit {name} on these inputs ({str(e).splitlines()[0]}): "
            "check the input width and that the variables belong to this model"
        ) from None


def expected_masks(spec: MaskSpec, dtype=jnp.float32) -> Masks:
    """Every unit at its keep probability: the model at this mask is weight scaling.

    Args:
      spec: the mask layout.
      dtype: the masks' dtype.

    Returns:
      A masks pytree, each layer's mask of its unit shape ``U``.
    """
    return spec.unflatten(jnp.asarray(spec.keep, dtype))


def ones_masks(spec: MaskSpec, dtype=jnp.float32) -> Masks:
    """Every unit kept (the full, unscaled network).

    Args:
      spec: the mask layout.
      dtype: the masks' dtype.

    Returns:
      A masks pytree of ones, each layer's mask of its unit shape ``U``.
    """
    return spec.unflatten(jnp.ones(spec.n_units, dtype))


def sample_masks(
    spec: MaskSpec, key: jax.Array, batch_shape: tuple[int, ...] = (), dtype=jnp.float32
) -> Masks:
    """Bernoulli(keep) masks with leading axes ``batch_shape``.

    Args:
      spec: the mask layout.
      key: the PRNG key the masks are drawn from.
      batch_shape: leading axes: ``()`` gives one subnetwork for a whole batch (the ensemble
        view), ``(B,)`` one per example, as training draws them.
      dtype: the masks' dtype.

    Returns:
      A masks pytree of 0/1 values, each layer's mask ``(*batch_shape, *U)``.
    """
    keep = np.asarray(spec.keep, np.float32)
    cols = np.asarray(spec.droppable, dtype=np.int64)
    ones = partial(jnp.ones, dtype=dtype)
    if cols.size == 0:  # nothing to drop: no random numbers needed (u < 1 always holds)
        return spec.unflatten(ones((*batch_shape, spec.n_units)))
    # The values jax.random.uniform(key, (*batch_shape, n_units)) puts at droppable units,
    # hashed in one fused kernel; kept-for-sure units between them are ones.
    u = rng.uniform(key, (*batch_shape, spec.n_units), cols)
    drawn = (u < keep[cols]).astype(dtype)
    parts, done, j = [], 0, 0
    for start, stop in _runs(cols):
        if start > done:
            parts.append(ones((*batch_shape, start - done)))
        parts.append(drawn[..., j : j + stop - start])
        j, done = j + stop - start, stop
    if done < spec.n_units:
        parts.append(ones((*batch_shape, spec.n_units - done)))
    return spec.unflatten(parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1))


def _runs(cols: np.ndarray) -> list[tuple[int, int]]:
    """Sorted indices -> maximal runs ``[(start, stop), ...]`` of consecutive ones."""
    breaks = np.flatnonzero(np.diff(cols) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(cols, breaks)]


def sample_mask_batch(spec: MaskSpec, key: jax.Array, idx: jax.Array, dtype=jnp.float32) -> Masks:
    """Masks number ``idx`` of the stream drawn from ``key``.

    Mask ``i`` is ``sample_masks(spec, fold_in(key, i))``: K masks are a prefix of K' > K
    masks, independent of how a reduction chunks them.

    Args:
      spec: the mask layout.
      key: the stream's PRNG key.
      idx: the masks' numbers, ``(K,)`` ints.
      dtype: the masks' dtype.

    Returns:
      A masks pytree with a leading K axis, each layer's mask ``(K, *U)``.
    """
    return jax.vmap(lambda i: sample_masks(spec, rng.fold_in(key, i), (), dtype))(idx)


def check_enumerable(spec: MaskSpec, max_units: int = MAX_EXACT_UNITS) -> int:
    """Number of droppable units, or a clear refusal when 2^n is too many subnetworks.

    Args:
      spec: the mask layout.
      max_units: the most droppable units allowed.

    Returns:
      ``n``, the number of droppable units.

    Raises:
      DropstudyError: if ``n > max_units``, or ``n > 31`` (2^n overflows uint32).
    """
    n = spec.n_droppable
    if n > max_units:
        raise DropstudyError(
            f"exact averaging needs all 2^{n} = {2**n:,} subnetworks of {n} droppable units, "
            f"over the limit of {max_units} units (max_units={max_units}); use Monte-Carlo "
            "averaging (dropstudy.predict.mc) instead"
            + (
                f", or max_units={n} (2^{n - max_units} times the time of {max_units} units)"
                if n <= 31
                else f" ({n} units cannot be enumerated at all: at most 31)"
            )
        )
    if n > 31:
        raise DropstudyError(f"{n} droppable units cannot be enumerated (2^{n} overflows uint32)")
    return n


def enumerate_masks(
    spec: MaskSpec, idx: jax.Array, dtype=jnp.float32, max_units: int = MAX_EXACT_UNITS
) -> tuple[Masks, jax.Array]:
    """Subnetworks number ``idx`` and their probabilities.

    Bit ``b`` of the index is the state of droppable unit ``b`` (flat order); units with keep
    1 are always on. The probability is ``prod p^m (1-p)^(1-m)`` over droppable units, for
    any keep probabilities.

    Args:
      spec: the mask layout.
      idx: the subnetworks' numbers, ``(K,)`` ints in ``[0, 2^n)`` (``n`` droppable units).
      dtype: the masks' and probabilities' dtype.
      max_units: the most droppable units allowed (:func:`check_enumerable`).

    Returns:
      ``(masks, probs)``: masks with a leading K axis, each layer's ``(K, *U)``, and their
      probabilities ``(K,)``.

    Raises:
      DropstudyError: if there are too many droppable units (:func:`check_enumerable`).
    """
    check_enumerable(spec, max_units)
    flat, probs = enumerate_units(spec, spec.droppable, idx, dtype)
    return spec.unflatten(flat), probs


def enumerate_units(
    spec: MaskSpec, units: tuple[int, ...], idx: jax.Array, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
    """Enumerate the states of the flat ``units`` only; every other unit is 1.

    Bit ``b`` of an index is the state of ``units[b]``.

    Args:
      spec: the mask layout.
      units: flat unit indices, at most 31.
      idx: the states' numbers, ``(K,)`` ints in ``[0, 2^len(units))``.
      dtype: the masks' and probabilities' dtype.

    Returns:
      ``(flat, probs)``: flat masks ``(K, n_units)`` and the probabilities ``(K,)`` of the
      enumerated units' states (the marginal over the other units).

    Raises:
      DropstudyError: if ``units`` lists more than 31 units (2^n overflows uint32).
    """
    if len(units) > 31:
        raise DropstudyError(f"{len(units)} units cannot be enumerated (2^n overflows uint32)")
    sel = np.asarray(units, dtype=np.int32)
    keep = jnp.asarray(np.asarray(spec.keep)[sel], dtype)
    idx = jnp.asarray(idx).astype(jnp.uint32)
    bits = ((idx[:, None] >> jnp.arange(len(units), dtype=jnp.uint32)) & 1).astype(dtype)
    probs = jnp.prod(jnp.where(bits > 0, keep, 1 - keep), axis=-1)
    flat = jnp.ones((idx.shape[0], spec.n_units), dtype).at[:, sel].set(bits)
    return flat, probs


def all_masks(spec: MaskSpec, dtype=jnp.float32, max_units: int = 16) -> tuple[Masks, jax.Array]:
    """Every subnetwork at once (small nets only; the predictors stream instead).

    Args:
      spec: the mask layout.
      dtype: the masks' and probabilities' dtype.
      max_units: the most droppable units allowed.

    Returns:
      ``(masks, probs)`` as :func:`enumerate_masks` gives them for all ``2^n`` subnetworks:
      each layer's masks ``(2^n, *U)``, probabilities ``(2^n,)``.

    Raises:
      DropstudyError: if there are more than ``max_units`` droppable units.
    """
    n = check_enumerable(spec, max_units)
    return enumerate_masks(spec, jnp.arange(2**n), dtype, max_units)


def ablate(masks: Masks, spec: MaskSpec, units: jax.Array) -> Masks:
    """``masks`` with the flat units ``units`` set to zero: unit ablation.

    Args:
      masks: a masks pytree with leading axes ``L``, each layer's mask ``(*L, *U)``.
      spec: the mask layout.
      units: flat unit indices, ``(J,)`` ints in ``[0, n_units)`` (see :func:`layer_units`).

    Returns:
      The masks with those units zero, shaped as ``masks`` (nested dicts).

    Raises:
      DropstudyError: if ``units`` are not flat unit indices in range, or ``masks`` do not fit
        ``spec`` (:meth:`MaskSpec.flatten`).
    """
    idx = np.asarray(units)
    if idx.dtype.kind not in "iu" or idx.ndim > 1 or np.any((idx < 0) | (idx >= spec.n_units)):
        raise DropstudyError(
            f"units must be flat unit indices in [0, {spec.n_units}), got {idx.tolist()}; "
            "see layer_units(spec, name)"
        )
    flat = spec.flatten(masks)
    return spec.unflatten(flat.at[..., jnp.asarray(idx)].set(0))


def layer_units(spec: MaskSpec, name: str) -> np.ndarray:
    """Flat indices of the units of the layer called ``name``.

    Args:
      spec: the mask layout.
      name: the layer's ``/``-joined module path, one of :attr:`MaskSpec.names`.

    Returns:
      The indices, ``(size,)`` ints, ``size`` the layer's number of units.

    Raises:
      DropstudyError: if the model has no dropout layer called ``name``.
    """
    if name not in spec.names:
        raise DropstudyError(f"no dropout layer {name!r}; the model has {list(spec.names)}")
    i = spec.names.index(name)
    start = sum(spec.sizes[:i])
    return np.arange(start, start + spec.sizes[i])
