"""One evaluator for every experiment: trained nets over seeds in, per-seed predictions by
every predictor out, with keys derived from names.

A dropout net is judged as an ensemble by two predictors on the same weights: weight
scaling and the Monte-Carlo average over ``k`` subnetworks; where the net is small enough
to enumerate, a cell may also ask for the exact average over all of them (``"exact"``).
Every random draw of an evaluation has a key derived from the experiment, the cell, the
purpose and the seed (:func:`seed_key`), so no two experiments or cells share masks by
accident and no offset is picked by hand. :func:`by_predictor` then runs the same test of a
quantity by each predictor; the report says where the two disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jax
import numpy as np

from dropstudy import predict as P
from dropstudy.average import Average
from dropstudy.train import take

from .common import MC_K, device_mesh

WS_AND_MC = ("ws", "mc")  # the predictors of a dropout net: weight scaling, the MC average
PREDICTORS = (*WS_AND_MC, "exact")  # and the exact average, for nets small enough


def derived_key(*names: str | int) -> jax.Array:
    """A key derived from names alone.

    Args:
      names: what the key is for, e.g. ``("conv", "rate=0.5", "mc")``.

    Returns:
      A typed key: a 64-bit digest of the names, folded into ``key(0)`` in two words.
    """
    h = hashlib.sha256("/".join(str(n) for n in names).encode()).digest()
    hi, lo = (int.from_bytes(h[i : i + 4], "little") >> 1 for i in (0, 4))
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(0), hi), lo)


def seed_key(stream: tuple[str, ...] | str, seed: int) -> jax.Array:
    """Seed ``seed``'s key in ``stream``.

    Args:
      stream: ``(experiment, cell, purpose)``, or one name.
      seed: the seed.

    Returns:
      The stream's :func:`derived_key` folded with the seed.
    """
    names = (stream,) if isinstance(stream, str) else tuple(stream)
    return jax.random.fold_in(derived_key(*names), seed)


def predict(
    model,
    variables,
    x,
    key: jax.Array,
    task: str = "classification",
    k: int = MC_K,
    predictors: tuple[str, ...] = WS_AND_MC,
) -> dict[str, Average]:
    """One net's predictions on ``x`` by each predictor named.

    Args:
      model: a model with :class:`~dropstudy.models.MaskedDropout` layers.
      variables: its variables dict (one seed).
      x: inputs ``(N, ...)``.
      key: the MC average's key.
      task: ``classification`` or ``regression``.
      k: subnetworks in the MC average.
      predictors: any of ``"ws"`` (weight scaling), ``"mc"`` (MC average) and ``"exact"``
        (the exact average over every subnetwork; the net must be enumerable).

    Returns:
      ``{predictor: Average}`` in the order asked, each with ``arithmetic (N, C)``; the
      exact average's ``geometric`` is the normalised geometric mean.

    Raises:
      ValueError: if a predictor is not one of :data:`PREDICTORS`.
    """
    unknown = [p for p in predictors if p not in PREDICTORS]
    if unknown:
        raise ValueError(f"unknown predictor(s) {unknown}; the evaluator has {PREDICTORS}")
    out = {}
    if "ws" in predictors:
        out["ws"] = P.weight_scaling(model, variables, x, task=task)
    if "mc" in predictors:
        out["mc"] = P.mc(model, variables, x, key=key, k=k, task=task, mesh=device_mesh())
    if "exact" in predictors:
        out["exact"] = P.exact(model, variables, x, task=task, mesh=device_mesh())
    return {p: out[p] for p in predictors}


@dataclass(frozen=True)
class Evaluator:
    """How a cell evaluates its dropout nets: where its keys come from and how many
    subnetworks its MC average takes. A cell argument, so both are part of its key.

    Attributes:
      stream: ``(experiment, cell)``: every key of the cell derives from it.
      k: subnetworks in the MC average (the experiment's ``Config.mc_k``).
      task: ``classification`` or ``regression``.
    """

    stream: tuple[str, ...]
    k: int = MC_K
    task: str = "classification"

    def to_dict(self) -> dict:
        """The evaluator as a JSON-ready dict (its part of a cell's key).

        Returns:
          ``{"stream", "k", "task"}``, the stream as a list.
        """
        return {"stream": list(self.stream), "k": self.k, "task": self.task}

    def key(self, seed: int, purpose: str = "mc") -> jax.Array:
        """Seed ``seed``'s key for ``purpose`` in this cell's stream.

        Args:
          seed: the seed.
          purpose: what the key is for, e.g. ``"mc"``.

        Returns:
          :func:`seed_key` of ``(*stream, purpose)`` and ``seed``.
        """
        return seed_key((*self.stream, purpose), seed)

    def sub(self, *names: str) -> Evaluator:
        """The same evaluator with ``names`` added to the stream (one arm of a cell).

        Args:
          *names: the names to append.

        Returns:
          A new :class:`Evaluator` with the same ``k`` and ``task``.
        """
        return Evaluator((*self.stream, *names), self.k, self.task)

    def predict(
        self, model, variables, x, seed: int, predictors: tuple[str, ...] = WS_AND_MC
    ) -> dict[str, Average]:
        """One seed's net on ``x`` by each predictor: :func:`predict` with this seed's key.

        Args:
          model: the model.
          variables: the seed's variables dict.
          x: inputs ``(N, ...)``.
          seed: the seed; the MC average's key is :meth:`key` of it.
          predictors: as :func:`predict`.

        Returns:
          ``{predictor: Average}``, as :func:`predict`.
        """
        return predict(model, variables, x, self.key(seed), self.task, self.k, predictors)

    def over_seeds(
        self, model, variables, seeds: list[int], x, predictors: tuple[str, ...] = WS_AND_MC
    ) -> Iterator[tuple[int, int, dict, dict[str, Average]]]:
        """Each seed's net and its predictions on ``x``.

        Args:
          model: the model the seeds share.
          variables: the variables dict with a leading seed axis (from ``train_seeds``).
          seeds: the seeds, in the order of that axis.
          x: inputs ``(N, ...)``.
          predictors: as :func:`predict`.

        Yields:
          ``(i, seed, variables of seed i, {predictor: Average})``.
        """
        for i, s in enumerate(seeds):
            v = take(variables, i)
            yield i, s, v, self.predict(model, v, x, s, predictors)


def by_predictor(
    test: Callable[..., dict],
    values: dict[str, np.ndarray],
    name: str | Callable[[str], str],
    **kw,
) -> dict[str, dict]:
    """The same test of one quantity by each predictor.

    Where they disagree is a finding of the report (:func:`.common.flips`), which pairs tests
    of one ``what``.

    Args:
      test: a test of :mod:`.stats` (``direction``, ``equivalence``, ...), called as
        ``test(values[p], predictor=p, **kw)``.
      values: per predictor, the per-seed values ``(S,)``.
      name: the tests' names: ``f"{name}_{p}"``, or a function of the predictor.
      kw: the test's other arguments (``what``, a margin, ...).

    Returns:
      ``{test name: test}`` in the order of ``values``.
    """
    label = name if callable(name) else (lambda p: f"{name}_{p}")
    return {label(p): test(v, predictor=p, **kw) for p, v in values.items()}
