"""The study's training protocol: each arm trained to its own best on a validation split.

A fixed budget and one shared learning rate measure where the budget falls, not dropout: a
plain net that has overfitted by step 2,000 is compared with a dropout net still improving.
So every arm (a data set, a net, a drop rate) is trained here the same way:

1. **A fixed validation split** per data set: 20% of the training set (:data:`VAL_FRACTION`,
   one permutation, :data:`SPLIT_SEED`), the same for every arm and seed. Nets train on the
   other 80%; the test set is never looked at before the tests.
2. **One candidate set for every arm** (:class:`Recipe`): Adam at a learning-rate grid a
   factor ~3 apart, and Srivastava et al.'s recipe (SGD, momentum 0.95, max-norm 3 on each
   unit's incoming weights, a grid reaching far higher rates). The candidate with the lowest
   mean validation loss over the pilot seeds (:data:`PILOT_SEEDS`, disjoint from the study's
   seeds ``0 .. S - 1``), each at its best step within ``W``, is the arm's choice
   (:func:`tune`). The whole grid of a recipe is one compiled call
   (:func:`dropstudy.train.train_grid`).
3. **The stopping step per seed, in the run** (:func:`train_arm`): every run trains ``2W``
   steps and keeps its best variables (by validation loss, every ``eval_every`` steps) within
   ``W`` and within ``2W``: the selection within ``W`` is the primary's, the one within ``2W``
   tells whether a verdict survives twice the budget.
4. **Convergence instead of "fits"**: an arm whose median stop, selected within ``2W``, falls
   in the last 10% of ``2W`` (:data:`LATE`) was still improving: it is *not converged*, and a
   test on it is inconclusive whatever its interval (:func:`guard`).

The predictor that scores the validation loss is the claim's primary one (``select_by``:
weight scaling, or the MC average over ``select_k`` fixed subnetworks). A tuned arm's choice
is cached beside the experiments (``<scale folder>/tuning/``) and shared by every
experiment that trains the same arm, by :func:`tuning_store`; the cache only saves time, the
choice is a pure function of the arm.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dropstudy.data import Dataset
from dropstudy.train import TrainConfig, diverged, seed_keys, take, train_grid, train_seeds
from dropstudy.validate import DropstudyError

VAL_FRACTION = 0.2  # of the training set, held out for every choice the protocol makes
SPLIT_SEED = 0  # the validation split's permutation, one per data set
PILOT_SEEDS = (1000, 1001, 1002)  # tuning seeds, disjoint from the study's 0 .. S - 1
LATE = 0.1  # a median stop in the last 10% of 2W: the arm was still improving

_STORE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("tuning", default=None)


@dataclass(frozen=True)
class Recipe:
    """One optimiser with the learning rates tried for it.

    Attributes:
      name: how tables name it.
      train: the optimiser and its settings (``lr`` unset: the grid gives it; ``steps`` and
        the selection fields are the protocol's).
      lrs: the learning rates tried, ascending.
    """

    name: str
    train: TrainConfig
    lrs: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.train.lr is not None:
            raise DropstudyError(f"recipe {self.name!r}: leave train.lr unset, lrs gives it")
        if not self.lrs or any(not lr > 0 for lr in self.lrs):
            raise DropstudyError(f"recipe {self.name!r}: lrs must be learning rates > 0")

    def to_dict(self) -> dict:
        """The recipe as a JSON-ready dict."""
        return {"name": self.name, "train": self.train.to_dict(), "lrs": list(self.lrs)}


ADAM = Recipe("adam", TrainConfig(batch_size=128, optimizer="adam"), (3e-4, 1e-3, 3e-3))
# Srivastava et al. (2014, appendix A): SGD with momentum 0.95-0.99, max-norm c = 3-4, and
# learning rates 10-100x a plain net's.
SRIVASTAVA = Recipe(
    "sgd+max-norm",
    TrainConfig(batch_size=128, optimizer="sgd", momentum=0.95, max_norm=3.0),
    (0.01, 0.03, 0.1, 0.3),
)


@dataclass(frozen=True)
class Protocol:
    """How one arm is tuned, trained and stopped.

    Attributes:
      window: ``W``, the steps within which the primary's stop is chosen; every run trains
        ``2W`` steps.
      eval_every: steps between validation losses (divides ``W``).
      select_by: the predictor the validation loss scores, ``"ws"`` or ``"mc"`` (a plain
        net is scored by weight scaling whatever this says: it is its one subnetwork).
      select_k: subnetworks of ``select_by="mc"``.
      recipes: the candidates every arm draws from.
      pilot_seeds: the seeds that choose an arm's candidate.
    """

    window: int = 4000
    eval_every: int = 100
    select_by: str = "ws"
    select_k: int = 32
    recipes: tuple[Recipe, ...] = (ADAM, SRIVASTAVA)
    pilot_seeds: tuple[int, ...] = PILOT_SEEDS

    def __post_init__(self) -> None:
        if self.window % self.eval_every:
            raise DropstudyError(
                f"eval_every={self.eval_every} must divide the window W={self.window}"
            )
        if self.select_by not in ("ws", "mc"):
            raise DropstudyError(f"select_by must be 'ws' or 'mc', got {self.select_by!r}")
        if not self.recipes:
            raise DropstudyError("recipes must hold at least one candidate")
        if len(self.pilot_seeds) < 2:
            raise DropstudyError("pilot_seeds must hold at least two seeds (a mean over seeds)")

    def config(self, recipe: Recipe, model: Any, lr: float | None = None) -> TrainConfig:
        """The training of one candidate: ``2W`` steps, selection within ``W`` and ``2W``.

        Args:
          recipe: the candidate's optimiser.
          model: the net (a plain one is scored by weight scaling).
          lr: its learning rate (None for a grid).

        Returns:
          The ``TrainConfig``.
        """
        by = "ws" if not any(r > 0 for r in _rates(model)) else self.select_by
        return recipe.train.replace(
            lr=lr,
            steps=2 * self.window,
            eval_every=self.eval_every,
            select_by=by,
            select_k=self.select_k if by == "mc" else None,
            windows=(self.window,),
        )

    def to_dict(self) -> dict:
        """The protocol as a JSON-ready dict."""
        d = asdict(self)
        d["recipes"] = [r.to_dict() for r in self.recipes]
        return d


def _rates(model: Any) -> tuple[float, ...]:
    """The drop rates of a net the study trains: its ``rate`` (one, or one per layer) and any
    ``input_rate`` and ``dense_rate`` (a conv net's dense layer)."""
    names = ("rate", "input_rate", "dense_rate")
    return tuple(
        float(r) for n in names for r in np.atleast_1d(getattr(model, n, 0.0) or 0.0).tolist()
    )


def split(ds: Dataset) -> tuple[Dataset, tuple[np.ndarray, np.ndarray]]:
    """The data set's fixed validation split.

    Args:
      ds: the data set.

    Returns:
      ``(train, (x_val, y_val))``: the data set with the other 80% as its training set (the
      test set whole) and the held-out 20%.
    """
    n = len(ds.x_train)
    idx = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_val = round(VAL_FRACTION * n)
    val, tr = idx[:n_val], np.sort(idx[n_val:])
    train = Dataset(
        f"{ds.name}[train]", ds.x_train[tr], ds.y_train[tr], ds.x_test, ds.y_test, ds.n_classes
    )
    return train, (ds.x_train[val], ds.y_train[val])


@contextlib.contextmanager
def tuning_store(folder: Path | None) -> Iterator[None]:
    """Cache the arms' choices under ``folder`` while the block runs (None: no cache).

    Args:
      folder: where each tuned arm's file goes (``<scale folder>/tuning``).
    """
    token = _STORE.set(None if folder is None else Path(folder))
    try:
        yield
    finally:
        _STORE.reset(token)


def _cached(label: str, key: dict, compute) -> Any:
    """``compute()``, through the tuning store when one is set: plain JSON types either way,
    so a stored choice and a computed one are the same values."""
    from .cells import CellStore  # the store's own module: cells are cached the same way
    from .results import clean

    folder = _STORE.get()
    if folder is None:
        return clean(compute())

    store = CellStore(folder.parent)
    store.dir = folder
    return store.get(label, key, compute)


def tune(ds: Dataset, model: Any, protocol: Protocol) -> dict:
    """The arm's candidate: the recipe and learning rate of lowest mean validation loss.

    Each recipe's grid trains on the pilot seeds in one compiled call; a run's score is its
    best validation loss within ``W``; a diverged run scores infinity; the candidate's score
    is the mean over the pilot seeds.

    Args:
      ds: the data set (split here).
      model: the net to tune.
      protocol: the protocol.

    Returns:
      ``{"recipe", "lr", "score", "grid"}``: the chosen recipe's name and learning rate, its
      score, and ``grid[recipe][lr]`` = ``{"score", "stops"}`` for every candidate (the pilot
      runs' stops within ``W``).
    """
    from .codekey import code_key, environment
    from .common import cell_key  # the cell machinery's keys: data sets by digest

    kwargs = {"ds": ds, "model": model, "protocol": protocol}
    key = {  # as a cell's key: a change to the tuning's code or versions re-tunes
        "fn": "tune",
        "args": cell_key(kwargs),
        "code": code_key(_tune, kwargs),
        "versions": environment(),
    }
    label = f"{ds.name}_{type(model).__name__}_{_model_label(model)}_{protocol.select_by}"
    return _cached(label, key, lambda: _tune(ds, model, protocol))


def _model_label(model: Any) -> str:
    fields = ("hidden", "rate", "input_rate", "channels", "kernel", "dense_width", "dense_rate")
    parts = [f"{f}={getattr(model, f)}" for f in fields if getattr(model, f, None) is not None]
    return "_".join(parts).replace(" ", "")


def _tune(ds: Dataset, model: Any, protocol: Protocol) -> dict:
    train, val = split(ds)
    keys = seed_keys(list(protocol.pilot_seeds))
    grid, best = {}, None
    for recipe in protocol.recipes:
        cfg = protocol.config(recipe, model)
        _, hist = train_grid(
            model, keys, train.x_train, train.y_train, cfg, lrs=recipe.lrs, validation=val,
            allow_divergence=True,
        )  # fmt: skip
        within_w = hist.selected[0]  # (L, S)
        loss = np.asarray(within_w.loss, np.float64)
        bad = diverged(np.asarray(hist.loss).reshape(-1, cfg.steps)).reshape(loss.shape)
        loss = np.where(bad | ~np.isfinite(loss), np.inf, loss)
        grid[recipe.name] = {}
        for i, lr in enumerate(recipe.lrs):
            score = float(np.mean(loss[i]))
            stops = np.asarray(within_w.step)[i].tolist()
            grid[recipe.name][f"{lr:g}"] = {"score": score, "stops": stops}
            if np.isfinite(score) and (best is None or score < best[2]):
                best = (recipe.name, lr, score)
    if best is None:
        raise DropstudyError(
            f"every candidate diverged on the pilot seeds for {_model_label(model)} on "
            f"{ds.name}: add smaller learning rates to the recipes"
        )
    return {"recipe": best[0], "lr": best[1], "score": best[2], "grid": grid}


class Arm(NamedTuple):
    """An arm trained by the protocol.

    Attributes:
      within_w: the variables selected within ``W``, leading seed axis ``(S, ...)``.
      within_2w: the variables selected within ``2W``.
      record: what the results file keeps (:func:`train_arm`).
      history: the runs' :class:`~dropstudy.train.History` (with ``snapshot_every``, the
        parameters along the run).
    """

    within_w: Any
    within_2w: Any
    record: dict
    history: Any = None


def train_arm(
    ds: Dataset,
    model: Any,
    protocol: Protocol,
    seeds: list[int],
    *,
    tune_as: Any = None,
    subsets: int | None = None,
    snapshot_every: int = 0,
) -> Arm:
    """Train ``model`` on ``seeds`` at its tuned candidate, stopping each seed in the run.

    Args:
      ds: the data set (split here: the nets train on 80% of its training set).
      model: the net.
      protocol: the protocol.
      seeds: the study's seeds.
      tune_as: tune this net instead and train ``model`` at its choice (an exploratory arm
        at the primary's settings); default ``model`` itself.
      subsets: train each seed on its own random subset of this many training examples
        (drawn from the 80%, by the seed), the validation split unchanged.
      snapshot_every: keep the parameters every this many steps (must divide ``2W``), in
        the returned history; 0: none.

    Returns:
      The :class:`Arm`; its ``record`` holds ``recipe``, ``lr`` (the choice), ``tuned_as``,
      ``tuning`` (:func:`tune`'s grid), ``window``, ``stop_w`` and ``stop_2w`` (per seed, the
      steps of the selected variables), ``val_w`` and ``val_2w`` (their validation losses),
      ``converged`` (the median stop within ``2W`` before its last 10%), and ``n_train``.
    """
    choice = tune(ds, tune_as if tune_as is not None else model, protocol)
    recipe = {r.name: r for r in protocol.recipes}[choice["recipe"]]
    cfg = protocol.config(recipe, model, lr=choice["lr"]).replace(snapshot_every=snapshot_every)
    train, (xv, yv) = split(ds)
    if subsets is None:
        x, y, per_seed, val = train.x_train, train.y_train, False, (xv, yv)
    else:
        subs = [train.subset(subsets, seed=s) for s in seeds]
        x = np.stack([d.x_train for d in subs])
        y = np.stack([d.y_train for d in subs])
        per_seed = True
        val = (np.stack([xv] * len(seeds)), np.stack([yv] * len(seeds)))
    _, hist = train_seeds(
        model, seed_keys(seeds), x, y, cfg, per_seed_data=per_seed, seeds=seeds, validation=val
    )
    w, ww = hist.selected
    stop_2w = np.asarray(ww.step).tolist()
    record = {
        "recipe": choice["recipe"],
        "lr": choice["lr"],
        "tuned_as": _model_label(tune_as if tune_as is not None else model),
        "tuning": choice["grid"],
        "window": protocol.window,
        "stop_w": np.asarray(w.step).tolist(),
        "stop_2w": stop_2w,
        "val_w": np.asarray(w.loss).tolist(),
        "val_2w": np.asarray(ww.loss).tolist(),
        "converged": converged(stop_2w, protocol.window),
        "n_train": len(train.x_train) if subsets is None else subsets,
    }
    return Arm(w.variables, ww.variables, record, hist)


def converged(stops_2w, window: int) -> bool:
    """Whether an arm's median stop within ``2W`` falls before the last 10% of ``2W``.

    Args:
      stops_2w: the seeds' stops within ``2W``.
      window: ``W``.

    Returns:
      False when the arm was still improving at the end of its run.
    """
    return bool(np.median(stops_2w) <= (1 - LATE) * 2 * window)


def seed_variables(arm: Arm, i: int) -> tuple[Any, Any]:
    """Seed ``i``'s variables selected within ``W`` and within ``2W``."""
    return take(arm.within_w, i), take(arm.within_2w, i)


def not_converged(records: dict[str, dict]) -> list[str]:
    """The arms of a test that were still improving, in words.

    Args:
      records: ``{arm name: record}`` (:func:`train_arm`'s records).

    Returns:
      One phrase per arm not converged, naming its median stop and ``2W``.
    """
    return [
        f"{name} not converged (median stop {np.median(r['stop_2w']):g} of {2 * r['window']})"
        for name, r in records.items()
        if not r["converged"]
    ]


def guard(test: dict, twice: dict, records: dict[str, dict]) -> dict:
    """A primary test held to the protocol: inconclusive when an arm did not converge or the
    verdict changes with twice the budget.

    Args:
      test: the test on the nets selected within ``W``.
      twice: the same test on the nets selected within ``2W``.
      records: the records of the arms it compares.

    Returns:
      ``test`` with ``within_2w`` (the second test's effect, interval and verdict) and, when
      blocked, ``blocked`` (the reasons) and its verdict inconclusive: the report's rule
      (:func:`.stats.decide`) then keeps it so at any adjusted p-value.
    """
    from .stats import INCONCLUSIVE

    reasons = not_converged(records)
    if twice["verdict"] != test["verdict"]:
        reasons.append(
            f"budget-dependent: {twice['verdict']} within 2W ({twice['effect']:.4g} "
            f"[{twice['lo']:.4g}, {twice['hi']:.4g}])"
        )
    out = {
        **test,
        "within_2w": {k: twice[k] for k in ("rule", "level", "effect", "lo", "hi", "p", "verdict")},
    }
    if reasons:
        out["blocked"] = reasons
        out["verdict"] = INCONCLUSIVE
    return out


TWICE = " within 2W"  # a guarded test's twin on the nets selected within 2W


def guarded(tests: dict, twice: dict, records: dict[str, dict]) -> dict:
    """Tests held to the protocol, each followed by its twin within 2W.

    Args:
      tests: ``{name: test}`` on the nets selected within ``W``.
      twice: the same tests on the nets selected within ``2W``.
      records: the records of the arms they compare.

    Returns:
      ``{name: guard(test), name + TWICE: its twin}`` in the order of ``tests``: the twin is a
      test of its own (its values kept like any test's, so the guard can be recomputed), its
      ``what`` saying "nets selected within 2W".
    """
    out = {}
    for name, t in tests.items():
        out[name] = guard(t, twice[name], records)
        out[name + TWICE] = {
            **twice[name],
            "what": twice[name]["what"] + ", nets selected within 2W",
        }
    return out


def arm_summary(record: dict) -> dict:
    """An arm's training in brief, for the results' tables.

    Args:
      record: the arm's record (:func:`.protocol.train_arm`).

    Returns:
      ``{"recipe", "lr", "tuned_as", "window", "stop_w", "stop_2w", "converged", "tuning"}``:
      its choice, ``W``, the median and range of its seeds' stops within ``W`` and ``2W``,
      whether it converged, and the tuning grid's mean validation losses.
    """
    rng = lambda v: {"median": float(np.median(v)), "min": int(min(v)), "max": int(max(v))}  # noqa: E731
    return {
        "recipe": record["recipe"],
        "lr": record["lr"],
        "tuned_as": record["tuned_as"],
        "window": record["window"],
        "stop_w": rng(record["stop_w"]),
        "stop_2w": rng(record["stop_2w"]),
        "converged": record["converged"],
        "tuning": {
            rec: {lr: c["score"] for lr, c in lrs.items()} for rec, lrs in record["tuning"].items()
        },
    }


def protocol_str(p: dict) -> str:
    """A protocol (as its results file holds it) in words, for a report section.

    Args:
      p: :meth:`Protocol.to_dict`.

    Returns:
      One or two sentences.
    """
    recipes = "; ".join(
        f"{rc['name']} ({_optimiser_str(rc['train'])}) at lr "
        + ", ".join(f"{lr:g}" for lr in rc["lrs"])
        for rc in p["recipes"]
    )
    by = "weight scaling" if p["select_by"] == "ws" else f"the MC average of {p['select_k']}"
    return (
        f"trained on {1 - VAL_FRACTION:.0%} of the training set, its recipe and learning rate "
        f"chosen by the mean validation NLL ({by}) over {len(p['pilot_seeds'])} pilot seeds "
        f"among {recipes}; each seed stopped at its best validation NLL (every "
        f"{p['eval_every']} steps) within W = {p['window']} steps, every run trained "
        "to 2W."
    )


def _optimiser_str(t: dict) -> str:
    opt = "Adam" if t["optimizer"] == "adam" else "SGD"
    mom = f", momentum {t['momentum']}" if t.get("momentum") else ""
    mn = f", max-norm {t['max_norm']:g}" if t.get("max_norm") else ""
    return f"{opt}{mom}{mn}, batch {t['batch_size']}"


def arms_table(arms: dict[str, dict]) -> str:
    """Each arm's choice, stops and convergence as a Markdown table.

    Args:
      arms: ``{arm name: summary}``, each summary with ``recipe``, ``lr``, ``tuned_as``,
        ``window``, ``stop_w``, ``stop_2w`` (median, min, max) and ``converged``.

    Returns:
      The table.
    """
    from .common import table

    span = lambda s: f"{s['median']:g} ({s['min']}-{s['max']})"  # noqa: E731
    return table(
        ["arm", "recipe", "lr", "tuned as", "W", "stop within W", "stop within 2W", "converged"],
        [
            [name, a["recipe"], f"{a['lr']:g}", a["tuned_as"], str(a["window"]),
             span(a["stop_w"]), span(a["stop_2w"]), "yes" if a["converged"] else "**no**"]
            for name, a in arms.items()
        ],
    )  # fmt: skip
