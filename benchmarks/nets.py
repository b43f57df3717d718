"""The nets the benchmarks time: initial weights, and the trained nets people evaluate.

Trained weights matter for the exact kernel: its cost depends on the logits' spread
(:func:`dropstudy.fast_exact.max_spread`), and trained nets are confident where initial
ones are not. Each function trains as the command or experiment it names does.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dropstudy import fast_exact as F
from dropstudy import masks as M
from dropstudy.data import digits
from dropstudy.models import MLP
from dropstudy.train import train


class Net(NamedTuple):
    """A benchmarked net: its label, model, variables and test inputs ``(B, F)``."""

    label: str
    model: MLP
    variables: Any
    x: jax.Array


@functools.cache
def initial() -> Net:
    """``dropstudy compare``'s default 2x10 ReLU net (drop 0.5) at its initial weights, on
    the digits test set."""
    from experiments.compare import CompareConfig

    x = jnp.asarray(digits().x_test)
    model = CompareConfig().model(10)
    variables, _ = M.init(model, jax.random.key(0), x)
    return Net("2x10, initial weights", model, variables, x)


def trained(model: MLP, seed: int = 0) -> Any:
    """``model``'s variables trained on digits as ``dropstudy compare --seed SEED`` trains
    (4000 Adam steps at lr 3e-3, batch 128, its seed split as compare splits it)."""
    from experiments.compare import CompareConfig

    ds = digits()
    k_train, _ = jax.random.split(jax.random.key(seed))
    cfg = CompareConfig().train_config()
    return train(model, k_train, ds.x_train, ds.y_train, cfg)[0]


@functools.cache
def compare(seed: int) -> Net:
    """The net ``dropstudy compare --seed SEED`` trains (its defaults: 2x10 ReLU, drop 0.5),
    on the digits test set."""
    from experiments.compare import CompareConfig

    model = CompareConfig().model(10)
    x = jnp.asarray(digits().x_test)
    return Net(f"2x10, compare seed {seed}", model, trained(model, seed), x)


@functools.cache
def pair(seed: int) -> Net:
    """The averaging experiment's primary net (2x10 ReLU, drop 0.5, its training) on the
    first of digits' closest class pairs, on that pair's test set."""
    from experiments.averaging import Config, closest_pairs

    ds = digits()
    task = ds.classes(*closest_pairs(ds, 1)[0])
    cfg = Config()
    model = MLP(hidden=(10, 10), n_out=2, rate=0.5)
    variables, _ = train(model, jax.random.key(seed), task.x_train, task.y_train, cfg.train)
    label = f"2x10, digit pair {task.name.split('[')[-1].rstrip(']')} seed {seed}"
    return Net(label, model, variables, jnp.asarray(task.x_test))


def split(net: Net) -> tuple[M.MaskSpec, tuple[int, ...], tuple[int, ...]]:
    """``(spec, outer, inner)``: the mask layout and the outer and inner units the exact
    kernel's products take for ``net`` (as :func:`dropstudy.fast_exact.exact_mlp` splits)."""
    spec = M.mask_spec(net.model, net.x)
    block = F.products_inner_size(net.model.n_out, net.x.shape[0])
    return (spec, *F.split_units(net.model, spec, block))


def spread(net: Net, reference: bool = True) -> float:
    """The largest logit spread the exact kernel meets at its default low part (relative to
    its reference class; ``reference=False``: of the raw logits)."""
    spec, outer, inner = split(net)
    lo = F.low_units(len(inner))
    kw = dict(outer=outer, inner=inner, lo=lo, variables=net.variables, x=net.x)
    return float(F.max_spread(net.model, spec, **kw, reference=reference))
