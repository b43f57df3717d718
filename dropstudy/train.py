"""Training as pure, jitted functions: ``lax.scan`` over steps, ``vmap`` over seeds.

:func:`train` and :func:`train_seeds` run a run as about ten compiled segments of the same
scan (:data:`SEGMENTS`), whether or not progress is reported, so showing progress never
changes a number. :func:`make_train` gives the same steps as one pure function to jit or
vmap yourself; it agrees with the segments bitwise for a single run and to float rounding
for a vmapped batch (XLA compiles the two loops on their own).

Every step draws its minibatch and its masks from ``fold_in(key, step)``, so a run is a
deterministic function of its key: the same key on the same machine gives bitwise the same
parameters. A drop rate of 0 gives plain training through the same code (masks of ones).

Mask modes (how training picks subnetworks):

* ``per_example`` — a fresh mask per example per step (what dropout does);
* ``per_batch`` — one fresh mask per step shared by the minibatch;
* ``cycle`` — a given list of K masks, used in turn (a fixed-mask ensemble with shared
  weights; K = 1 trains one fixed subnetwork).

Selection on validation data runs inside the same scan: with ``TrainConfig.eval_every``
the validation loss of the current variables (by weight scaling, or the MC average over a
fixed set of subnetworks) is computed every ``eval_every`` steps and the best variables so
far are kept for each selection window, so one run of ``2W`` steps gives the early-stopped
net within ``W`` and within ``2W``, vmapped over seeds like the rest (:class:`Selected`).
Scoring changes no training number.

Any linen model with :class:`~dropstudy.models.MaskedDropout` layers trains here: other
variable collections (a BatchNorm's ``batch_stats``) are updated as the model mutates them,
other randomness (``nn.Dropout``, noise layers) draws from the rng streams named in
``TrainConfig.rng_streams``, and the optimiser and loss may be any optax transformation and
any function of ``(outputs, targets)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from . import masks as M
from . import rng, sharding
from .average import class_logits
from .models import model_config, recording_masks
from .optim import max_norm
from .validate import (
    TASKS,
    DropstudyError,
    binary_shape_message,
    check_array,
    check_choice,
    check_hashable,
    check_key,
    check_positive_float,
    check_positive_int,
)

MASK_MODES = ("per_example", "per_batch", "cycle")
OPTIMIZERS = ("adam", "sgd")
DEFAULT_LR = 1e-3  # of a named optimizer when lr is not given
DEFAULT_MOMENTUM = 0.9  # of sgd when momentum is not given
LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")
SELECT_BY = ("ws", "mc")  # predictors that validation selection can score
DEFAULT_SELECT_K = 32  # subnetworks of a selection by the MC average
Loss = Callable[[jax.Array, jax.Array], jax.Array]  # (outputs, targets) -> scalar


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
      steps: optimiser steps.
      batch_size: examples per step; 0 means full batch.
      optimizer: ``adam`` or ``sgd`` (with ``momentum``) at ``lr`` and ``schedule``; or any
        ``optax.GradientTransformation`` (then it sets its own learning rate: ``lr`` and
        ``momentum`` must not be given, and ``schedule`` stays ``constant``).
      lr: learning rate of a named optimizer (``None``: 1e-3).
      momentum: SGD momentum (``None``: 0.9; 0: plain SGD); refused with adam.
      l2: coupled L2 penalty ``l2/2 * sum ||W||^2`` over weight matrices (not biases).
      task: ``classification`` (integer labels; default loss softmax cross-entropy),
        ``binary`` (one output, the logit of class 1; labels 0 or 1; default loss sigmoid
        cross-entropy) or ``regression`` (default loss mean squared error).
      loss: ``None`` (the task's default), ``"cross_entropy"``, ``"binary_cross_entropy"``,
        ``"mse"``, or a function
        ``loss(outputs (B, n_out), targets (B, ...)) -> scalar`` (mean over the batch).
      rng_streams: names of the rng streams the model draws from besides its masks (e.g.
        ``("dropout",)`` for ``flax.linen.Dropout``); each step gets a fresh key per stream.
      mask_mode: ``per_example``, ``per_batch`` or ``cycle`` (see module docstring).
      snapshot_every: also return parameters and gradients every this many steps (0: only
        at the end). Must divide ``steps``.
      lr_scale: ``((name, factor), ...)``: multiply the updates of a top-level module
        (``"dense_1"``) or one of its parameters (``"dense_1/kernel"``), e.g. to match the
        standard and inverted conventions step for step under SGD.
      schedule: ``constant`` or ``cosine`` (decay to 0 over ``steps``).
      max_norm: bound ``c`` on each unit's incoming weight vector, projected after every
        update (:func:`dropstudy.optim.max_norm`, chained after the optimiser); 0: none.
      eval_every: every this many steps, the validation loss of the current variables,
        inside the compiled run (``validation=`` of :func:`train`), and the best variables
        so far kept per selection window; 0: no validation. Must divide ``steps`` and every
        window.
      select_by: the predictor the validation loss scores: ``"ws"`` (weight scaling) or
        ``"mc"`` (the MC average over ``select_k`` subnetworks, drawn once per run and kept
        for every evaluation).
      select_k: subnetworks of ``select_by="mc"`` (``None``: :data:`DEFAULT_SELECT_K`).
      windows: selection windows in steps besides the whole run: the best variables within
        the first ``W`` steps for each ``W``, so one run of ``2W`` steps also gives the
        selection within ``W``.
    """

    steps: int = 3000
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float | None = None
    l2: float = 0.0
    task: str = "classification"
    mask_mode: str = "per_example"
    snapshot_every: int = 0
    lr_scale: tuple[tuple[str, float], ...] = ()
    schedule: str = "constant"
    loss: str | Loss | None = None
    rng_streams: tuple[str, ...] = ()
    max_norm: float = 0.0
    eval_every: int = 0
    select_by: str = "ws"
    select_k: int | None = None
    windows: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.validate()  # an invalid config is refused when built, not when first used

    def validate(self) -> TrainConfig:
        """Check every field.

        Returns:
          ``self``, when valid.

        Raises:
          DropstudyError: naming what is wrong.
        """
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size, minimum=0)
        if isinstance(self.optimizer, optax.GradientTransformation):
            for name, unset in (("lr", None), ("momentum", None), ("schedule", "constant")):
                if getattr(self, name) != unset:
                    raise DropstudyError(
                        f"{name}={getattr(self, name)!r} applies to the named optimizers "
                        f"{OPTIMIZERS}; an optax transformation sets its own: build it into "
                        "the transformation"
                    )
        else:
            check_choice("optimizer", self.optimizer, OPTIMIZERS)
            if self.optimizer == "adam" and self.momentum is not None:
                raise DropstudyError(
                    f"momentum={self.momentum} applies to optimizer='sgd'; adam has its own "
                    "moment estimates (pass optax.adam(lr, b1=...) to change them)"
                )
        if self.loss is not None and not callable(self.loss):
            check_choice("loss", self.loss, LOSSES)
        if isinstance(self.rng_streams, str) or not all(
            isinstance(n, str) and n for n in self.rng_streams
        ):
            raise DropstudyError(
                f"rng_streams must be a tuple of stream names, e.g. ('dropout',), got "
                f"{self.rng_streams!r}"
            )
        if "params" in self.rng_streams:
            raise DropstudyError("rng_streams must not name 'params': that stream initialises")
        if self.lr is not None:
            check_positive_float("lr", self.lr)
        if self.momentum is not None:
            check_positive_float("momentum", self.momentum, allow_zero=True)
        check_positive_float("l2", self.l2, allow_zero=True)
        check_choice("task", self.task, TASKS)
        if (self.task == "binary") != (self.loss == "binary_cross_entropy") and (
            self.loss in ("cross_entropy", "binary_cross_entropy")
        ):
            raise DropstudyError(
                f"loss={self.loss!r} does not fit task={self.task!r}: one logit with labels "
                "0/1 is task='binary' (loss 'binary_cross_entropy', its default), one logit "
                "per class task='classification' (loss 'cross_entropy')"
            )
        check_choice("mask_mode", self.mask_mode, MASK_MODES)
        check_positive_int("snapshot_every", self.snapshot_every, minimum=0)
        check_choice("schedule", self.schedule, ("constant", "cosine"))
        for name, f in self.lr_scale:
            check_positive_float(f"lr_scale[{name!r}]", f)
        if self.snapshot_every and self.steps % self.snapshot_every:
            raise DropstudyError(
                f"snapshot_every={self.snapshot_every} must divide steps={self.steps}"
            )
        check_positive_float("max_norm", self.max_norm, allow_zero=True)
        self._validate_selection()
        return self

    def _validate_selection(self) -> None:
        check_positive_int("eval_every", self.eval_every, minimum=0)
        check_choice("select_by", self.select_by, SELECT_BY)
        if self.select_k is not None:
            check_positive_int("select_k", self.select_k)
        if not self.eval_every:
            for name, default in (("select_by", "ws"), ("select_k", None)):
                if getattr(self, name) != default:
                    raise DropstudyError(
                        f"{name}={getattr(self, name)!r} applies to selection on validation "
                        "data: set eval_every too"
                    )
            if self.windows:
                raise DropstudyError("windows select on validation data: set eval_every too")
            return
        if self.select_by == "ws" and self.select_k is not None:
            raise DropstudyError(
                f"select_k={self.select_k} sets the MC average's subnetworks: use "
                "select_by='mc', or leave select_k out"
            )
        if callable(self.loss):
            raise DropstudyError(
                "selection scores the predictor's NLL (classification) or squared error "
                "(regression) on integer labels or targets; with a custom loss, train without "
                "eval_every and score snapshots (snapshot_every) yourself"
            )
        ok = isinstance(self.windows, tuple) and all(
            isinstance(w, int | np.integer) and not isinstance(w, bool) and 0 < w < self.steps
            for w in self.windows
        )
        if not ok or len(set(self.windows)) != len(self.windows):
            raise DropstudyError(
                f"windows must be a tuple of distinct step counts in (0, steps={self.steps}), "
                f"got {self.windows!r} (the whole run is always a window)"
            )
        object.__setattr__(self, "windows", tuple(int(w) for w in self.windows))
        for n in (self.steps, *self.windows):
            if n % self.eval_every:
                raise DropstudyError(
                    f"eval_every={self.eval_every} must divide steps and every window; "
                    f"it does not divide {n}"
                )

    @property
    def selection_windows(self) -> tuple[int, ...]:
        """The selection windows in steps, ascending, the whole run last (``()`` without
        selection)."""
        return tuple(sorted({*self.windows, self.steps})) if self.eval_every else ()

    @property
    def selection_k(self) -> int:
        """Subnetworks of a selection by the MC average (``select_k``, or its default)."""
        return DEFAULT_SELECT_K if self.select_k is None else self.select_k

    def to_dict(self) -> dict:
        """The configuration as a JSON-ready dict.

        Returns:
          ``{field: value}``; a custom optimiser or loss is recorded by its ``repr``.
        """
        d = asdict(self)
        for name in ("optimizer", "loss"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                d[name] = f"custom: {v!r}"
        return d

    def replace(self, **kw) -> TrainConfig:
        """A copy with some fields replaced.

        Args:
          **kw: the new values, by field name.

        Returns:
          The new :class:`TrainConfig`, checked when built.

        Raises:
          DropstudyError: if the new configuration is invalid.
        """
        return replace(self, **kw)


class Selected(NamedTuple):
    """The variables with the lowest validation loss within one selection window.

    Attributes:
      variables: the variables dict at that step (``"params"`` and any other collection).
      step: the steps done when they were evaluated (a multiple of ``eval_every``).
      loss: their validation loss.
    """

    variables: Any
    step: jax.Array
    loss: jax.Array


class History(NamedTuple):
    """What a run records.

    Attributes:
      loss: the loss of every step, ``(steps,)``.
      params: the parameters, stacked over snapshots.
      grads: the gradients, stacked over snapshots.
      val_loss: with ``eval_every``, the validation loss after every step, ``(steps,)``: NaN
        where none was evaluated (step ``i`` is evaluated when ``(i + 1) % eval_every ==
        0``); else ``None``.
      selected: with ``eval_every``, one :class:`Selected` per window of
        ``TrainConfig.selection_windows`` (the whole run last); else ``None``.
    """

    loss: jax.Array
    params: Any
    grads: Any
    val_loss: Any = None
    selected: tuple[Selected, ...] | None = None


class DivergenceError(DropstudyError):
    """Training produced a NaN or infinite loss."""


def _optimizer(cfg: TrainConfig, inject_lr: bool = False) -> optax.GradientTransformation:
    """The optimiser ``cfg`` names; with ``inject_lr`` its learning rate is state
    (``optax.inject_hyperparams``), so a batch of runs may each take their own."""
    lr = DEFAULT_LR if cfg.lr is None else cfg.lr
    lr = lr if cfg.schedule == "constant" else optax.cosine_decay_schedule(lr, cfg.steps)
    if isinstance(cfg.optimizer, optax.GradientTransformation):
        opt = cfg.optimizer
    elif cfg.optimizer == "adam":
        opt = _rate_as_state(optax.adam, inject_lr)(lr)
    else:
        momentum = DEFAULT_MOMENTUM if cfg.momentum is None else cfg.momentum
        opt = _rate_as_state(optax.sgd, inject_lr)(lr, momentum=momentum or None)
    opt = _scaled(opt, cfg.lr_scale)
    return optax.chain(opt, max_norm(cfg.max_norm)) if cfg.max_norm else opt


def _rate_as_state(make: Callable, inject: bool) -> Callable:
    """``make`` itself, or with its learning rate (and nothing else) held as optimiser state:
    the other hyperparameters stay Python numbers, so none is rounded to the parameters'
    dtype (Adam's ``b2 = 0.999`` is 1.0 in bfloat16)."""
    if not inject:
        return make
    others = tuple(p for p in inspect.signature(make).parameters if p != "learning_rate")
    return optax.inject_hyperparams(make, static_args=others)


def _scaled(opt: optax.GradientTransformation, lr_scale) -> optax.GradientTransformation:
    """``opt`` with the updates of some modules scaled (``TrainConfig.lr_scale``)."""
    if not lr_scale:
        return opt
    factors = dict(lr_scale)

    def scale(updates):
        def one(path, u):
            keys = [str(getattr(k, "key", k)) for k in path]
            f = factors.get("/".join(keys[:2]), factors.get(keys[0], 1.0))
            return u * f

        return jax.tree_util.tree_map_with_path(one, updates)

    return optax.chain(opt, optax.stateless(lambda u, _: scale(u)))


def task_loss(cfg: TrainConfig) -> Loss:
    """The loss that ``cfg`` names (or its task's default).

    Args:
      cfg: the training configuration.

    Returns:
      ``loss(outputs, targets) -> scalar``: ``cfg.loss`` itself when it is a function,
      softmax cross-entropy with integer labels, sigmoid cross-entropy of one logit with
      labels 0 or 1, or mean squared error.
    """
    defaults = {"classification": "cross_entropy", "binary": "binary_cross_entropy"}
    name = cfg.loss if cfg.loss is not None else defaults.get(cfg.task, "mse")
    if callable(name):
        return name
    if name == "cross_entropy":
        return lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    if name == "binary_cross_entropy":
        # one logit z per example, labels 0 or 1: -log sigmoid(z) or -log(1 - sigmoid(z))
        return lambda out, y: optax.sigmoid_binary_cross_entropy(
            out.reshape(y.shape), y.astype(out.dtype)
        ).mean()
    return lambda out, y: jnp.mean((out - y.reshape(out.shape)) ** 2)


def l2_penalty(params, l2: float) -> jax.Array:
    """``l2/2 * sum ||W||^2`` over the weight matrices (leaves named ``kernel``).

    Args:
      params: the parameters.
      l2: the penalty's coefficient.

    Returns:
      The penalty, a scalar.
    """
    kernels = [
        p
        for path, p in jax.tree_util.tree_leaves_with_path(params)
        if "kernel" in jax.tree_util.keystr(path)
    ]
    return 0.5 * l2 * sum(jnp.sum(k * k) for k in kernels)


def loss_fn(
    model: nn.Module,
    params,
    x,
    y,
    masks,
    *,
    task: str,
    l2: float = 0.0,
    loss: Loss | None = None,
    state: dict | None = None,
    rngs: dict | None = None,
):
    """Mean training loss of the subnetwork(s) ``masks`` on ``(x, y)``, plus the L2 penalty.

    Args:
      model: the model.
      params: its parameters.
      x: inputs ``(B, ...)``.
      y: class labels ``(B,)`` (0 or 1 for binary) or regression targets ``(B, n_out)``.
      masks: a masks pytree, each layer's mask ``U`` (one subnetwork for the batch) or
        ``(B, *U)`` (one per example).
      task: ``"classification"``, ``"binary"`` or ``"regression"``; picks the default loss.
      l2: the L2 penalty's coefficient (:func:`l2_penalty`).
      loss: ``loss(outputs, targets) -> scalar`` (default: the task's, :func:`task_loss`).
      state: the model's collections besides params and masks (e.g. ``batch_stats``), or
        ``None``.
      rngs: ``{stream: key}`` for the rng streams the model draws from besides its masks,
        or ``None``.

    Returns:
      The loss, a scalar; with ``state``, ``(loss, new_state)``: the model may update its
      collections, as BatchNorm does in training.
    """
    if loss is None:
        loss = task_loss(TrainConfig(task=task))
    variables = {"params": params, **(state or {})}
    kw = {"rngs": rngs} if rngs else {}
    if state is None:
        out = M.apply(model, variables, x, masks, **kw)
        new_state = None
    else:
        out, new_state = M.apply(model, variables, x, masks, mutable=list(state), **kw)
        new_state = {k: new_state.get(k, v) for k, v in state.items()}
    value = loss(out, y)
    if l2:
        value = value + l2_penalty(params, l2)
    return value if state is None else (value, new_state)


def step_masks(
    spec: M.MaskSpec,
    mask_mode: str,
    mask_key: jax.Array,
    step,
    batch: int,
    *,
    cycle_masks: jax.Array | None = None,
    dtype=jnp.float32,
) -> M.Masks:
    """The masks training uses at ``step``.

    Code that steps a :class:`Trainer` itself gets each step's subnetwork from here.

    Args:
      spec: the mask layout.
      mask_mode: ``per_example`` (one mask per example, drawn from
        ``fold_in(mask_key, step)``), ``per_batch`` (one for the whole minibatch, drawn
        likewise) or ``cycle`` (mask ``step % K`` of ``cycle_masks``).
      mask_key: the second of the keys ``(data, masks, rngs)`` that :attr:`Trainer.start`
        returns.
      step: the step number.
      batch: examples in the minibatch.
      cycle_masks: flat masks ``(K, n_units)`` for ``cycle``.
      dtype: the masks' dtype.

    Returns:
      A masks pytree, each layer's masks ``(batch, *U)`` (``per_example``) or ``U``
      (``per_batch`` and ``cycle``).

    Raises:
      DropstudyError: if ``mask_mode`` is unknown, ``cycle`` lacks ``cycle_masks``, or (for
        the drawn modes) ``mask_key`` is not a scalar PRNG key.
    """
    check_choice("mask_mode", mask_mode, MASK_MODES)
    if mask_mode == "cycle":
        if cycle_masks is None:
            raise DropstudyError("mask_mode='cycle' needs cycle_masks (K, n_units)")
        return spec.unflatten(cycle_masks[step % cycle_masks.shape[0]].astype(dtype))
    check_key("mask_key", mask_key)
    k = rng.fold_in(mask_key, step)
    return M.sample_masks(spec, k, (batch,) if mask_mode == "per_example" else (), dtype)


class Trainer(NamedTuple):
    """A training run as pure pieces, so that it can run as one program or in segments.

    ``carry`` is ``(params, state, opt_state, grads)``.

    Attributes:
      start: ``start(key, x, variables0) -> (keys, carry)``: the initial state
        (``variables0`` or an initialisation drawn from ``key``).
      steps: ``steps(keys, carry, x, y, cycle_masks, *, first, n, val=None) -> (carry,
        losses (n,))``: steps ``first .. first + n - 1`` (``n`` static). With selection
        (``TrainConfig.eval_every``) ``val`` is the validation set ``(x_val, y_val)`` and
        the losses come as ``(losses (n,), validation losses (n,))``.
      finish: ``finish(carry) -> variables``.
      selected: ``selected(carry) -> tuple[Selected, ...]``, one per selection window
        (``()`` without selection).
    """

    start: Callable
    steps: Callable
    finish: Callable
    selected: Callable


def make_trainer(
    model: nn.Module, spec: M.MaskSpec, cfg: TrainConfig, *, inject_lr: bool = False
) -> Trainer:
    """The :class:`Trainer` of ``model`` under ``cfg`` (see :func:`make_train`).

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers.
      spec: its masks' layout (:func:`dropstudy.masks.mask_spec`).
      cfg: how to train.
      inject_lr: the named optimiser's learning rate is part of the optimiser state, set by
        ``start(..., lr=)`` (a batch of runs over a grid of learning rates, one program).

    Returns:
      The run's pure pieces: ``start``, ``steps``, ``finish`` and ``selected``.
    """
    cfg.validate()
    opt = _optimizer(cfg, inject_lr)
    loss = task_loss(cfg)
    streams = tuple(cfg.rng_streams)
    windows = cfg.selection_windows

    def start(key, x, variables0=None, lr=None):
        k_init, k_data, k_mask = jax.random.split(key, 3)
        # Other streams hang off the key by fold_in, so the three keys above are the same
        # whether or not any streams are named.
        k_rngs = jax.random.fold_in(key, 0x52_4E_47)
        if variables0 is None:
            init_rngs = {s: jax.random.fold_in(k_rngs, i) for i, s in enumerate(streams)}
            with recording_masks():  # masks at their expectation; dropped below
                variables0 = model.init({"params": k_init, **init_rngs}, x[:1])
        variables0 = flax.core.unfreeze(variables0)
        params = variables0["params"]
        state = {k: v for k, v in variables0.items() if k not in ("params", M.MASKS)} or None
        opt_state = opt.init(params)
        if lr is not None:
            opt_state = optax.tree_utils.tree_set(opt_state, learning_rate=lr)
        carry = (params, state, opt_state, jax.tree.map(jnp.zeros_like, params))
        if not windows:
            return (k_data, k_mask, k_rngs), carry
        # Selection: per window, the best variables so far, their loss and step; the MC
        # average's subnetworks hang off the key like the other streams.
        k_sel = jax.random.fold_in(key, 0x53_45_4C)
        start_vars = {"params": params, **(state or {})}
        inf, zero = jnp.asarray(jnp.inf, jnp.float32), jnp.asarray(0, jnp.int32)
        best = tuple((start_vars, inf, zero) for _ in windows)
        return (k_data, k_mask, k_rngs, k_sel), (*carry, best)

    def steps(keys, carry, x, y, cycle_masks, *, first, n: int, val=None):
        k_data, k_mask, k_rngs = keys[:3]
        if windows and val is None:
            raise DropstudyError("eval_every selects on validation data: pass val=(x, y)")
        val_loss = _validation_loss(model, spec, cfg, keys[3], val) if windows else None
        size = x.shape[0]
        bs = cfg.batch_size if 0 < cfg.batch_size < size else size
        per_epoch = size // bs

        def epoch_perm(step):
            return rng.permutation(jax.random.fold_in(k_data, step // per_epoch), size)

        def batch(step, perm):
            """The step's batch, and the epoch's permutation (drawn once per epoch: a sort
            of N keys every step cost more than a small net's whole step)."""
            if bs == size:
                return x, y, perm
            # The predicate depends on the step alone, so under vmap over seeds it stays a
            # branch (a batched predicate would run both sides).
            perm = jax.lax.cond(step % per_epoch == 0, epoch_perm, lambda _: perm, step)
            idx = jax.lax.dynamic_slice(perm, ((step % per_epoch) * bs,), (bs,))
            return x[idx], y[idx], perm

        def masks_at(step, b):
            return step_masks(
                spec, cfg.mask_mode, k_mask, step, b, cycle_masks=cycle_masks, dtype=x.dtype
            )

        def rngs_at(step):
            k = jax.random.fold_in(k_rngs, step + 1)
            return {s: jax.random.fold_in(k, i) for i, s in enumerate(streams)}

        def step_fn(carry, step):
            core, perm = carry
            params, state, opt_state = core[:3]
            xb, yb, perm = batch(step, perm)
            m = masks_at(step, xb.shape[0])
            kw = dict(loss=loss, state=state, rngs=rngs_at(step))
            if state is None:
                value, g = jax.value_and_grad(loss_fn, argnums=1)(
                    model, params, xb, yb, m, task=cfg.task, l2=cfg.l2, **kw
                )
            else:
                (value, state), g = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
                    model, params, xb, yb, m, task=cfg.task, l2=cfg.l2, **kw
                )
            upd, opt_state = opt.update(g, opt_state, params)
            # The latest gradient rides in the carry: stacking it per step would write
            # (and page in) one parameter-sized buffer per step only to keep the last one.
            new = (optax.apply_updates(params, upd), state, opt_state, g)
            if not windows:
                return (new, perm), value
            best, v = _select(
                windows, cfg.eval_every, core[4], new[0], state, step=step, val_loss=val_loss
            )
            return ((*new, best), perm), (value, v)

        perm0 = epoch_perm(first) if bs < size else None
        (carry, _), values = jax.lax.scan(step_fn, (carry, perm0), first + jnp.arange(n))
        return carry, values

    def finish(carry):
        params, state = carry[:2]
        return {"params": params, **(state or {})}

    def selected(carry):
        return tuple(Selected(v, s, loss) for v, loss, s in carry[4]) if windows else ()

    return Trainer(start, steps, finish, selected)


def _validation_loss(model, spec: M.MaskSpec, cfg: TrainConfig, key, val) -> Callable:
    """``loss(params, state) -> scalar``: the validation NLL (classification) or mean
    squared error (regression) of ``cfg.select_by``'s predictor on ``val = (x, y)``."""
    x_val, y_val = val
    # masks hold keep probabilities: a float dtype whatever the inputs are (token ids, say)
    dtype = x_val.dtype if jnp.issubdtype(x_val.dtype, jnp.floating) else jnp.float32
    # A fixed set of subnetworks for the whole run: every evaluation scores the same
    # ensemble, so the losses along the run are comparable.
    masks = (
        M.sample_mask_batch(spec, key, jnp.arange(cfg.selection_k), dtype)
        if cfg.select_by == "mc"
        else None
    )

    def loss(params, state):
        variables = {"params": params, **(state or {})}
        if masks is None:
            out = M.apply(model, variables, x_val, M.expected_masks(spec, dtype))[None]
        else:
            out = jax.vmap(lambda m: M.apply(model, variables, x_val, m))(masks)
        out = out.astype(jnp.float32)  # (K, B, n_out), K = 1 for weight scaling
        if cfg.task != "regression":
            out = class_logits(cfg.task, out)
            logp = jax.nn.logsumexp(jax.nn.log_softmax(out, -1), axis=0) - jnp.log(out.shape[0])
            return -jnp.mean(jnp.take_along_axis(logp, y_val[:, None], axis=-1))
        return jnp.mean((jnp.mean(out, axis=0) - y_val.reshape(out.shape[1:])) ** 2)

    return loss


def _select(windows, every: int, best, params, state, *, step, val_loss):
    """After step ``step`` (0-based): the validation loss when it is due (NaN when not), and
    each window's best ``(variables, loss, steps done)`` updated where it improved."""
    done = step + 1
    now = {"params": params, **(state or {})}

    def evaluate(best):
        v = val_loss(params, state)
        out = []
        for w, (b_vars, b_loss, b_step) in zip(windows, best, strict=True):
            take = (done <= w) & (v < b_loss)  # NaN never wins
            keep = lambda a, b, take=take: jnp.where(take, a, b)  # noqa: E731
            out.append((jax.tree.map(keep, now, b_vars), keep(v, b_loss), keep(done, b_step)))
        return tuple(out), v

    # The step alone decides, so under vmap over seeds this stays a branch: the steps
    # between evaluations copy nothing.
    skip = lambda best: (best, jnp.asarray(jnp.nan, jnp.float32))  # noqa: E731
    return jax.lax.cond(done % every == 0, evaluate, skip, best)


def make_train(model: nn.Module, spec: M.MaskSpec, cfg: TrainConfig):
    """A pure function ``train(key, x, y, cycle_masks, variables0) -> (variables, History)``.

    The whole run is one program (a scan over snapshot segments of a scan over steps). Not
    jitted: wrap it in ``jax.jit``; :func:`train` and :func:`train_seeds` run the same steps
    in segments.

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers.
      spec: its masks' layout (:func:`dropstudy.masks.mask_spec`).
      cfg: how to train.

    Returns:
      The function. Its ``x`` is ``(N, ...)``, ``y`` ``(N,)`` (class labels) or
      ``(N, n_out)`` (regression targets); ``cycle_masks`` flat ``(K, n_units)`` for
      ``mask_mode="cycle"`` (else ignored, pass ``None``); ``variables0`` (the model's
      variables dict) replaces the initialisation drawn from ``key`` when given; ``val``,
      the validation set ``(x_val, y_val)``, is needed with ``cfg.eval_every``. It returns
      the final variables (``"params"`` and any other collection the model keeps, without
      the masks) and the :class:`History`.
    """
    t = make_trainer(model, spec, cfg)
    seg = cfg.snapshot_every or cfg.steps

    def train_fn(key, x, y, cycle_masks=None, variables0=None, *, val=None):
        keys, carry = t.start(key, x, variables0)

        def segment(carry, s):
            carry, values = t.steps(keys, carry, x, y, cycle_masks, first=s * seg, n=seg, val=val)
            return carry, (values, carry[0], carry[3])

        carry, (values, snaps, grads) = jax.lax.scan(segment, carry, jnp.arange(cfg.steps // seg))
        if not cfg.eval_every:
            return t.finish(carry), History(values.reshape(-1), snaps, grads)
        losses, vals = values
        hist = History(losses.reshape(-1), snaps, grads, vals.reshape(-1), t.selected(carry))
        return t.finish(carry), hist

    return train_fn


def _check_data(x, y, cfg: TrainConfig) -> tuple[jax.Array, jax.Array]:
    xa = check_array("x", x)
    if cfg.task == "binary" and np.asarray(y).dtype == bool:
        y = np.asarray(y, np.int32)
    ya = check_array("y", y)
    if xa.ndim < 2 or len(xa) == 0:
        raise DropstudyError(f"x must be a non-empty batch (N, ...), got shape {xa.shape}")
    if len(ya) != len(xa):
        raise DropstudyError(f"x has {len(xa)} examples but y has {len(ya)}")
    if cfg.task == "binary" and cfg.loss in (None, "binary_cross_entropy"):
        if ya.ndim != 1 or not bool(np.all(np.isin(ya, (0, 1)))):
            values = np.unique(ya)[:5].tolist()
            raise DropstudyError(
                f"binary classification needs labels 0 or 1 of shape (N,), got shape "
                f"{ya.shape} with values {values}: map two classes to 0 and 1, e.g. "
                "(y == b).astype(int); for more classes use task='classification' with one "
                "output per class"
            )
        ya = ya.astype(np.int32)  # 0./1. floats and booleans are labels too
    if cfg.task == "classification" and cfg.loss in (None, "cross_entropy"):
        if ya.dtype.kind not in "iu" or ya.ndim != 1:
            onehot = ya.ndim == 2 and ya.shape[1] > 1 and bool(np.all(np.isin(ya, (0, 1))))
            fix = (
                "these look one-hot: pass the class indices, y.argmax(1)"
                if onehot and bool(np.all(ya.sum(1) == 1))
                else "use task='regression' for real-valued targets"
            )
            raise DropstudyError(
                f"classification needs integer labels y of shape (N,), got {ya.dtype} "
                f"{ya.shape}; {fix}"
            )
    return jnp.asarray(xa), jnp.asarray(ya)


def _check_selection_model(model, cfg: TrainConfig, x, spec, val) -> None:
    """A model that selection can score: no rng streams, no collections the training model
    updates when applied, validation labels or targets that fit its outputs."""
    if val is None:
        return
    if cfg.rng_streams:
        raise DropstudyError(
            f"selection scores the training model, which draws from rng streams "
            f"{cfg.rng_streams}: train without eval_every, keep snapshots (snapshot_every) and "
            "score them with the model in eval mode"
        )
    if isinstance(model, nn.Module):
        with M.flax_errors(model):
            with recording_masks():
                cols = jax.eval_shape(lambda: model.init(jax.random.key(0), x[:1]))
        other = sorted(set(cols) - {"params", M.MASKS})
        if other:
            raise DropstudyError(
                f"selection scores the training model, which keeps the collections {other} "
                "(a BatchNorm updates them when applied in training mode): train without "
                "eval_every, keep snapshots (snapshot_every) and score them in eval mode"
            )
    xv, yv = val
    if xv.ndim == x.ndim + 1:  # one set per seed: check their examples together, one trace
        xv, yv = xv.reshape(-1, *xv.shape[2:]), yv.reshape(-1, *yv.shape[2:])
    _check_model(model, cfg, xv, yv, spec)


def _check_selected(hist: History, seeds: list, skip=None) -> None:
    """Refuse a run whose selection window saw no finite validation loss (labels out of
    range, a diverged net): its best variables would silently be the initial ones."""
    if not hist.selected:
        return
    losses = np.stack([np.atleast_1d(np.asarray(s.loss)) for s in hist.selected])  # (W, S)
    bad = ~np.all(np.isfinite(losses), axis=0)
    if skip is not None:
        bad &= ~skip
    if bad.any():
        raise DropstudyError(
            f"no finite validation loss in a selection window for seed(s) "
            f"{[s for s, b in zip(seeds, bad, strict=True) if b]}: check the validation data "
            "(NaN inputs, labels outside the model's classes)"
        )


def _check_validation(validation, cfg: TrainConfig, x, per_seed: bool = False):
    """The validation set as arrays, or None; refused where ``cfg`` does not select, and
    needed where it does."""
    if not cfg.eval_every:
        if validation is not None:
            raise DropstudyError(
                "validation data are scored only to select the best variables: set "
                "eval_every in the TrainConfig (and select_by, windows if wanted)"
            )
        return None
    if validation is None:
        raise DropstudyError(
            f"eval_every={cfg.eval_every} selects on validation data: pass "
            "validation=(x_val, y_val)"
        )
    try:
        xv, yv = validation
    except (TypeError, ValueError):
        raise DropstudyError("validation must be a pair (x_val, y_val)") from None
    if per_seed:
        if len(xv) != len(x) or len(yv) != len(x):
            raise DropstudyError(
                f"with per_seed_data, validation needs one set per seed, (S={len(x)}, N, ...); "
                f"got {len(xv)} inputs and {len(yv)} targets"
            )
        pairs = [_check_data(a, b, cfg) for a, b in zip(xv, yv, strict=True)]
        xv, yv = jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs])
        shape = xv.shape[2:]
    else:
        xv, yv = _check_data(xv, yv, cfg)
        shape = xv.shape[1:]
    want = x.shape[2:] if per_seed else x.shape[1:]
    if shape != want:
        raise DropstudyError(
            f"validation inputs have examples of shape {shape}; the training inputs {want}"
        )
    return xv, yv


def _check_model(model, cfg: TrainConfig, x, y, spec: M.MaskSpec, *, variables0=None) -> None:
    """The model is hashable, can be initialised from a key, and its outputs fit the
    targets of the default losses (labels in ``[0, n_out)``, one target per output)."""
    check_hashable("the model", model)
    if not isinstance(model, nn.Module):
        if variables0 is None:
            raise DropstudyError(
                f"{type(model).__name__} is not a linen module and cannot draw initial "
                "parameters from a key; pass variables0 (or train an NNX model with nnx)"
            )
        return
    rngs = {"params": jax.random.key(0), **{s: jax.random.key(0) for s in cfg.rng_streams}}
    with M.flax_errors(model), recording_masks():
        out = jax.eval_shape(lambda x: model.init_with_output(rngs, x)[0], x[:1])
    n_out = int(np.prod(out.shape[1:]))
    if cfg.loss in (None, "cross_entropy") and cfg.task == "classification":
        if n_out == 1:
            raise DropstudyError(
                "the model has one output: a softmax over one output is 1 whatever the "
                "input; pass task='binary' for one logit with labels 0/1, or "
                "task='regression'"
            )
        lo, hi = int(jnp.min(y)), int(jnp.max(y))
        if lo < 0 or hi >= n_out:
            raise DropstudyError(
                f"labels must be class indices in [0, {n_out}) for a model with {n_out} "
                f"outputs; got labels from {lo} to {hi}"
            )
    elif cfg.task == "binary" and out.ndim != 2:
        raise DropstudyError(binary_shape_message(out.shape))
    elif cfg.loss in (None, "binary_cross_entropy") and cfg.task == "binary" and n_out != 1:
        raise DropstudyError(
            f"task='binary' trains one logit per example; the model has {n_out} outputs: "
            "give it one output, or use task='classification' with one output per class"
        )
    elif cfg.loss in (None, "mse") and cfg.task == "regression":
        per = int(np.prod(y.shape[1:]))
        if per != n_out:
            raise DropstudyError(
                f"regression targets of shape {tuple(y.shape)} give {per} value(s) per "
                f"example; the model has {n_out} output(s)"
            )


def _cycle(spec: M.MaskSpec, cfg: TrainConfig, cycle_masks):
    if cfg.mask_mode != "cycle":
        return None
    if cycle_masks is None:
        raise DropstudyError("mask_mode='cycle' needs cycle_masks (K, n_units)")
    c = jnp.asarray(cycle_masks)
    if c.shape[-1] != spec.n_units:
        raise DropstudyError(
            f"cycle_masks has {c.shape[-1]} units per mask; the model has {spec.n_units}"
        )
    return c


Progress = Callable[[int, int], None]  # (steps done, steps in the run)
_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "dropstudy_train_progress", default=None
)
SEGMENTS = 10  # compiled pieces a run is split into (progress is reported after each)


@contextlib.contextmanager
def progress(report: Progress) -> Iterator[None]:
    """Report the progress of every run trained within this block.

    Within it, :func:`train` and :func:`train_seeds` called without a ``progress`` argument
    report to ``report(done, total)`` after each segment of every run (for code that trains
    deep inside calls it does not own, such as the study's cells). The segments run either
    way: reporting changes no number.

    Args:
      report: called as ``report(done, total)``.
    """
    token = _PROGRESS.set(report)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def segment_steps(cfg: TrainConfig) -> int:
    """Steps per segment: a divisor of the snapshot segment.

    Args:
      cfg: how to train.

    Returns:
      The largest divisor of the snapshot segment (``snapshot_every``, or ``steps``) that is
      at most ``ceil(steps / SEGMENTS)``.
    """
    seg = cfg.snapshot_every or cfg.steps
    want = max(1, -(-cfg.steps // SEGMENTS))
    return max(d for d in range(1, seg + 1) if seg % d == 0 and d <= want)


@partial(jax.jit, static_argnames=("model", "spec", "cfg", "data_axis"))
def start_jit(model, spec, cfg, *, data_axis, keys, x, variables0, lr=None):
    """The compiled start of a run (or of a batch of runs).

    Args:
      model: the model.
      spec: its masks' layout.
      cfg: how to train.
      data_axis: ``"one"`` for a single run; else the vmap axis (0 or None) of ``x``.
      keys: one run's key, or ``(S,)`` keys.
      x: the inputs.
      variables0: variables to start from, else None.
      lr: for a batch of runs, each run's learning rate ``(S,)`` (the optimiser's rate is
        then state, :func:`make_trainer`'s ``inject_lr``); None: ``cfg``'s.

    Returns:
      ``(run keys, carry)``, with a leading seed axis for a batch.
    """
    start = make_trainer(model, spec, cfg, inject_lr=lr is not None).start
    if data_axis == "one":  # a single run, not vmapped
        return start(keys, x, variables0)
    in_axes = (0, data_axis, None, None if lr is None else 0)
    return jax.vmap(start, in_axes=in_axes)(keys, x, variables0, lr)


@partial(
    jax.jit, static_argnames=("model", "spec", "cfg", "data_axis", "cycle_axis", "n", "inject_lr")
)
def steps_jit(
    model,
    spec,
    cfg,
    *,
    data_axis,
    cycle_axis,
    n,
    run_keys,
    carry,
    x,
    y,
    cycle,
    first,
    val=None,
    inject_lr: bool = False,
):
    """One compiled segment of :func:`train` or :func:`train_seeds`: ``n`` steps from ``first``.

    Exposed for profiling (``.lower(...)``).

    Args:
      model: the model.
      spec: its masks' layout.
      cfg: how to train.
      data_axis: ``"one"`` for a single run (:func:`train`); else the vmap axis (0 or None)
        of the data.
      cycle_axis: the vmap axis (0 or None) of the cycle masks, for a batch of runs.
      n: steps in the segment (static).
      run_keys: the run keys :func:`start_jit` returned.
      carry: the training state.
      x: the inputs.
      y: the targets.
      cycle: flat cycle masks for ``mask_mode="cycle"``, else None.
      first: the segment's first step.
      val: the validation set ``(x_val, y_val)`` of a run that selects
        (``cfg.eval_every``), with the data's vmap axis; else None.
      inject_lr: the runs' learning rates are optimiser state (:func:`start_jit`'s ``lr``).

    Returns:
      ``(carry, losses)``: losses ``(n,)`` (with selection, ``(losses, validation
      losses)``), with a leading seed axis for a batch.
    """
    steps = make_trainer(model, spec, cfg, inject_lr=inject_lr).steps
    if data_axis == "one":
        return steps(run_keys, carry, x, y, cycle, first=first, n=n, val=val)
    return jax.vmap(
        lambda k, c, x, y, cy, vl: steps(k, c, x, y, cy, first=first, n=n, val=vl),
        in_axes=(0, 0, data_axis, data_axis, cycle_axis, data_axis),
    )(run_keys, carry, x, y, cycle, val)


def _reporter(progress: Progress | None) -> Progress:
    """Where a run reports: the argument, else the :func:`progress` block's, else nowhere."""
    return progress or _PROGRESS.get() or (lambda done, total: None)


def run_segments(
    model: nn.Module,
    spec: M.MaskSpec,
    cfg: TrainConfig,
    *,
    keys: jax.Array,
    x,
    y,
    cycle=None,
    variables0=None,
    data_axis: int | str | None = "one",
    cycle_axis: int | str | None = "one",
    report: Progress = lambda done, total: None,
    val=None,
    lr=None,
) -> tuple[dict, History]:
    """The steps of :func:`make_train` as about ten compiled segments.

    The one training path behind :func:`train` and :func:`train_seeds`.

    Args:
      model: the model.
      spec: its masks' layout.
      cfg: how to train.
      keys: one run's key, or ``(S,)`` keys of a vmapped batch of runs.
      x: the inputs; with ``data_axis=0`` they carry a leading seed axis.
      y: the targets; with ``data_axis=0`` they carry a leading seed axis.
      cycle: flat cycle masks for ``mask_mode="cycle"``, else None.
      variables0: variables to start a single run from, else None.
      data_axis: ``"one"`` for a single run; else the vmap axis (0 or None) of the data.
      cycle_axis: ``"one"`` for a single run; else the vmap axis (0 or None) of the cycle
        masks.
      report: called as ``report(done, total)`` after each segment.
      val: the validation set ``(x_val, y_val)`` when ``cfg.eval_every`` selects, with the
        data's axis; else None.
      lr: each run's learning rate ``(S,)`` of a batch over a grid; None: ``cfg``'s.

    Returns:
      ``(variables, history)``, with a leading seed axis for a batch.
    """
    seg, piece = cfg.snapshot_every or cfg.steps, segment_steps(cfg)
    run_keys, carry = start_jit(
        model, spec, cfg, data_axis=data_axis, keys=keys, x=x, variables0=variables0, lr=lr
    )
    one = data_axis == "one"
    values, vals, snaps, grads = [], [], [], []
    for first in range(0, cfg.steps, piece):
        carry, v = steps_jit(
            model, spec, cfg, data_axis=data_axis, cycle_axis=cycle_axis, n=piece,
            run_keys=run_keys, carry=carry, x=x, y=y, cycle=cycle,
            first=jnp.asarray(first, jnp.int32), val=val, inject_lr=lr is not None,
        )  # fmt: skip
        if cfg.eval_every:
            v, vv = v
            vals.append(vv)
        values.append(v)
        if (first + piece) % seg == 0:
            snaps.append(carry[0])
            grads.append(carry[3])
        report(first + piece, cfg.steps)
    axis = 0 if one else 1  # snapshots and losses stack after the seed axis
    stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a, axis), *trees)  # noqa: E731
    loss = jnp.concatenate(values, axis=axis)
    t = make_trainer(model, spec, cfg, inject_lr=lr is not None)
    hist = History(loss, stack(snaps), stack(grads))
    if cfg.eval_every:
        hist = hist._replace(val_loss=jnp.concatenate(vals, axis=axis), selected=t.selected(carry))
    return t.finish(carry), hist


def train(
    model: nn.Module,
    key: jax.Array,
    x,
    y,
    cfg: TrainConfig,
    *,
    cycle_masks=None,
    variables0=None,
    progress: Progress | None = None,
    validation: tuple | None = None,
) -> tuple[dict, History]:
    """Train one network.

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers.
      key: the run's key: initialisation (unless ``variables0``), batches and masks.
      x: inputs ``(N, ...)``.
      y: class labels ``(N,)`` or regression targets ``(N, n_out)``.
      cfg: how to train.
      cycle_masks: ``(K, n_units)`` for ``mask_mode="cycle"``.
      variables0: the model's variables dict to start from instead of an initialisation.
      progress: called as ``progress(done, total)`` after each segment.
      validation: ``(x_val, y_val)``, scored every ``cfg.eval_every`` steps inside the run;
        needed with ``eval_every`` and refused without it.

    Returns:
      ``(variables, history)``: the final variables dict and the :class:`History` (with
      ``eval_every``, its validation losses and the best variables per window).

    Raises:
      DivergenceError: on a NaN or infinite loss.
      DropstudyError: if an argument is invalid.
    """
    cfg.validate()
    check_key("key", key)
    x, y = _check_data(x, y, cfg)
    val = _check_validation(validation, cfg, x)
    spec = M.mask_spec(model, x, cfg.rng_streams)
    _check_model(model, cfg, x, y, spec, variables0=variables0)
    _check_selection_model(model, cfg, x, spec, val)
    cycle = _cycle(spec, cfg, cycle_masks)
    if variables0 is not None:
        variables0 = {k: v for k, v in M.check_variables(variables0).items() if k != M.MASKS}
    variables, hist = run_segments(
        model, spec, cfg, keys=key, x=x, y=y, cycle=cycle, variables0=variables0,
        report=_reporter(progress), val=val,
    )  # fmt: skip
    check_diverged(hist.loss[None], [0], model, cfg)
    _check_selected(hist, [0])
    return variables, hist


def train_seeds(
    model: nn.Module,
    keys: jax.Array,
    x,
    y,
    cfg: TrainConfig,
    *,
    cycle_masks=None,
    per_seed_data: bool = False,
    seeds: list[int] | None = None,
    allow_divergence: bool = False,
    mesh: Mesh | None = None,
    progress: Progress | None = None,
    validation: tuple | None = None,
) -> tuple[Any, History]:
    """Train one network per key in one compiled, vmapped call.

    With several devices (or an explicit ``mesh``) the seeds are split over them, each
    device training its share at the same time. The same seeds on the same device count
    come out bitwise the same; a device's share agrees with one device training that batch
    to float rounding, and so does another batch size (another device count, or another
    number of seeds), as XLA may compile and round batched loops differently (see
    :mod:`dropstudy.sharding`).

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers.
      keys: one key per seed, ``(S,)``.
      x: inputs ``(N, ...)``, or ``(S, N, ...)`` with ``per_seed_data``.
      y: class labels ``(N,)`` or regression targets ``(N, n_out)``, with a leading seed
        axis under ``per_seed_data``.
      cfg: how to train.
      cycle_masks: for ``mask_mode="cycle"``: ``(K, n_units)`` shared by every seed, or
        ``(S, K, n_units)``.
      per_seed_data: the data carry a leading seed axis (bootstrap samples, say).
      seeds: the seeds' numbers, named in errors and warnings (default ``0 .. S - 1``).
      allow_divergence: on a NaN or inf loss, log one short warning to the ``dropstudy``
        logger (how many runs diverged, and their seeds) instead of raising; the caller
        must drop the seeds that :func:`diverged` marks.
      mesh: the mesh to split the seeds over (default: every device, when there are several).
      progress: when given, called as ``progress(done, total)`` after each segment.
      validation: ``(x_val, y_val)`` (with a leading seed axis under ``per_seed_data``),
        scored every ``cfg.eval_every`` steps inside the run; needed with ``eval_every``
        and refused without it.

    Returns:
      ``(variables, history)``: the variables dict (``"params"`` and any other collection)
      and the :class:`History`, each with a leading seed axis.

    Raises:
      DivergenceError: if a seed's loss becomes NaN or inf (unless ``allow_divergence``).
      DropstudyError: if an argument is invalid.
    """
    return _train_batch(
        model, keys, x, y, cfg, lr=None, cycle_masks=cycle_masks, per_seed_data=per_seed_data,
        seeds=seeds, allow_divergence=allow_divergence, mesh=mesh, progress=progress,
        validation=validation,
    )  # fmt: skip


def _train_batch(
    model, keys, x, y, cfg, *, lr, cycle_masks, per_seed_data, seeds, allow_divergence, mesh,
    progress, validation,
):  # fmt: skip
    """:func:`train_seeds`, each run at its own learning rate ``lr (S,)`` when given."""
    cfg.validate()
    check_key("keys", keys, batched=True)
    if per_seed_data:
        xs, ys = zip(*(_check_data(a, b, cfg) for a, b in zip(x, y, strict=True)), strict=True)
        x, y = jnp.stack(xs), jnp.stack(ys)
    else:
        x, y = _check_data(x, y, cfg)
    val = _check_validation(validation, cfg, x, per_seed=per_seed_data)
    spec = M.mask_spec(model, x[0] if per_seed_data else x, cfg.rng_streams)
    _check_model(model, cfg, x[0] if per_seed_data else x, y[0] if per_seed_data else y, spec)
    _check_selection_model(model, cfg, x[0] if per_seed_data else x, spec, val)
    cycle = _cycle(spec, cfg, cycle_masks)
    cycle_axis = 0 if cycle is not None and cycle.ndim == 3 else None
    data_axis = 0 if per_seed_data else None
    if mesh is None and len(jax.devices()) > 1:
        mesh = sharding.mesh()
    n = keys.shape[0]
    if mesh is not None:
        # Whatever carries a seed axis is split with the seeds; shared data is replicated.
        (keys, lr), n = sharding.shard_leading((keys, lr), mesh)
        if per_seed_data:
            (x, y, val), _ = sharding.shard_leading((x, y, val), mesh)
        else:
            x, y, val = sharding.replicate((x, y, val), mesh)
        if cycle_axis == 0:
            cycle, _ = sharding.shard_leading(cycle, mesh)
        elif cycle is not None:
            cycle = sharding.replicate(cycle, mesh)
    variables, hist = run_segments(
        model, spec, cfg, keys=keys, x=x, y=y, cycle=cycle, data_axis=data_axis,
        cycle_axis=cycle_axis, report=_reporter(progress), val=val, lr=lr,
    )  # fmt: skip
    if mesh is not None:
        variables, hist = jax.tree.map(lambda a: a[:n], (variables, hist))
        if jax.process_count() == 1:
            # Back on one device, so that later calls may mix any seeds' results freely.
            variables, hist = jax.device_put((variables, hist), jax.devices()[0])
    seeds = seeds if seeds is not None else list(range(n))
    failed = diverged(sharding.gather(hist.loss))
    _check_selected(hist, seeds, skip=failed)
    try:
        check_diverged(hist.loss, seeds, model, cfg)
    except DivergenceError:
        if not allow_divergence:
            raise
        bad = [s for s, b in zip(seeds, failed, strict=True) if b]
        logging.getLogger("dropstudy").warning(
            "training diverged (NaN or inf loss) for %d of %d runs, seeds %s",
            len(bad),
            len(seeds),
            bad,
        )
    return variables, hist


def train_grid(
    model: nn.Module,
    keys: jax.Array,
    x,
    y,
    cfg: TrainConfig,
    *,
    lrs,
    validation: tuple | None = None,
    allow_divergence: bool = False,
    mesh: Mesh | None = None,
    progress: Progress | None = None,
) -> tuple[Any, History]:
    """Train one network per (learning rate, seed) in one compiled, vmapped call.

    The named optimiser's learning rate becomes optimiser state (``optax.inject_hyperparams``),
    so the grid compiles once, whatever its size. A run agrees with :func:`train` at that
    learning rate to float rounding (a batch compiles on its own, as in :func:`train_seeds`).

    Args:
      model: a linen model with :class:`~dropstudy.models.MaskedDropout` layers.
      keys: one key per seed, ``(S,)``.
      x: inputs ``(N, ...)``.
      y: class labels ``(N,)`` or regression targets ``(N, n_out)``.
      cfg: how to train; its optimiser a named one (``adam`` or ``sgd``) at a constant rate,
        ``cfg.lr`` unset (the grid gives the rates), not ``mask_mode="cycle"``.
      lrs: the learning rates, ``L`` of them, each > 0.
      validation: ``(x_val, y_val)`` for selection (``cfg.eval_every``), as in :func:`train`.
      allow_divergence: as in :func:`train_seeds`: a run that diverges is logged (its rate
        and seed) instead of raising; drop the runs that :func:`diverged` marks.
      mesh: the mesh to split the ``L * S`` runs over (default: every device, when several).
      progress: when given, called as ``progress(done, total)`` after each segment.

    Returns:
      ``(variables, history)``, each with leading axes ``(L, S)``.

    Raises:
      DivergenceError: if a run's loss becomes NaN or inf.
      DropstudyError: if an argument is invalid.
    """
    if isinstance(cfg.optimizer, optax.GradientTransformation) or cfg.schedule != "constant":
        raise DropstudyError(
            "train_grid varies the learning rate of a named optimizer ('adam' or 'sgd') at a "
            "constant schedule; train one config at a time for a custom optimiser or a schedule"
        )
    if cfg.lr is not None:
        raise DropstudyError(
            f"train_grid takes its learning rates from lrs; cfg.lr={cfg.lr} would be ignored: "
            "leave it unset"
        )
    if cfg.mask_mode == "cycle":
        raise DropstudyError("train_grid does not take cycle masks: train_seeds does")
    rates = [check_positive_float(f"lrs[{i}]", float(r)) for i, r in enumerate(lrs)]
    if not rates:
        raise DropstudyError("lrs must hold at least one learning rate")
    check_key("keys", keys, batched=True)
    n_seeds = keys.shape[0]
    run_keys = jnp.concatenate([keys] * len(rates))  # run l * S + s: rate l, seed s
    run_lr = jnp.repeat(jnp.asarray(rates, jnp.float32), n_seeds)
    labels = [f"lr={r:g} seed#{s}" for r in rates for s in range(n_seeds)]
    variables, hist = _train_batch(
        model, run_keys, x, y, cfg, lr=run_lr, cycle_masks=None, per_seed_data=False,
        seeds=labels, allow_divergence=allow_divergence, mesh=mesh, progress=progress,
        validation=validation,
    )  # fmt: skip
    grid = lambda a: a.reshape(len(rates), n_seeds, *a.shape[1:])  # noqa: E731
    return jax.tree.map(grid, variables), jax.tree.map(grid, hist)


def diverged(loss) -> np.ndarray:
    """Which runs hit a NaN or inf loss.

    Args:
      loss: the losses, ``(S, steps)``.

    Returns:
      ``(S,)`` booleans, one per row of ``loss``.
    """
    return ~np.all(np.isfinite(np.asarray(loss)), axis=-1)


def check_diverged(loss: jax.Array, seeds: list, model: nn.Module, cfg: TrainConfig) -> None:
    """Raise :class:`DivergenceError` naming the first non-finite step, seed and configuration.

    A collective with several processes: every process must call it.

    Args:
      loss: the losses, ``(S, steps)``.
      seeds: the seeds' numbers, one per row.
      model: the model, whose configuration the message records.
      cfg: the training configuration, recorded too.

    Raises:
      DivergenceError: if any loss is NaN or infinite.
    """
    loss = sharding.gather(loss)  # whole on every process (a collective there)
    bad = ~np.isfinite(loss)
    if not bad.any():
        return
    row = int(np.argmax(bad.any(axis=1)))
    step = int(np.argmax(bad[row]))
    conf = json.dumps({"model": model_config(model), "train": cfg.to_dict()}, default=str)
    raise DivergenceError(
        f"training diverged: loss became {loss[row, step]} at step {step} for seed "
        f"{seeds[row]} ({int(bad.any(axis=1).sum())} of {len(seeds)} runs diverged); "
        f"lower the learning rate. Configuration: {conf}"
    )


def take(tree: Any, *index) -> Any:
    """One run out of stacked results.

    ``take(variables, i)`` is seed ``i`` of ``train_seeds``'s variables;
    ``take(hist.params, i, k)`` its ``k``-th snapshot.

    Args:
      tree: a pytree of stacked arrays.
      *index: the index into the leading axes.

    Returns:
      The tree with every array indexed.
    """
    return jax.tree.map(lambda a: a[index], tree)


def seed_keys(seeds) -> jax.Array:
    """One key per integer seed.

    Args:
      seeds: integer seeds.

    Returns:
      ``(S,)`` keys, ``jax.random.key(seed)`` each.
    """
    return jax.vmap(jax.random.key)(jnp.asarray(list(seeds), dtype=jnp.uint32))
