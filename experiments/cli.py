"""The ``dropstudy`` command line: ``compare``, ``run`` and ``report``.

Errors in the user's input print one line (``dropstudy: error: ...``) and exit with status 2;
no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dropstudy.validate import DropstudyError, check_rate, parse_int_list


def _rate(name):
    def parse(text):
        try:
            return check_rate(name, float(text))
        except (ValueError, DropstudyError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _ints(name):
    def parse(text):
        try:
            return parse_int_list(name, text)
        except DropstudyError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default="digits",
        choices=["digits", "mnist", "fashion-mnist"],
        help="data set (mnist and fashion-mnist are read from --data-dir)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding MNIST IDX files (gzipped or not) or mnist.npz",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dropstudy", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compare", help="weight scaling vs Monte-Carlo vs exact on one net")
    c.add_argument(
        "--hidden", type=_ints("--hidden"), default=(10, 10), help="hidden widths, e.g. 10,10"
    )
    c.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid", "linear"])
    c.add_argument(
        "--rate",
        type=_rate("--rate"),
        default=0.5,
        help="drop rate of the hidden layers (keep = 1 - rate)",
    )
    c.add_argument(
        "--input-rate", type=_rate("--input-rate"), default=0.0, help="drop rate of the input layer"
    )
    c.add_argument("--convention", default="inverted", choices=["inverted", "standard"])
    c.add_argument(
        "--samples",
        type=_ints("--samples"),
        default=(1, 10, 100, 1000),
        help="Monte-Carlo sample counts K",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--steps", type=int, default=4000)
    c.add_argument("--batch-size", type=int, default=128)
    c.add_argument("--lr", type=float, default=3e-3)
    c.add_argument("--no-exact", action="store_true", help="skip the exact 2^n average")
    c.add_argument(
        "--max-units",
        type=int,
        default=24,
        help="largest number of droppable units to enumerate exactly",
    )
    c.add_argument("--json", type=Path, help="write the results as JSON here")
    c.add_argument("--save", type=Path, help="save parameters + config to this directory")
    c.add_argument("--checkpoint", type=Path, help="evaluate a saved model instead of training")
    _add_data_args(c)

    r = sub.add_parser("run", help="run one experiment of the study, or all")
    r.add_argument("name", help="experiment name, or 'all'")
    r.add_argument("--quick", action="store_true", help="a small, fast version (smoke test)")
    r.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    r.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (default per experiment)"
    )
    r.add_argument(
        "--tensorboard",
        type=Path,
        default=None,
        help="also write TensorBoard event files here (overfitting; needs tensorboardX)",
    )
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_data_args(r)

    rep = sub.add_parser("report", help="build REPORT.md from the results files")
    rep.add_argument("--results", type=Path, default=Path("results"))
    rep.add_argument("--out", type=Path, default=Path("REPORT.md"))
    return ap


def _load_data(args):
    from dropstudy.data import digits, load_mnist

    if args.dataset == "digits":
        if args.data_dir is not None:
            raise DropstudyError("--data-dir applies to --dataset mnist or fashion-mnist only")
        return digits()
    if args.data_dir is None:
        raise DropstudyError(
            f"--dataset {args.dataset} needs --data-dir DIR with the IDX/npz files"
        )
    return load_mnist(args.data_dir, args.dataset)


def cmd_compare(args) -> int:
    from .compare import CompareConfig, compare, format_table

    if args.checkpoint is not None and args.save is not None:
        raise DropstudyError(
            "--checkpoint evaluates a saved model; it cannot be combined with --save"
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
    )
    result = compare(cfg, _load_data(args), checkpoint_dir=args.checkpoint, save_dir=args.save)
    print(format_table(result))
    if args.json:
        from .results import write_json

        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_run(args) -> int:
    from .runner import REGISTRY, run_experiment

    names = list(REGISTRY) if args.name == "all" else [args.name]
    for n in names:
        if n not in REGISTRY:
            raise DropstudyError(
                f"unknown experiment {n!r}; choose one of: all, {', '.join(REGISTRY)}"
            )
    data = None if args.dataset == "digits" and args.data_dir is None else _load_data(args)
    for n in names:
        run_experiment(
            n,
            out=args.out,
            quick=args.quick,
            seeds=args.seeds,
            progress=not args.no_progress,
            data=data,
            tensorboard=args.tensorboard,
        )
    return 0


def cmd_report(args) -> int:
    from .report import build_report

    path = build_report(args.results, args.out)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from dropstudy.sharding import use_cpu_cores

    use_cpu_cores()  # one device per core: seeds train on every core
    args = build_parser().parse_args(argv)
    try:
        return {"compare": cmd_compare, "run": cmd_run, "report": cmd_report}[args.command](args)
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


def main_for(name: str) -> None:
    """``python -m dropstudy_experiments.NAME [--quick] [--out DIR]``: ``dropstudy run NAME``."""
    sys.exit(main(["run", name, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
