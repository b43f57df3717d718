"""The study commands' persistent compile cache: wall time with it cold and warm against none.

    python benchmarks/compile_cache.py [--runs stayput,overfitting:quick] [--write FILE]

Each run is ``dropstudy run NAME [--quick]`` in a fresh process into a fresh folder (every
cell and tuned arm computed), three times: with the cache off (``DROPSTUDY_XLA_CACHE=off``,
the alternative), with an empty cache (cold: compiles and stores), and again with the cache
the cold run filled (warm: loads). Every run's backend compile time is summed from JAX's
monitoring events, and the three ``results.json`` files are compared byte for byte (a
loaded program is the one XLA compiles, so they must be equal).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run inside the child: the CLI with a listener summing backend compile time and cache loads.
CHILD = """
import json, sys
from jax import monitoring
tot = {"compile": 0.0, "saved": 0.0, "loads": 0}
def on(event, seconds, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        tot["compile"] += seconds
    elif event == "/jax/compilation_cache/compile_time_saved_sec":
        tot["saved"] += seconds
        tot["loads"] += 1
monitoring.register_event_duration_secs_listener(on)
from dropstudy_experiments.cli import main
status = main(sys.argv[1:])
print("COMPILE " + json.dumps(tot), file=sys.stderr)
sys.exit(status)
"""


def run_once(name: str, quick: bool, out: Path, cache: str) -> dict:
    """One ``dropstudy run`` in a fresh process.

    Args:
      name: the experiment.
      quick: its smoke-test variant.
      out: a fresh results folder.
      cache: ``DROPSTUDY_XLA_CACHE`` for the run (``off``, or a folder).

    Returns:
      ``{"wall", "compile", "saved", "loads", "bytes"}``: wall seconds, backend compile
      seconds, compile seconds the cache saved, programs loaded, and ``results.json``.
    """
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["DROPSTUDY_XLA_CACHE"] = cache
    argv = ["run", name, "--out", str(out), "--no-progress", "-q", *(["--quick"] * quick)]
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, *argv], env=env, cwd=ROOT,
                       capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{name}: dropstudy run failed:\n{r.stderr[-3000:]}")
    line = [x for x in r.stderr.splitlines() if x.startswith("COMPILE ")][-1]
    return {"wall": wall, **json.loads(line[len("COMPILE ") :]),
            "bytes": (out / name / "results.json").read_bytes()}  # fmt: skip


def bench(name: str, quick: bool, tmp: Path) -> dict:
    """The three runs of one experiment, in this order: off, cold, warm.

    Args:
      name: the experiment.
      quick: its smoke-test variant.
      tmp: a scratch folder (each run's folder and the cache go there).

    Returns:
      ``{"off", "cold", "warm"}`` (:func:`run_once`) and ``"same"``: whether the three
      ``results.json`` are byte-identical.
    """
    cache = tmp / f"cache-{name}"
    got = {
        mode: run_once(name, quick, tmp / f"{name}-{mode}", c)
        for mode, c in (("off", "off"), ("cold", str(cache)), ("warm", str(cache)))
    }
    got["same"] = got["off"]["bytes"] == got["cold"]["bytes"] == got["warm"]["bytes"]
    return got


def table(rows: dict[str, dict]) -> list[str]:
    """The Markdown table of :func:`bench`'s figures, one row per run label."""
    head = [
        "| run | off: wall s (compile s) | cold: wall s (compile s) | warm: wall s (compile s, "
        "loads) | warm / off | results.json identical |",
        "|---|---|---|---|---|---|",
    ]
    for label, g in rows.items():
        off, cold, warm = g["off"], g["cold"], g["warm"]
        head.append(
            f"| {label} | {off['wall']:.1f} ({off['compile']:.1f}) | {cold['wall']:.1f} "
            f"({cold['compile']:.1f}) | {warm['wall']:.1f} ({warm['compile']:.1f}, "
            f"{warm['loads']}) | {warm['wall'] / off['wall']:.2f} | "
            f"{'yes' if g['same'] else '**no**'} |"
        )
    return head


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="stayput,overfitting:quick",
                    help="experiments, NAME or NAME:quick, comma-separated")  # fmt: skip
    ap.add_argument("--write", type=Path, help="also write the table to this Markdown file")
    args = ap.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="dropstudy-cc-") as tmp:
        for item in args.runs.split(","):
            name, _, kind = item.partition(":")
            label = f"`dropstudy run {name}{' --quick' if kind == 'quick' else ''}`"
            rows[label] = bench(name, kind == "quick", Path(tmp))
            print("\n".join(table({label: rows[label]})[2:]), flush=True)
    lines = table(rows)
    print("\n".join(lines))
    if args.write:
        from dropstudy_experiments.common import machine  # as the runs themselves import

        cpu = machine()["cpu"]
        text = [
            "# The persistent compile cache",
            "",
            f"`python benchmarks/compile_cache.py --runs {args.runs}` on {cpu}, "
            f"{os.cpu_count()} cores. Each run is a fresh process into a fresh folder (every "
            "cell computed): with the cache off, with an empty cache (cold), and with the cache "
            "the cold run filled (warm), one run each in that order. Off and cold do the same "
            "compile work, so their difference is the run-to-run noise (cold also writes the "
            "cache). Compile: XLA's backend compile time, from JAX's monitoring events; "
            "loads: programs loaded from the cache.",
            "",
            *lines,
            "",
        ]
        args.write.write_text("\n".join(text))
    return 0 if all(g["same"] for g in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
