"""Where the time goes: per-kernel profiles of the heaviest benchmarks.

    python benchmarks/kernels.py [--only exact,mc,tutorial] [--top 12] [--write FILE.md]

Runs a workload once to compile it, then once under ``jax.profiler`` (a Perfetto trace in a
temporary folder), and prints the compiled program's kernels by total time, each with its
share, its time per call, and the JAX operation it came from (from the HLO metadata).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dropstudy.sharding import use_cpu_cores

use_cpu_cores()  # the devices the benchmarks and the study run on

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from dropstudy import fast_exact as F  # noqa: E402
from dropstudy import masks as M  # noqa: E402
from dropstudy.data import digits  # noqa: E402
from dropstudy.models import MLP  # noqa: E402
from dropstudy.train import seed_keys, segment_steps, start_jit, steps_jit, train_seeds  # noqa: E402


def op_names(hlo_text: str) -> dict[str, str]:
    """Kernel name -> the JAX operation it came from, shortened."""
    out = {}
    for m in re.finditer(r"%([\w.\-]+) = .*?op_name=\"([^\"]+)\"", hlo_text):
        name, op = m.groups()
        op = re.sub(r"^jit\([^)]*\)/", "", op).replace("while/body/closed_call/", "")
        out[name] = op[-90:]
    return out


def profile(label: str, run, hlo_text: str, top: int) -> list[str]:
    """Trace one call of ``run``; its kernels by total time, as printable lines."""
    jax.block_until_ready(run())
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            jax.block_until_ready(run())
        (trace,) = Path(d).rglob("*.trace.json.gz")
        events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    names = op_names(hlo_text)
    agg: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for e in events:
        # Kernels carry their HLO name; skip Python frames ($...) and executor spans.
        if e.get("ph") == "X" and e["name"] in names:
            agg[e["name"]][0] += 1
            agg[e["name"]][1] += e.get("dur", 0.0)
    total = sum(t for _, t in agg.values())
    lines = [
        f"## {label}: {total / 1e6:.2f} s in kernels (all devices' threads summed)",
        "",
        "| share | total s | us/call | kernel | operation |",
        "|---|---|---|---|---|",
    ]
    for k, (n, t) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(
            f"| {100 * t / total:.1f}% | {t / 1e6:.3f} | {t / n:.1f} | `{k}` | `{names[k]}` |"
        )
    return lines


def exact_workload():
    import nets  # benchmarks/nets.py: the trained nets people evaluate

    net = nets.compare(1)
    model, variables, x = net.model, net.variables, net.x
    spec, outer, inner = nets.split(net)  # the products' block
    inner, lo = F.choose_low(model, spec, outer=outer, inner=inner, variables=variables, x=x)
    kw = dict(task="classification", outer=outer, inner=inner, lo=lo, variables=variables, x=x)
    hlo = F.exact_sums.lower(model, spec, **kw).compile().as_text()
    label = f"exact 2^20, exp-free factorised kernel, one device ({net.label}, digits test)"
    return label, lambda: F.exact_sums(model, spec, **kw), hlo


def mc_workload(k: int = 1000):
    from dropstudy import fast_mc

    x = jnp.asarray(digits().x_test)
    model = MLP(hidden=(512, 512), rate=0.5)
    variables, spec = M.init(model, jax.random.key(0), x)
    kw = dict(task="classification", k=k, variables=variables, x=x, key=jax.random.key(1))
    hlo = fast_mc.mc_stream.lower(model, spec, **kw).compile().as_text()
    label = f"MC K={k}, kept units gathered, one device (64-512-512-10, digits test)"
    return label, lambda: fast_mc.mc_stream(model, spec, **kw), hlo


def tutorial_workload(n_seeds: int = 32, steps: int = 200):
    from run import tutorial_setup  # benchmarks/run.py: the sweep as the benchmark runs it

    from dropstudy.sharding import mesh, shard_leading

    cfg, (_, model), _, xs, ys = tutorial_setup(n_seeds, steps)
    spec = M.mask_spec(model, xs[0])
    (keys, (x, y)), _ = shard_leading([seed_keys(range(n_seeds)), (xs, ys)], mesh())
    # train_seeds runs compiled segments: the profile is one segment's program
    run_keys, carry = start_jit(model, spec, cfg, data_axis=0, keys=keys, x=x, variables0=None)
    kw = dict(data_axis=0, cycle_axis=None, n=segment_steps(cfg), run_keys=run_keys)
    kw |= dict(carry=carry, x=x, y=y, cycle=None, first=jnp.int32(0))
    hlo = steps_jit.lower(model, spec, cfg, **kw).compile().as_text()
    run = lambda: train_seeds(model, seed_keys(range(n_seeds)), xs, ys, cfg, per_seed_data=True)  # noqa: E731
    label = f"tutorial sweep, dropout net: {n_seeds} seeds x {steps} steps"
    return label, run, hlo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="exact,mc,tutorial")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--write", type=Path, help="also write the profiles as Markdown here")
    args = ap.parse_args(argv)
    dev = f"{len(jax.devices())} {jax.devices()[0].platform} device(s)"
    out = [
        "# Kernel profiles",
        "",
        f"JAX {jax.__version__}, {dev}. Command: `python benchmarks/kernels.py`.",
    ]
    work = {"exact": exact_workload, "mc": mc_workload, "tutorial": tutorial_workload}
    for name in args.only.split(","):
        label, run, hlo = work[name]()
        out += ["", *profile(label, run, hlo, args.top)]
    text = "\n".join(out) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
