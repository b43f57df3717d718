"""What every experiment shares: the run context, cells, seeds, figures and tables."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dropstudy.cells import CellStore
from dropstudy.checkpoint import versions
from dropstudy.data import Dataset, digits
from dropstudy.results import write_json
from dropstudy.stats import fmt, mean_ci

plt.rcParams.update({"figure.dpi": 90, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3})


@dataclass
class Context:
    """One experiment's run: where to write, how big, which data, and its cell store."""

    name: str
    out: Path
    quick: bool = False
    seeds: int | None = None
    progress: bool = True
    data: Dataset | None = None
    tensorboard: Path | None = None
    figures: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.out = Path(self.out) / self.name
        self.out.mkdir(parents=True, exist_ok=True)
        self.store = CellStore(self.out)
        self._bar = None

    def n_seeds(self, default: int, quick: int) -> int:
        return self.seeds or (quick if self.quick else default)

    def dataset(self) -> Dataset:
        return self.data if self.data is not None else digits()

    def pick(self, default, quick):
        return quick if self.quick else default

    def bar(self, total: int):
        """A progress bar over this experiment's cells."""
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=total, desc=self.name, disable=not self.progress, leave=True, unit="cell"
        )
        return self._bar

    def cell(self, name: str, config: dict, compute: Callable[[], Any]) -> Any:
        """Run (or reuse) one cell. The code's digest and the devices are part of its
        configuration, so an edited experiment or library never reuses a cell computed by
        older code, and a resumed run never mixes cells from another device count (seeds
        are batched per device, and batch size can change float rounding)."""
        key = {**config, "code": code_digest(self.name), "devices": device_tag()}
        result = self.store.get(name, key, compute)
        if self._bar is not None:
            self._bar.set_postfix_str(name[:40])
            self._bar.update(1)
        return result

    def savefig(self, fig, name: str) -> str:
        path = self.out / name
        fig.tight_layout()
        fig.savefig(path, dpi=90, metadata={"Software": None})  # no timestamp: stable bytes
        plt.close(fig)
        self.figures.append(name)
        return name

    def write(self, results: dict, started: float) -> Path:
        if self._bar is not None:
            self._bar.close()
        results = {
            "experiment": self.name,
            "quick": self.quick,
            "figures": self.figures,
            "versions": versions(),
            "backend": jax.default_backend(),
            "devices": device_tag(),
            **results,
        }
        path = write_json(self.out / "results.json", results)
        print(
            f"{self.name}: wrote {path} ({len(self.store.computed)} cells computed, "
            f"{len(self.store.reused)} reused, {time.perf_counter() - started:.0f} s)"
        )
        return path


def device_tag() -> str:
    """The devices seeds are split over, e.g. ``"2 cpu"``: results are bitwise reproducible
    for the same tag (and software); across tags they agree to float rounding."""
    return f"{len(jax.devices())} {jax.devices()[0].platform}"


def code_digest(name: str) -> str:
    """Digest of the sources a cell's result depends on: the library, this experiment."""
    import hashlib

    here = Path(__file__).parent
    files = sorted((here.parent / "dropstudy").glob("*.py"))
    files += [here / "common.py", here / f"{name}.py"]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def ci(values) -> dict:
    return mean_ci(values)


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
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
