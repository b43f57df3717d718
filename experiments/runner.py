"""Which experiments exist, their configurations, and running them: plan -> cells ->
summary -> figures -> results file, one folder per scale, one run per folder at a time."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .overrides import apply_sets, canonical

NAMES = (
    "baselines",
    "tutorial",
    "overfitting",
    "scaling",
    "averaging",
    "ensembles",
    "coadaptation",
    "shrinkage",
    "stayput",
    "voting",
    "maskmode",
    "diversity",
    "robustness",
    "conv",
    "regression",
)
REGISTRY = {n: f"{__package__}.{n}" for n in NAMES}
RESULTS = Path("results")  # the committed, full-scale results
LOCK = ".lock"

log = logging.getLogger("dropstudy")


def module(name: str):
    """The experiment module called ``name``.

    Args:
      name: an experiment's name, one of :data:`NAMES`.

    Returns:
      The module (imported on first use).
    """
    return importlib.import_module(REGISTRY[name])


def section(name: str):
    """The module with the report's section and figures of experiment ``name``.

    Args:
      name: an experiment's name, one of :data:`NAMES`.

    Returns:
      The module ``sections.NAME`` of this package.
    """
    return importlib.import_module(f"{__package__}.sections.{name}")


def load_all() -> list:
    """Import every experiment and its section now.

    Called right after :func:`.codekey.snapshot`: a module first imported later in the
    process (the next experiment of ``run all`` or ``replicate``) would run a file edited
    since, under cell keys and a code record made from the text the snapshot read.

    Returns:
      The modules, each experiment's then its section's, in the order of :data:`NAMES`.
    """
    return [m for n in NAMES for m in (module(n), section(n))]


def own_data(name: str) -> str | None:
    """The data set an experiment always uses, whatever ``--dataset`` says.

    Args:
      name: an experiment's name, one of :data:`NAMES`.

    Returns:
      Its module's ``DATA``, or None when it runs on the data set given.
    """
    return getattr(module(name), "DATA", None)


def config(
    name: str,
    quick: bool = False,
    seeds: int | None = None,
    seed_start: int = 0,
    sets: dict[str, str] | None = None,
):
    """The experiment's configuration: its defaults, shrunk by ``quick``, with ``seeds``.

    Args:
      name: an experiment's name, one of :data:`NAMES`.
      quick: take the smoke-test variant (``Config.quick()``).
      seeds: the number of seeds (default: the experiment's own).
      seed_start: the first seed (0; a second list of seeds starts past the first list's,
        :func:`check_seed_start`).
      sets: fields set from the command line, ``{field: value text}``
        (:func:`.overrides.apply_sets`), after ``quick`` and ``seeds``.

    Returns:
      The experiment's ``Config``.

    Raises:
      DropstudyError: if ``seeds`` is below 2 (confidence intervals need two), or the seeds
        from ``seed_start`` reach the first list's or a protocol's pilot seeds.
    """
    from dropstudy.validate import DropstudyError

    cfg = module(name).Config()
    if quick:
        cfg = cfg.quick()
    if seeds is not None:
        if seeds < 2:
            raise DropstudyError(f"--seeds must be >= 2 for confidence intervals, got {seeds}")
        cfg = cfg.with_seeds(seeds)
    cfg = apply_sets(cfg, sets)
    check_seed_start(name, cfg, seed_start)
    check_pilots(cfg, seed_start, name)
    return cfg


def check_seed_starts(
    names, quick: bool, seeds: int | None, start: int, sets: dict[str, str] | None = None
) -> None:
    """Refuse a first seed for several experiments at once, before any of them runs.

    One message names the widest first list among ``names`` (so ``run all`` needs one try);
    then each experiment's own checks (:func:`config`: the pilot seeds, the largest seed).

    Args:
      names: the experiments.
      quick: their smoke-test variants.
      seeds: the seed count asked for (None: each experiment's own).
      start: the first seed.
      sets: fields set from the command line (:func:`config`).

    Raises:
      DropstudyError: if ``start`` is negative, inside a first list, or any experiment's
        own check refuses it.
    """
    from dropstudy.validate import DropstudyError

    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise DropstudyError(f"--seed-start must be an integer >= 0, got {start!r}")
    if start:
        spans = {n: config(n, quick, seeds, sets=sets).seed_span() for n in names}
        need = max(spans.values(), default=0)
        if start < need:
            widest = max(spans, key=spans.get)
            raise DropstudyError(
                f"--seed-start {start} reaches the first list of seeds ({widest}'s is "
                f"0..{need - 1}): a second list must be disjoint from it, so start at {need} "
                "or above"
            )
    for n in names:
        config(n, quick, seeds, start, sets)


def check_other_lists(
    out: Path,
    names,
    quick: bool,
    seeds: int | None,
    start: int,
    first: Path,
    sets: dict[str, str] | None = None,
) -> None:
    """Refuse a second list of seeds that overlaps another second list of the same first list.

    The other lists are the results folders beside ``out`` and inside the first list's
    folder ``first`` (where :func:`scale_folder` and ``dropstudy replicate`` put them): each
    one of the same scale and data set from another first seed must not share a seed with
    the new list in any of ``names`` it ran.

    Args:
      out: the new list's results folder.
      names: the experiments it will run.
      quick: their smoke-test variants.
      seeds: the seed count asked for (None: each experiment's own).
      start: the new list's first seed (0: a first list, not checked).
      first: the first list's folder.
      sets: fields set from the command line (:func:`config`).

    Raises:
      DropstudyError: naming the folder, the experiment and both lists' seeds.
    """
    from dropstudy.validate import DropstudyError

    from .results import read_json

    if not start:
        return
    out = Path(out)
    found = {p.resolve(): p for h in (out.parent, Path(first)) for p in h.glob("*/*/results.json")}
    for path in sorted(found.values()):
        folder, n = path.parent.parent, path.parent.name
        if folder.resolve() == out.resolve() or n not in names:
            continue
        theirs = scale_of(read_json(path))
        other = theirs.get("seed_start", 0)
        if not other or {**theirs, "seed_start": 0} != {
            **scale(quick, seeds, theirs["dataset"], sets=sets),
            "seed_start": 0,
        }:
            continue
        span = config(n, quick, seeds, sets=sets).seed_span()
        if other < start + span and start < other + span:
            raise DropstudyError(
                f"--seed-start {start}: {n}'s seeds {start}..{start + span - 1} overlap the "
                f"second list in {folder} ({other}..{other + span - 1}): lists of seeds must "
                f"be disjoint, so start at {other + span} or above (or below {other - span + 1})"
            )


def check_seed_start(name: str, cfg, start: int) -> None:
    """Refuse a second list of seeds that is not disjoint from the first.

    The first list of ``cfg`` is seeds ``0 .. span - 1`` (:meth:`.common.ExperimentConfig.
    seed_span`: its seeds, and the plain members they index); a second list from ``start``
    must begin at or past ``span``.

    Args:
      name: the experiment, for the message.
      cfg: its configuration.
      start: the first seed asked for.

    Raises:
      DropstudyError: if ``start`` is negative or inside the first list.
    """
    from dropstudy.validate import DropstudyError

    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise DropstudyError(f"--seed-start must be an integer >= 0, got {start!r}")
    span = cfg.seed_span()
    if start + span > 2**31:  # seeds become uint32 PRNG keys, with headroom for offsets
        raise DropstudyError(
            f"--seed-start {start}: {name}'s seeds would pass 2^31 ({start + span - 1}); "
            f"start below {2**31 - span}"
        )
    if 0 < start < span:
        raise DropstudyError(
            f"--seed-start {start} reaches {name}'s first list of seeds (0..{span - 1}): a "
            f"second list must be disjoint from it, so start at {span} or above"
        )


def check_pilots(cfg, start: int = 0, name: str = "this experiment") -> None:
    """Refuse study seeds that reach a protocol's pilot seeds, before any cell runs.

    The study's seeds are ``start .. start + span - 1`` (:meth:`.common.ExperimentConfig.
    seed_span`: each integer field ``seeds`` or ``*_seeds``, and the plain members they
    index); the pilot seeds chose the arms' settings, so a net trained on one of them would
    be tested on the seed that tuned it (:func:`.protocol.train_arm` refuses it too, but
    only when its cell starts).

    Args:
      cfg: an experiment's configuration.
      start: the first seed.
      name: the experiment, for the message.

    Raises:
      DropstudyError: naming the clash and what to change.
    """
    from dataclasses import fields

    from dropstudy.validate import DropstudyError

    from .protocol import pilot_clash

    values = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    span = cfg.seed_span()
    for field, p in values.items():
        if type(p).__name__ != "Protocol" or not span:
            continue
        clash = [s for s in pilot_clash(start + span, p) if s >= start]
        if clash:
            raise DropstudyError(
                f"{name}'s seeds {start}..{start + span - 1} include the pilot seeds {clash} "
                f"of its {field} (they choose the arms' settings): use fewer seeds or another "
                "--seed-start"
            )


def scale(
    quick: bool = False,
    seeds: int | None = None,
    dataset: str = "digits",
    seed_start: int = 0,
    sets: dict[str, str] | None = None,
) -> dict:
    """How a run was asked for: what makes its results comparable with another run's.

    Args:
      quick: whether it is the smoke-test variant.
      seeds: the number of seeds asked for; None for each experiment's own.
      dataset: the data set's name.
      seed_start: the first seed (a second list of seeds); recorded only when not 0.
      sets: fields set from the command line, ``{field: value text}``; recorded only when
        some are.

    Returns:
      ``{"quick", "seeds", "dataset"}``, ``"seed_start"`` when not 0, and ``"set"`` when
      fields were set.
    """
    s = {"quick": bool(quick), "seeds": seeds, "dataset": dataset}
    s |= {"seed_start": seed_start} if seed_start else {}
    return s | ({"set": dict(sorted(sets.items()))} if sets else {})


def scale_folder(s: dict) -> Path:
    """Where a run at scale ``s`` writes by default.

    Args:
      s: a scale (:func:`scale`).

    Returns:
      ``results`` for the full study on digits, else its own folder such as
      ``results/quick`` or ``results/mnist-seeds3`` (fields set from the command line add
      ``set-FIELD=VALUE+FIELD=VALUE``); a second list of seeds goes inside its first list's folder,
      ``results/from100`` or ``results/quick/from100``, as ``dropstudy replicate`` writes it.
    """
    parts = [s["dataset"]] if s["dataset"] != "digits" else []
    parts += ["quick"] if s["quick"] else []
    parts += [f"seeds{s['seeds']}"] if s["seeds"] is not None else []
    # "+" between fields: a tuple's items are separated by commas
    sets = "+".join(f"{k}={v}" for k, v in s.get("set", {}).items())
    parts += [f"set-{sets}".replace("/", "_").replace(" ", "")] if sets else []
    first = RESULTS / "-".join(parts) if parts else RESULTS
    return first / f"from{s['seed_start']}" if s.get("seed_start") else first


def holds_cells(folder: Path) -> bool:
    """Whether ``folder`` holds cells or tuned arms to copy (``NAME/cells`` or ``tuning``).

    Args:
      folder: a results folder. Committed results hold neither (git ignores them): only a
        folder a run wrote on this machine does.

    Returns:
      True when it holds either.
    """
    folder = Path(folder)
    return (folder / "tuning").is_dir() or any(folder.glob("*/cells"))


def check_reuse(reuse: Path | None, seed_start: int, s: dict | None = None) -> None:
    """Refuse a folder to copy cells from that cannot give this run's cells.

    Args:
      reuse: the folder (None: none).
      seed_start: the run's first seed.
      s: the run's scale (:func:`scale`; None: not checked against the folder's).

    Raises:
      DropstudyError: if ``reuse`` is not a folder of results (it holds no experiment's
        ``cells`` and no ``tuning``), holds results of another data set or of the other of
        full and quick scale (whose cells no key of this run matches), or is given for a
        second list of seeds: a second list's cells train at its first list's tuned
        choices, taken from whichever machine made them, and their keys do not record those
        choices, so another folder's second list may have trained at others.
    """
    from dropstudy.validate import DropstudyError

    if reuse is None:
        return
    if seed_start:
        raise DropstudyError(
            f"--reuse {reuse}: a second list of seeds (--seed-start {seed_start}) copies no "
            "cells from another folder, since its cells train at its own first list's tuned "
            "choices, which their keys do not record; leave --reuse out"
        )
    folder = Path(reuse)
    if not holds_cells(folder):
        raise DropstudyError(
            f"--reuse {reuse}: no results folder (no NAME/cells, no tuning/ in it); give "
            "the folder `dropstudy run` wrote to (e.g. results, not results/NAME), or leave "
            "--reuse out"
        )
    for path in sorted(folder.glob("*/results.json")) if s is not None else ():
        theirs = stored_scale(path)
        for part in ("dataset", "quick") if theirs is not None else ():
            if theirs.get(part) != s.get(part):
                name = path.parent.name
                raise DropstudyError(
                    f"--reuse {reuse}: {path} holds results of "
                    f"`{scale_command(theirs, name)}`, whose cells this run "
                    f"(`{scale_command(s, name)}`) cannot use ({part} differs); give a "
                    "folder of the same data set and scale"
                )


def unset_folder(s: dict) -> Path:
    """Where the run at scale ``s`` without its ``--set`` fields writes by default.

    A run that sets fields reads its cells there (``run_experiment(reuse=...)``): the cells
    that do not depend on the fields are stored there under the same keys.

    Args:
      s: a scale (:func:`scale`).

    Returns:
      :func:`scale_folder` of ``s`` without ``"set"``.
    """
    return scale_folder({k: v for k, v in s.items() if k != "set"})


def scale_command(s: dict, name: str = "all") -> str:
    """The command that makes results at scale ``s``.

    Args:
      s: a scale (:func:`scale`).
      name: the experiment, or ``"all"``.

    Returns:
      The command line, e.g. ``dropstudy run all --quick --seeds 3``.
    """
    flags = " --quick" if s["quick"] else ""
    flags += f" --seeds {s['seeds']}" if s["seeds"] is not None else ""
    flags += f" --dataset {s['dataset']}" if s["dataset"] != "digits" else ""
    flags += f" --seed-start {s['seed_start']}" if s.get("seed_start") else ""
    flags += "".join(f" --set {shlex.quote(f'{k}={v}')}" for k, v in s.get("set", {}).items())
    return f"dropstudy run {name}{flags}"


def scale_of(results: dict) -> dict:
    """The scale a results file records.

    Args:
      results: a results file's dict.

    Returns:
      Its ``scale``; for a file that records none, its quick flag, the default seeds and
      digits.
    """
    return results.get("scale") or scale(bool(results.get("quick")))


def stored_scale(path: Path) -> dict | None:
    """The scale a results file on disk records (:func:`scale_of`).

    Args:
      path: a ``results.json``.

    Returns:
      Its scale; None when it is missing or cannot be read (nothing there worth keeping).
    """
    try:
        return scale_of(json.loads(Path(path).read_text()))
    except (json.JSONDecodeError, OSError, AttributeError):
        return None


def check_scale(out: Path, names, s: dict, force: bool = False, remedy: str | None = None) -> None:
    """Refuse to overwrite results made at another scale, or to write beside them (unless
    ``force``).

    A results file that cannot be read is overwritten: nothing worth keeping is lost. A
    folder holds one scale, because its report reads one: results of another scale in
    ``out/OTHER`` (an experiment not in ``names``) are refused too, before any work, rather
    than by the report after the run.

    Args:
      out: the results folder.
      names: the experiments about to write there.
      s: this run's scale (:func:`scale`).
      force: overwrite them (or write beside them) anyway, with a warning each.
      remedy: what the message tells the user to do (default: ``--out`` this scale's own
        folder, or ``--force``, as ``dropstudy run`` takes them).

    Raises:
      DropstudyError: if ``out/NAME/results.json`` holds results of another scale (or, for an
        experiment not in ``names``, ``out/OTHER/results.json`` does), naming the command
        that made them and this scale's own folder.
    """
    from dropstudy.validate import DropstudyError

    names = list(names)
    if not names:  # nothing will be written
        return
    run_name = names[0] if len(names) == 1 else "all"
    ours = [Path(out) / n / "results.json" for n in names]
    others = sorted(set(Path(out).glob("*/results.json")) - set(ours))
    for path in [*ours, *others]:
        old = stored_scale(path)  # None: missing or unreadable, nothing worth keeping
        if old is not None and old != s:
            name = path.parent.name
            here = (  # a second list sits in its first list's folder
                Path(out) / f"from{s['seed_start']}"
                if s.get("seed_start") and not old.get("seed_start")
                else scale_folder(s)
            )
            remedy = remedy or f"Write elsewhere with --out (e.g. {here}), or pass --force"
            what = (
                "would overwrite them"
                if path in ours
                else "would write beside them, and a folder's report reads one scale"
            )
            if force:
                log.warning(
                    "--force: %s holds results of `%s`; this run %s", path,
                    scale_command(old, name), "overwrites them" if path in ours else
                    "writes beside them, and the folder's report refuses it until its "
                    "results are of one scale",
                )  # fmt: skip
                continue
            raise DropstudyError(
                f"{path} holds results of `{scale_command(old, name)}`; this run "
                f"(`{scale_command(s, run_name)}`) {what}. {remedy}"
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` while writing into ``out``.

    A second run into the same folder is refused with the running process named; a lock left by
    a dead process (on this host) is removed. Re-entrant within one process.

    Args:
      out: the folder; created if missing.

    Yields:
      None, while the lock is held; it is released on exit.

    Raises:
      DropstudyError: if another live process holds the lock, or the lock cannot be taken.
    """
    from dropstudy.validate import DropstudyError

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                held = {}
            pid, host = held.get("pid"), held.get("host")
            if pid == me["pid"] and host == me["host"]:
                yield  # this process holds it already
                return
            if isinstance(pid, int) and host == me["host"] and not _alive(pid):
                log.warning("removing a stale lock %s left by process %d", path, pid)
                path.unlink(missing_ok=True)
                continue
            raise DropstudyError(
                f"{out} is in use by process {pid} on {host} (`{held.get('command')}`, since "
                f"{held.get('started')}); wait for it to finish, or write elsewhere with "
                f"--out. If that process is gone, remove {path}"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    raise DropstudyError(f"could not take the lock {path}; remove it if no run is writing there")


def run_experiment(
    name: str,
    out: Path = RESULTS,
    quick: bool = False,
    seeds: int | None = None,
    progress: bool = True,
    data=None,
    tensorboard: Path | None = None,
    force: bool = False,
    seed_start: int = 0,
    tuning: Path | None = None,
    sets: dict[str, str] | None = None,
    reuse: Path | None = None,
) -> Path:
    """Plan, compute (or reuse) every cell, summarise, draw and write ``out/NAME``.

    Refuses to overwrite results of another scale (``force`` overrides) and holds the folder's
    lock while it writes. The project's sources are read first (:func:`.codekey.snapshot`), so
    cell keys describe the code this process runs.

    Args:
      name: an experiment's name, one of :data:`NAMES`.
      out: the results folder.
      quick: run the smoke-test variant.
      seeds: the number of seeds (default: the experiment's own).
      progress: show progress bars.
      data: the data set (default: digits).
      tensorboard: a folder for TensorBoard events of its training curves (a warning, and
        nothing written, for an experiment that logs none).
      force: overwrite results of another scale.
      seed_start: the first seed (:mod:`.seeds`): another, disjoint list of seeds, whose
        verdicts ``dropstudy report --replicate`` sets beside the first list's.
      tuning: a first list's folder of tuned arms, read before this run's own
        (``out/tuning``, where what this run makes is kept): a second list of seeds takes
        its first list's choices, tuned on the same pilot seeds, so that it trains at the
        same settings without tuning them again.
      sets: fields set from the command line (:func:`config`), recorded in the scale.
      reuse: another results folder (of the same data set), read, never written: a cell or
        tuned arm stored there under the same key (:meth:`.common.Cell.key`) is copied into
        ``out`` rather than computed. A field that no cell depends on (a margin) leaves
        every key as it was, so a run that sets only such fields recomputes nothing. A
        first list of seeds only (:func:`check_reuse`).

    Returns:
      The path of the written ``results.json``.

    Raises:
      DropstudyError: if the folder holds results of another scale, another run holds its
        lock, or ``reuse`` is refused (:func:`check_reuse`).
    """
    from .codekey import code_key, snapshot
    from .common import Context, stamp_k
    from .tensorboard import WRITERS

    snapshot()  # keys describe the code this process runs, not files edited during the run
    load_all()  # ... and runs the code read there

    from .seeds import seed_start as first_seed

    mod = module(name)
    # one spelling per value (and none for a field at its default): one folder per value
    sets = canonical(config(name, quick, seeds), sets)
    cfg = config(name, quick, seeds, seed_start, sets)
    # the data set's name as the context loads it (digits when none is given)
    s = scale(quick, seeds, data.name if data is not None else "digits", seed_start, sets)
    check_reuse(reuse, seed_start, s)  # before the context makes the experiment's folder
    ctx = Context(
        name, Path(out), quick=quick, progress=progress, data=data, tuning=tuning, reuse=reuse
    )
    ds = ctx.dataset()
    with folder_lock(Path(out)), first_seed(seed_start):
        check_scale(Path(out), [name], s, force)
        t0 = time.perf_counter()
        on_cell = None
        if tensorboard is not None:
            hook = WRITERS.get(name)
            if hook is None:
                log.warning("%s: --tensorboard ignored: it logs no training curves", name)
            else:  # as each cell finishes, or is reused
                on_cell = lambda label, result: hook(cfg, label, result, Path(tensorboard))  # noqa: E731
        raw = ctx.run_cells(mod.plan(cfg, ds), on_cell)
        results = {"scale": s, **mod.summarise(cfg, raw)}
        ctx.summary_code = code_key(mod.summarise, {"cfg": cfg})
        if "tests" in results:
            results["tests"] = stamp_k(results["tests"], cfg)
        section(name).figures(cfg, raw, results, ctx)
        return ctx.write(mod.CLAIM, cfg, results, t0)
