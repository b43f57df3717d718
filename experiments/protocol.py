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
3. **The stopping step per seed, in the run** (:func:`train_arm`): every study run trains
   ``2W`` steps (the pilots only ``W``) and keeps (selects) its best variables (by validation
   loss, every ``eval_every`` steps) within ``W`` and within ``2W``: the selection within
   ``W`` is the tests', the one within ``2W`` their twins' (:data:`TWICE`), which tell whether
   a verdict survives twice the budget. A pilot that diverges rules its candidate out; a
   study seed that diverges after its selection keeps it, and its record counts it.
4. **Convergence instead of "fits"**: a seed *settles* at its first validation loss within 1%
   of its run's minimum (:func:`settle_steps`); an arm with at least a fifth of its seeds
   settling in the last 10% of ``2W`` (:data:`LATE`, :data:`LATE_SHARE`) was still improving:
   it is *not converged*, and a test on it is inconclusive whatever its interval
   (:func:`guard`, :func:`.stats.held_reasons`), as is a test whose verdict within ``2W``
   differs from the one within ``W`` at the level it is decided (*budget-dependent*). The
   runs within ``2W`` keep the learning rate tuned within ``W``: twice the budget, not a
   second tuning.

The predictor that scores the validation loss is the claim's primary one (``select_by``:
weight scaling, or the MC average over ``select_k`` fixed subnetworks). A tuned arm's choice
is cached beside the experiments (``<scale folder>/tuning/``, :func:`tuning_store`), one file
per arm, so an experiment that trains the same arm (data set, net, protocol) reuses it; the
experiments that share nets share a protocol (:data:`NET_AS_USED`, :data:`ENSEMBLE`), and a
plain net tunes under the weight-scaling one whatever its dropout partner's
(:func:`plain_protocol`). :func:`shared_arm` caches a trained arm there too (its variables
within ``W`` and ``2W`` and its record), so voting's nets, maskmode's per-example arms and
diversity's dropout net train once. The cache only saves time: the choice and the trained
arm are pure functions of the arm, the protocol (``W``, the recipes, the pilot seeds, the
selecting predictor), the seeds and the code (keyed as a cell is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dropstudy.data import Dataset
from dropstudy.train import TrainConfig, diverged, seed_keys, train_grid, train_seeds
from dropstudy.validate import DropstudyError

from .results import clean
from .stats import TWICE
from .tuning import STORE, tuning_store  # noqa: F401  (tuning_store: the way in, here too)

VAL_FRACTION = 0.2  # of the training set, held out for every choice the protocol makes
SPLIT_SEED = 0  # the validation split's permutation, one per data set
PILOT_SEEDS = (1000, 1001, 1002)  # tuning seeds, disjoint from the study's 0 .. S - 1
LATE = 0.1  # settling in the last 10% of 2W: a seed still improving at the end of its run
LATE_SHARE = 0.2  # an arm with at least this share of its seeds still improving: not converged
SETTLE = 0.01  # a seed settles at its first validation loss within 1% of its run's minimum


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
        t, name = self.train, self.name
        if t.lr is not None:
            raise DropstudyError(f"recipe {name!r}: leave train.lr unset, lrs gives it")
        lrs = list(self.lrs)
        if (
            not lrs
            or any(not (0 < lr < float("inf")) for lr in lrs)
            or len({f"{lr:g}" for lr in lrs}) != len(lrs)  # the grid's keys: "{lr:g}"
            or lrs != sorted(lrs)
        ):
            raise DropstudyError(
                f"recipe {name!r}: lrs must be finite learning rates > 0, strictly ascending and "
                f"distinct at 6 significant digits, got {self.lrs}"
            )
        if t.steps != TrainConfig.steps or t.select_by != "ws" or t.select_k is not None:
            raise DropstudyError(
                f"recipe {name!r}: steps, select_by and select_k are the protocol's: set them "
                "as Protocol(window=..., select_by=..., select_k=...), not in the recipe"
            )
        # what the grid (one compiled call over learning rates) and the protocol's own
        # selection fields cannot take: refused here, not deep inside a run
        if t.optimizer not in ("adam", "sgd") or t.schedule != "constant":
            raise DropstudyError(
                f"recipe {name!r}: the grid varies a named optimiser's ('adam' or 'sgd') "
                f"learning rate at a constant schedule; got {t.optimizer!r}, {t.schedule!r}"
            )
        if t.mask_mode == "cycle" or t.snapshot_every or t.eval_every or t.windows:
            raise DropstudyError(
                f"recipe {name!r}: mask_mode='cycle', snapshot_every, eval_every and windows "
                "are not the recipe's to set (the protocol sets the selection)"
            )

    def to_dict(self) -> dict:
        """The recipe as a JSON-ready dict."""
        return {"name": self.name, "train": self.train.to_dict(), "lrs": list(self.lrs)}


# Four rates a factor ~3 apart: a first run's dropout nets chose 3e-3, the top of a grid
# that stopped there, so the grid reaches 1e-2 (a choice at an edge is flagged all the same).
ADAM = Recipe("adam", TrainConfig(batch_size=128, optimizer="adam"), (3e-4, 1e-3, 3e-3, 1e-2))
# Srivastava et al. (2014, appendix A): SGD with momentum 0.95-0.99, max-norm c = 3-4, and
# learning rates 10-100x a plain net's.
SRIVASTAVA = Recipe(
    "sgd+max-norm",
    TrainConfig(batch_size=128, optimizer="sgd", momentum=0.95, max_norm=3.0),
    (0.01, 0.03, 0.1, 0.3, 1.0),
)


@dataclass(frozen=True)
class Protocol:
    """How one arm is tuned, trained and stopped.

    Attributes:
      window: ``W``, the steps within which the tests' stops are chosen; every study run
        trains ``2W`` steps, the pilots ``W``.
      eval_every: steps between validation losses (divides ``W``).
      select_by: the predictor the validation loss scores, ``"ws"`` or ``"mc"`` (a plain
        net is scored by weight scaling whatever this says: it is its one subnetwork).
      select_k: subnetworks of ``select_by="mc"`` (None: the trainer's default); refused
        with ``"ws"``.
      recipes: the candidates every arm draws from.
      pilot_seeds: the seeds that choose an arm's candidate.
    """

    window: int = 4000
    eval_every: int = 100
    select_by: str = "ws"
    select_k: int | None = None
    recipes: tuple[Recipe, ...] = (ADAM, SRIVASTAVA)
    pilot_seeds: tuple[int, ...] = PILOT_SEEDS

    def __post_init__(self) -> None:
        for name in ("window", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DropstudyError(f"{name} must be an integer >= 1 (steps), got {v!r}")
        if self.window % self.eval_every:
            raise DropstudyError(
                f"eval_every={self.eval_every} must divide the window W={self.window}"
            )
        if self.select_by not in ("ws", "mc"):
            raise DropstudyError(f"select_by must be 'ws' or 'mc', got {self.select_by!r}")
        if self.select_k is not None and self.select_by != "mc":
            raise DropstudyError("select_k sets the MC average's subnetworks: use select_by='mc'")
        if self.select_k is not None and (not isinstance(self.select_k, int) or self.select_k < 1):
            raise DropstudyError(f"select_k must be an integer >= 1, got {self.select_k!r}")
        if not self.recipes:
            raise DropstudyError("recipes must hold at least one candidate")
        names = [r.name for r in self.recipes]
        if len(set(names)) != len(names):
            raise DropstudyError(
                f"recipe names {names} repeat: the choice is recorded by name, so each recipe "
                "needs its own"
            )
        if len(set(self.pilot_seeds)) < 2 or len(set(self.pilot_seeds)) != len(self.pilot_seeds):
            raise DropstudyError(
                f"pilot_seeds must hold at least two distinct seeds (a mean over seeds), got "
                f"{self.pilot_seeds}"
            )

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
            select_k=self.select_k if by == "mc" else None,  # a plain net: weight scaling
            windows=(self.window,),
        )

    def to_dict(self) -> dict:
        """The protocol as a JSON-ready dict."""
        d = asdict(self)
        d["recipes"] = [r.to_dict() for r in self.recipes]
        return d


# The protocols the experiments share, so that an arm (data set, net, rate) trained by more
# than one experiment is tuned once (the tuning cache is keyed by the arm and its protocol).
# NET_AS_USED stops each run by the network as used (weight scaling); ENSEMBLE by the MC
# average of SELECT_K fixed subnetworks, for claims about the ensemble. W = 8,000 steps is
# where a first run's dropout nets of 64-128 units per layer were still improving at 4,000.
SELECT_K = 32
NET_AS_USED = Protocol(window=8000, eval_every=100, select_by="ws")
ENSEMBLE = Protocol(window=8000, eval_every=100, select_by="mc", select_k=SELECT_K)
# The quick runs' protocols: one recipe of two rates (each recipe's grid compiles once per
# arm), two pilot seeds, W = 100.
QUICK_PROTOCOL = Protocol(
    window=100, eval_every=50, recipes=(Recipe("adam", ADAM.train, (1e-3, 3e-3)),),
    pilot_seeds=(1000, 1001),
)  # fmt: skip
QUICK_ENSEMBLE = Protocol(
    window=100, eval_every=50, select_by="mc", select_k=4, recipes=QUICK_PROTOCOL.recipes,
    pilot_seeds=QUICK_PROTOCOL.pilot_seeds,
)  # fmt: skip
# A plain net is scored by weight scaling whatever its protocol's select_by says, so the
# protocol it is tuned under is the weight-scaling one (its tuning then shared with every
# experiment that trains it): see :func:`plain_protocol`.


def pilot_clash(n: int, protocol: Protocol) -> list[int]:
    """The pilot seeds of ``protocol`` among the seeds ``0 .. n - 1``, sorted.

    Args:
      n: how many seeds, counted from 0, a study trains.
      protocol: the protocol whose pilot seeds chose the arms' settings.

    Returns:
      The clashing pilot seeds (empty: none).
    """
    return sorted(s for s in protocol.pilot_seeds if 0 <= s < n)


def member_seeds(seeds: int, members: int, protocol: Protocol, field: str) -> None:
    """Refuse plain ensemble members whose seeds reach ``protocol``'s pilot seeds.

    Member j of seed s is the plain net of seed ``s + j * seeds`` (diversity's and
    ensembles' members), so the members use seeds ``0 .. seeds * members - 1``.

    Args:
      seeds: the study's seeds.
      members: plain nets per seed.
      protocol: the protocol they train by.
      field: the config field that counts the members, for the message.

    Raises:
      DropstudyError: naming the clash and what to change.
    """
    n = seeds * members
    if pilot_clash(n, protocol):
        raise DropstudyError(
            f"seeds x {field} = {n} plain nets would reach the pilot seeds "
            f"{list(protocol.pilot_seeds)} (member j of seed s is seed s + j * seeds): use "
            f"fewer seeds or {field}, or pilot seeds above the plain nets' seeds"
        )


def plain_protocol(protocol: Protocol) -> Protocol:
    """The protocol a plain net trains under alongside dropout nets trained by ``protocol``.

    A plain net has one subnetwork, so ``select_by`` changes nothing it does; with weight
    scaling named, its tuning is cached under the same key whichever experiment trains it.

    Args:
      protocol: the dropout nets' protocol.

    Returns:
      ``protocol`` selecting by weight scaling.
    """
    return replace(protocol, select_by="ws", select_k=None)


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


def tune(ds: Dataset, model: Any, protocol: Protocol) -> dict:
    """The arm's candidate: the recipe and learning rate of lowest mean validation loss.

    Each recipe's grid trains ``W`` steps on the pilot seeds in one compiled call; a run's
    score is its best validation loss within ``W``; a diverged run scores infinity; the
    candidate's score is the mean over the pilot seeds.

    Args:
      ds: the data set (split here).
      model: the net to tune.
      protocol: the protocol.

    Returns:
      ``{"recipe", "lr", "score", "grid", "edge"}``: the chosen recipe's name and learning
      rate, its score, ``grid[recipe][lr]`` = ``{"score", "stops"}`` for every candidate
      (``score`` None where a pilot run diverged; the pilot runs' stops within ``W``), and
      whether the choice is its recipe's smallest or largest rate (the best may lie outside
      the grid). Plain JSON types (:func:`.results.clean`), stored or not.
    """
    # The store is found at run time, not named here: a cell's code key covers this
    # function, and the cache's own machinery (code keys, files) is no part of the result.
    store = STORE.get()
    kwargs = {"ds": ds, "model": model, "protocol": protocol}
    if store is None:
        choice = clean(_tune(**kwargs))
    else:
        choice = store(_tune, kwargs, f"{ds.name}_{type(model).__name__}")
    # A blown-up run can keep a finite loss: a choice no better than predicting every class
    # alike (NLL log C) is no choice.
    if ds.task == "classification" and choice["score"] >= np.log(ds.n_classes):
        raise DropstudyError(
            f"no candidate beat chance on the validation split for {_model_label(model)} on "
            f"{ds.name} (best mean NLL {choice['score']:.4g} >= log {ds.n_classes}): add "
            "smaller learning rates to the recipes, or a longer window"
        )
    return choice


def _model_label(model: Any) -> str:
    fields = ("hidden", "rate", "input_rate", "channels", "kernel", "dense_width", "dense_rate")
    parts = [f"{f}={getattr(model, f)}" for f in fields if getattr(model, f, None) is not None]
    return "_".join(parts).replace(" ", "")


def _tune(ds: Dataset, model: Any, protocol: Protocol) -> dict:
    train, val = split(ds)
    keys = seed_keys(list(protocol.pilot_seeds))
    grid, best = {}, None
    for recipe in protocol.recipes:
        # the pilots score within W alone: they train W steps, not 2W
        cfg = protocol.config(recipe, model).replace(steps=protocol.window, windows=())
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
            # JSON has no infinity: a candidate with a diverged pilot scores None
            grid[recipe.name][f"{lr:g}"] = {
                "score": score if np.isfinite(score) else None,
                "stops": stops,
            }
            if np.isfinite(score) and (best is None or score < best[2]):
                best = (recipe.name, lr, score)
    if best is None:
        raise DropstudyError(
            f"every candidate diverged on the pilot seeds for {_model_label(model)} on "
            f"{ds.name}: add smaller learning rates to the recipes"
        )
    lrs = {r.name: r.lrs for r in protocol.recipes}[best[0]]
    edge = len(lrs) > 1 and best[1] in (lrs[0], lrs[-1])
    return {"recipe": best[0], "lr": best[1], "score": best[2], "grid": grid, "edge": edge}


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
      The :class:`Arm`; its ``record`` holds ``recipe``, ``lr`` (the choice), ``edge``
      (the choice at its grid's edge), ``tuned_as``, ``tuning`` (:func:`tune`'s grid),
      ``window``, ``stop_w`` and ``stop_2w`` (per seed, the steps of the selected variables),
      ``val_w`` and ``val_2w`` (their validation losses), ``settle_2w`` (per seed,
      :func:`settle_steps`), ``diverged`` (per seed, a NaN or inf training loss after its
      selection), ``converged`` (:func:`converged`) and ``n_train``.

    Raises:
      DropstudyError: if a seed is also a pilot seed.
    """
    if not seeds:
        raise DropstudyError("seeds is empty: give the study's seeds, e.g. list(range(10))")
    overlap = sorted(set(seeds) & set(protocol.pilot_seeds))
    if overlap:
        raise DropstudyError(
            f"seeds {overlap} are also pilot seeds, which chose the arm's settings: use seeds "
            f"outside {list(protocol.pilot_seeds)}"
        )
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
    # A seed that diverges after its best step keeps its selection (a NaN never wins): it is
    # recorded, not fatal.
    _, hist = train_seeds(
        model, seed_keys(seeds), x, y, cfg, per_seed_data=per_seed, seeds=seeds,
        validation=val, allow_divergence=True,
    )  # fmt: skip
    w, ww = hist.selected
    lost = [s for s, v in zip(seeds, np.asarray(w.loss), strict=True) if not np.isfinite(v)]
    if lost:
        raise DropstudyError(
            f"seed(s) {lost} diverged before their first validation loss at "
            f"{choice['recipe']} lr {choice['lr']:g} (the pilots' choice, grid "
            f"{choice['grid'][choice['recipe']]}): add smaller learning rates to the recipe"
        )
    settle = settle_steps(np.asarray(hist.val_loss), cfg.steps)
    record = {
        "recipe": choice["recipe"],
        "lr": choice["lr"],
        "edge": choice["edge"],
        "tuned_as": _model_label(tune_as if tune_as is not None else model),
        "tuning": choice["grid"],
        "window": protocol.window,
        "stop_w": np.asarray(w.step).tolist(),
        "stop_2w": np.asarray(ww.step).tolist(),
        "val_w": np.asarray(w.loss).tolist(),
        "val_2w": np.asarray(ww.loss).tolist(),
        "settle_2w": settle,
        "diverged": diverged(np.asarray(hist.loss)).tolist(),
        "converged": converged(settle, protocol.window),
        "n_train": len(train.x_train) if subsets is None else subsets,
    }
    return Arm(w.variables, ww.variables, record, hist)


def shared_arm(ds: Dataset, model: Any, protocol: Protocol, seeds: list[int]) -> Arm:
    """:func:`train_arm`, kept in the run's tuning cache so that every experiment training the
    same arm (data set, net, protocol, seeds) trains it once.

    Outside a run (no cache) it is :func:`train_arm` itself. The cached variables are exact:
    float32 round-trips through the cache's 10 significant digits.

    Args:
      ds: the data set.
      model: the net.
      protocol: the protocol.
      seeds: the study's seeds.

    Returns:
      The :class:`Arm`, without its ``history``.
    """
    store = STORE.get()
    if store is None:
        return train_arm(ds, model, protocol, seeds)
    kwargs = {"ds": ds, "model": model, "protocol": protocol, "seeds": list(seeds)}
    packed = store(_packed_arm, kwargs, f"arm_{ds.name}_{type(model).__name__}")
    return Arm(_unpack(packed["within_w"]), _unpack(packed["within_2w"]), packed["record"])


def _packed_arm(ds: Dataset, model: Any, protocol: Protocol, seeds: list[int]) -> dict:
    arm = train_arm(ds, model, protocol, seeds)
    return {"within_w": _pack(arm.within_w), "within_2w": _pack(arm.within_2w),
            "record": arm.record}  # fmt: skip


def _pack(tree: Any) -> Any:
    return jax.tree.map(lambda a: {"dtype": str(a.dtype), "data": np.asarray(a).tolist()}, tree)


def _unpack(tree: Any) -> Any:
    return jax.tree.map(
        lambda d: jnp.asarray(np.asarray(d["data"], d["dtype"])),
        tree,
        is_leaf=lambda d: isinstance(d, dict) and set(d) == {"dtype", "data"},
    )


def settle_steps(val_loss: np.ndarray, steps: int) -> list[int]:
    """Each run's settling step: its first validation loss within :data:`SETTLE` of its minimum.

    A run whose loss has flattened settles early even when a later evaluation is lower by a
    hair (its argmin would fall anywhere on the plateau); a run still improving settles late.

    Args:
      val_loss: the validation loss after every step, ``(S, steps)``, NaN where none was
        evaluated (:attr:`dropstudy.train.History.val_loss`).
      steps: the run's length.

    Returns:
      Per run, the steps done at its settling evaluation.
    """
    out = []
    for row in np.asarray(val_loss, np.float64).reshape(-1, steps):
        done = np.flatnonzero(np.isfinite(row))
        best = row[done].min()
        out.append(int(done[np.argmax(row[done] <= best + SETTLE * abs(best))] + 1))
    return out


def converged(settle_2w, window: int) -> bool:
    """Whether fewer than :data:`LATE_SHARE` of an arm's seeds settle in the last 10% of ``2W``.

    Args:
      settle_2w: the seeds' settling steps within ``2W`` (:func:`settle_steps`).
      window: ``W``.

    Returns:
      False when the arm was still improving at the end of its runs.
    """
    return bool(late_seeds(settle_2w, window) < LATE_SHARE * len(settle_2w))


def late_seeds(settle_2w, window: int) -> int:
    """How many seeds settle in the last :data:`LATE` of ``2W`` (still improving there).

    Args:
      settle_2w: the seeds' settling steps within ``2W`` (:func:`settle_steps`).
      window: ``W``.

    Returns:
      The count.
    """
    return int(np.sum(np.asarray(settle_2w) > (1 - LATE) * 2 * window))


def not_converged(records: dict[str, dict]) -> list[str]:
    """The arms of a test that were still improving, in words.

    Args:
      records: ``{arm name: record}`` (:func:`train_arm`'s records).

    Returns:
      One phrase per arm not converged, naming how many seeds settle late and ``2W``.
    """
    out = []
    for name, r in records.items():
        if not r["converged"]:
            late = late_seeds(r["settle_2w"], r["window"])
            out.append(
                f"{name} not converged ({late} of {len(r['settle_2w'])} seeds still improving "
                f"in the last 10% of 2W = {2 * r['window']})"
            )
    return out


def guard(test: dict, twice: dict, records: dict[str, dict]) -> dict:
    """A test held to the protocol: inconclusive when an arm did not converge or the verdict
    changes with twice the budget.

    The rule itself is :func:`.stats.held_reasons`, applied by :func:`.stats.decide` at
    whatever level a verdict is decided (the test's own p-value here, the Holm-adjusted one in
    the report's summary), so the budget rule compares verdicts at the same level.

    Args:
      test: the test on the nets selected within ``W``.
      twice: the same test on the nets selected within ``2W``.
      records: the records of the arms it compares.

    Returns:
      ``test`` with ``verdict_w`` (its own verdict, unguarded), ``within_2w`` (the twin's
      rule, effect, interval, p-value, outcome and verdict, with its margin for equivalence),
      ``arms`` (each arm's convergence: ``converged``, ``late`` and ``seeds``),
      ``not_converged`` (the phrases of :func:`not_converged`, when any), ``verdict`` (guarded,
      at the test's own p-value) and, when held, ``blocked`` (the reasons at that level).
    """
    arms = {
        name: {
            "converged": r["converged"],
            "late": late_seeds(r["settle_2w"], r["window"]),
            "seeds": len(r["settle_2w"]),
        }
        for name, r in records.items()
    }
    return hold(test, twice, arms, not_converged(records))


TWIN_KEYS = ("rule", "level", "effect", "lo", "hi", "p", "outcome", "verdict", "margin", "outside")


def hold(test: dict, twice: dict, arms: dict[str, dict], reasons: list[str]) -> dict:
    """:func:`guard` from the arms' convergence counts (what a results file keeps).

    Args:
      test: the test on the nets selected within ``W``.
      twice: the same test on the nets selected within ``2W``.
      arms: ``{arm name: {"converged", "late", "seeds"}}``.
      reasons: the phrases naming the arms not converged (empty when all converged).

    Returns:
      ``test`` guarded, with the fields :func:`guard` lists.
    """
    from .stats import decide, held_reasons

    out = {
        **test,
        "verdict_w": test["verdict"],
        "within_2w": {k: twice[k] for k in TWIN_KEYS if k in twice},
        "arms": arms,
    }
    if reasons:
        out["not_converged"] = list(reasons)
    out["verdict"] = decide(out, out["p"])
    held = held_reasons(out, out["p"])
    if held:
        out["blocked"] = held
    return out


def guarded(
    tests: dict,
    twice: dict,
    records: dict[str, dict],
    per_test: dict[str, dict[str, dict]] | None = None,
) -> dict:
    """Tests held to the protocol, each followed by its twin within 2W.

    Args:
      tests: ``{name: test}`` on the nets selected within ``W``.
      twice: the same tests on the nets selected within ``2W``.
      records: the records of the arms they compare.
      per_test: ``{name: records}`` for tests on other arms than ``records`` (a test of
        one net among several is held by that net's training alone).

    Returns:
      ``{name: guard(test), name + TWICE: its twin}`` in the order of ``tests``: the twin is a
      test of its own (its values kept like any test's, so the guard can be recomputed), its
      ``what`` saying "nets selected within 2W".
    """
    out = {}
    for name, t in tests.items():
        out[name] = guard(t, twice[name], (per_test or {}).get(name, records))
        out[name + TWICE] = {
            **twice[name],
            "what": twice[name]["what"] + ", nets selected within 2W",
        }
    return out


def arm_summary(record: dict) -> dict:
    """An arm's training, for the results' tables: enough to recompute its convergence.

    Args:
      record: the arm's record (:func:`train_arm`).

    Returns:
      ``{"recipe", "lr", "edge", "tuned_as", "window", "stop_w", "stop_2w", "settle_2w",
      "at_w_end", "late", "diverged", "converged", "tuning"}``: its choice (``edge``: at its
      grid's edge), ``W``; per seed, its stops within ``W`` and ``2W`` and its settling step
      (lists); how many seeds stop in the last 10% of ``W`` (``at_w_end``: the primary's
      selection was still improving there) and settle in the last 10% of ``2W`` (``late``);
      how many diverged after their selection; whether it converged; and the tuning grid's
      mean validation losses.
    """
    w = record["window"]
    return {
        "recipe": record["recipe"],
        "lr": record["lr"],
        "edge": record["edge"],
        "tuned_as": record["tuned_as"],
        "window": w,
        "stop_w": record["stop_w"],
        "stop_2w": record["stop_2w"],
        "settle_2w": record["settle_2w"],
        "at_w_end": int(np.sum(np.asarray(record["stop_w"]) > (1 - LATE) * w)),
        "late": late_seeds(record["settle_2w"], w),
        "diverged": int(np.sum(record["diverged"])),
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
    k = p["select_k"] if p["select_k"] is not None else "the trainer's default number of"
    by = "weight scaling" if p["select_by"] == "ws" else f"the MC average of {k} subnetworks"
    return (
        f"trained on {1 - VAL_FRACTION:.0%} of the training set, its recipe and learning rate "
        f"chosen by the mean validation NLL ({by}) over {len(p['pilot_seeds'])} pilot seeds "
        f"among {recipes}; each seed stopped at its best validation NLL (every "
        f"{p['eval_every']} steps) within W = {p['window']} steps, every run trained "
        "to 2W."
    )


def stopped_by(p: dict) -> str:
    """The predictor whose validation NLL picks and stops a protocol's dropout nets, in words.

    Args:
      p: :meth:`Protocol.to_dict`.

    Returns:
      ``"weight scaling (the network as used)"`` or ``"the MC average of K fixed
      subnetworks"``.
    """
    if p["select_by"] == "ws":
        return "weight scaling (the network as used)"
    k = p["select_k"] if p["select_k"] is not None else "the trainer's default number of"
    return f"the MC average of {k} fixed subnetworks"


def _optimiser_str(t: dict) -> str:
    opt = "Adam" if t["optimizer"] == "adam" else "SGD"
    mom = f", momentum {t['momentum']}" if t.get("momentum") else ""
    mn = f", max-norm {t['max_norm']:g}" if t.get("max_norm") else ""
    return f"{opt}{mom}{mn}, batch {t['batch_size']}"


def arms_note() -> str:
    """How to read :func:`arms_table`."""
    return (
        f"Each seed trains 2W steps and keeps its variables of lowest validation NLL within W "
        f"(the tests') and within 2W (the twins'); their steps are its *stops*. A seed "
        f"*settles* at its first validation NLL within {SETTLE:.0%} of its run's minimum, and "
        f"an arm is *converged* when fewer than {LATE_SHARE:.0%} of its seeds are still "
        f"improving (settle) in the last {LATE:.0%} of 2W; a stop in the last {LATE:.0%} of W "
        "means the selection within W was still improving there (the twin within 2W is the "
        "check). *Tuning* lists each candidate's mean over the pilot seeds of their lowest "
        "validation NLL within W (none: a pilot diverged); an lr at its grid's edge is marked."
    )


def _tuning_str(a: dict) -> str:
    return "; ".join(
        f"{rec}: " + ", ".join(f"{lr} {'none' if v is None else f'{v:.3f}'}" for lr, v in g.items())
        for rec, g in a["tuning"].items()
    )


def _edge(a: dict) -> bool:
    """The choice at its grid's edge, in a grid of three or more rates (in two, both are)."""
    lrs = sorted(float(x) for x in a["tuning"][a["recipe"]])
    return len(lrs) > 2 and a["lr"] in (lrs[0], lrs[-1])


def arms_table(arms: dict[str, dict]) -> str:
    """Each arm's choice, stops and convergence as a Markdown table.

    Args:
      arms: ``{arm name: summary}`` (:func:`arm_summary`).

    Returns:
      The table (read as :func:`arms_note` says).
    """
    from .common import table

    span = lambda v: f"{np.median(v):g} ({min(v)}-{max(v)})"  # noqa: E731
    rows = [
        [name, a["recipe"], f"{a['lr']:g}" + (" (grid edge)" if _edge(a) else ""),
         a["tuned_as"], str(a["window"]), span(a["stop_w"]),
         f"{a['at_w_end']} of {len(a['stop_w'])}", span(a["stop_2w"]),
         f"{a['late']} of {len(a['settle_2w'])}", str(a["diverged"]),
         "yes" if a["converged"] else "**no**", _tuning_str(a)]
        for name, a in arms.items()
    ]  # fmt: skip
    head = ["arm", "recipe", "lr", "tuned as", "W", "stop within W, median (range)",
            "stops in W's last 10%", "stop within 2W, median (range)",
            "still improving in 2W's last 10%", "diverged later", "converged",
            "tuning: mean validation NLL by lr"]  # fmt: skip
    return table(head, rows)


def caveats(arms: dict[str, dict], eval_every: int) -> str:
    """What a reader should know before quoting a comparison of tuned arms, in words.

    Args:
      arms: ``{arm name: summary}`` (:func:`arm_summary`) of the arms a primary compares.
      eval_every: steps between validation losses (a stop at the first is an edge too).

    Returns:
      Sentences naming arms whose recipe or learning rate differ (the effect is each net at
      its own best, not dropout at one setting) or saying that they chose the same, choices
      at a grid's edge (of three or more rates), arms not converged, seeds stopped in the last
      10% of ``W`` or at the first evaluation; empty when there is nothing to say.
    """
    out = []
    settings = {name: (a["recipe"], a["lr"]) for name, a in arms.items()}
    if len(settings) > 1 and len(set(settings.values())) == 1:
        recipe, lr = next(iter(settings.values()))
        out.append(
            f"The compared arms, tuned each on its own, chose the same setting ({recipe} at lr "
            f"{lr:g}): the comparison is at one setting."
        )
    if len(set(settings.values())) > 1:
        said = "; ".join(f"{n}: {r} at lr {lr:g}" for n, (r, lr) in settings.items())
        out.append(
            f"The compared arms train at different settings ({said}), so the effect is each "
            "net at its own best, the setting included, not dropout alone at one setting."
        )
    edge = [f"{n} (lr {a['lr']:g})" for n, a in arms.items() if _edge(a)]
    if edge:
        out.append(
            f"At its grid's edge: {', '.join(edge)}; the best learning rate may lie beyond it."
        )
    late = [f"{n} ({a['late']} of {len(a['settle_2w'])} seeds still improving in 2W's last 10%)"
            for n, a in arms.items() if not a["converged"]]  # fmt: skip
    if late:
        out.append(f"Not converged, so its tests are held: {', '.join(late)}.")
    at_end = {n: a["at_w_end"] for n, a in arms.items() if a["at_w_end"]}
    if at_end:
        said = ", ".join(f"{n} {k} of {len(arms[n]['stop_w'])}" for n, k in at_end.items())
        out.append(
            f"Seeds stopped in the last 10% of W, still improving there (the twin within 2W "
            f"is the check): {said}."
        )
    first = {n: sum(s == eval_every for s in a["stop_w"]) for n, a in arms.items()}
    first = {n: k for n, k in first.items() if k}
    if first:
        said = ", ".join(f"{n} {k} of {len(arms[n]['stop_w'])}" for n, k in first.items())
        out.append(
            f"Seeds stopped at the first evaluation (step {eval_every}; the best may come "
            f"earlier): {said}."
        )
    return " ".join(out)
