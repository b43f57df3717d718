"""The dropstudy command line: compare, run and report.

Errors in the user's input print one line (dropstudy: error: ...) and exit with status 2;
no traceback. Parsing imports no JAX, so --help answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from dropstudy import __version__
from dropstudy.validate import DropstudyError, check_rate, parse_int_list

from .interrupt import sticky_interrupt
from .overrides import canonical, parse_sets
from .runner import NAMES, RESULTS

log = logging.getLogger("dropstudy")
DATASETS = ("digits", "mnist1d", "mnist", "fashion-mnist")
COMPARE_MODEL_FLAGS = ("hidden", "activation", "rate", "input_rate", "convention")
COMPARE_TRAIN_FLAGS = ("steps", "batch_size", "lr")
# The folders make study writes, one per data set: their reports compare with each other.
STUDY_SETS = (RESULTS, RESULTS / "mnist1d")


def study_sets(results: Path) -> tuple[Path, Path] | None:
    """The study's data sets' folders, when ``results`` is one of them, wherever it lies.

    Args:
      results: a ``--results`` folder, relative or absolute.

    Returns:
      ``(digits folder, MNIST-1D folder)`` for a folder named like :data:`STUDY_SETS`
      (``.../results`` or ``.../results/mnist1d``), else None.
    """
    p = Path(results)
    root = p.parent if p.name == STUDY_SETS[1].name and p.parent.name == RESULTS.name else p
    return (root, root / STUDY_SETS[1].name) if root.name == RESULTS.name else None


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _typed(name, parse_one):
    def parse(text):
        try:
            return parse_one(text)
        except (ValueError, DropstudyError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name  # argparse names the type in its error messages
    return parse


def _pair(text: str) -> tuple[int, int]:
    """``1,8``: two class indices."""
    parts = [t.strip() for t in text.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise DropstudyError(f"--pair needs two class indices like 1,8, got {text!r}")
    return int(parts[0]), int(parts[1])


def _rates(text: str):
    """``0.5`` (every hidden layer) or ``0.2,0.5`` (one per hidden layer)."""
    rates = tuple(check_rate("--rate", float(t)) for t in text.split(",") if t.strip())
    if not rates:
        raise DropstudyError(f"--rate needs a number, got {text!r}")
    return rates[0] if len(rates) == 1 else rates


def _positive(name):
    def parse(text):
        v = int(text)
        if v < 1:
            raise DropstudyError(f"{name} must be >= 1, got {v}")
        return v

    return _typed(name, parse)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default="digits",
        choices=DATASETS,
        help="data set: digits and mnist1d are made offline (scikit-learn's 8x8 digits; "
        "MNIST-1D from its generator, cached in ~/.cache/dropstudy); mnist and "
        "fashion-mnist are read from --data-dir",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder holding the MNIST IDX files (gzipped or not) or mnist.npz",
    )


def _add_run_args(r: argparse.ArgumentParser, with_name: bool = True) -> None:
    if with_name:
        r.add_argument("name", choices=("all", *NAMES), help="the experiment, or all of them")
    r.add_argument("--quick", action="store_true", help="a small, fast version (smoke test)")
    r.add_argument(
        "--out",
        type=Path,
        help=f"results folder (default: {RESULTS} for the full study on digits, else a "
        f"folder of its own for the scale, e.g. {RESULTS}/quick or {RESULTS}/seeds3)",
    )
    r.add_argument(
        "--seeds", type=int, help="number of seeds, at least 2 (default: each experiment's own)"
    )
    r.add_argument(
        "--seed-start",
        type=_typed("--seed-start", int),
        default=0,
        help="first seed: a second, disjoint list of seeds (at or past the first list's "
        "end), into a folder of its own (e.g. results/from100); `dropstudy report "
        "--replicate` sets its verdicts beside the first list's",
    )
    r.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="set a field of the experiment's Config (one experiment, not all; repeatable; a "
        "dotted name reaches into a nested config, e.g. train.lr=0.1; tuples as 128,128): "
        "the results record it and go to a folder of their own, e.g. "
        f"{RESULTS}/set-margin_share=0.25",
    )
    r.add_argument(
        "--reuse",
        type=Path,
        metavar="FOLDER",
        help="another results folder of the same data set, read, never written: each cell and "
        "tuned arm stored there under the same key (code, arguments, versions, devices, "
        "machine) is copied into --out instead of computed (default with --set: the folder "
        "the run without --set writes to, so that a margin set there recomputes nothing)",
    )
    r.add_argument(
        "--force",
        action="store_true",
        help="overwrite (or write beside) results made at another scale in the --out folder",
    )
    r.add_argument(
        "--tensorboard",
        type=Path,
        help="also write TensorBoard event files here (tutorial; needs tensorboardX)",
    )
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_data_args(r)


def build_parser() -> argparse.ArgumentParser:
    """The ``dropstudy`` argument parser, with its commands ``compare``, ``run`` and ``report``.

    No abbreviated options are taken (``--result`` must not pass for ``--results``). Building
    it imports no JAX.

    Returns:
      The parser; its ``commands`` attribute maps each command to its own subparser (for errors
      in that command's usage).
    """
    ap = argparse.ArgumentParser(
        prog="dropstudy",
        allow_abbrev=False,
        description="Is a network trained with dropout an ensemble of its subnetworks? "
        "Compare weight scaling, Monte-Carlo and exact averages; run the study; write its "
        "report. `python -m dropstudy_experiments NAME [options]` is `dropstudy run NAME "
        "[options]`.",
        formatter_class=_Formatter,
    )
    ap.add_argument("--version", action="version", version=f"dropstudy {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser(
        "compare",
        help="weight scaling vs Monte-Carlo vs exact on one net",
        description="Train (or load) one dropout MLP and score weight scaling, Monte-Carlo "
        "averages and the exact average over all 2^n subnetworks on the same weights.",
        formatter_class=_Formatter,
    )
    c.add_argument(
        "--hidden", type=_typed("--hidden", lambda t: parse_int_list("--hidden", t)),
        default=(10, 10), help="hidden widths, e.g. 10,10",
    )  # fmt: skip
    c.add_argument(
        "--activation",
        default="relu",
        choices=("relu", "tanh", "sigmoid", "linear"),
        help="hidden nonlinearity",
    )
    c.add_argument(
        "--rate",
        type=_typed("--rate", _rates),
        default=0.5,
        help="drop rate of the hidden layers (keep = 1 - rate): one, or one per layer (0.2,0.5)",
    )
    c.add_argument(
        "--input-rate",
        type=_typed("--input-rate", lambda t: check_rate("--input-rate", float(t))),
        default=0.0,
        help="drop rate of the input layer",
    )
    c.add_argument(
        "--convention",
        default="inverted",
        choices=("inverted", "standard"),
        help="inverted: scale by 1/keep in training; standard: by keep at test time",
    )
    c.add_argument(
        "--pair",
        type=_typed("--pair", _pair),
        help="two classes A,B of the data set as a binary task (B is label 1): a net with "
        "one logit, trained with the sigmoid cross-entropy, e.g. 1,8",
    )
    c.add_argument(
        "--samples",
        type=_typed("--samples", lambda t: parse_int_list("--samples", t)),
        default=(1, 10, 100, 1000),
        help="Monte-Carlo sample counts K",
    )
    c.add_argument(
        "--seed",
        type=int,
        help="seed of the training and of the Monte-Carlo masks (default: 0, or with "
        "--checkpoint the seed the model was saved with)",
    )
    c.add_argument("--steps", type=_positive("--steps"), default=4000, help="training steps")
    c.add_argument("--batch-size", type=_positive("--batch-size"), default=128, help="batch size")
    c.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    c.add_argument("--no-exact", action="store_true", help="skip the exact 2^n average")
    c.add_argument(
        "--max-units",
        type=_positive("--max-units"),
        default=24,
        help="largest number of droppable units to enumerate exactly",
    )
    c.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    c.add_argument("--save", type=Path, help="save the trained model to this folder")
    c.add_argument(
        "--checkpoint",
        type=Path,
        help="evaluate a model saved with --save instead of training one (model and training "
        "options are then the saved ones)",
    )
    c.add_argument("--no-progress", action="store_true", help="hide progress on stderr")
    _add_data_args(c)
    _add_verbosity(c)

    r = sub.add_parser(
        "run",
        help="run one experiment of the study, or all",
        description="Run experiments; each writes NAME/results.json and its figures into the "
        "results folder, resumably (finished cells are kept and reused).",
        formatter_class=_Formatter,
    )
    _add_run_args(r)
    _add_verbosity(r)

    rep = sub.add_parser(
        "report",
        help="build REPORT.md from the results files",
        description="Write the report from the results files of one scale.",
        formatter_class=_Formatter,
    )
    rep.add_argument("--results", type=Path, default=RESULTS, help="results folder to read")
    rep.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report to write (default: REPORT.md for the full study's results folder, "
        "else REPORT.md inside the results folder, so a quick report never replaces the "
        "study's)",
    )
    rep.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="FOLDER",
        help="results folder of the same study on another data set (repeatable): the report "
        "adds a table of where the verdicts agree (default, for the study's own folders "
        f"{RESULTS} and {STUDY_SETS[1]}: the other one, when it holds results)",
    )
    rep.add_argument(
        "--replicate",
        type=Path,
        action="append",
        default=None,
        metavar="FOLDER",
        help="results folder of a second list of seeds (`dropstudy replicate`, or "
        "`dropstudy run --seed-start K`), of the data set and scale of --results or of a "
        "--compare folder (repeatable, one per data set): the report sets each primary's "
        "verdict on it beside the first list's, and names the fragile ones (default, for "
        f"the study's own folders {RESULTS} and {STUDY_SETS[1]}: each compared folder's one "
        "from* folder, when it holds results)",
    )
    rep.add_argument(
        "--other-cpu",
        type=Path,
        action="append",
        default=None,
        metavar="FOLDER",
        help="results folder of the same runs (seeds, configuration) made on another CPU, of "
        "the data set of --results or of a --compare folder (repeatable): the report sets "
        "each primary beside its run there and names the verdicts the CPU changes (default, "
        f"for the study's own folders {RESULTS} and {STUDY_SETS[1]}: their cpu-* folders)",
    )
    rep.add_argument(
        "--readme",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the table of what the study found into FILE, between its findings "
        "markers (make study and make report pass README.md)",
    )
    _add_verbosity(rep)

    rp = sub.add_parser(
        "replicate",
        help="run the primaries near their level again on a second list of seeds",
        description="Run again, on a second, disjoint list of seeds, the primaries of a "
        "results folder that another list could plausibly flip (a Holm-adjusted p-value "
        "within a factor 10 of the level, decided or not, or a verdict the protocol holds), "
        "at the folder's own scale and data set, into RESULTS/fromK; `dropstudy report "
        "--replicate` then sets their verdicts beside the first list's.",
        formatter_class=_Formatter,
    )
    rp.add_argument("--results", type=Path, default=RESULTS, help="the first list's results")
    rp.add_argument(
        "--seed-start",
        type=_positive("--seed-start"),
        default=100,
        help="the second list's first seed (past the first list's seeds)",
    )
    rp.add_argument(
        "--out", type=Path, help="results folder (default: RESULTS/fromK, K the first seed)"
    )
    rp.add_argument(
        "--dry-run", action="store_true", help="name the experiments the rule picks, run none"
    )
    rp.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_verbosity(rp)
    for p in sub.choices.values():  # --result must not pass for --results
        p.allow_abbrev = False
    ap.commands = {"compare": c, "run": r, "report": rep, "replicate": rp}  # errors' usage
    return ap


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    g.add_argument("-v", "--verbose", action="store_true", help="also debugging details")


class _TqdmHandler(logging.Handler):
    """Log lines on stderr through tqdm.write, so progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        tqdm.write(f"dropstudy: {level}{record.getMessage()}", file=sys.stderr)


def _setup_logging(args) -> None:
    # --no-progress and -q hide the averages' own bars too (dropstudy.progress; display only)
    if getattr(args, "no_progress", False) or args.quiet:
        os.environ["DROPSTUDY_NO_PROGRESS"] = "1"
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    log.handlers[:] = [_TqdmHandler()]
    log.setLevel(level)
    log.propagate = False


def load_data(args):
    """The data set ``--dataset`` names (``--data-dir`` for the MNIST files).

    Args:
      args: the parsed arguments (``dataset``, ``data_dir``).

    Returns:
      The :class:`~dropstudy.data.Dataset`: digits and mnist1d made offline, mnist and
      fashion-mnist read from ``--data-dir``.

    Raises:
      DropstudyError: if ``--data-dir`` is given for a data set made offline, or missing for
        one read from files.
    """
    from dropstudy.data import digits, load_mnist, mnist1d

    made = {"digits": digits, "mnist1d": mnist1d}  # made offline, never read from a folder
    if args.dataset in made:
        if args.data_dir is not None:
            raise DropstudyError(
                f"--data-dir applies to --dataset mnist or fashion-mnist only; "
                f"{args.dataset} is made offline"
            )
        return made[args.dataset]()
    if args.data_dir is None:
        raise DropstudyError(
            f"--dataset {args.dataset} needs --data-dir DIR with the IDX/npz files"
        )
    return load_mnist(args.data_dir, args.dataset)


def cmd_compare(args, parser: argparse.ArgumentParser) -> int:
    """``dropstudy compare``: train (or load) one net, score every predictor, print the table.

    Destinations are checked before any training.

    Args:
      args: the parsed arguments of ``compare``.
      parser: the top-level parser (its defaults show which options were given).

    Returns:
      0; the table is printed, and with ``--json`` the results written there.

    Raises:
      DropstudyError: if ``--checkpoint`` comes with ``--save`` or with model or training
        options (they would be ignored), ``--save`` names a file, or ``--json`` a folder.
    """
    from .compare import CompareConfig, compare, format_table

    if args.checkpoint is not None:
        if args.save is not None:
            raise DropstudyError(
                "--checkpoint evaluates a saved model; it cannot be combined with --save"
            )
        defaults = parser.parse_args(["compare"])
        given = [
            f"--{f.replace('_', '-')}"
            for f in (*COMPARE_MODEL_FLAGS, *COMPARE_TRAIN_FLAGS)
            if getattr(args, f) != getattr(defaults, f)
        ]
        if given:
            raise DropstudyError(
                f"{', '.join(given)} would be ignored: --checkpoint evaluates the saved model "
                "as it was built and trained"
            )
    # Refuse unwritable destinations before any training.
    if args.save is not None and args.save.exists() and not args.save.is_dir():
        raise DropstudyError(f"--save {args.save} is a file; give a folder for the checkpoint")
    if args.json is not None and args.json.is_dir():
        raise DropstudyError(f"--json {args.json} is a folder; give a file name")
    cfg = CompareConfig(
        hidden=tuple(args.hidden),
        activation=args.activation,
        rate=args.rate,
        input_rate=args.input_rate,
        convention=args.convention,
        samples=tuple(args.samples),
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        exact=not args.no_exact,
        max_units=args.max_units,
        dataset=args.dataset,
        pair=None if args.pair is None else tuple(args.pair),
    )
    progress = not (args.no_progress or args.quiet)
    result = compare(
        cfg,
        load_data(args),
        checkpoint_dir=args.checkpoint,
        save_dir=args.save,
        progress=progress,
    )
    print(format_table(result))
    if args.json:
        from .results import write_json

        write_json(args.json, result)
        log.info("wrote %s", args.json)
    return 0


def cmd_run(args, parser=None) -> int:
    """``dropstudy run``: run one experiment, or all of them, into one results folder.

    Every experiment's options and scale are checked before any is run, and the folder's lock
    is held throughout. With a ``--dataset`` other than digits, ``all`` skips the experiments
    that run on data of their own.

    Args:
      args: the parsed arguments of ``run``; without ``--out`` the results go to the scale's
        own folder (:func:`.runner.scale_folder`).
      parser: unused (every command takes it).

    Returns:
      0.

    Raises:
      DropstudyError: if ``--dataset`` is given for an experiment that runs on data of its own.
    """
    from .runner import (
        check_other_lists,
        check_scale,
        check_seed_starts,
        config,
        folder_lock,
        own_data,
        run_experiment,
        scale,
        scale_folder,
    )

    names = list(NAMES) if args.name == "all" else [args.name]
    sets = parse_sets(args.set)
    if sets and args.name == "all":
        raise DropstudyError(
            "--set applies to one experiment (their Config fields differ): run each one "
            "with its own, e.g. `dropstudy run scaling --set margin_share=0.25`"
        )
    if sets:  # one spelling per value, as run_experiment records it: one folder per value
        sets = canonical(config(args.name, args.quick, args.seeds), sets)
    if args.dataset != "digits":  # experiments on data of their own run once, with digits
        fixed = [n for n in names if own_data(n)]
        if args.name != "all" and fixed:
            raise DropstudyError(
                f"{args.name} runs on its own data ({own_data(args.name)}): --dataset does not "
                "apply; run it without --dataset"
            )
        if fixed:
            log.info(
                "skipping %s: runs on its own data, once, without --dataset",
                ", ".join(f"{n} ({own_data(n)})" for n in fixed),
            )
        names = [n for n in names if n not in fixed]
    s = scale(args.quick, args.seeds, args.dataset, args.seed_start, sets)
    out = args.out if args.out is not None else scale_folder(s)
    # options checked before anything is written (--seeds 1, --seed-start 5, a --set the
    # Config refuses: no folder)
    check_seed_starts(names, args.quick, args.seeds, args.seed_start, sets)
    first = scale_folder(scale(args.quick, args.seeds, args.dataset, sets=sets))
    check_other_lists(out, names, args.quick, args.seeds, args.seed_start, first, sets)
    reuse = reuse_folder(args.reuse, s, out)
    data = None if args.dataset == "digits" and args.data_dir is None else load_data(args)
    # a second list trains at its first list's tuned settings (the folder it sits in, as
    # `replicate` writes it, or the scale's own), never tuning them again
    tuning = None
    if args.seed_start:
        first_dir = Path(out).parent if args.out is not None else Path(first)
        tuning = first_dir / "tuning"
        if not tuning.is_dir():
            # an experiment without the protocol has nothing to tune
            if any(getattr(config(n, args.quick, args.seeds, sets=sets), "protocol", None)
                   for n in names):  # fmt: skip
                log.warning(
                    "--seed-start %d: no first list's tuning in %s, so this list tunes its "
                    "arms on the pilot seeds itself (run the first list there first, or give "
                    "--out FIRST/from%d)", args.seed_start, tuning, args.seed_start,
                )  # fmt: skip
            tuning = None
    written = []
    with folder_lock(out):
        check_scale(out, names, s, args.force)  # every experiment, before any work
        for n in names:
            written.append(
                run_experiment(
                    n,
                    out=out,
                    quick=args.quick,
                    seeds=args.seeds,
                    progress=not (args.no_progress or args.quiet),
                    data=data,
                    tensorboard=args.tensorboard,
                    force=args.force,
                    seed_start=args.seed_start,
                    tuning=tuning,
                    sets=sets,
                    reuse=reuse,
                )
            )
    for line in outcome_lines(written, args.quick):
        log.info("%s", line)
    return 0


def reuse_folder(given: Path | None, s: dict, out: Path) -> Path | None:
    """The folder whose cells a run copies rather than computes (``--reuse``), if any.

    Args:
      given: ``--reuse`` (None: not given).
      s: the run's scale (:func:`.runner.scale`).
      out: the run's results folder.

    Returns:
      ``given``; without it, for a first list of seeds that sets fields, the folder the same
      run without them writes to by default (:func:`.runner.unset_folder`) where it holds
      cells to copy (:func:`.runner.holds_cells`); else None.
      None too when it is ``out`` itself (the run reads its own cells anyway), and for a
      second list of seeds (:func:`.runner.check_reuse`).

    Raises:
      DropstudyError: if ``given`` is not a folder of results, or is given for a second
        list of seeds.
    """
    from .runner import check_reuse, holds_cells, unset_folder

    check_reuse(given, s.get("seed_start", 0), s)
    if s.get("seed_start"):
        return None
    # --set's default source, where it holds cells (the committed results hold none)
    default = unset_folder(s) if s.get("set") else None
    default = default if default is not None and holds_cells(default) else None
    if given is not None and default is not None:
        log.info("--reuse %s: cells are copied from there, not from %s", given, default)
    elif default is not None:
        log.info("--set: cells stored in %s under the same key are copied, not computed", default)
    folder = given if given is not None else default
    if folder is None or Path(folder).resolve() == Path(out).resolve():
        return None
    return Path(folder)


def outcome_lines(paths: list[Path], quick: bool) -> list[str]:
    """One line per results file: its primary test's unadjusted verdict and effect.

    Args:
      paths: the ``results.json`` files a run wrote.
      quick: whether they are smoke-test results (the lines then say so).

    Returns:
      The lines, e.g. ``"voting: inconclusive (unadjusted; equivalence within +-0.005): test
      error, majority vote minus ...: 0.0012 [-0.003, 0.005] (90%)"``, then where the
      report's adjusted verdicts come from (or, for a quick run, that it is a smoke test).
    """
    from .common import blocked_str, effect_str, rule_str
    from .results import read_json

    lines = []
    for p in paths:
        if p is None or not Path(p).is_file():
            continue
        r = read_json(p)
        t = r["tests"][r["primary"]]
        lines.append(
            f"{r['experiment']}: {t['verdict']}{blocked_str(t)} (unadjusted; {rule_str(t)}): "
            f"{t['what']}: {effect_str(t)}"
        )
    if lines:
        lines.append(
            "quick results are a smoke test, not for conclusions"
            if quick
            else "the report's verdicts (dropstudy report) are adjusted across the claims"
        )
    return lines


def cmd_report(args, parser=None) -> int:
    """``dropstudy report``: write the report from the results files of one scale.

    Args:
      args: the parsed arguments of ``report``; without ``--out`` the report goes to REPORT.md
        for the full study's results folder, else to REPORT.md inside the results folder;
        with ``--readme`` the table of what the study found goes into that file too. For the
        study's own folders, ``--compare``, ``--replicate`` and ``--other-cpu`` default to
        the folders ``make report`` names (the other data set, each ``from*`` and ``cpu-*``
        folder).
      parser: unused (every command takes it).

    Returns:
      0.
    """
    from .report import (
        build_report,
        check_readme,
        found_table,
        other_cpus,
        read_results,
        second_lists,
        write_readme_block,
    )
    from .runner import scale_of

    here = Path(args.results)
    sets = study_sets(here) or ()  # the study's folders, relative or absolute
    out = args.out
    if out is None:  # the study's digits report beside its results folder, others inside
        out = here.parent / "REPORT.md" if sets and here == sets[0] else here / "REPORT.md"
    if not args.compare and sets:
        # the study's own data sets compare with each other, as make report has them
        args.compare = [f for f in sets if f != here and any(f.glob("*/results.json"))]
    if args.replicate is None and sets:
        # each study data set's second list of seeds (make study's), as make report has them
        args.replicate = []
        for folder in (Path(args.results), *map(Path, args.compare)):
            found = sorted({p.parent.parent for p in folder.glob("from*/*/results.json")})
            if folder in sets and len(found) == 1:
                args.replicate.append(found[0])
    if args.other_cpu is None:
        # the study's own folders keep runs made on another CPU in cpu-* beside them
        args.other_cpu = [
            f
            for folder in (Path(args.results), *map(Path, args.compare))
            if folder in sets
            for f in sorted(folder.glob("cpu-*"))
            if any(f.glob("*/results.json"))
        ]
    if args.readme is not None:  # refused before anything is written
        check_readme(args.readme)
        sets = [read_results(Path(f)) for f in (args.results, *args.compare)]
        if any(scale_of(r)["quick"] or scale_of(r)["seeds"] is not None
               or scale_of(r).get("seed_start") for results in sets
               for r in results.values()):  # fmt: skip
            raise DropstudyError(
                "--readme takes the full study's results only (not --quick, --seeds or "
                "--seed-start runs): the README's table is what the study found"
            )
    path = build_report(
        args.results, out, compare=args.compare, replicate=args.replicate,
        other_cpu=args.other_cpu,
    )  # fmt: skip
    log.info("wrote %s", path)
    if args.readme is not None:
        firsts = [(Path(f), r) for f, r in zip((args.results, *args.compare), sets, strict=True)]
        lists = second_lists(firsts, args.replicate)
        cpus = other_cpus(firsts, args.other_cpu)
        log.info(
            "wrote %s",
            write_readme_block(args.readme, found_table(sets[0], sets[1:], lists, cpus)),
        )
    return 0


def cmd_replicate(args, parser=None) -> int:
    """``dropstudy replicate``: the primaries near their level, on a second list of seeds.

    The rule (:func:`.report.near_level`) reads the first list's results; each experiment it
    picks runs at that folder's scale and data set from ``--seed-start``.

    Args:
      args: the parsed arguments of ``replicate``.
      parser: unused (every command takes it).

    Returns:
      0.

    Raises:
      DropstudyError: if ``--results`` holds no results, or results of a data set read from
        files (run those by hand with ``dropstudy run NAME --seed-start K --data-dir``).
    """
    from argparse import Namespace

    from .report import near_level_reasons, read_results
    from .runner import (
        check_other_lists,
        check_scale,
        check_seed_starts,
        folder_lock,
        run_experiment,
        scale_of,
    )

    results = read_results(Path(args.results))
    if not results:
        raise DropstudyError(
            f"no results under {args.results}: run the first list first (`dropstudy run all "
            f"--out {args.results}`, with the scale's options such as --quick)"
        )
    s = scale_of(next(iter(results.values())))
    if s.get("seed_start"):
        raise DropstudyError(
            f"--results {args.results} holds a second list of seeds (from {s['seed_start']}): "
            "give the first list's folder (seeds from 0), whose primaries and tuning the second "
            "list repeats"
        )
    if s["dataset"] not in ("digits", "mnist1d"):
        raise DropstudyError(
            f"{args.results} holds results on {s['dataset']}, read from files: run its "
            "experiments by hand, `dropstudy run NAME --seed-start K --dataset ... --data-dir ...`"
        )
    picked = near_level_reasons(results)
    names = list(picked)
    sets = s.get("set")  # fields the first list set from the command line, set again
    check_seed_starts(names, s["quick"], s["seeds"], args.seed_start, sets)  # before any work
    out = Path(args.out) if args.out is not None else Path(args.results) / f"from{args.seed_start}"
    if out.resolve() == Path(args.results).resolve():
        raise DropstudyError(
            f"--out {out} is the first list's folder: a second list goes into a folder of its "
            f"own (default {Path(args.results) / f'from{args.seed_start}'})"
        )
    # results there of another scale or first seed: refused before any work, dry runs too
    check_scale(out, names, {**s, "seed_start": args.seed_start},
                remedy="Give --out another folder for this second list")  # fmt: skip
    check_other_lists(out, names, s["quick"], s["seeds"], args.seed_start, Path(args.results), sets)
    log.info(
        "replicate: %s on seeds from %d into %s%s",
        ", ".join(f"{n} ({why})" for n, why in picked.items()) or "none",
        args.seed_start,
        out,
        "".join(f", --set {k}={v}" for k, v in (sets or {}).items()),
    )
    if args.dry_run or not names:
        return 0
    data = load_data(Namespace(dataset=s["dataset"], data_dir=None))
    with folder_lock(out):
        written = [
            run_experiment(n, out=out, quick=s["quick"], seeds=s["seeds"], data=data,
                           progress=not (args.no_progress or args.quiet),
                           seed_start=args.seed_start, tuning=Path(args.results) / "tuning",
                           sets=sets)
            for n in names
        ]  # fmt: skip
    for line in outcome_lines(written, s["quick"]):
        log.info("%s", line)
    return 0


COMMANDS = {
    "compare": cmd_compare,
    "run": cmd_run,
    "report": cmd_report,
    "replicate": cmd_replicate,
}


def _dispatch(command, args, parser) -> int:
    """Run a command; user errors become one line and exit status 2."""
    from dropstudy.sharding import use_cpu_cores

    from .compile_cache import use_compile_cache

    _setup_logging(args)
    # One device per core, so seeds train on every core (imports JAX). Called in-process
    # after JAX started (tests, notebooks) it keeps the devices there are, silently.
    use_cpu_cores(warn=False)
    if args.command in ("run", "replicate", "compare"):  # the commands that compile
        use_compile_cache()
    try:
        with sticky_interrupt():
            return command(args, parser)
    except DropstudyError as e:
        print(f"dropstudy: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a destination that cannot be written, a file that cannot be read
        print(f"dropstudy: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "dropstudy: interrupted; finished cells are kept and a re-run resumes", file=sys.stderr
        )
        return 130


def main(argv: list[str] | None = None) -> int:
    """The ``dropstudy`` command line.

    Errors in the user's input print one line (``dropstudy: error: ...``) and give status 2;
    an interrupt gives 130, with finished cells kept. Unrecognised arguments are reported in
    the command's own usage (argparse then exits with status 2).

    Args:
      argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
      The exit status.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the command's own usage, not the top level's, says what it takes
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return _dispatch(COMMANDS[args.command], args, parser)


if __name__ == "__main__":
    sys.exit(main())
