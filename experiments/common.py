"""What every experiment shares: the run context, cells, seeds, figures and tables."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("MPLBACKEND", "Agg")

import flax.linen as nn
import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dropstudy.data import Dataset, digits
from dropstudy.io import versions
from dropstudy.metrics import per_example
from dropstudy.models import model_class, model_config
from dropstudy.train import TrainConfig
from dropstudy.train import progress as train_progress

from .cells import CellStore
from .codekey import code_key, environment
from .interrupt import INTERRUPTED
from .results import write_json
from .stats import (
    ALPHA,
    INCONCLUSIVE,
    TWICE,
    decide_unguarded,
    excludes_zero,
    fmt,
    held_reasons,
    mean_ci,
    sign_flip,
    tost_power,
)
from .tuning import tuning_store

TIMING_LOG = "timing.jsonl"  # per scale folder: wall time of every cell and experiment
RUN_ID = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"  # one per process: groups a run's lines
MC_K = 1000  # subnetworks in every experiment's Monte-Carlo average of a dropout net

plt.rcParams.update({"figure.dpi": 90, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3})


RATE_FIELDS = ("rate", "rates")  # a name ending so: drop rates, each in [0, 1)
FRACTION_FIELDS = ("fraction", "fractions", "missing", "occlusion")  # each in [0, 1)
POSITIVE_FIELDS = ("margin", "agree", "apart", "k_delta", "same_function", "lr",
                   "taus", "length_scale")  # fmt: skip
NON_NEGATIVE_FIELDS = ("weight_decay", "l2s", "noise", "decades", "batch_size")


def check_field(name: str, value: Any, kind: str = "") -> None:
    """Refuse a value no experiment could use, by the field's name and type.

    Args:
      name: the field's name: ``*rate(s)`` must lie in [0, 1), ``*fraction(s)`` and the
        robustness shifts' ``missing``/``occlusion`` in [0, 1) ((0, 1) for a single
        fraction), ``keeps`` in (0, 1], margins, learning rates, taus and the length scale
        above 0; ``*seed`` integers may be 0; every other integer (and each integer of a
        tuple) must be >= 1, and every float finite.
      value: its value.
      kind: its declared type as written (``"int"``: the value must be an integer;
        ``"Protocol"`` or ``"TrainConfig"``: an instance of that class).

    Raises:
      DropstudyError: naming the field, its value and the rule.
    """
    from dropstudy.validate import DropstudyError

    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise DropstudyError(f"{name} must be an integer, got {value!r}")
    if kind in ("Protocol", "TrainConfig") and type(value).__name__ != kind:
        where = "dropstudy_experiments.protocol" if kind == "Protocol" else "dropstudy.train"
        raise DropstudyError(
            f"{name} must be a {kind} (from {where}; the default's replace() changes one "
            f"setting), got {value!r}"
        )
    items = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and not value and name in ("rates", "hidden", "taus", "depths"):
        raise DropstudyError(f"{name} must not be empty")
    numbers = [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(items):
        return  # not a number field (a TrainConfig, a net, names)

    def refuse(rule: str) -> None:
        raise DropstudyError(f"{name} must be {rule}, got {value!r}")

    if any(not math.isfinite(v) for v in numbers):
        refuse("finite")
    base = name.split("_")[-1]
    if name.endswith(RATE_FIELDS) and base in RATE_FIELDS:
        if not all(0 <= v < 1 for v in numbers):
            refuse("in [0, 1) (a drop rate)")
    elif base in FRACTION_FIELDS or name in FRACTION_FIELDS:
        single = not isinstance(value, tuple)
        if not all((0 < v < 1) if single else (0 <= v < 1) for v in numbers):
            refuse("in (0, 1)" if single else "in [0, 1)")
    elif name == "keeps":
        if not all(0 < v <= 1 for v in numbers):
            refuse("in (0, 1] (keep probabilities)")
    elif name.startswith("margin") or name.endswith("margin") or name in POSITIVE_FIELDS:
        if not all(v > 0 for v in numbers):
            refuse("> 0")
    elif name.startswith("lr_") or name in NON_NEGATIVE_FIELDS:
        if not all(v >= 0 for v in numbers) or (name.startswith("lr_") and not all(numbers)):
            refuse("> 0" if name.startswith("lr_") else ">= 0")
    elif all(isinstance(v, int) for v in numbers) and not name.endswith("seed"):
        if not all(v >= 1 for v in numbers):
            refuse("an integer >= 1" if not isinstance(value, tuple) else "integers >= 1")


class ExperimentConfig:
    """Base of every experiment's frozen ``Config``: the quick variant and the seed count.

    Subclasses are frozen dataclasses with a ``seeds`` field (or their own ``with_seeds``)
    and a ``QUICK`` dict of the fields a smoke test shrinks.
    """

    QUICK: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        self.check()
        self.check_primary()

    def check(self) -> None:
        """Refuse a configuration no run could use, when it is built (so before any cell runs).

        The rules here go by a field's name and type (:func:`check_field`); subclasses add rules
        between fields. A ``TrainConfig`` field checks itself when it is built;
        :meth:`check_primary` runs after every rule here.

        Raises:
          DropstudyError: if an integer ``seeds`` is below 2 (confidence intervals need two), or
            a field breaks a rule of :func:`check_field`.
        """
        from dropstudy.validate import DropstudyError

        seeds = getattr(self, "seeds", None)
        if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds < 2:
            raise DropstudyError(f"seeds must be >= 2 for confidence intervals, got {seeds}")
        for f in fields(self):
            check_field(f.name, getattr(self, f.name), str(f.type))

    def check_primary(self) -> None:
        """Refuse a ``primary`` that names no test of this configuration, when it is built.

        It runs after :meth:`check` (the subclasses' rules between fields too): the names
        come from fields those rules vouch for. Configurations without a ``primary`` field
        pass.

        Raises:
          DropstudyError: naming the bad value and listing the valid names, sorted.
        """
        from dropstudy.validate import DropstudyError

        if "primary" not in {f.name for f in fields(self)}:
            return
        primary, names = getattr(self, "primary", None), self.test_names()
        if primary not in names:
            raise DropstudyError(
                f"primary {primary!r} is not a test of this experiment; it must be one "
                f"of {sorted(names)}"
            )

    def test_names(self) -> tuple[str, ...]:
        """The names of every test this configuration's summary can produce.

        Each experiment's ``Config`` derives them from its own fields, as its ``summarise``
        names them; here, none.

        Returns:
          The test names, including those a summary adds only on some data or outcomes.
        """
        return ()

    def quick(self):
        """The smoke-test variant of this configuration.

        Returns:
          A copy in which ``QUICK``'s values replace the defaults, checked when built.
        """
        return replace(self, **self.QUICK)

    def with_seeds(self, n: int):
        """The same configuration with ``n`` seeds.

        Args:
          n: the number of seeds.

        Returns:
          A copy with ``seeds=n``, checked when built.
        """
        return replace(self, seeds=n)

    def seed_span(self) -> int:
        """How many seeds the study's list uses, counted from its first: the largest integer
        field ``seeds``, ``*_seeds`` or ``splits`` (an experiment whose plain members take
        seeds of their own multiplies it by their number).

        Returns:
          The count; 0 when no field counts seeds.
        """
        counts = [getattr(self, f.name) for f in fields(self)
                  if f.name in ("seeds", "splits") or f.name.endswith("_seeds")]  # fmt: skip
        counts = [v for v in counts if isinstance(v, int) and not isinstance(v, bool)]
        return max(counts, default=0)

    def to_dict(self) -> dict:
        """The configuration as a JSON-ready dict.

        Returns:
          ``{field: value}`` (:func:`dataclasses.asdict`).
        """
        return asdict(self)


@dataclass(frozen=True)
class Cell:
    """One unit of work: ``fn(**kwargs)``. Its cache key is derived from ``fn``'s name, the
    arguments themselves and the code ``fn`` can run (:mod:`.codekey`), so the
    configuration is written once and editing prose recomputes nothing."""

    fn: Callable[..., Any]
    kwargs: dict

    def key(self) -> dict:
        """The cell's identity: what decides whether its stored result is stale.

        The devices count because seeds are batched per device, and a batch's size can change float
        rounding. The machine counts because XLA compiles for the host CPU with its flags, and
        training amplifies the rounding: a folder shared by two machines keeps their cells
        apart, so a results file, which records one machine, is made on that one.

        Returns:
          ``{"fn", "args", "code", "versions", "devices", "machine"}``: the function's
          qualified name, the arguments' :func:`cell_key`, the digest of the code it runs
          (:func:`.codekey.code_key`), Python and the versions of the libraries that run it with
          the device kind (:func:`.codekey.environment`), the devices it runs on
          (:func:`device_tag`), and the CPU model, architecture and XLA flags
          (:func:`machine`).
        """
        return {
            "fn": self.fn.__qualname__,
            "args": cell_key(self.kwargs),
            "code": code_key(self.fn, self.kwargs),
            "versions": environment(),
            "devices": device_tag(),
            "machine": machine(),
        }


def cell(fn: Callable[..., Any], **kwargs) -> Cell:
    """A cell of ``fn`` on ``kwargs``: ``plan`` functions list these.

    Args:
      fn: the cell's function.
      **kwargs: its arguments.

    Returns:
      ``Cell(fn, kwargs)``.
    """
    return Cell(fn, kwargs)


def cell_key(value: Any) -> Any:
    """A JSON-able identity of a cell argument.

    Data sets go by name and content digest, models by class and attributes, dataclasses
    (``TrainConfig``) and other objects with a ``to_dict`` by that dict, dicts, lists and tuples
    item by item, numpy arrays by a digest of their bytes and their shape.

    Args:
      value: a cell argument, or a part of one.

    Returns:
      Its key, built of dicts, lists, strings, numbers, booleans and None.

    Raises:
      TypeError: if a ``TrainConfig`` has a custom (unnamed) optimiser or loss, or ``value``
        (or a part of it) is of a type with no stable key.
    """
    if isinstance(value, Dataset):
        return {"dataset": value.name, "digest": value.digest()}
    if isinstance(value, nn.Module):
        return {"model": model_class(value), **model_config(value)}
    if isinstance(value, TrainConfig):
        unnamed = [
            f for f in ("optimizer", "loss") if not isinstance(getattr(value, f), str | None)
        ]
        if unnamed:
            raise TypeError(
                f"a cell's TrainConfig has a custom {unnamed[0]}: the study names its "
                "optimisers and losses so that cell keys stay stable"
            )
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return cell_key(value.to_dict())
    if isinstance(value, dict):
        return {str(k): cell_key(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [cell_key(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"array": hashlib.sha256(value.tobytes()).hexdigest()[:16], "shape": value.shape}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"a cell argument of type {type(value).__name__} has no stable key")


class TuningStore:
    """The study's cache of tuned arms (:func:`.protocol.tuning_store`): one file per arm,
    keyed as a cell is (its function, arguments, code, versions, devices and machine)."""

    def __init__(self, folder: Path, first: Path | None = None, reuse: Path | None = None):
        """
        Args:
          folder: where this run's tunings and arms are kept.
          first: a first list's tuning folder, read (never written) before ``folder``: a
            second list of seeds takes the first list's choices, tuned on the same pilot
            seeds, and keeps its own arms in ``folder``. It takes them whatever machine made
            them (every other part of their key must match).
          reuse: another run's tuning folder, read (never written) when an arm is not in
            ``folder``: one stored there under the same key, machine included, is copied in
            (:class:`.cells.CellStore`).
        """
        self.cells = CellStore(Path(folder).parent, reuse=[reuse] if reuse is not None else ())
        self.cells.dir = Path(folder)
        self.first = None
        if first is not None:
            self.first = CellStore(Path(first).parent)
            self.first.dir = Path(first)

    def __call__(self, fn: Callable[..., Any], kwargs: dict, prefix: str) -> Any:
        """``fn(**kwargs)``, reused from the folder when stored under the same key.

        Args:
          fn: the tuning function.
          kwargs: its arguments.
          prefix: the file name's start (the data set and the net's class); a digest of the
            arguments tells arms apart.

        Returns:
          The result, as plain JSON types.
        """
        key = Cell(fn, kwargs).key()
        digest = hashlib.sha256(json.dumps(key["args"], sort_keys=True).encode()).hexdigest()
        name = f"{prefix}_{digest[:10]}"
        if self.first is not None:
            found, result, _ = self.first.lookup(name, key)
            # the first list's choice whatever machine made it: a second list trains at the
            # settings its pilot seeds tuned (another CPU may tune otherwise)
            theirs = None if found else self.first.stored_key(name)
            if isinstance(theirs, dict) and theirs.get("machine"):
                found, result, _ = self.first.lookup(name, {**key, "machine": theirs["machine"]})
                if found:
                    logging.getLogger("dropstudy").info(
                        "%s: taking the first list's tuning, made on %s", name,
                        theirs["machine"].get("cpu"),
                    )  # fmt: skip
            if found:
                self.cells.reused.append(name)
                return result
        return self.cells.get(name, key, lambda: fn(**kwargs))


@dataclass
class Context:
    """One experiment's run: where to write, which data, and its cell store."""

    name: str
    out: Path
    quick: bool = False
    progress: bool = True
    data: Dataset | None = None
    figures: list[str] = field(default_factory=list)
    # a first list's cache of tuned arms, read before this run's own (``<scale folder>/
    # tuning``): a second list of seeds takes the first list's choices, tuned on the same
    # pilot seeds
    tuning: Path | None = None
    # another scale folder whose cells and tuned arms, stored under the same keys, are copied
    # in rather than computed (a run that sets only what no cell depends on recomputes nothing)
    reuse: Path | None = None

    def __post_init__(self):
        self.out = Path(self.out) / self.name
        self.out.mkdir(parents=True, exist_ok=True)
        self.store = CellStore(
            self.out, reuse=[Path(self.reuse) / self.name / "cells"] if self.reuse else ()
        )
        # tunings and trained arms of the protocol (tuning/): (file name, "made" or "reused")
        self.tuned_names: list[tuple[str, str]] = []
        # those of them copied from ``reuse``
        self.tuned_copied: list[str] = []
        # each cell's code digest (:func:`.codekey.code_key`): a reused cell was made by code
        # of the same digest, so the results file can say which code made its numbers
        self.code: dict[str, str] = {}
        # the digest of the code that summarises the cells into tests (set by the runner)
        self.summary_code: str | None = None

    @property
    def tuned(self) -> dict[str, int]:
        """How many tunings and arms this run made (``computed``) and reused (``reused``)."""
        made = sum(h == "made" for _, h in self.tuned_names)
        return {"computed": made, "reused": len(self.tuned_names) - made}

    def dataset(self) -> Dataset:
        """The run's data set (digits unless given), loaded once.

        Returns:
          ``self.data``; when none was given, :func:`dropstudy.data.digits`, kept there.
        """
        if self.data is None:
            self.data = digits()
        return self.data

    def run_cells(
        self, cells: dict[str, Cell], on_cell: Callable[[str, Any], None] | None = None
    ) -> dict[str, Any]:
        """Run (or reuse) every cell.

        See :meth:`Cell.key` for what makes a stored cell stale. Each cell trains in segments,
        whether or not the progress bars show (so hiding them never changes a number), and its wall
        time goes to the timing log (:meth:`log_time`).

        Args:
          cells: ``{label: cell}``.
          on_cell: called as ``on_cell(label, result)`` as each cell finishes or is reused.

        Returns:
          ``{label: result}``.

        Raises:
          KeyboardInterrupt: after the cell in flight, when a Ctrl-C arrived that a finaliser
            swallowed.
        """
        from tqdm.auto import tqdm

        raw = {}
        off = not self.progress
        with (
            tqdm(total=len(cells), desc=self.name, disable=off, unit="cell") as bar,
            tqdm(total=0, desc="  training", disable=off, unit="step", leave=False) as steps,
        ):

            def report(done: int, total: int) -> None:
                # A cell may train several times: a new run restarts the inner bar.
                if total != steps.total or done < steps.n:
                    steps.reset(total=total)
                steps.update(done - steps.n)

            for label, c in cells.items():
                bar.set_postfix_str(label[:40])
                key = c.key()
                self.code[label] = key["code"]
                # Always in segments, so hiding the bars never changes a number.
                compute = self._with(report, c)
                t0, n_computed = time.perf_counter(), len(self.store.computed)
                raw[label] = self.store.get(label, key, compute)
                took = time.perf_counter() - t0
                self.log_time(label, took, len(self.store.computed) > n_computed)
                if on_cell is not None:
                    on_cell(label, raw[label])
                bar.update(1)
                if INTERRUPTED.is_set():  # a Ctrl-C that a finaliser swallowed: stop here,
                    INTERRUPTED.clear()  # once (where no handler clears it: SIGINT ignored)
                    raise KeyboardInterrupt
        return raw

    def log_time(self, cell: str | None, seconds: float, computed: bool) -> None:
        """Append one line to the scale folder's timing log, ``timing.jsonl``.

        The log is untracked and never read by the results. A line records the run, the experiment,
        the data set, the cell, its wall time, whether it was computed, when, and the devices.

        Args:
          cell: the cell's label; None for the whole experiment.
          seconds: its wall time.
          computed: whether it was computed (rather than reused).
        """
        line = {
            "run": RUN_ID,
            "experiment": self.name,
            "dataset": self.dataset().name,
            "cell": cell,
            "seconds": round(seconds, 3),
            "computed": computed,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "devices": device_tag(),
        }
        with open(self.out.parent / TIMING_LOG, "a") as f:
            f.write(json.dumps(line) + "\n")

    def _with(self, report, c: Cell):
        """``c`` computed with its training in segments, progress reported to ``report``
        (see :func:`dropstudy.train.progress`)."""

        def compute():
            # tuned arms are cached once per scale folder, shared by every experiment there
            store = TuningStore(
                self.out.parent / "tuning",
                first=self.tuning,
                reuse=Path(self.reuse) / "tuning" if self.reuse else None,
            )
            with train_progress(report), tuning_store(store):
                result = c.fn(**c.kwargs)
            self.tuned_names += [(n, "made") for n in store.cells.computed]
            self.tuned_names += [(n, "reused") for n in store.cells.reused]
            self.tuned_copied += store.cells.copied
            return result

        return compute

    def savefig(self, fig, name: str) -> str:
        """Save a figure into the experiment's folder, and close it.

        It is saved at 90 dpi with no timestamp (stable bytes), and its name joins the figures the
        results file lists.

        Args:
          fig: a matplotlib figure; it is laid out tightly first.
          name: its file name, e.g. ``"conv.png"``.

        Returns:
          ``name``.
        """
        path = self.out / name
        fig.tight_layout()
        fig.savefig(path, dpi=90, metadata={"Software": None})  # no timestamp: stable bytes
        plt.close(fig)
        self.figures.append(name)
        return name

    def _per_example_out(self, tests: dict) -> dict:
        """Move the two-level tests' per-example arrays to ``PER_EXAMPLE`` beside the results.

        Args:
          tests: the experiment's tests; a two-level test holds ``per_example``, ``(S, N)``.

        Returns:
          The tests, each ``per_example`` replaced by the npz file's name (its key is the
          test's name). The file is written only when some test has per-example values, and
          removed when none has (so it never outlives the results it belongs to).
        """
        arrays = {k: np.asarray(t["per_example"]) for k, t in tests.items()
                  if isinstance(t, dict) and t.get("per_example") is not None}  # fmt: skip
        path = self.out / PER_EXAMPLE
        if arrays:
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            write_npz(tmp, arrays)
            tmp.replace(path)
        elif path.exists():
            path.unlink()
        return {k: {**t, "per_example": PER_EXAMPLE} if k in arrays else t
                for k, t in tests.items()}  # fmt: skip

    def write(self, claim: str, cfg: ExperimentConfig, results: dict, started: float) -> Path:
        """Write the experiment's ``results.json``.

        The file holds the experiment's results plus the claim, its configuration, the figures,
        versions and devices, the quick flag, the data set (name, sizes, features, classes), the
        backend and the code that made its cells (:func:`code_record`). The experiment's wall
        time goes to the timing log, counted as computed only when none of its cells was
        reused.

        Args:
          claim: the claim the experiment tests.
          cfg: its configuration.
          results: its results (the summary and its scale).
          started: ``time.perf_counter()`` when the experiment started.

        Returns:
          The path of ``results.json``.
        """
        ds = self.dataset()
        results = {
            "experiment": self.name,
            "claim": claim,
            "quick": self.quick,
            "config": cfg.to_dict(),
            "data": {
                "name": ds.name,
                "n_train": len(ds.x_train),
                "n_test": len(ds.x_test),
                "features": int(np.prod(ds.x_train.shape[1:])),
                "classes": ds.n_classes,
            },
            "figures": self.figures,
            "versions": versions(),
            "backend": jax.default_backend(),
            "devices": device_tag(),
            "machine": machine(),
            "code": code_record(self.code, self.summary_code),
            **results,
        }
        if "tests" in results:
            results["tests"] = self._per_example_out(results["tests"])
        path = write_json(self.out / "results.json", results)
        # the experiment counts as computed only when none of its cells was reused
        self.log_time(None, time.perf_counter() - started, not self.store.reused)
        arms = ""
        if self.tuned_names:
            count = lambda arm, how: sum(  # noqa: E731
                n.startswith("arm_") == arm and h == how for n, h in self.tuned_names
            )
            where = self.out.parent / "tuning"
            where = f"{where}, the first list's {self.tuning} read first" if self.tuning else where
            arms = (
                f"; protocol tunings: {count(False, 'made')} made, {count(False, 'reused')} "
                f"reused; trained arms: {count(True, 'made')} made, {count(True, 'reused')} "
                f"reused ({where})"
            )
        copied = (
            f"; copied from {self.reuse}: {len(self.store.copied)} cells, "
            f"{len(self.tuned_copied)} tunings and trained arms"
            if self.store.copied or self.tuned_copied
            else f"; none copied from {self.reuse} (no cell stored there under this run's keys)"
            if self.reuse
            else ""
        )
        logging.getLogger("dropstudy").info(
            "%s: wrote %s (%d cells computed, %d reused%s%s, %.0f s)",
            self.name,
            path,
            len(self.store.computed),
            len(self.store.reused),
            arms,
            copied,
            time.perf_counter() - started,
        )
        return path


PER_EXAMPLE = "per_example.npz"  # beside results.json: the two-level tests' (S, N) values


def code_record(cells: dict[str, str], summary: str | None = None) -> dict:
    """The code that made an experiment's numbers, for a results file.

    Args:
      cells: ``{label: code digest}`` (:func:`.codekey.code_key`), one per cell.
      summary: the digest of the code that summarises the cells into tests (the experiment's
        ``summarise``, :func:`.codekey.code_key`).

    Returns:
      ``{"cells", "summary", "digest"}``: the cells' digests by label, sorted, the summary's,
      and one digest of them all, equal for two runs exactly when every cell and the summary
      ran the same code.
    """
    cells = dict(sorted(cells.items()))
    both = json.dumps({"cells": cells, "summary": summary}, sort_keys=True)
    return {"cells": cells, "summary": summary,
            "digest": hashlib.sha256(both.encode()).hexdigest()[:16]}  # fmt: skip


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A compressed npz that ``np.load`` reads, byte-identical for the same arrays.

    ``np.savez_compressed`` stamps each member with the current time, so the same results
    would differ byte for byte between runs; here every member has a fixed time.

    Args:
      path: the file to write.
      arrays: ``{name: array}``, in the order written.

    Returns:
      ``path``.
    """
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue())
    return Path(path)


def test_ex(probs, labels) -> dict[str, list[float]]:
    """Each test example's NLL and error, as lists for a cell's JSON result.

    Tests that take them per seed, ``(S, N)``, have intervals that cover the test set's
    sampling error as well as the seeds' (:func:`.stats.spread`).

    Args:
      probs: predicted probabilities ``(N, C)``.
      labels: integer labels ``(N,)``.

    Returns:
      ``{"nll": [N floats], "err": [N floats]}`` (:func:`dropstudy.metrics.per_example`).
    """
    ex = per_example(probs, labels)
    return {m: ex[m].tolist() for m in ("nll", "err")}


def cpuinfo() -> str:
    """``/proc/cpuinfo``'s text, or ``""`` where there is none (not Linux).

    Returns:
      The text.
    """
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def machine() -> dict:
    """What a results file's bytes depend on beyond the code and versions.

    XLA compiles for the host CPU and training amplifies its rounding, so numbers repeat
    bitwise only on the same CPU model with the same XLA flags.

    Returns:
      ``{"cpu", "arch", "xla_flags"}``: the CPU model (``/proc/cpuinfo``'s model name, else
      :func:`platform.processor`), the architecture and ``XLA_FLAGS`` (empty when unset);
      plus ``"features"``, a digest of ``/proc/cpuinfo``'s feature flags where it lists
      them: a virtual machine may name its CPU generically ("Intel(R) Xeon(R) Processor")
      while XLA compiles for the instruction sets the host offers.
    """
    import platform

    found: dict[str, str] = {}  # the first core's lines
    for line in cpuinfo().splitlines():
        key, _, value = line.partition(":")
        found.setdefault(key.strip(), value.strip())
    cpu = found.get("model name") or platform.processor() or "unknown"
    flags = " ".join(sorted((found.get("flags") or found.get("Features") or "").split()))
    features = hashlib.sha256(flags.encode()).hexdigest()[:12] if flags else None
    out = {"cpu": cpu, "arch": platform.machine(), "xla_flags": os.environ.get("XLA_FLAGS", "")}
    return out | ({"features": features} if features else {})


def device_tag() -> str:
    """The devices seeds are split over, e.g. ``"2 cpu"``.

    Results are bitwise reproducible for the same tag (and software); across tags they agree to
    float rounding.

    Returns:
      The number of devices and their platform.
    """
    return f"{len(jax.devices())} {jax.devices()[0].platform}"


def ci(values) -> dict:
    """The mean of a sample over seeds with its 95% interval (:func:`.stats.mean_ci`).

    Args:
      values: the per-seed values, ``(S,)`` (any array-like; flattened).

    Returns:
      ``{"mean", "lo", "hi", "n"}``.
    """
    return mean_ci(values)


def check_numbers(cfg: Any, *names: str) -> None:
    """Refuse a field that must be a number but is not (a string or a bool, e.g. from a
    config read as text), before any training.

    Args:
      cfg: the configuration.
      *names: the fields that must be numbers.

    Raises:
      DropstudyError: naming the first field that is not a number.
    """
    from dropstudy.validate import DropstudyError

    for name in names:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise DropstudyError(f"{name} must be a number, got {v!r}")


def check_share(share: float, what: str) -> None:
    """Refuse a margin's share outside (0, 1].

    Args:
      share: the configured share (a config's ``margin_share``).
      what: the quantity it is a share of, for the error.

    Raises:
      DropstudyError: if ``share`` is not in (0, 1].
    """
    from dropstudy.validate import DropstudyError

    real = isinstance(share, int | float) and not isinstance(share, bool)
    if not real or not 0 < share <= 1:
        raise DropstudyError(
            f"margin_share={share!r} must be a number in (0, 1]: the margin is this share of {what}"
        )


def share_margin(
    share: float, per_seed, *, what: str, remedy: str, size: bool = False, cap: float | None = None
) -> dict:
    """An equivalence margin derived from a quantity measured on the validation split: ``share``
    of its mean over seeds, at most ``cap``.

    Args:
      share: the share of the quantity, in (0, 1].
      per_seed: the quantity per seed, ``(S,)``.
      what: the quantity in words, for the errors.
      remedy: what to do when it is 0, for the error.
      size: take the mean's absolute value (a quantity whose sign says which arm is ahead,
        not how far apart they are).
      cap: the largest margin: a fixed margin set before the results were seen, which a rule
        adopted after them may only tighten (None: no cap).

    Returns:
      ``{"value", "share", "scale", "derived", "cap", "per_seed"}``: the margin, the share,
      the quantity's interval over seeds (:func:`ci`), ``share`` times its mean (its size with
      ``size``), the cap, and the quantity's smallest, median and largest seed; ``value`` is
      the smaller of ``derived`` and ``cap``.

    Raises:
      DropstudyError: if a seed's quantity is not finite (a validation loss that diverged),
        or the mean (its size with ``size``) is not above 0: no margin can be derived from it.
    """
    from dropstudy.validate import DropstudyError

    values = np.asarray(per_seed, np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DropstudyError(
            f"{what} is not finite for seed index(es) {bad.tolist()}: an arm's validation loss "
            "diverged, so no margin can be derived; see the arms' records for the run"
        )
    scale = ci(values)
    m = abs(scale["mean"]) if size else scale["mean"]
    if not m > 0:
        raise DropstudyError(
            f"{what} is {scale['mean']:.3g}: no margin can be derived from it; {remedy}"
        )
    derived = share * m
    value = derived if cap is None else min(derived, cap)
    # the mean's seeds: one far from the rest (a net that never learned) shows here
    spread = {"min": float(values.min()), "median": float(np.median(values)),
              "max": float(values.max())}  # fmt: skip
    return {"value": value, "share": share, "scale": scale, "derived": derived, "cap": cap,
            "per_seed": spread}  # fmt: skip


def replaced(test: dict) -> dict:
    """A primary decided at the fixed margin a derived one replaced, for the report's
    disclosure of the post hoc change.

    Args:
      test: the primary, guarded, decided at the replaced margin.

    Returns:
      ``{"value", "verdict", "verdict_w", "p"}``: that margin, the test's verdicts at it (held
      by the protocol's guard, and its own), both unadjusted, and its p-value.
    """
    return {"value": test["margin"], "verdict": test["verdict"], "verdict_w": test["verdict_w"],
            "p": test["p"]}  # fmt: skip


def disclose(margin: dict, held, primary: str) -> dict:
    """A capped derived margin with the primary decided at the margin it did not use too.

    The fixed margin caps a rule adopted after the results were seen, so the verdict at each
    of the two margins is the reader's to see: at the fixed one, where the rule tightened it
    (``replaced``), and at the rule's own, where the fixed one stands (``at_rule``).

    Args:
      margin: :func:`share_margin`'s dict (``value``, ``derived``, ``cap``); updated in place.
      held: the experiment's tests at a margin, guarded as its summary guards them:
        ``held(m) -> {name: test}``.
      primary: the primary test's name.

    Returns:
      ``margin`` with ``replaced`` (:func:`replaced` at the cap) and ``at_rule`` (the same at
      ``derived`` when that exceeds the cap, else None).
    """
    margin["replaced"] = replaced(held(margin["cap"])[primary])
    wider = margin["derived"] > margin["value"]
    margin["at_rule"] = replaced(held(margin["derived"])[primary]) if wider else None
    return margin


def mlp_str(r: dict, hidden) -> str:
    """A results file's data set and MLP in words, e.g. ``digits, MLP 64-100-100-10``.

    Args:
      r: a results file's dict; its ``data`` gives the name, features and classes (digits'
        when it has none).
      hidden: the hidden widths.

    Returns:
      The text.
    """
    d = r.get("data", {"name": "digits", "features": 64, "classes": 10})
    sizes = [d["features"], *hidden, d["classes"]]
    return f"{d['name']}, MLP {'-'.join(str(n) for n in sizes)}"


def seed_start(r: dict) -> int:
    """A results file's first seed: 0, or a second list's start (its ``scale``'s
    ``seed_start``)."""
    return (r.get("scale") or {}).get("seed_start", 0)


def seeds_str(r: dict, n: int) -> str:
    """A results file's ``n`` seeds in words, e.g. ``seeds 0-9`` (from its first seed).

    Args:
      r: a results file's dict; its ``scale`` may record a ``seed_start`` (a second list).
      n: how many seeds.

    Returns:
      The text.
    """
    start = seed_start(r)
    return f"seeds {start}-{start + n - 1}"


def train_str(t: dict) -> str:
    """A TrainConfig dict in words: ``Adam, lr 0.001, batch 128, 3000 steps``.

    Args:
      t: a ``TrainConfig.to_dict()``; ``batch_size`` 0 reads "full batch", and SGD's momentum
        is named when set.

    Returns:
      The text.
    """
    batch = "full batch" if t["batch_size"] == 0 else f"batch {t['batch_size']}"
    opt = "Adam" if t["optimizer"] == "adam" else "SGD"
    mom = f", momentum {t['momentum']}" if t["optimizer"] == "sgd" and t["momentum"] else ""
    return f"{opt}, lr {t['lr']}{mom}, {batch}, {t['steps']} steps"


def cell_text(c: Any) -> str:
    """A table cell's text, its pipes escaped (``mean|D_ij|`` must not split the cell).

    Args:
      c: the cell: any value, as ``str`` writes it.

    Returns:
      The text, each pipe escaped with a backslash.
    """
    return str(c).replace("|", "\\|")


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A Markdown table.

    Args:
      header: the column titles.
      rows: the rows, each a list of cells, one per column.

    Returns:
      The table's text, every cell through :func:`cell_text`.
    """
    lines = ["| " + " | ".join(cell_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell_text(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def ci_str(c: dict, digits: int = 3) -> str:
    """An interval in words: ``mean [lo, hi]``.

    Args:
      c: ``{"mean", "lo", "hi"}``, e.g. from :func:`ci`.
      digits: decimal places.

    Returns:
      The text with ``digits`` decimal places (:func:`.stats.fmt`); in scientific notation when
      the values are too small for ``digits`` places (but not all 0).
    """
    big = max(abs(c["mean"]), abs(c["lo"]), abs(c["hi"]))
    if 0 < big < 10 ** (1 - digits):
        return f"{c['mean']:.2e} [{c['lo']:.2e}, {c['hi']:.2e}]"
    return fmt(c, digits)


def errorbar(ax, xs, cis: list[dict], label: str, **kw):
    """Draw means with 95% interval bars.

    Args:
      ax: the matplotlib axes.
      xs: the x positions, one per interval.
      cis: the intervals, each ``{"mean", "lo", "hi"}``.
      label: the legend's label.
      **kw: further arguments of ``ax.errorbar`` (``color``, ``ls``, ...).
    """
    m = np.array([c["mean"] for c in cis])
    lo = m - np.array([c["lo"] for c in cis])
    hi = np.array([c["hi"] for c in cis]) - m
    ax.errorbar(xs, m, yerr=[lo, hi], label=label, capsize=3, marker="o", ms=4, **kw)


def clip_off_scale(ax, xs, cis: list[dict], margin: float, factor: float = 8.0) -> None:
    """Keep a y-axis on the intervals that can be read against a margin.

    An interval wider than ``factor`` margins (a stress case's, say) would flatten the rest:
    the axis spans the others (and twice the margin), and each wider one is drawn cut off,
    its bounds written at the edge.

    Args:
      ax: the matplotlib axes, its intervals already drawn.
      xs: the x positions, one per interval.
      cis: the intervals, each ``{"mean", "lo", "hi"}``, in the axis' units.
      margin: the equivalence margin, in the same units.
      factor: intervals wider than this many margins (both sides) may go off scale.
    """
    near = [c for c in cis if c["hi"] - c["lo"] <= factor * 2 * margin] or cis
    bottom = min(-2 * margin, *(c["lo"] for c in near))
    top = max(2 * margin, *(c["hi"] for c in near))
    pad = 0.12 * (top - bottom)
    bottom, top = bottom - pad, top + pad
    ax.set_ylim(bottom, top)
    for x, c in zip(xs, cis, strict=True):
        if c["lo"] < bottom or c["hi"] > top:
            up = c["hi"] > top
            y = top - 0.05 * (top - bottom) if up else bottom + 0.05 * (top - bottom)
            ax.annotate(f"[{c['lo']:.3g}, {c['hi']:.3g}]\noff scale", (x, y), ha="center",
                        va="top" if up else "bottom", fontsize=7, color="tab:red")  # fmt: skip


def device_mesh():
    """A mesh over this process's devices when it has more than one, else None.

    The CLI splits the CPU into one device per core. MC and exact averages deal their
    subnetworks out over the mesh: the same subnetworks either way; sums agree to rounding.

    Returns:
      A one-axis mesh over every device (:func:`dropstudy.sharding.mesh`), or None.
    """
    from dropstudy import sharding as S

    return S.mesh() if len(jax.devices()) > 1 else None


PREDICTOR_NAMES = {
    "ws": "weight scaling",
    "mc": "MC average",  # its K: the test's own "k" (see predictor_name)
    "exact_a": "exact arithmetic mean",
    "exact_g": "exact normalised geometric mean",
    "-": "none: weights compared, not predictions",
    "members": "members' probabilities averaged",
    "plain": "the plain net itself (no dropout)",
}


def primary_first(tests: dict, primary: str) -> dict:
    """``tests`` with the primary first (the order sections and tables show them in).

    Args:
      tests: ``{name: test}``.
      primary: the primary test's name, a key of ``tests``.

    Returns:
      A new dict: the primary (and its twin within 2W, when guarded), then the other tests
      in their order.
    """
    # a guarded primary's twin within 2W (``primary + " within 2W"``) follows it
    first = [primary] + [t for t in tests if t == primary + " within 2W"]
    return {k: tests[k] for k in first + [t for t in tests if t not in first]}


def predictor_name(t: dict) -> str:
    """How a test's predictor reads in a report.

    Args:
      t: a test dict.

    Returns:
      Its own ``predictor_label`` (e.g. an MC average of another kind) when it has one, else
      the name of its ``predictor`` key (:data:`PREDICTOR_NAMES`; ``"-"`` when it has none),
      with the MC average's K where the results file records it (:func:`stamp_k`).
    """
    if t.get("predictor_label"):
        return t["predictor_label"]
    name = PREDICTOR_NAMES[t.get("predictor", "-")]
    return f"{name}, K = {t['k']}" if t.get("predictor") == "mc" and "k" in t else name


def stamp_k(tests: dict, cfg) -> dict:
    """Record the MC average's K in the tests by that predictor.

    Args:
      tests: ``{name: test}``.
      cfg: the experiment's configuration; ``cfg.mc_k`` is the K.

    Returns:
      ``tests`` with ``k`` recorded in each test by the MC average that carries no
      ``predictor_label`` of its own; unchanged for an experiment without one (no ``mc_k``).
    """
    k = getattr(cfg, "mc_k", None)
    if k is None:
        return tests
    return {
        name: {**t, "k": k} if t.get("predictor") == "mc" and not t.get("predictor_label") else t
        for name, t in tests.items()
    }


def own_verdict(t: dict) -> str:
    """A test's own verdict: before the protocol's hold, when it is guarded.

    Args:
      t: a test dict.

    Returns:
      Its ``verdict_w`` when guarded (:func:`.protocol.guard`), else its ``verdict``.
    """
    return t.get("verdict_w", t["verdict"])


def predictor_pairs(tests: dict) -> list[tuple[str, str]]:
    """The pairs of tests of one quantity by two predictors.

    Tests of one quantity share their ``what``; a pair's predictors differ. Left out: a twin
    within 2W (it is shown beside its test), a test without a predictor, and one whose
    predictor carries a label of its own (a comparison of predictors, or a predictor named
    apart, such as voting's first subnetworks).

    Args:
      tests: ``{name: test}``.

    Returns:
      ``(a, b)`` test names, each pair in the order of ``tests``.
    """
    groups: dict[str, list[str]] = {}
    for name, t in tests.items():
        if name.endswith(TWICE) or not t.get("predictor") or t.get("predictor_label"):
            continue
        groups.setdefault(t["what"], []).append(name)
    return [
        (a, b)
        for g in groups.values()
        for i, a in enumerate(g)
        for b in g[i + 1 :]
        if tests[a]["predictor"] != tests[b]["predictor"]
    ]


def flips(tests: dict) -> list[str]:
    """Findings where a quantity's test depends on the predictor.

    Computed from the tests when a report is written, so they always say what the stored
    numbers say.

    Args:
      tests: ``{name: test}``; the pairs are :func:`predictor_pairs`.

    Returns:
      A sentence for each pair whose sign flips with both intervals excluding 0
      (:func:`.stats.sign_flip`); else for each pair whose verdicts differ (each test's own,
      before the protocol's hold), saying too when their point estimates have opposite signs
      with one interval excluding 0. Pairs with the same verdict and no flip say nothing.
    """
    out = []
    for a, b in predictor_pairs(tests):
        ta, tb = tests[a], tests[b]
        if sign_flip(ta, tb):
            out.append(
                f"The sign of *{ta['what']}* flips between predictors, both intervals "
                f"excluding 0: {effect_str(ta)} by {predictor_name(ta)}, {effect_str(tb)} by "
                f"{predictor_name(tb)}."
            )
            continue
        # the verdicts before the protocol's guard: a guard holds both predictors alike
        va, vb = own_verdict(ta), own_verdict(tb)
        if va == vb:
            continue
        sign = ""
        if ta["effect"] * tb["effect"] < 0 and (excludes_zero(ta) or excludes_zero(tb)):
            one = ta if excludes_zero(ta) else tb
            sign = (
                "; the point estimates have opposite signs, and only the interval by "
                f"{predictor_name(one)} excludes 0"
            )
        own = " (each its own, before the protocol's hold)" if "verdict_w" in ta else ""
        # one decided, one not: a verdict one predictor reaches, not a shown difference
        decided = (
            "; one predictor decides and the other does not, which is no shown difference "
            "between them"
            if "inconclusive" in (va, vb)
            else ""
        )
        out.append(
            f"The verdict on *{ta['what']}* depends on the predictor{own}: {va} by "
            f"{predictor_name(ta)} ({effect_str(ta)}), {vb} by "
            f"{predictor_name(tb)} ({effect_str(tb)}){sign}{decided}."
        )
    return out


def real_differences(tests: dict) -> list[str]:
    """Findings for inconclusive equivalence tests of a signed difference whose interval excludes 0.

    The two do differ, by an amount near the margin; whether that is negligible depends on the
    margin.

    Args:
      tests: ``{name: test}``.

    Returns:
      A sentence for each such test (not for a test of a distance).
    """
    return [
        f"*{t['what']}* ({predictor_name(t)}): the equivalence test is "
        f"inconclusive, but the interval {effect_str(t)} excludes 0: at that level the two "
        f"differ, and whether the difference is negligible depends on the margin "
        f"(+-{_num(t['margin'])})."
        for t in tests.values()
        if t["rule"] == "equivalence"
        and own_verdict(t) == INCONCLUSIVE
        and not t.get("distance")
        and excludes_zero(t)
    ]


def _num(x: float) -> str:
    """A number in 4 significant places, in scientific notation when small or large."""
    if x == 0:
        return "0"
    return f"{x:.2e}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.4g}"


def effect_str(t: dict) -> str:
    """A test's effect and interval in words: ``effect [lo, hi] (level%)``.

    Args:
      t: a test dict.

    Returns:
      The text, numbers in 4 significant places (scientific notation when small or large);
      ``"exact check"`` for an exact check.
    """
    if t["rule"] == "exact":
        return "exact check"
    level = round(100 * t["level"])
    return f"{_num(t['effect'])} [{_num(t['lo'])}, {_num(t['hi'])}] ({level}%)"


def p_str(p: float | None) -> str:
    """A p-value in words.

    Args:
      p: the p-value; None for an exact check.

    Returns:
      ``"-"`` for None, ``"< 1e-4"`` below 1e-4, else the value to 4 decimal places.
    """
    if p is None:
        return "-"
    return "< 1e-4" if p < 1e-4 else f"{p:.4f}"


def p_eq(p: float | None) -> str:
    """``p = 0.0033`` or ``p < 1e-4`` (:func:`p_str` with its relation), for running text."""
    text = p_str(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def detects_str(t: dict) -> str:
    """What the design detects at 80% power, and the seeds the observed effect needs.

    Args:
      t: a test dict, with ``mde``, ``seeds_needed`` and (two-level tests) ``examples_needed``.

    Returns:
      ``"effect {mde}; seeds needed: {seeds}"`` (``smallest margin`` for an equivalence test;
      ``not reachable`` when no number of seeds is, ``not reachable with this test set`` and the
      test examples that would reach it where the test set's term is what stands in the way);
      ``"-"`` for an exact check.
    """
    if t["rule"] == "exact":
        return "-"
    need, examples = t["seeds_needed"], t.get("examples_needed")
    if need is not None:
        need_s = str(need)
    elif examples is not None:
        need_s = f"not reachable with this test set ({examples:,} test examples would reach it)"
    else:
        need_s = "not reachable"
    what = "smallest margin" if t["rule"] == "equivalence" else "effect"
    return f"{what} {_num(t['mde'])}; seeds needed: {need_s}"


def n_str(t: dict) -> str:
    """A test's sample size: seeds, or seeds x test examples for a two-level test.

    Args:
      t: a test dict.

    Returns:
      ``"10"``, ``"10 x 360"``, or ``"-"`` for an exact check.
    """
    if "n" not in t:
        return "-"
    m = t.get("n_examples")
    return f"{t['n']}" if m is None else f"{t['n']} x {m}"


def margin_caveats(r: dict, unit: str, key: str = "margin_nll") -> list[str]:
    """What a reader quoting an equivalence primary with a derived margin must know.

    Args:
      r: the results file's dict; its margin under ``key`` (``value``, ``derived``, ``cap``
        and ``replaced``: the primary at the fixed margin set before the results).
      unit: the margin's unit, e.g. ``"nats"``.
      key: the results' key of the margin's derivation.

    Returns:
      Clauses: when the test's own verdict is inconclusive and its *detects* (the smallest
      margin it shows at 80% power if the true difference were 0) exceeds the margin, its
      power at this margin; and how the margin's post hoc rule relates to the fixed margin
      it replaced (:func:`cap_str`).
    """
    t = r["tests"][r["primary"]]
    m = r[key]
    out = []
    if t.get("mde") is not None and t["mde"] > m["value"] and own_verdict(t) == "inconclusive":
        power = tost_power(t, m["value"])
        at0 = (
            ""
            if power is None
            else (f"; at a true difference of 0 its power within the margin is {100 * power:.0f}%")
        )
        out.append(
            f"with n = {n_str(t)} the design shows equivalence with 80% power only within "
            f"+-{t['mde']:.4g} {unit}, {t['mde'] / m['value']:.1f}x the margin "
            f"(+-{m['value']:.4g}){at0}: short of contradicted, inconclusive is the verdict it "
            "can give"
        )
    out.append(cap_str(r, unit, key))
    return out


def cap_stands(m: dict) -> bool:
    """Whether a capped derived margin is the fixed cap: the rule derives at least as much.

    Args:
      m: a results file's margin derivation (its ``derived`` and ``cap``).

    Returns:
      True when the fixed margin is the one used.
    """
    return m["derived"] >= m["cap"]


def derived_margin_caveats(
    r: dict,
    plain: dict | None,
    unit: str,
    key: str = "margin_nll",
    scale: str = "dropout's own validation effect",
) -> list[str]:
    """What a reader quoting an equivalence primary whose margin is a share of a plain net's
    validation effect must know: :func:`margin_caveats`, and how sure the margin's scale is.

    Args:
      r: the results file's dict; its margin under ``key`` holds the scale as ``effect`` (an
        interval over seeds).
      plain: the plain net's training summary (:func:`.protocol.arm_summary`) that sets the
        scale; None when the results hold none.
      unit: the margin's unit, e.g. ``"nats"``.
      key: the results' key of the margin's derivation.
      scale: the scale's name, e.g. ``"dropout's own validation effect"``.

    Returns:
      The clauses; where the derived margin is the one used, the scale's when its interval
      includes 0 or the plain net that sets it did not converge.
    """
    out = margin_caveats(r, unit, key)
    m = r[key]
    if cap_stands(m):
        return out  # the fixed margin stands: its scale is not the derived one's
    e = m["effect"]
    why = []
    if e["lo"] <= 0 <= e["hi"]:
        why.append(f"its interval ({ci_str(e, 4)} {unit}) includes 0")
    if plain and not plain["converged"]:
        n = len(plain["settle_2w"])
        why.append(f"the plain net that sets it did not converge ({plain['late']} of {n} "
                   "seeds still improving in 2W's last 10%)")  # fmt: skip
    if why:
        out.append(f"the margin's scale, {scale}, is uncertain: "
                   + " and ".join(why))  # fmt: skip
    return out


def spread_str(m: dict) -> str:
    """A derived margin's scale per seed, in words: a mean pulled by one seed shows.

    Args:
      m: a results file's margin derivation (its ``per_seed``: ``min``, ``median``, ``max``).

    Returns:
      E.g. ``"per seed from 0.011 to 2.286, median 0.0555"``.
    """
    s = m["per_seed"]
    return f"per seed from {s['min']:.4g} to {s['max']:.4g}, median {s['median']:.4g}"


def side_str(e: dict, dropout: str) -> str:
    """Which net is ahead on a plain-minus-dropout validation scale, in words.

    Args:
      e: the scale's interval over seeds (plain minus the dropout net; a results file's
        margin ``effect``).
      dropout: the dropout net's name, e.g. ``"dropout net"``.

    Returns:
      The clause, with the scale's uncertainty when its interval includes 0.
    """
    side = (
        f"the {dropout} is ahead of the plain net there"
        if e["mean"] > 0
        else f"the plain net is ahead of the {dropout} there; the margin takes the size"
    )
    if e["lo"] <= 0 <= e["hi"]:  # the scale itself is not told apart from 0 by its seeds
        side += ", though the interval includes 0: the scale itself is uncertain"
    return side


def uncertain_str(e: dict) -> str:
    """A derived margin's scale, when its seeds do not tell it apart from 0, in words.

    Args:
      e: the scale's interval over seeds (a results file's margin ``effect``).

    Returns:
      ``"; the interval includes 0: the scale itself is uncertain"`` when it does, else ``""``.
    """
    if e["lo"] <= 0 <= e["hi"]:
        return "; the interval includes 0: the scale itself is uncertain"
    return ""


def margin_origin(m: dict) -> str:
    """Where a capped derived margin's value comes from, in words, for a section's primary.

    Args:
      m: a results file's margin derivation (its ``derived`` and ``cap``).

    Returns:
      ``"derived from the validation split by the rule below"`` when the rule's margin is the
      one used; else that the fixed margin stands, the rule deriving a wider one.
    """
    if cap_stands(m):
        return (
            "the fixed margin set before the results were seen: the rule below derives a wider one"
        )
    return "derived from the validation split by the rule below"


def cap_rule_str(m: dict, unit: str) -> str:
    """The capped margin's rule, in words, for a section's derivation of its margin.

    Args:
      m: a results file's ``margin_nll`` (its ``cap`` and ``value``).
      unit: the margin's unit.

    Returns:
      The clause: the margin is the smaller of the derived one and the cap, and its value.
    """
    return (
        f"the margin is the smaller of that and the fixed +-{m['cap']:g} {unit} set before the "
        "results, which it replaced after they were seen (the summary marks it post hoc; a rule "
        f"adopted then may only make equivalence harder): +-{m['value']:.4g} {unit}"
    )


def cap_str(r: dict, unit: str, key: str = "margin_nll") -> str:
    """How a post hoc margin rule relates to the fixed margin it replaced, in words: the fixed
    one caps the derived one, and where the rule tightened it, the primary's verdicts at the
    fixed one.

    Args:
      r: the results file's dict (its margin's derivation under ``key``).
      unit: the margin's unit.
      key: the results' key of the margin's derivation.

    Returns:
      The clause.
    """
    m = r[key]
    rep, t = m["replaced"], r["tests"][r["primary"]]
    if cap_stands(m):
        at = m.get("at_rule")
        there = (
            ""
            if at is None
            else f"; at the rule's +-{at['value']:.4g} the test's own verdict would be "
            f"{at['verdict_w']} ({p_eq(at['p'])}), held by the protocol {at['verdict']} "
            f"(both unadjusted; here: {own_verdict(t)}, held {t['verdict']})"
        )
        return (
            f"the margin's rule, set after the results at a fixed +-{m['cap']:g} {unit} were "
            f"seen, derives +-{m['derived']:.4g}, above that fixed margin, which stands: a rule "
            f"adopted after the results may only tighten it{there}"
        )
    return (
        f"the margin's rule, set after the results at a fixed +-{m['cap']:g} {unit} were seen, "
        f"tightens it to +-{m['value']:.4g}; at +-{rep['value']:g} the test's own verdict "
        f"would be {rep['verdict_w']} ({p_eq(rep['p'])}), held by the protocol "
        f"{rep['verdict']} (both unadjusted; here: {own_verdict(t)}, held {t['verdict']})"
    )


def margin_range(t: dict) -> dict:
    """The margins at which an equivalence test's unadjusted verdict would differ, from its
    90% interval: TOST rejects at the level exactly when that interval lies within the margin.

    Args:
      t: an equivalence test dict (``lo``, ``hi``: its 90% interval).

    Returns:
      ``{"supported_above", "contradicted_below"}``: supported at any margin above the first;
      contradicted at any below the second (None when the interval includes 0: at no margin).
    """
    lo, hi = t["lo"], t["hi"]
    below = lo if lo > 0 else -hi if hi < 0 else None
    return {"supported_above": max(abs(lo), abs(hi)), "contradicted_below": below}


def _round_out(x: float, up: bool, digits: int = 4) -> float:
    """``x`` (> 0) rounded to ``digits`` significant digits away from a threshold it states:
    up for a bound above which something holds, down for one below which it does."""
    step = 10.0 ** (np.floor(np.log10(x)) - (digits - 1))
    return float((np.ceil if up else np.floor)(x / step) * step)


def fixed_margin_caveats(
    r: dict,
    unit: str,
    why: str,
    scale: float = 1.0,
    family: bool = True,
    given: str | None = None,
    design: float | None = None,
) -> list[str]:
    """What a reader quoting an equivalence primary at a fixed margin must know: the margin is
    a stated quantity, and the margins at which its own verdict would differ.

    Args:
      r: the results file's dict (its primary test and its margin).
      unit: the margin's unit as shown, e.g. ``"pp"`` (``""``: none shown).
      why: where the fixed margin comes from, e.g. ``"a stated share of the target's sd"``.
      scale: the factor from the test's values to ``unit`` (100 for a fraction in pp).
      family: whether the primary is in the claims' family (its headline Holm-adjusted), not
        a check decided alone.
      given: the ``--set FIELD=VALUE`` that set the margin, when the run set it from the
        command line (the clause then says so instead of "fixed by design").
      design: the margin the design fixes, in the test's values (named beside ``given``).

    Returns:
      One clause; none when the primary is not an equivalence test.
    """
    t = r["tests"][r["primary"]]
    if t.get("rule") != "equivalence":
        return []
    u = f" {unit}" if unit else ""
    rng = margin_range(t)
    # rounded outward, so that a stated threshold never rounds onto the margin's wrong side
    above = _round_out(scale * rng["supported_above"], up=True)
    cut = rng["contradicted_below"]
    contra = (
        "contradicted at no margin (its interval includes 0)"
        if cut is None
        else f"contradicted at any below +-{_round_out(scale * cut, up=False):.4g}{u}"
    )
    m = t["margin"]
    guard = ", before the protocol's guard" if "within_2w" in t else ""
    holm = (
        f"; the Holm-adjusted headline needs a margin wider than +-{above:.4g}{u} to be supported"
        if family
        else ""
    )
    origin, this = f"is fixed by design ({why})", "its fixed margin"
    if given is not None:
        was = f"which fixes +-{scale * design:g}{u}: " if design is not None else ""
        origin = (
            f"was set from the command line (--set {given}), not by the study's design ({was}{why})"
        )
        this = "this margin"
    return [
        f"its margin, +-{scale * m:g}{u}, {origin}; by its 90% interval, its "
        f"own verdict (unadjusted{guard}) would be supported at any margin above "
        f"+-{above:.4g}{u} and {contra}, so at {this} it is {own_verdict(t)}{holm}"
    ]


def fixed_margin_headline(
    default: str,
    unit: str,
    why: str,
    scale: float = 1.0,
    family: bool = True,
    field: str = "margin",
    design: float | None = None,
):
    """A section's ``headline_caveats`` for an equivalence primary at a fixed margin.

    Args:
      default: the primary the words are for (its config's default); another primary, set
        in the config, gets generic ones.
      unit, why, scale, family, design: as :func:`fixed_margin_caveats` takes them.
      field: the config field that holds the default primary's margin: a run that set it
        from the command line (its scale's ``set``) is said to have.

    Returns:
      ``headline_caveats(r) -> list[str]`` (:func:`fixed_margin_caveats`).
    """

    def headline_caveats(r: dict) -> list[str]:
        """What a reader quoting the primary's verdict must know: its margin is fixed, and
        where the verdict would differ (:func:`fixed_margin_caveats`)."""
        if r["primary"] != default:  # its margin may be another field: generic words
            return fixed_margin_caveats(r, "", "set in the config", family=family)
        value = r.get("scale", {}).get("set", {}).get(field)
        given = f"{field}={value}" if value is not None else None
        return fixed_margin_caveats(r, unit, why, scale, family, given, design)

    return headline_caveats


def margin_source(r: dict, design: str, field: str = "margin") -> str:
    """Where a section's margin came from, in words: the design, or the command line.

    Args:
      r: the results file.
      design: the margin the study's design fixes, as the section writes it ("+-2 points").
      field: the config field that holds the margin.

    Returns:
      ``"fixed before the run"``, or, where the run set ``field`` (its scale's ``set``),
      ``"set from the command line (--set FIELD=VALUE); the study's design fixes DESIGN"``.
    """
    value = r.get("scale", {}).get("set", {}).get(field)
    if value is None:
        return "fixed before the run"
    return f"set from the command line (--set {field}={value}); the study's design fixes {design}"


def reach_str(t: dict, margin: float, unit: str) -> str:
    """Whether an equivalence test's design can show equivalence within its margin, in words.

    Args:
      t: the test dict.
      margin: its margin.
      unit: the margin's unit.

    Returns:
      A sentence comparing its *detects* with the margin, with its power there; empty when it
      has none.
    """
    if t.get("mde") is None:
        return ""
    if t["mde"] > margin:
        power = tost_power(t, margin)
        at0 = (
            ""
            if power is None
            else (
                f": at a true difference of 0 its power to show equivalence within it is "
                f"{100 * power:.0f}%"
            )
        )
        return (
            f"With n = {n_str(t)}, the primary shows equivalence with 80% power only within "
            f"+-{t['mde']:.4g} {unit} (its *detects*), {t['mde'] / margin:.1f}x this margin{at0}."
        )
    return (
        f"With n = {n_str(t)}, the primary shows equivalence with 80% power within "
        f"+-{t['mde']:.4g} {unit} (its *detects*), inside this margin."
    )


def rule_str(t: dict) -> str:
    """A test's rule in words.

    Args:
      t: a test dict.

    Returns:
      ``"direction, claimed > 0"`` (or ``< 0``), ``"equivalence within +-{margin}"``, or
      ``"exact check"``; a test held to the training protocol (:func:`.protocol.guard`) adds
      ``"; guarded by the protocol"``.
    """
    # a test held to the training protocol says so: its verdict also rests on its twin within
    # 2W and on its arms' convergence
    guarded = "; guarded by the protocol" if "within_2w" in t else ""
    if t["rule"] == "direction":
        return f"direction, claimed {t['claimed']}{guarded}"
    if t["rule"] == "equivalence":
        return f"equivalence within +-{_num(t['margin'])}{guarded}"
    return "exact check"


def blocked_str(t: dict, p_adjusted: float | None = None) -> str:
    """Why the protocol holds a test inconclusive, in words; empty when it does not.

    Args:
      t: a test dict (:func:`.protocol.guard`'s fields when guarded).
      p_adjusted: the p-value the verdict is decided at (default: the test's own).

    Returns:
      ``" (held by the protocol: REASONS)"`` or ``""`` (:func:`.stats.held_reasons`).
    """
    if "within_2w" not in t:
        return ""
    p = t["p"] if p_adjusted is None else p_adjusted
    reasons = held_reasons(t, p)
    if not reasons:
        return ""
    # its own verdict at that level, so a reader sees whether the guard changed anything
    own = decide_unguarded(t, p)
    adjusted = p_adjusted is not None and p_adjusted != t["p"]
    level = " at the Holm-adjusted p" if adjusted else ""
    # the twin is decided at its own p times the adjustment's factor (held_reasons' rule);
    # where that makes it inconclusive against the test's own verdict (budget-dependent),
    # show it, or an interval inside the margin (or excluding 0) would read as a contradiction
    twin = t["within_2w"]
    p2 = min(1.0, twin["p"] * p / t["p"]) if t["p"] > 0 else twin["p"]
    v2 = decide_unguarded(twin, p2)
    if adjusted and v2 == "inconclusive" and v2 != own:
        reasons = [*reasons, f"within 2W decided at {p_eq(p2)}, its p scaled as Holm "
                   "scaled the primary's"]  # fmt: skip
    return f" (held by the protocol, its own verdict{level} {own}: {'; '.join(reasons)})"


def all_findings(r: dict) -> list[str]:
    """A results file's findings, computed from its numbers when the report is written.

    Args:
      r: a results file's dict.

    Returns:
      Where a test depends on the predictor (:func:`flips`), then the findings of its
      experiment's section (its ``findings(r)``, when it has one), then equivalence tests with
      a real difference (:func:`real_differences`).
    """
    own = []
    if "experiment" in r:  # its section (as runner.section finds it; the sections read this)
        section = importlib.import_module(f"{__package__}.sections.{r['experiment']}")
        fn = getattr(section, "findings", None)
        own = fn(r) if fn is not None else []
    return flips(r["tests"]) + own + real_differences(r["tests"])


def primary_findings(r: dict) -> list[str]:
    """The findings that concern the primary test, for the report's summary.

    A finding concerns it when it names the primary's quantity and its predictor, or the primary
    net.

    Args:
      r: a results file's dict.

    Returns:
      Those of :func:`all_findings` that concern the primary.
    """
    t = r["tests"][r["primary"]]
    name = predictor_name(t)
    w = t["what"]

    def names_it(f: str) -> bool:  # its quantity, not a longer one it is the start of
        return f"*{w}*" in f or (w in f and f"*{w}" not in f)

    return [f for f in all_findings(r) if (names_it(f) and name in f) or "the primary net" in f]


def verdict_table(r: dict) -> str:
    """Every test of a results file, as a Markdown table, and its findings.

    The primary first (with its twin within 2W, when guarded), then the exploratory ones,
    each with its predictor, rule, n, effect and
    interval, p-value, verdict (unadjusted) and power (*detects*).

    Args:
      r: a results file's dict.

    Returns:
      The table, a note that its verdicts are unadjusted (the primary's adjusted verdict is
      in the report's summary), and the findings (:func:`all_findings`), when there are any.
    """
    tests, primary = r["tests"], r["primary"]
    order = list(primary_first(tests, primary))  # a guarded primary's twin beside it
    rows = []
    for k in order:
        t = tests[k]
        rows.append(
            [
                ("**primary**: " if k == primary else "exploratory: ") + t["what"],
                predictor_name(t),
                rule_str(t),
                n_str(t),
                effect_str(t),
                p_str(t["p"]),
                (f"**{t['verdict']}**" if k == primary else t["verdict"]) + blocked_str(t),
                detects_str(t),
            ]
        )
    head = ["test", "predictor", "rule", "n", "effect [interval]", "p", "verdict", "detects"]
    note = (
        f"Verdicts here are unadjusted (level {ALPHA}); the primary's adjusted verdict (Holm, BH "
        "beside it) is "
        "in the report's summary, whose header also explains *detects*."
    )
    findings = all_findings(r)
    lines = [table(head, rows), "", note]
    if findings:
        lines += ["", "**Findings.**", *[f"- {f}" for f in findings]]
    return "\n".join(lines)
