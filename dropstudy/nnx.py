"""Flax NNX models with explicit dropout masks, and a pure-function view for the predictors.

:class:`MaskedDropout` is the NNX counterpart of :class:`dropstudy.models.MaskedDropout`
and a drop-in for ``nnx.Dropout`` (``MaskedDropout(rate, *, features=None, broadcast_dims,
deterministic, rng_collection, rngs)``): its Bernoulli mask is state, a :class:`Mask`
variable initialised to the keep probability, which every predictor sets; called directly
it draws as ``nnx.Dropout`` does (given ``rngs``) or is weight scaling (without).
:func:`pure` turns an NNX model into ``(Pure, variables)``: a hashable stand-in for a linen
module whose ``init`` / ``apply`` / ``dropout_rates`` are what :mod:`dropstudy.masks` and
:mod:`dropstudy.predict` use, so weight scaling, Monte-Carlo and exact averages run on NNX
models unchanged::

    model = MLP(din=4, hidden=(8, 8), n_out=3, rate=0.5, rngs=nnx.Rngs(0))
    net, variables = pure(model)  # variables = {"params": {...}}, no masks
    avg = dropstudy.predict.mc(net, variables, x, key=key, k=64)

:class:`MLP` mirrors :class:`dropstudy.models.MLP` attribute for attribute (``drop_input``,
``dense_0``, ``drop_0``, ..., ``out``, with NNX ``Linear`` layers whose ``kernel (d_in,
d_out)`` and ``bias (d_out,)`` are linen ``Dense``'s), so a linen MLP's ``params`` work as
the NNX model's ``variables["params"]`` as they are.

Requires flax >= 0.10.2 (installed here: 0.12.8). The binding API is
:func:`flax.nnx.merge` taking *plain nested dicts of arrays* as state (the form ``jax.tree``
functions and the predictors' mask pytrees have): in 0.10.0 and 0.10.1 it only took an
``nnx.State`` (``AttributeError: 'dict' object has no attribute 'raw_mapping'``). The rest
is older: ``nnx.Module``, ``nnx.Variable`` subclasses, ``nnx.Param`` / ``nnx.BatchStat``,
``nnx.Linear``, ``nnx.Rngs``, ``nnx.split``, ``nnx.iter_graph``, hashable ``GraphDef``,
``variable[...]``. Two newer APIs are used only when present: the leaf-count check of
``GraphDef.num_leaves`` (0.10.6) and names registered with
``nnx.register_variable_name`` (0.10.3). Before the drop-in layer, ``tests/test_nnx.py``
passed on flax 0.10.2 to 0.10.6 and 0.11.0 (jax 0.6.0), 0.12.0 (jax 0.7.2) and 0.12.8 (jax
0.10.2), and failed on 0.10.0 and 0.10.1; the drop-in's own draws (``rngs``, kept as
``nnx.Dropout`` keeps them: ``nnx.data``, ``RngStream.fork``, used only when present) are
tested on the installed flax only. Reading a variable uses ``Variable.get_value()`` where it
exists (0.12 deprecates ``.value``), else ``.value``.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .masks import call_site, warn_shared_masks
from .models import MASKS, activation_fn, apply_mask, check_deterministic, unit_shape
from .validate import (
    ACTIVATIONS,
    CONVENTIONS,
    DropstudyError,
    check_choice,
    check_positive_int,
    check_rate,
    check_widths,
)

Key = str | int
Path = tuple[Key, ...]

PARAMS = "params"


class Mask(nnx.Variable):
    """A dropout layer's mask, an ``nnx.Variable``.

    Of unit shape ``U`` (one subnetwork for the batch) or ``(B, *U)`` (one per example); 0/1
    for a subnetwork, the keep probability for weight scaling. :func:`pure` files these
    variables under the ``"masks"`` collection.
    """


# The dropout layers that ran, in call order, with the line that called each, while
# Pure._called traces a forward pass.
_CALLS: contextvars.ContextVar[list[tuple[MaskedDropout, tuple[str, int]]] | None] = (
    contextvars.ContextVar("dropstudy_nnx_calls", default=None)
)


def _unit_shape(features: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(features, (int, np.integer)) and not isinstance(features, bool):
        return (check_positive_int("features", features),)
    return check_widths("unit shape", features)


# nnx.data marks an attribute as data, not structure (flax >= 0.12); older flax needs none.
_data = getattr(nnx, "data", lambda value: value)

# True while Pure runs the model (the predictors, the trainer): then every layer uses its
# mask variable, the mask given through variables["masks"] (or its expectation).
_PURE: contextvars.ContextVar[bool] = contextvars.ContextVar("dropstudy_nnx_pure", default=False)


class MaskedDropout(nnx.Module):
    """Dropout whose Bernoulli mask is explicit state (NNX); a drop-in for ``nnx.Dropout``.

    The mask lives in ``self.mask``, a :class:`Mask` variable of the unit shape ``U``
    initialised to ``p`` everywhere. Which mask the layer uses, ``x (B, *rest) -> (B, *rest)``:

    1. run through :func:`pure` (every predictor, the trainer): ``self.mask``, i.e. the mask
       given in ``variables["masks"]`` (``U`` or ``(B, *U)``), else its expectation;
    2. called directly with ``deterministic`` false: its own draw from its rng stream,
       bit for bit as ``nnx.Dropout`` draws it (same stream, same arithmetic);
    3. called directly with ``deterministic`` true: its expectation (under the inverted
       convention the input unchanged, as ``nnx.Dropout`` returns it);
    4. ``deterministic=None``: ``self.mask`` (the expectation unless set with
       ``nnx.update``), i.e. weight scaling; with ``rngs`` given, drawing. :class:`MLP` builds
       its layers so, and a layer given no ``rngs`` that must draw raises, as ``nnx.Dropout``
       does (the default is ``nnx.Dropout``'s, ``False``).

    ``model.train()`` and ``model.eval()`` set ``deterministic`` as they do for ``nnx.Dropout``.

    Args:
      rate: probability of *dropping* a unit (keep probability ``p = 1 - rate``), in [0, 1).
      features: the *unit shape* ``U``: the number of features, or a shape. For ``x`` of
        shape ``(B, *rest)`` it is ``rest`` with the broadcast axes removed (e.g. the channel
        count for NHWC feature maps with ``broadcast_dims=(1, 2)``). ``None``: taken from the
        first call (call the model once before :func:`pure`).
      broadcast_dims: axes of ``x`` that share one mask entry, as in ``nnx.Dropout``;
        never the batch axis 0.
      deterministic: as in ``nnx.Dropout``, whose default it shares (the call's argument
        wins); ``None``: see above.
      rng_collection: the stream its own masks are drawn from, as in ``nnx.Dropout``.
      rngs: an ``nnx.Rngs`` or ``RngStream`` for its own draws, as in ``nnx.Dropout``.
      convention: ``"inverted"`` multiplies by ``mask / p`` (the expected mask is the
        identity); ``"standard"`` multiplies by ``mask`` (the expected mask scales by ``p``).
      dtype: dtype of the stored mask (it is cast to ``x``'s dtype when applied).

    Raises:
      DropstudyError: if an argument is invalid, or features come first as in dropstudy's
        earlier signature ``MaskedDropout(features, rate)``.
    """

    def __init__(
        self,
        rate: float = 0.5,
        *legacy: Any,
        features: int | Sequence[int] | None = None,
        broadcast_dims: Sequence[int] = (),
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        convention: str = "inverted",
        dtype: Any = jnp.float32,
    ) -> None:
        if (
            legacy
            or isinstance(rate, Sequence)
            or (
                features is None  # with features given, an integer rate is just a bad rate
                and isinstance(rate, int | np.integer)
                and not isinstance(rate, bool)
                and rate >= 1
            )
        ):
            raise DropstudyError(
                "MaskedDropout takes the rate first, as nnx.Dropout does, and features by "
                f"keyword: MaskedDropout(rate, features=...), got positional {(rate, *legacy)}"
            )
        self.rate = check_rate("rate of a MaskedDropout layer", rate)
        self.convention = check_choice("convention", convention, CONVENTIONS)
        try:
            self.broadcast_dims = tuple(int(d) for d in broadcast_dims)
        except (TypeError, ValueError):
            raise DropstudyError(
                f"broadcast_dims must be a sequence of axes, got {broadcast_dims!r}"
            ) from None
        if 0 in self.broadcast_dims:
            raise DropstudyError("broadcast_dims must not contain the batch axis 0")
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        self.dtype = dtype
        if isinstance(rngs, nnx.Rngs):  # as nnx.Dropout keeps them
            rngs = rngs[rng_collection]
        if isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork() if hasattr(rngs, "fork") else rngs
        elif rngs is None:
            self.rngs = _data(None)
        else:
            raise DropstudyError(f"rngs must be an nnx.Rngs or RngStream, got {type(rngs)}")
        self.unit_shape = None if features is None else _unit_shape(features)
        self.mask = (
            _data(None)
            if features is None
            else Mask(jnp.full(self.unit_shape, 1.0 - self.rate, dtype))
        )

    @property
    def keep(self) -> float:
        """Keep probability ``1 - rate``."""
        return 1.0 - self.rate

    def set_view(self, deterministic: bool | None = None) -> None:
        """Set ``deterministic`` (used by ``nnx.view``), as ``nnx.Dropout`` does.

        Args:
          deterministic: the new value; ``None`` leaves it.
        """
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(
        self,
        x: jax.Array,
        *,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
    ) -> jax.Array:
        """``x`` times the layer's mask (the class docstring says which).

        Args:
          x: activations ``(B, *rest)``.
          deterministic: overrides the attribute, as in ``nnx.Dropout``.
          rngs: a key, stream or ``nnx.Rngs`` for this call's own draw, as in ``nnx.Dropout``.

        Returns:
          ``(B, *rest)``.

        Raises:
          DropstudyError: if ``x`` has no batch axis or not the layer's unit shape, the mask
            has neither shape ``U`` nor ``(B, *U)``, or the layer must draw and has no rngs.
        """
        if (calls := _CALLS.get()) is not None:
            calls.append((self, call_site()))
        if x.ndim < 1:
            raise DropstudyError(f"MaskedDropout needs a batch (B, ...), got shape {x.shape}")
        shape = unit_shape(x, self.broadcast_dims)
        if self.unit_shape is None:  # features inferred at the first call
            self.unit_shape = shape
            self.mask = Mask(jnp.full(shape, self.keep, self.dtype))
        if shape != self.unit_shape:
            raise DropstudyError(
                f"MaskedDropout built for unit shape {self.unit_shape} got x of shape {x.shape} "
                f"(unit shape {shape} with broadcast_dims {self.broadcast_dims})"
            )
        if not _PURE.get():
            deterministic = check_deterministic(
                self.deterministic if deterministic is None else deterministic, "layer (NNX)"
            )
            own = rngs if rngs is not None else self.rngs
            if deterministic is None and own is not None:
                deterministic = False  # nnx.Dropout's default
            if deterministic is False:
                return self._draw(x, own)
            if deterministic and self.convention == "inverted":
                return x  # the expected mask times 1/p, exactly, as nnx.Dropout returns it
            if deterministic:
                return x * jnp.asarray(self.keep, x.dtype)
        return apply_mask(
            x, self.mask[...], broadcast_dims=self.broadcast_dims, keep=self.keep,
            convention=self.convention, where="layer (NNX)",
        )  # fmt: skip

    def _draw(self, x: jax.Array, rngs: Any) -> jax.Array:
        """The layer's own mask, drawn and applied exactly as ``nnx.Dropout`` does."""
        if self.rate == 0.0:
            return x
        if rngs is None:
            raise DropstudyError(
                "MaskedDropout (NNX) is not deterministic and has no mask given, so it draws "
                "its own, but it has no rngs: build it with rngs=nnx.Rngs(...) or pass rngs= to "
                "the call, or use deterministic=True (model.eval()) for weight scaling"
            )
        if isinstance(rngs, nnx.Rngs):
            key = rngs[self.rng_collection]()
        elif isinstance(rngs, nnx.RngStream):
            key = rngs()
        else:
            key = rngs
        shape = list(x.shape)
        for d in self.broadcast_dims:
            shape[d] = 1
        mask = jnp.broadcast_to(jax.random.bernoulli(key, p=self.keep, shape=shape), x.shape)
        kept = x / self.keep if self.convention == "inverted" else x
        return jax.lax.select(mask, kept, jnp.zeros_like(x))


def _hidden_rates(rate: float | Sequence[float], n: int) -> tuple[float, ...]:
    rates = list(rate) if isinstance(rate, Sequence) else [rate] * n
    if len(rates) != n:
        raise DropstudyError(
            f"rate lists {len(rates)} drop rates for {n} hidden layers; "
            "give one rate, or one per hidden layer"
        )
    return tuple(check_rate(f"rate[{i}]", r) for i, r in enumerate(rates))


class MLP(nnx.Module):
    """Multi-layer perceptron with a :class:`MaskedDropout` on the input and every hidden layer.

    The NNX twin of :class:`dropstudy.models.MLP` (same attribute names, same computation):
    ``x (B, din) -> (B, n_out)``; ``h = drop_input(x)``, then for each hidden layer
    ``h = drop_i(act(dense_i(h)))``, then ``out(h)``. Dense layers are ``nnx.Linear``
    (``kernel (d_in, d_out)``, ``bias (d_out,)``, Flax's default LeCun-normal / zero init).

    Args:
      din: input width.
      hidden: hidden widths, e.g. ``(10, 10)``.
      n_out: output width.
      rate: drop rate of the hidden layers; one float, or one per hidden layer.
      input_rate: drop rate of the input layer.
      activation: relu, tanh, sigmoid or linear.
      convention: ``"inverted"`` (default) or ``"standard"``, see :class:`MaskedDropout`.
      dtype: parameter and computation dtype.
      rngs: the parameters' initialisation keys.
    """

    def __init__(
        self,
        din: int,
        hidden: Sequence[int] = (10, 10),
        n_out: int = 10,
        rate: float | Sequence[float] = 0.5,
        *,
        input_rate: float = 0.0,
        activation: str = "relu",
        convention: str = "inverted",
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        din = check_positive_int("din", din)
        self.hidden = check_widths("hidden", hidden)
        n_out = check_positive_int("n_out", n_out)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        check_choice("convention", convention, CONVENTIONS)
        rates = _hidden_rates(rate, len(self.hidden))
        self.dtype = dtype
        # deterministic=None: called directly, the layers are their stored masks (weight
        # scaling), as the linen MLP given no masks is
        kw = {"convention": convention, "dtype": dtype, "deterministic": None}
        self.drop_input = MaskedDropout(check_rate("input_rate", input_rate), features=din, **kw)
        width = din
        for i, (w, r) in enumerate(zip(self.hidden, rates, strict=True)):
            lin = nnx.Linear(width, w, dtype=dtype, param_dtype=dtype, rngs=rngs)
            setattr(self, f"dense_{i}", lin)
            setattr(self, f"drop_{i}", MaskedDropout(r, features=w, **kw))
            width = w
        self.out = nnx.Linear(width, n_out, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def dropout_layers(self) -> tuple[str, ...]:
        """Names of the dropout layers in the order they run (input first).

        Returns:
          ``("drop_input", "drop_0", ...)``, one per hidden layer after the input's.
        """
        return ("drop_input", *(f"drop_{i}" for i in range(len(self.hidden))))

    def dense_layers(self) -> tuple[str, ...]:
        """Names of the dense layers in the order they run, the output layer last.

        Returns:
          ``("dense_0", ..., "out")``.
        """
        return (*(f"dense_{i}" for i in range(len(self.hidden))), "out")

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits (or predictions) of ``x``.

        Args:
          x: inputs ``(B, din)``.

        Returns:
          ``(B, n_out)``.
        """
        act = activation_fn(self.activation)
        h = self.drop_input(jnp.asarray(x).astype(self.dtype))
        for i in range(len(self.hidden)):
            h = getattr(self, f"drop_{i}")(act(getattr(self, f"dense_{i}")(h)))
        return self.out(h)


# --------------------------------------------------------------------------------------
# The pure-function view
# --------------------------------------------------------------------------------------


class Leaf(NamedTuple):
    """One variable of a model (all fields static).

    Attributes:
      collection: the linen-style collection it is filed under (:func:`collection_name`).
      path: its path in the model's graph.
      shape: its shape.
      dtype: its dtype.
    """

    collection: str
    path: Path
    shape: tuple[int, ...]
    dtype: Any


class Layer(NamedTuple):
    """One :class:`MaskedDropout` of a model.

    Attributes:
      path: its path in the model's graph.
      unit_shape: its unit shape ``U``.
      rate: its drop rate.
      dtype: its mask's dtype.
    """

    path: Path
    unit_shape: tuple[int, ...]
    rate: float
    dtype: Any


_COLLECTIONS = {
    nnx.Param: PARAMS,
    nnx.BatchStat: "batch_stats",
    nnx.Cache: "cache",
    nnx.Intermediate: "intermediates",
}


def collection_name(var_type: type) -> str:
    """The linen-style collection a variable type is filed under.

    Looking a name up registers nothing.

    Args:
      var_type: an ``nnx.Variable`` subclass.

    Returns:
      ``"masks"`` for :class:`Mask` (and its subclasses), ``"params"`` for ``Param``,
      ``"batch_stats"`` for ``BatchStat``, ``"cache"`` for ``Cache``, ``"intermediates"`` for
      ``Intermediate``; for other types the name registered with
      ``flax.nnx.register_variable_name`` (flax >= 0.10.3), else their class name.
    """
    if issubclass(var_type, Mask):
        return MASKS
    if var_type in _COLLECTIONS:
        return _COLLECTIONS[var_type]
    try:
        from flax.nnx.variablelib import variable_name_from_type

        return variable_name_from_type(var_type)  # raises unless registered
    except (ImportError, ValueError):
        return var_type.__name__


def _str_path(path: Path) -> tuple[str, ...]:
    return tuple(str(k) for k in path)


def _set(tree: dict, path: Sequence[Key], value: Any) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


_MISSING = object()


def _get(tree: Any, path: Sequence[Key]) -> Any:
    """``tree[path]``, trying each key as given and as a string (int list indices become
    strings in :class:`~dropstudy.masks.MaskSpec` paths); ``_MISSING`` if absent."""
    for k in path:
        if not isinstance(tree, Mapping):
            return _MISSING
        if k in tree:
            tree = tree[k]
        elif str(k) in tree:
            tree = tree[str(k)]
        else:
            return _MISSING
    return tree


def _variables(model: nnx.Module) -> Iterator[tuple[Path, nnx.Variable]]:
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Variable):
            yield tuple(path), node


def _value(var: nnx.Variable) -> Any:
    get = getattr(var, "get_value", None)
    return get() if get is not None else var.value


def _dropouts(model: nnx.Module) -> dict[int, Path]:
    """``id`` of each :class:`MaskedDropout` node -> its path in the graph."""
    return {
        id(node): tuple(path)
        for path, node in nnx.iter_graph(model)
        if isinstance(node, MaskedDropout)
    }


@dataclasses.dataclass(frozen=True)
class Pure:
    """An NNX model as a pure function, usable wherever a dropstudy linen model is.

    Made by :func:`pure`: the graph comes from ``nnx.split`` and every call rebuilds the model
    with ``nnx.merge``. What it keeps beyond those two is what they cannot do (shown by
    ``tests/test_nnx.py::test_what_pure_adds_to_split_and_merge``): variables as linen-style
    collections by name, masks that may be absent (a layer without one runs at its
    expectation), and the dropout layers that actually run on ``x``, in call order.

    Hashable and compared by structure only (the ``GraphDef``, every variable's collection /
    path / shape / dtype, and the dropout layers), so it can be a static argument of
    ``jax.jit``: two models of the same architecture give equal ``Pure``
    objects whatever their weights. The weights travel separately, as ``variables``.

    Attributes:
      graphdef: the model's ``nnx.GraphDef``.
      leaves: every variable of the model (:class:`Leaf`).
      layers: every :class:`MaskedDropout` of the model (:class:`Layer`), in graph order.
      captured: the variables the model held when :func:`pure` split it (not compared),
        returned by :meth:`init`.
    """

    graphdef: nnx.GraphDef
    leaves: tuple[Leaf, ...]
    layers: tuple[Layer, ...]
    captured: Mapping[str, Any] | None = dataclasses.field(compare=False, repr=False, default=None)

    # -- the protocol of dropstudy.masks._traced_init ----------------------------------

    def init(self, key: Any, x: jax.Array) -> dict:
        """The variables captured by :func:`pure` plus the expected masks.

        NNX models initialise their parameters when they are built, so ``key`` is ignored: the
        parameters are those the model held when :func:`pure` split it. Traceable
        (``jax.eval_shape``).

        Args:
          key: ignored; it may be a PRNG key or a dict of them, as for ``linen.Module.init``.
          x: inputs ``(B, ...)``.

        Returns:
          The variables dict. Its ``"masks"`` holds the keep probability of every unit of each
          dropout layer that runs on ``x``, as nested dicts ``{"drop_0": {"mask": (U,)}}`` with
          string keys (absent when no dropout layer runs).
        """
        del key
        out = {c: v for c, v in (self.captured or {}).items() if c != MASKS}
        masks: dict = {}
        for layer in self._called(x):
            mask = jnp.full(layer.unit_shape, 1.0 - layer.rate, layer.dtype)
            _set(masks, (*_str_path(layer.path), "mask"), mask)
        if masks:
            out[MASKS] = masks
        return out

    def dropout_rates(self, x: jax.Array) -> dict[tuple[str, ...], float]:
        """The drop rates of the dropout layers that run on ``x``, in the order they first run.

        Found by tracing one forward pass with ``jax.eval_shape``: nothing is computed.

        Args:
          x: inputs ``(B, ...)``.

        Returns:
          ``{layer path (strings, without "mask"): drop rate}``.
        """
        return {_str_path(layer.path): layer.rate for layer in self._called(x)}

    def flax_dropout(self, x: jax.Array) -> list[str]:
        """The model's ``nnx.Dropout`` layers (the predictors cannot set their masks).

        Args:
          x: inputs ``(B, ...)`` (unused: every such layer of the graph is named).

        Returns:
          Their paths, ``/``-joined.
        """
        del x
        model = self._merge(self.captured or {})
        return [
            "/".join(map(str, path))
            for path, node in nnx.iter_graph(model)
            if isinstance(node, nnx.Dropout) and node.rate > 0
        ]

    def apply(
        self,
        variables: Mapping[str, Any],
        x: jax.Array,
        *args: Any,
        mutable: bool | str | Sequence[str] = False,
        rngs: Any = None,
        method: str | Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Rebuild the model from ``variables`` and call it: ``model(x, *args, **kwargs)``.

        A dropout layer with no entry in ``"masks"`` (or no ``"masks"`` at all) uses its
        expectation: weight scaling.

        Args:
          variables: ``{"params": ..., other collections, "masks": ...}`` as nested dicts of
            arrays (what :func:`pure` returns, a linen twin's variables, or the predictors'
            masks). Masks may be ``U`` or ``(B, *U)``.
          x: inputs ``(B, ...)``.
          *args: more positional arguments of the call.
          mutable: as in linen, ``True`` or collection name(s) whose values the call may change
            (e.g. ``"batch_stats"``).
          rngs: refused: NNX models take their RNG streams when built (``nnx.Rngs``).
          method: the name of another method to call, or a function ``f(model, x, ...)``.
          **kwargs: keyword arguments of the call.

        Returns:
          The call's output; with ``mutable``, ``(output, {collection: values})``.

        Raises:
          DropstudyError: if ``rngs`` is given, ``variables`` is not a mapping or lacks a
            collection or entry the model needs, ``method`` is neither a method's name nor a
            function, or ``mutable`` names a collection the model does not have.
        """
        if rngs is not None:
            raise DropstudyError(
                "Pure.apply takes no rngs=: an NNX model holds its RNG streams (nnx.Rngs) "
                "from construction; dropstudy's masks come through variables['masks']"
            )
        if not isinstance(variables, Mapping):
            raise DropstudyError(
                f"variables must be a dict of collections {{'params': ...}}, got {type(variables)}"
            )
        model = self._merge(variables)
        if method is None:
            fn = model
        elif isinstance(method, str):
            fn = getattr(model, method, None)
            if not callable(fn):
                raise DropstudyError(f"{type(model).__name__} has no method {method!r}")
        elif callable(method):
            fn = lambda *a, **k: method(model, *a, **k)  # noqa: E731
        else:
            raise DropstudyError(f"method must be a name or a function, got {method!r}")
        token = _PURE.set(True)  # every layer uses the mask it was given
        try:
            out = fn(x, *args, **kwargs)
        finally:
            _PURE.reset(token)
        cols = self._mutable(mutable)
        if cols is None:
            return out
        state: dict[str, dict] = {c: {} for c in cols}
        for path, var in _variables(model):
            c = collection_name(type(var))
            if c in state:
                _set(state[c], path, _value(var))
        return out, state

    # -- helpers -----------------------------------------------------------------------

    def _mutable(self, mutable: bool | str | Sequence[str]) -> tuple[str, ...] | None:
        names = tuple(dict.fromkeys(leaf.collection for leaf in self.leaves))
        if mutable is False or mutable is None:
            return None
        if mutable is True:
            return names
        cols = (mutable,) if isinstance(mutable, str) else tuple(mutable)
        unknown = [c for c in cols if c not in names]
        if unknown:
            raise DropstudyError(
                f"mutable names collection(s) {unknown} the model does not have; it has "
                f"{list(names)}"
            )
        return cols

    def _merge(self, variables: Mapping[str, Any]) -> nnx.Module:
        """The model with every variable taken from ``variables`` (masks default to their
        expectation)."""
        masks = variables.get(MASKS, {})
        expected = {layer.path: layer for layer in self.layers}
        tree: dict = {}
        for leaf in self.leaves:
            if leaf.collection == MASKS:
                value = _get(masks, leaf.path)
                if value is _MISSING:
                    layer = expected.get(leaf.path[:-1])
                    if layer is None:  # a Mask variable outside a MaskedDropout
                        value = (self.captured or {}).get(MASKS, {})
                        value = _get(value, leaf.path)
                    else:
                        keep = 1.0 - layer.rate
                        value = jnp.full(layer.unit_shape, keep, layer.dtype)
            else:
                if leaf.collection not in variables:
                    raise DropstudyError(
                        f"variables have no collection {leaf.collection!r}; the model needs "
                        f"{sorted({lf.collection for lf in self.leaves} - {MASKS})}"
                    )
                value = _get(variables[leaf.collection], leaf.path)
            if value is _MISSING:
                raise DropstudyError(
                    f"variables[{leaf.collection!r}] has no entry {'/'.join(map(str, leaf.path))}"
                )
            _set(tree, leaf.path, value)
        return nnx.merge(self.graphdef, tree)

    def _called(self, x: jax.Array) -> list[Layer]:
        """The dropout layers that run on ``x``, in the order they first run."""
        x1 = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
        by_path = {layer.path: layer for layer in self.layers}
        abstract: dict = {}
        for leaf in self.leaves:
            if leaf.collection != MASKS:
                sds = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
                _set(abstract.setdefault(leaf.collection, {}), leaf.path, sds)
        box: dict[str, list[Path]] = {}

        def run(variables: dict, x1: jax.Array) -> jax.Array:
            model = self._merge(variables)
            paths = _dropouts(model)
            token, pure_token = _CALLS.set([]), _PURE.set(True)
            try:
                out = model(x1)
                calls = _CALLS.get() or []
            finally:
                _CALLS.reset(token)
                _PURE.reset(pure_token)
            box["calls"] = [(paths[id(m)], site) for m, site in calls if id(m) in paths]
            return out

        jax.eval_shape(run, abstract, x1)
        order = list(dict.fromkeys(p for p, _ in box["calls"]))
        sites = {p: {site for q, site in box["calls"] if q == p} for p in order}
        warn_shared_masks(
            type(self).__name__, {"/".join(_str_path(p)): len(v) for p, v in sites.items()}
        )
        return [by_path[p] for p in order]


def pure(model: nnx.Module) -> tuple[Pure, dict]:
    """Split an NNX model into ``(Pure, variables)`` for :mod:`dropstudy.predict`.

    The model itself is not changed; later changes to it do not reach ``Pure`` or
    ``variables``.

    Args:
      model: an ``nnx.Module``.

    Returns:
      ``(net, variables)``: the :class:`Pure` stand-in, and ``{"params": nested dict of
      arrays, ...}``: every collection but the masks (other variable types under their
      linen-style names, see :func:`collection_name`), as ``dropstudy.masks.init`` returns a
      linen model's.

    Raises:
      DropstudyError: if ``model`` is not an ``nnx.Module``, holds an ``nnx.Dropout`` in
        training mode, or holds state that is not an array in an ``nnx.Variable``.
    """
    if not isinstance(model, nnx.Module):
        raise DropstudyError(f"pure() takes an nnx.Module, got {type(model).__name__}")
    for path, node in nnx.iter_graph(model):
        # A train-mode nnx.Dropout would replay one frozen draw in every predictor call.
        if isinstance(node, nnx.Dropout) and not node.deterministic and node.rate > 0:
            raise DropstudyError(
                f"nnx.Dropout at {'/'.join(map(str, path))} is in training mode: call "
                "model.eval() (or deterministic=True) first; the predictors vary only the "
                "MaskedDropout masks"
            )
    unbuilt = [
        "/".join(map(str, path))
        for path, node in nnx.iter_graph(model)
        if isinstance(node, MaskedDropout) and node.unit_shape is None
    ]
    if unbuilt:
        raise DropstudyError(
            f"MaskedDropout layer(s) {unbuilt} have no features yet: call the model once on a "
            "batch (the layers take their unit shape from it) or build them with features="
        )
    graphdef, _ = nnx.split(model)
    leaves: list[Leaf] = []
    captured: dict[str, dict] = {}
    for path, var in _variables(model):
        value = _value(var)
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise DropstudyError(
                f"variable {'/'.join(map(str, path))} holds {type(value).__name__}, not an "
                "array; Pure supports models whose variables are arrays"
            )
        c = collection_name(type(var))
        leaves.append(Leaf(c, path, tuple(value.shape), value.dtype))
        _set(captured.setdefault(c, {}), path, value)
    n_leaves = getattr(graphdef, "num_leaves", len(leaves))  # flax < 0.10.6: no check
    if len(leaves) != n_leaves:
        raise DropstudyError(
            f"{type(model).__name__} holds {n_leaves - len(leaves)} array(s) "
            "outside nnx.Variable objects; Pure supports models whose state is in Variables"
        )
    layers = tuple(
        Layer(
            tuple(path),
            node.unit_shape,
            node.rate,
            _value(node.mask).dtype,
        )
        for path, node in nnx.iter_graph(model)
        if isinstance(node, MaskedDropout)
    )
    net = Pure(graphdef, tuple(leaves), layers, captured)
    # New dicts (the same arrays), so that editing them leaves Pure.init's copy alone.
    return net, {c: jax.tree.map(lambda a: a, v) for c, v in captured.items() if c != MASKS}


__all__ = [
    "MLP",
    "Layer",
    "Leaf",
    "Mask",
    "MaskedDropout",
    "Pure",
    "collection_name",
    "pure",
]
