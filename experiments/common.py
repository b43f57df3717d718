"""What every experiment shares: the run context, cells, seeds, figures and tables."""

from __future__ import annotations

import hashlib
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
from dropstudy.models import model_class, model_config
from dropstudy.train import TrainConfig
from dropstudy.train import progress as train_progress

from .cells import CellStore
from .codekey import code_key, environment
from .interrupt import INTERRUPTED
from .results import write_json
from .stats import ALPHA, INCONCLUSIVE, excludes_zero, fmt, mean_ci, sign_flip

TIMING_LOG = "timing.jsonl"  # per scale folder: wall time of every cell and experiment
RUN_ID = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"  # one per process: groups a run's lines
MC_K = 1000  # subnetworks in every experiment's Monte-Carlo average of a dropout net

plt.rcParams.update({"figure.dpi": 90, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3})


RATE_FIELDS = ("rate", "rates")  # a name ending so: drop rates, each in [0, 1)
FRACTION_FIELDS = ("fraction", "fractions", "missing", "occlusion")  # each in [0, 1)
POSITIVE_FIELDS = ("margin", "agree", "apart", "k_delta", "same_function", "fit_error", "lr",
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
      kind: its declared type as written (``"int"``: the value must be an integer).

    Raises:
      DropstudyError: naming the field, its value and the rule.
    """
    from dropstudy.validate import DropstudyError

    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise DropstudyError(f"{name} must be an integer, got {value!r}")
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
        """Refuse a configuration no run could use, when it is built (so before any cell
        runs). The rules here go by a field's name and type (:func:`check_field`); subclasses
        add rules between fields. A ``TrainConfig`` field checks itself when it is built;
        :meth:`check_primary` runs after every rule here."""
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
        """The smoke-test variant: ``QUICK``'s values replace the defaults."""
        return replace(self, **self.QUICK)

    def with_seeds(self, n: int):
        """The same configuration with ``n`` seeds."""
        return replace(self, seeds=n)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Cell:
    """One unit of work: ``fn(**kwargs)``. Its cache key is derived from ``fn``'s name, the
    arguments themselves and the code ``fn`` can run (:mod:`.codekey`), so the
    configuration is written once and editing prose recomputes nothing."""

    fn: Callable[..., Any]
    kwargs: dict

    def key(self) -> dict:
        """The cell's identity: function, arguments, the digest of the code it runs, Python
        and the versions of the libraries that run it, the device kind, and the devices it
        runs on (seeds are batched per device, and a batch's size can change float
        rounding)."""
        return {
            "fn": self.fn.__qualname__,
            "args": cell_key(self.kwargs),
            "code": code_key(self.fn, self.kwargs),
            "versions": environment(),
            "devices": device_tag(),
        }


def cell(fn: Callable[..., Any], **kwargs) -> Cell:
    """``Cell(fn, kwargs)``: ``plan`` functions list these."""
    return Cell(fn, kwargs)


def cell_key(value: Any) -> Any:
    """A JSON-able identity of a cell argument: data sets by name and content digest,
    models by class and attributes, dataclasses (``TrainConfig``) by their fields."""
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


@dataclass
class Context:
    """One experiment's run: where to write, which data, and its cell store."""

    name: str
    out: Path
    quick: bool = False
    progress: bool = True
    data: Dataset | None = None
    figures: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.out = Path(self.out) / self.name
        self.out.mkdir(parents=True, exist_ok=True)
        self.store = CellStore(self.out)

    def dataset(self) -> Dataset:
        """The run's data set (digits unless given), loaded once."""
        if self.data is None:
            self.data = digits()
        return self.data

    def run_cells(
        self, cells: dict[str, Cell], on_cell: Callable[[str, Any], None] | None = None
    ) -> dict[str, Any]:
        """Run (or reuse) every cell: ``{label: result}``; ``on_cell(label, result)`` is
        called as each cell finishes or is reused (see :meth:`Cell.key` for what makes a
        stored cell stale)."""
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
        """Append one line to the scale folder's timing log, ``timing.jsonl`` (untracked, never
        read by the results): a cell's wall time (``cell=None``: the whole experiment)."""
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

    @staticmethod
    def _with(report, c: Cell):
        """``c`` computed with its training in segments, progress reported to ``report``
        (see :func:`dropstudy.train.progress`)."""

        def compute():
            with train_progress(report):
                return c.fn(**c.kwargs)

        return compute

    def savefig(self, fig, name: str) -> str:
        path = self.out / name
        fig.tight_layout()
        fig.savefig(path, dpi=90, metadata={"Software": None})  # no timestamp: stable bytes
        plt.close(fig)
        self.figures.append(name)
        return name

    def write(self, claim: str, cfg: ExperimentConfig, results: dict, started: float) -> Path:
        """``results.json``: the experiment's results plus the claim, its configuration,
        the figures, versions and devices."""
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
            **results,
        }
        path = write_json(self.out / "results.json", results)
        # the experiment counts as computed only when none of its cells was reused
        self.log_time(None, time.perf_counter() - started, not self.store.reused)
        logging.getLogger("dropstudy").info(
            "%s: wrote %s (%d cells computed, %d reused, %.0f s)",
            self.name,
            path,
            len(self.store.computed),
            len(self.store.reused),
            time.perf_counter() - started,
        )
        return path


def device_tag() -> str:
    """The devices seeds are split over, e.g. ``"2 cpu"``: results are bitwise reproducible
    for the same tag (and software); across tags they agree to float rounding."""
    return f"{len(jax.devices())} {jax.devices()[0].platform}"


def ci(values) -> dict:
    return mean_ci(values)


def mlp_str(r: dict, hidden) -> str:
    """``digits, MLP 64-100-100-10`` for a results file's data set and ``hidden`` widths."""
    d = r.get("data", {"name": "digits", "features": 64, "classes": 10})
    sizes = [d["features"], *hidden, d["classes"]]
    return f"{d['name']}, MLP {'-'.join(str(n) for n in sizes)}"


def train_str(t: dict) -> str:
    """A TrainConfig dict in words: ``Adam, lr 0.001, batch 128, 3000 steps``."""
    batch = "full batch" if t["batch_size"] == 0 else f"batch {t['batch_size']}"
    opt = "Adam" if t["optimizer"] == "adam" else "SGD"
    mom = f", momentum {t['momentum']}" if t["optimizer"] == "sgd" and t["momentum"] else ""
    return f"{opt}, lr {t['lr']}{mom}, {batch}, {t['steps']} steps"


def cell_text(c: Any) -> str:
    """A table cell's text, its pipes escaped (``mean|D_ij|`` must not split the cell)."""
    return str(c).replace("|", "\\|")


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(cell_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell_text(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def ci_str(c: dict, digits: int = 3) -> str:
    """``mean [lo, hi]``; scientific notation for values too small for ``digits`` places."""
    big = max(abs(c["mean"]), abs(c["lo"]), abs(c["hi"]))
    if 0 < big < 10 ** (1 - digits):
        return f"{c['mean']:.2e} [{c['lo']:.2e}, {c['hi']:.2e}]"
    return fmt(c, digits)


def errorbar(ax, xs, cis: list[dict], label: str, **kw):
    """Means with 95% interval bars."""
    m = np.array([c["mean"] for c in cis])
    lo = m - np.array([c["lo"] for c in cis])
    hi = np.array([c["hi"] for c in cis]) - m
    ax.errorbar(xs, m, yerr=[lo, hi], label=label, capsize=3, marker="o", ms=4, **kw)


def device_mesh():
    """A mesh over this process's devices when it has more than one (the CLI splits the
    CPU into one device per core), else None: MC and exact averages deal their
    subnetworks out over it. The same subnetworks either way; sums agree to rounding."""
    from dropstudy import sharding as S

    return S.mesh() if len(jax.devices()) > 1 else None


PREDICTOR_NAMES = {
    "ws": "weight scaling",
    "mc": "MC average",  # its K: the test's own "k" (see predictor_name)
    "exact_a": "exact arithmetic mean",
    "exact_g": "exact normalised geometric mean",
    "-": "none: weights compared, not predictions",
    "members": "members' probabilities averaged",
}


def primary_first(tests: dict, primary: str) -> dict:
    """``tests`` with the primary first (the order sections and tables show them in)."""
    return {k: tests[k] for k in [primary] + [t for t in tests if t != primary]}


def predictor_name(t: dict) -> str:
    """How a test's predictor reads in a report: its own ``predictor_label`` (e.g. an MC
    average of another kind), else the name of its ``predictor`` key, with the MC
    average's K where the results file records it (:func:`stamp_k`)."""
    if t.get("predictor_label"):
        return t["predictor_label"]
    name = PREDICTOR_NAMES[t.get("predictor", "-")]
    return f"{name}, K = {t['k']}" if t.get("predictor") == "mc" and "k" in t else name


def stamp_k(tests: dict, cfg) -> dict:
    """``tests`` with the MC average's K (``cfg.mc_k``) recorded in each test by that
    predictor that carries no label of its own; unchanged for an experiment without one."""
    k = getattr(cfg, "mc_k", None)
    if k is None:
        return tests
    return {
        name: {**t, "k": k} if t.get("predictor") == "mc" and not t.get("predictor_label") else t
        for name, t in tests.items()
    }


def flips(tests: dict, pairs: list[tuple[str, str]]) -> list[str]:
    """Findings for pairs of tests of one quantity by two predictors: a sign that flips with
    at least one interval excluding 0 (:func:`.stats.sign_flip`), or verdicts that differ."""
    out = []
    for a, b in pairs:
        ta, tb = tests[a], tests[b]
        by = lambda t: f"{effect_str(t)} by {predictor_name(t)}"  # noqa: E731
        if sign_flip(ta, tb):
            out.append(f"The sign of *{ta['what']}* flips between predictors: {by(ta)}, {by(tb)}.")
        elif ta["verdict"] != tb["verdict"]:
            out.append(
                f"The verdict on *{ta['what']}* depends on the predictor: {ta['verdict']} by "
                f"{predictor_name(ta)} ({effect_str(ta)}), {tb['verdict']} by "
                f"{predictor_name(tb)} ({effect_str(tb)})."
            )
    return out


def real_differences(tests: dict) -> list[str]:
    """Findings for inconclusive equivalence tests of a signed difference whose interval
    excludes 0: the two do differ, by an amount near the margin."""
    return [
        f"*{t['what']}* ({predictor_name(t)}): the equivalence test is "
        f"inconclusive, but the interval {effect_str(t)} excludes 0: the difference is real, "
        f"and whether it is negligible depends on the margin (+-{_num(t['margin'])})."
        for t in tests.values()
        if t["rule"] == "equivalence"
        and t["verdict"] == INCONCLUSIVE
        and not t.get("distance")
        and excludes_zero(t)
    ]


def _num(x: float) -> str:
    """A number in 4 significant places, in scientific notation when small or large."""
    if x == 0:
        return "0"
    return f"{x:.2e}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.4g}"


def effect_str(t: dict) -> str:
    if t["rule"] == "exact":
        return "exact check"
    level = round(100 * t["level"])
    return f"{_num(t['effect'])} [{_num(t['lo'])}, {_num(t['hi'])}] ({level}%)"


def p_str(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 1e-4" if p < 1e-4 else f"{p:.4f}"


def detects_str(t: dict) -> str:
    """What the design detects at 80% power, and the seeds the observed effect needs."""
    if t["rule"] == "exact":
        return "-"
    need = t["seeds_needed"]
    need_s = "not reachable" if need is None else str(need)
    what = "smallest margin" if t["rule"] == "equivalence" else "effect"
    return f"{what} {_num(t['mde'])}; n needed: {need_s}"


def rule_str(t: dict) -> str:
    if t["rule"] == "direction":
        return f"direction, claimed {t['claimed']}"
    if t["rule"] == "equivalence":
        return f"equivalence within +-{_num(t['margin'])}"
    return "exact check"


def all_findings(r: dict) -> list[str]:
    """A results file's findings: its own, plus equivalence tests with a real difference."""
    return list(r.get("findings") or []) + real_differences(r["tests"])


def primary_findings(r: dict) -> list[str]:
    """The findings that concern the primary test (its quantity by its predictor, or the
    primary net), for the report's summary."""
    t = r["tests"][r["primary"]]
    # findings name the predictor without its K (they are written before stamp_k)
    name = predictor_name({k: v for k, v in t.items() if k != "k"})
    return [f for f in all_findings(r) if (t["what"] in f and name in f) or "the primary net" in f]


def verdict_table(r: dict) -> str:
    """Every test of a results file: the primary first, then the exploratory ones, each with
    its predictor, n, effect and interval, p-value, verdict (unadjusted) and power."""
    tests, primary = r["tests"], r["primary"]
    order = [primary] + [k for k in tests if k != primary]
    rows = []
    for k in order:
        t = tests[k]
        rows.append(
            [
                ("**primary**: " if k == primary else "exploratory: ") + t["what"],
                predictor_name(t),
                rule_str(t),
                str(t.get("n", "-")),
                effect_str(t),
                p_str(t["p"]),
                f"**{t['verdict']}**" if k == primary else t["verdict"],
                detects_str(t),
            ]
        )
    head = ["test", "predictor", "rule", "n", "effect [interval]", "p", "verdict", "detects"]
    note = (
        f"Verdicts here are unadjusted (level {ALPHA}); the primary's Holm-adjusted verdict is "
        "in the report's summary, whose header also explains *detects*."
    )
    findings = all_findings(r)
    lines = [table(head, rows), "", note]
    if findings:
        lines += ["", "**Findings.**", *[f"- {f}" for f in findings]]
    return "\n".join(lines)
