"""dropstudy benchmarks: one table of figures and ratios, measured in one run.

    python benchmarks/run.py [--quick] [--write benchmarks/RESULTS.md]

Every timing is the median of several runs after a warm-up (unless marked cold), and every
ratio compares against an alternative measured in the same run: a straightforward chunked
vmap, the same experiment in PyTorch (needs the ``bench`` extra; skipped when absent), and
the machine's measured XLA matmul and exp rates.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/nets.py

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.data import digits
from dropstudy.models import MLP
from dropstudy.sharding import use_cpu_cores
from dropstudy.train import seed_keys, train, train_seeds

ROWS: list[tuple[str, str, str, str]] = []  # (benchmark, figure, alternative, ratio/target)


def block(x):
    return jax.block_until_ready(x)


def median_time(f, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        block(f())
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        block(f())
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_peak(repeats: int) -> float:
    """Measured float32 XLA matmul rate (GFLOP/s), the best of a few square sizes."""
    best = 0.0
    for n in (1024, 2048):
        a = jax.random.normal(jax.random.key(0), (n, n))
        b = jax.random.normal(jax.random.key(1), (n, n))
        f = jax.jit(lambda a, b: a @ b)
        t = median_time(lambda f=f, a=a, b=b: f(a, b), repeats)
        best = max(best, 2 * n**3 / t / 1e9)
    return best


def block_rates(repeats: int, loops: int = 64) -> tuple[float, float]:
    """Measured rates in the exact kernel's block layout, one device, inside one compiled
    loop (as the kernel runs them, without a dispatch per pass): elements per second of one
    elementwise pass (two reads, one write) over a ``(256, 10, 360)`` block, and logs per
    second over ``(256, 360)``."""
    a = jax.random.uniform(jax.random.key(3), (256, 10, 360))
    b = jax.random.uniform(jax.random.key(4), (256, 10, 360))
    s = a[:, 0] + 1.0
    passes = jax.jit(lambda a, b: jax.lax.fori_loop(0, loops, lambda i, c: c * b + a, a))
    logs = jax.jit(lambda s: jax.lax.fori_loop(0, loops, lambda i, c: jnp.log(c + 2.0), s))
    t_pass = median_time(lambda: passes(a, b), max(repeats, 3)) / loops
    t_log = median_time(lambda: logs(s), max(repeats, 3)) / loops
    return a.size / t_pass, s.size / t_log


def exact_row(net, devices, repeats) -> float:
    """One row: the exact 2^20 average of ``net`` on one device and dealt over ``devices``,
    against the exponential path; returns the one-device time."""
    import nets

    from dropstudy import fast_exact as F

    model, v, x = net.model, net.variables, net.x
    spec, outer, inner = nets.split(net)
    _, lo = F.choose_low(model, spec, outer=outer, inner=inner, variables=v, x=x)
    one = median_time(lambda: P.exact(model, v, x).arithmetic, repeats)
    dealt = median_time(lambda: P.exact(model, v, x, mesh=devices).arithmetic, repeats)
    e_outer, e_inner = F.split_units(model, spec, F.inner_size(model.n_out, x.shape[0]))
    # The exponential path: one exp per logit, every subnetwork its own max, one device.
    kw = dict(task="classification", outer=e_outer, inner=e_inner, lo=None, variables=v, x=x)
    with_exp = median_time(lambda: F.exact_sums(model, spec, **kw)[0], repeats)
    diff = float(
        jnp.max(jnp.abs(P.exact(model, v, x).arithmetic - F.exact_sums(model, spec, **kw)[0]))
    )
    n_dev = len(devices.devices.flat)
    ROWS.append(
        (
            f"exact 2^20, {net.label} (B = {x.shape[0]}, C = {model.n_out}; spread "
            f"{nets.spread(net, reference=False):.1f} raw, {nets.spread(net):.1f} "
            f"relative to the reference class; low units {lo} of {len(inner)}), one device",
            f"{one:.2f} s ({dealt:.2f} s over {n_dev} devices)",
            f"exp per logit, one device {with_exp:.2f} s",
            f"{with_exp / one:.1f}x faster; max |dp| {diff:.1e}",
        )
    )
    return one


def bench_exact(ds, peak, repeats, quick):
    """The exact 2^20 average on the nets people evaluate (``benchmarks/nets.py``): initial
    weights, ``dropstudy compare``'s trained nets (seeds 0 and 1) and the averaging
    experiment's binary-pair net, each with the logit spread its kernel meets."""
    import nets

    from dropstudy.sharding import mesh

    devices = mesh()
    init = nets.initial()
    # The generic path's cost does not depend on the weights: one measurement serves all.
    naive = median_time(
        lambda: P.exact(init.model, init.variables, init.x, method="generic").arithmetic,
        1,
        warmup=0 if quick else 1,
    )
    # Five repeats at least: on a shared 2-core machine a run now and then takes about 1.5x
    # (another process's work), and the median of five keeps such runs out.
    times = {
        net.label: exact_row(net, devices, max(repeats, 5))
        for net in (init, nets.compare(0), nets.compare(1), nets.pair(0))
    }
    trained = max(times[nets.compare(s).label] for s in (0, 1))
    ROWS.append(
        (
            "  exact 2^20: compare's trained nets (slower seed) vs initial weights, one device",
            f"{trained:.2f} s",
            f"initial {times[init.label]:.2f} s; chunked vmap, one device {naive:.1f} s",
            f"{trained / times[init.label]:.2f}x the initial net's time (target <= 1.3x); "
            f"{naive / trained:.0f}x faster than the vmap (target >= 30x)",
        )
    )
    n_sub, b, c = 2**20, init.x.shape[0], init.model.n_out
    _, log_rate = block_rates(repeats)
    # The kernel's unavoidable work with 10 classes (it contracts over them): two products
    # of 2 flops per (mask, class, example) (normalisers, weighted sum) at the measured
    # matmul peak, and one log per (mask, example).
    t_flops = 4 * n_sub * b * c / (peak * 1e9)
    t_log = n_sub * b / log_rate
    ROWS.append(
        (
            "  bound: 4 flops per (mask, class, example) at matmul peak + 1 log per (mask, "
            "example)",
            f"{t_flops + t_log:.2f} s",
            f"flops {t_flops:.2f} s + logs {t_log:.2f} s (1 device)",
            f"compare seed 1 {times[nets.compare(1).label] / (t_flops + t_log):.1f}x above, "
            f"initial {times[init.label] / (t_flops + t_log):.1f}x",
        )
    )
    return {"naive": naive, **times}


def bench_mc(ds, peak, repeats, k=1000):
    """MC with K = 1000 on a wide net trained as ``dropstudy compare`` trains (beside its
    initial weights), and on the small nets of the exact rows."""
    import nets

    from dropstudy import fast_mc
    from dropstudy.sharding import mesh

    model = MLP(hidden=(512, 512), rate=0.5)
    x = jnp.asarray(ds.x_test)
    initial, spec = M.init(model, jax.random.key(0), x)
    params = nets.trained(model)
    key = jax.random.key(1)
    devices = mesh()
    n_dev = len(devices.devices.flat)

    def run(**kw):
        return lambda: P.mc(model, params, x, key=key, k=k, **kw).arithmetic

    dealt = median_time(run(method="gathered", mesh=devices), repeats)
    one = median_time(run(method="gathered"), repeats)
    dense = median_time(run(method="dense"), repeats)
    dense_dealt = median_time(run(method="dense", mesh=devices), repeats)
    diff = float(jnp.max(jnp.abs(run(method="gathered")() - run(method="dense")())))
    widths = [w for w in fast_mc.bounds(spec)[1:]]
    flops = k * x.shape[0] * 2 * (widths[0] * widths[1] + widths[1] * 10)
    dense_flops = k * x.shape[0] * 2 * (64 * 512 + 512 * 512 + 512 * 10)
    on_initial = median_time(
        lambda: P.mc(model, initial, x, key=key, k=k, method="gathered").arithmetic, repeats
    )
    ROWS.append(
        (
            f"MC K={k} (64-512-512-10, trained as compare trains), kept units gathered, one device",
            f"{one:.2f} s, {flops / one / 1e9:.0f} GFLOP/s",
            f"dense (every unit), one device {dense:.2f} s",
            f"{dense / one:.1f}x faster; max |dp| {diff:.1e}",
        )
    )
    ROWS.append(
        (
            "  same, initial weights",
            f"{on_initial:.2f} s",
            f"trained {one:.2f} s",
            f"{one / on_initial:.2f}x the initial weights' time (no path depends on weights)",
        )
    )
    ROWS.append(
        (
            f"  same, both dealt over {n_dev} devices (mesh=)",
            f"{dealt:.2f} s",
            f"dense over {n_dev} devices {dense_dealt:.2f} s",
            f"{dense_dealt / dealt:.1f}x faster; matmul peak {peak:.0f} GFLOP/s, gathered "
            f"{100 * flops / one / 1e9 / peak:.0f}% of it on one device, dense "
            f"{100 * dense_flops / dense / 1e9 / peak:.0f}%",
        )
    )
    for net in (nets.initial(), nets.compare(0), nets.pair(0)):
        small = median_time(
            lambda n=net: P.mc(n.model, n.variables, n.x, key=key, k=k).arithmetic, repeats
        )
        ROWS.append(
            (
                f"MC K={k}, {net.label} (B = {net.x.shape[0]}), one device",
                f"{small:.3f} s",
                "-",
                "-",
            )
        )
    torch_t = torch_mc(ds, params, k)
    if torch_t is not None:
        ROWS.append(
            (
                f"  vs PyTorch loop of {k} train-mode passes",
                f"{dealt:.2f} s ({n_dev} devices) / {one:.2f} s (1)",
                f"PyTorch {torch_t:.2f} s",
                f"{torch_t / dealt:.1f}x / {torch_t / one:.1f}x (target 10x)",
            )
        )
        at_peak = flops / (peak * 1e9)
        ROWS.append(
            (
                f"  ceiling: gathered flops ({widths[0]}x{widths[1]} blocks) at the matmul peak",
                f"{at_peak:.2f} s",
                f"PyTorch {torch_t:.2f} s",
                f"at most {torch_t / at_peak:.1f}x possible",
            )
        )
    return {"dealt": dealt, "one": one, "dense": dense, "torch": torch_t}


def bench_sums(repeats, chunk: int = 500):
    """The library's sums (pairwise within a chunk, compensated across chunks) against the
    reduction they replaced (a float32 dot within a chunk, plain adds across chunks), both
    over the same chunks and both means: drift and time, MC K = 20,000 on a 3,4,2 ReLU net
    (drop 0.35, input drop 0.2, 5 inputs)."""
    from dropstudy.average import stream

    model = MLP(hidden=(3, 4), n_out=2, rate=0.35, input_rate=0.2)
    x = jax.random.normal(jax.random.key(3), (64, 5))
    params, spec = M.init(model, jax.random.key(4), x)
    params = jax.tree.map(lambda p: 3 * p, params)
    key, k = jax.random.key(2), 20_000

    @jax.jit
    def plain(params, x, key):
        def body(sums, j):
            m = M.sample_mask_batch(spec, key, j * chunk + jnp.arange(chunk), x.dtype)
            logp = jax.nn.log_softmax(jax.vmap(lambda mk: M.apply(model, params, x, mk))(m))
            w = jnp.full((chunk,), 1.0 / k)
            a, g = jnp.einsum("k,kbc->bc", w, jnp.exp(logp)), jnp.einsum("k,kbc->bc", w, logp)
            return (sums[0] + a, sums[1] + g), None

        z = jnp.zeros((x.shape[0], 2))
        return jax.lax.scan(body, (z, z), jnp.arange(k // chunk))[0][0]

    def compensated():
        return stream(
            model, spec, task="classification", source="mc", total=k, chunk=chunk,
            variables=params, x=x, key=key,
        )[0]  # fmt: skip

    t_plain = median_time(lambda: plain(params, x, key), max(repeats, 5))
    t_comp = median_time(compensated, max(repeats, 5))
    drift = lambda p: float(jnp.max(jnp.abs(p.sum(-1) - 1)))  # noqa: E731
    ROWS.append(
        (
            f"sums: MC K=20,000 (3,4,2 net), {k // chunk} chunks, pairwise + compensated",
            f"{t_comp * 1e3:.0f} ms, rows sum to 1 +- {drift(compensated()):.1e}",
            f"dot + plain adds {t_plain * 1e3:.0f} ms, +- {drift(plain(params, x, key)):.1e}",
            f"{t_comp / t_plain:.2f}x the time (target: within 1e-6)",
        )
    )


def bench_study(timings: list[Path]):
    """The study's own wall time, from the timing logs ``make study`` appends to (one per
    data set's results folder): a row per data set, and the total."""
    import json

    total = 0.0
    for timing in timings:
        label = "study wall time"
        if not timing.is_file():
            ROWS.append((label, "no timing log", f"run `make study` ({timing})", "-"))
            continue
        entries = [json.loads(line) for line in timing.read_text().splitlines() if line.strip()]
        # Each experiment's latest complete run (every cell computed, none reused), and that
        # run's cells: experiments may come from different `dropstudy run` processes.
        last: dict[str, dict] = {}
        for e in entries:
            if e["cell"] is None and e["computed"]:
                last[e["experiment"]] = e
        if not last:
            ROWS.append((label, "no complete run in the log", str(timing), "-"))
            continue
        per = {n: e["seconds"] for n, e in last.items()}
        total += sum(per.values())
        label += f" on {next(iter(last.values())).get('dataset', 'digits')}"
        if timing.parent.name.startswith("from"):  # `dropstudy replicate`'s second list
            label += f" (second list of seeds, {timing.parent.name})"
        cells = [
            e
            for e in entries
            if e["cell"] is not None
            and e["experiment"] in last
            and e.get("run") == last[e["experiment"]].get("run")
        ]
        ROWS.append(
            (
                f"{label}: each experiment's latest complete run, summed",
                f"{sum(per.values()) / 60:.1f} min",
                ", ".join(f"{n} {t:.0f} s" for n, t in per.items()),
                f"devices {next(iter(last.values()))['devices']}",
            )
        )
        for e in sorted(cells, key=lambda e: -e["seconds"])[:3]:
            ROWS.append(
                (f"  slow cell: {e['experiment']}/{e['cell']}", f"{e['seconds']:.0f} s", "-", "-")
            )
    if len(timings) > 1:
        ROWS.append(("study wall time, all data sets", f"{total / 60:.1f} min", "-", "-"))
    # The tuning cache trains an arm once per run (experiments/protocol.py, shared_arm): its
    # time counts in the first experiment that trains it, in the runner's order.
    ROWS.append(
        (
            "  note: shared arms",
            "a net trained by several experiments counts in the first to train it",
            "in this log voting's nets served maskmode, diversity and ensembles",
            "-",
        )
    )


def _torch():
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        return torch
    except ImportError:
        return None


def torch_mc(ds, params, k):
    """The MC-dropout libraries' way: a Python loop of K forward passes in training mode."""
    torch = _torch()
    if torch is None:
        print("PyTorch not installed (pip install -e '.[bench]'): skipping PyTorch baselines")
        return None
    nn = torch.nn
    net = nn.Sequential(
        nn.Linear(64, 512),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(512, 10),
    )
    with torch.no_grad():
        names = MLP(hidden=(512, 512)).dense_layers()
        for layer, name in zip((net[0], net[3], net[6]), names, strict=True):
            layer.weight.copy_(torch.tensor(np.asarray(params["params"][name]["kernel"]).T))
            layer.bias.copy_(torch.tensor(np.asarray(params["params"][name]["bias"])))
    x = torch.tensor(ds.x_test)
    net.train()

    def run():
        with torch.no_grad():
            acc = torch.zeros(x.shape[0], 10)
            for _ in range(k):
                acc += torch.softmax(net(x), -1)
        return acc / k

    run()
    ts = []
    for _ in range(2):
        t = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def tutorial_flops(n_seeds: int, steps: int) -> float:
    """Forward + backward (3x forward) matmul flops of the tutorial sweep, both nets."""
    per_example = 1 * 200 + 200 * 200 * 2 + 200 * 1
    return 2 * n_seeds * steps * 3 * 2 * 10 * per_example


def product_rate(n_seeds: int, repeats: int) -> float:
    """XLA's rate (GFLOP/s, every device at once) for the sweep's own matrix products: per
    seed ``(10, 200) @ (200, 200)`` in the three forms a training step runs (forward,
    input gradient ``dY @ W.T``, weight gradient ``H.T @ dY``), seeds batched and split
    over the devices as ``train_seeds`` splits them."""
    from dropstudy.sharding import mesh, shard_leading

    h = jax.random.normal(jax.random.key(0), (n_seeds, 10, 200))
    w = jax.random.normal(jax.random.key(1), (n_seeds, 200, 200))
    (h, w), _ = shard_leading((h, w), mesh())  # padded to a multiple of the devices
    s = h.shape[0]

    @jax.jit
    def step(h, w):
        fwd = jnp.einsum("sbi,sij->sbj", h, w)
        dx = jnp.einsum("sbj,sij->sbi", fwd, w)
        dw = jnp.einsum("sbi,sbj->sij", h, dx)
        return dw

    t = median_time(lambda: step(h, w), max(repeats, 5) * 4)
    return 3 * 2 * s * 10 * 200 * 200 / t / 1e9


def tutorial_setup(n_seeds: int, steps: int):
    """The study's tutorial sweep (``dropstudy_experiments.tutorial``): ``(cfg, nets (rate 0,
    rate 0.5), per-seed data sets, xs (S, 10, 1), ys (S, 10, 1))``."""
    from dropstudy_experiments.tutorial import Config, tutorial_config, tutorial_net
    from dropstudy_experiments.tutorial_task import tutorial_sets

    sets, xs, ys = tutorial_sets(range(n_seeds), Config().slope)
    return tutorial_config(steps), [tutorial_net(r) for r in (0.0, 0.5)], sets, xs, ys


def bench_tutorial(peak, n_seeds, steps, repeats, quick):
    cfg, nets, sets, xs, ys = tutorial_setup(n_seeds, steps)
    seeds = list(range(n_seeds))

    def sweep():
        return [
            train_seeds(
                m, seed_keys(seeds), xs, ys, cfg, per_seed_data=True, allow_divergence=True
            )[0]
            for m in nets
        ]

    t0 = time.perf_counter()
    block(sweep())
    cold = time.perf_counter() - t0
    warm = median_time(sweep, 1 if quick else 2, warmup=0)
    d0 = sets[0]

    def single():
        return train(nets[0], jax.random.key(0), d0.x_train, d0.y_train, cfg)[0]

    t0 = time.perf_counter()
    block(single())
    single_cold = time.perf_counter() - t0
    single_warm = median_time(single, 3, warmup=0)
    flops = tutorial_flops(n_seeds, steps)
    rate = flops / warm / 1e9
    torch_sweep, torch_single = torch_tutorial(sets, steps)
    alt = f"PyTorch {torch_sweep:.1f} s" if torch_sweep else "PyTorch not installed"
    ratio = f"{torch_sweep / cold:.1f}x (target 10x)" if torch_sweep else "-"
    ROWS.append(
        (
            f"tutorial sweep {n_seeds} seeds x 2 nets x {steps} steps, compile incl.",
            f"{cold:.2f} s",
            alt,
            ratio,
        )
    )
    ROWS.append(
        ("  same, warm", f"{warm:.2f} s", alt, f"{torch_sweep / warm:.1f}x" if torch_sweep else "-")
    )
    if torch_single:
        ROWS.append(
            (
                "  one seed, one net: cold / warm",
                f"{single_cold:.2f} / {single_warm:.2f} s",
                f"PyTorch {torch_single:.2f} s",
                f"{torch_single / single_warm:.1f}x warm",
            )
        )
    ROWS.append(
        (
            "training throughput of the sweep (warm)",
            f"{rate:.1f} GFLOP/s",
            f"matmul peak {peak:.0f} GFLOP/s",
            f"{100 * rate / peak:.0f}% of peak (target 30%)",
        )
    )
    # On 10 training points every product has M = 10 rows: XLA runs these shapes far below
    # its large-matrix peak, so the bound that matters is the same flops at the rate XLA
    # reaches for the sweep's own products (measured in this run, all devices at once).
    small = product_rate(n_seeds, repeats)
    t_small = flops / (small * 1e9)
    ROWS.append(
        (
            "  bound: the sweep's flops at XLA's rate for its (10x200)@(200x200) products",
            f"{t_small:.1f} s",
            f"{small:.0f} GFLOP/s = {100 * small / peak:.0f}% of peak",
            f"sweep {warm / t_small:.1f}x above; ceiling {100 * small / peak:.0f}% of peak",
        )
    )
    return {"cold": cold, "warm": warm, "gflops": rate, "torch": torch_sweep}


def torch_tutorial(sets, steps):
    """The tutorial's loop: nn.Dropout modules, a Python loop of optimiser steps, one seed
    after another, both nets."""
    torch = _torch()
    if torch is None:
        return None, None
    nn = torch.nn

    def mlp(p):
        layers = []
        for a, b in ((1, 200), (200, 200), (200, 200)):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(p)]
        return nn.Sequential(*layers, nn.Linear(200, 1))

    def one_seed(s, d):
        torch.manual_seed(s)
        x, y = torch.tensor(d.x_train), torch.tensor(d.y_train)
        for p in (0.0, 0.5):
            net = mlp(p)
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            loss_fn = nn.MSELoss()
            net.train()
            for _ in range(steps):
                opt.zero_grad()
                loss = loss_fn(net(x), y)
                loss.backward()
                opt.step()

    t0 = time.perf_counter()
    one_seed(0, sets[0])
    single = (time.perf_counter() - t0) / 2
    t0 = time.perf_counter()
    for s, d in enumerate(sets):
        one_seed(s, d)
    return time.perf_counter() - t0, single


def bench_training(repeats: int, quick: bool) -> None:
    """Minibatch training on a grid like the protocol's pilots, with each epoch's permutation drawn
    by :func:`dropstudy.rng.permutation` (the library's) and by ``jax.random.permutation``
    (the same numbers, a key-value sort), in the same run.

    The grid: MNIST-1D's training split (80%, 3,200 signals), batches of 128, Adam at 4
    learning rates x 3 seeds (12 runs, one compiled call), drop 0.5, no selection.
    """
    from dropstudy import rng
    from dropstudy.data import mnist1d
    from dropstudy.train import TrainConfig, train_grid

    fast, n_runs, n = rng.permutation, 12, 3200
    keys = jax.random.split(jax.random.key(0), n_runs)

    def permute(f):
        return jax.jit(jax.vmap(lambda k: f(k, n)))

    by_jax, by_rng = permute(jax.random.permutation), permute(fast)
    t_jax = median_time(lambda: by_jax(keys), max(repeats, 5))
    t_rng = median_time(lambda: by_rng(keys), max(repeats, 5))
    same = bool(jnp.all(by_rng(keys) == by_jax(keys)))
    ROWS.append(
        (
            f"one epoch's permutation of {n:,} (x {n_runs} runs, vmapped): dropstudy.rng",
            f"{t_rng / n_runs * 1e6:.0f} us",
            f"jax.random.permutation {t_jax / n_runs * 1e6:.0f} us",
            f"{t_jax / t_rng:.1f}x faster; bitwise equal: {'yes' if same else 'NO'}",
        )
    )
    ds = mnist1d()
    x, y = ds.x_train[:n], ds.y_train[:n]
    steps = 200 if quick else 2000
    cfg = TrainConfig(batch_size=128, optimizer="adam", steps=steps)
    lrs = (3e-4, 1e-3, 3e-3, 1e-2)
    try:
        for hidden in ((10, 10), (64, 64)):
            model, times, out = MLP(hidden=hidden, rate=0.5), {}, {}
            for name, f in (("rng", fast), ("jax", jax.random.permutation)):
                rng.permutation = f  # train.py draws through the module: traced anew below
                jax.clear_caches()

                def grid(model=model):
                    return train_grid(model, keys[:3], x, y, cfg, lrs=lrs)[0]

                out[name] = block(grid())  # compiles
                times[name] = median_time(grid, repeats, warmup=0)
            same = all(
                bool(jnp.all(a == b))
                for a, b in zip(jax.tree.leaves(out["rng"]), jax.tree.leaves(out["jax"]))
            )
            ROWS.append(
                (
                    f"  training, MNIST-1D MLP {hidden[0]}x{hidden[1]} drop 0.5: 4 lrs x 3 "
                    f"seeds x {steps:,} steps, one call (warm)",
                    f"{times['rng']:.2f} s",
                    f"with jax.random.permutation {times['jax']:.2f} s",
                    f"{times['jax'] / times['rng']:.2f}x; same weights: {'yes' if same else 'NO'}",
                )
            )
    finally:
        rng.permutation = fast
        jax.clear_caches()


def bench_growth(ds, repeats, out: Path | None):
    """Time against K (MC) and 2^n (exact), on nets trained as ``dropstudy compare``
    trains; exact on their initial weights too."""
    import nets

    x = jnp.asarray(ds.x_test)
    model = MLP(hidden=(128, 128), rate=0.5)
    params = nets.trained(model)
    ks = [125, 250, 500, 1000, 2000]
    t_mc = [
        median_time(
            lambda k=k: P.mc(model, params, x, key=jax.random.key(1), k=k).arithmetic, repeats
        )
        for k in ks
    ]
    ns = [12, 14, 16, 18, 20]
    t_ex, t_ex0 = [], []
    for n in ns:
        m = MLP(hidden=(n // 2, n // 2), rate=0.5)
        p0, _ = M.init(m, jax.random.key(0), x)
        p = nets.trained(m)
        t_ex.append(median_time(lambda m=m, p=p: P.exact(m, p, x).arithmetic, repeats))
        t_ex0.append(median_time(lambda m=m, p=p0: P.exact(m, p, x).arithmetic, repeats))
    slope_mc = float(np.polyfit(np.log(ks), np.log(t_mc), 1)[0])
    slope_ex = float(np.polyfit(np.array(ns) * np.log(2), np.log(t_ex), 1)[0])
    # Fixed per-call costs flatten the small end; the top three sizes show the asymptote.
    top_mc = float(np.polyfit(np.log(ks[-3:]), np.log(t_mc[-3:]), 1)[0])
    top_ex = float(np.polyfit(np.array(ns[-3:]) * np.log(2), np.log(t_ex[-3:]), 1)[0])
    slope_ex0 = float(np.polyfit(np.array(ns) * np.log(2), np.log(t_ex0), 1)[0])
    ROWS.append(
        (
            "growth: MC time ~ K^s (64-128-128-10, trained)",
            f"s = {slope_mc:.2f}",
            "linear in K: s = 1",
            f"K = {ks[0]}..{ks[-1]}; top 3: s = {top_mc:.2f}",
        )
    )
    ROWS.append(
        (
            "growth: exact time ~ (2^n)^s (2 x n/2 ReLU, trained)",
            f"s = {slope_ex:.2f}",
            f"linear in 2^n: s = 1; initial weights s = {slope_ex0:.2f}",
            f"n = {ns[0]}..{ns[-1]}; top 3: s = {top_ex:.2f}; at n = {ns[-1]} trained "
            f"{t_ex[-1]:.2f} s, initial {t_ex0[-1]:.2f} s",
        )
    )
    if out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        axes[0].loglog(ks, t_mc, "o-", label=f"measured, slope {slope_mc:.2f}")
        axes[0].set(xlabel="K subnetworks", ylabel="seconds", title="Monte-Carlo")
        axes[1].semilogy(ns, t_ex, "o-", label=f"trained, slope {slope_ex:.2f} in 2^n")
        axes[1].semilogy(ns, t_ex0, "s--", label=f"initial, slope {slope_ex0:.2f}")
        axes[1].set(
            xlabel="n droppable units (2^n subnetworks)",
            ylabel="seconds",
            title="Exact (factorised)",
        )
        for ax in axes:
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out, dpi=80, metadata={"Software": None})
    return {"ks": ks, "t_mc": t_mc, "ns": ns, "t_exact": t_ex, "t_exact_initial": t_ex0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 4 seeds, 200 steps")
    ap.add_argument("--write", type=Path, help="also write the table as Markdown here")
    ap.add_argument(
        "--only",
        default="",
        help="comma list: exact,mc,sums,tutorial,growth,training,study (default: all but "
        "training and study, which make bench writes to files of their own)",
    )
    results = Path(__file__).resolve().parent.parent / "results"
    ap.add_argument(
        "--timing",
        type=Path,
        action="append",
        help="a timing log of the study (make study writes results/timing.jsonl, "
        "results/mnist1d/timing.jsonl, results/from100/timing.jsonl and "
        "results/mnist1d/from100/timing.jsonl, the defaults); repeatable",
    )
    args = ap.parse_args(argv)
    use_cpu_cores()  # before any JAX operation, as dropstudy's CLI does
    repeats = 1 if args.quick else 3
    only = set(filter(None, args.only.split(",")))
    # The study's wall time is read from its logs and written to a file of its own
    # (STUDY.md, `--only study`), so the kernel benchmarks never carry a stale study row.
    # Training's permutation rows likewise go to TRAINING.md (`--only training`).
    want = lambda s: s in only if only else s not in ("study", "training")  # noqa: E731
    dev = jax.devices()[0]
    machine = f"{cpu_name()}, {len(jax.devices())} {dev.platform} device(s), {dev.device_kind}"
    header = (
        f"machine: {machine}; JAX {jax.__version__}, backend {jax.default_backend()}; "
        f"{os.cpu_count()} CPU cores"
    )
    print(header)
    ds = digits()
    peak = matmul_peak(repeats)
    ROWS.append(("XLA float32 matmul peak (measured)", f"{peak:.0f} GFLOP/s", "-", "-"))
    if want("exact"):
        bench_exact(ds, peak, repeats, args.quick)
    if want("mc"):
        bench_mc(ds, peak, repeats)
    if want("sums"):
        bench_sums(repeats)
    if want("tutorial"):
        bench_tutorial(
            peak, 4 if args.quick else 32, 200 if args.quick else 2000, repeats, args.quick
        )
    if want("training"):
        bench_training(repeats, args.quick)
    # beside the table, named after it: RESULTS.md -> RESULTS.growth.png
    growth_png = args.write.with_suffix(".growth.png") if args.write else None
    if want("growth"):
        bench_growth(ds, repeats, growth_png)
    if want("study"):
        # make study's second lists, each data set's
        second = sorted(results.glob("from*/timing.jsonl"))
        second += sorted((results / "mnist1d").glob("from*/timing.jsonl"))
        bench_study(
            args.timing or [results / "timing.jsonl", results / "mnist1d" / "timing.jsonl", *second]
        )
    widths = [
        max(len(r[i]) for r in [*ROWS, ("benchmark", "figure", "alternative", "ratio")])
        for i in range(4)
    ]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    print(line(("benchmark", "figure", "alternative", "ratio")))
    for r in ROWS:
        print(line(r))
    if args.write:
        md = [
            "| benchmark | figure | alternative (same run) | ratio / target |",
            "|---|---|---|---|",
        ]
        md += [f"| {' | '.join(r)} |" for r in ROWS]
        cmd = (
            "python benchmarks/run.py"
            + (" --quick" if args.quick else "")
            + (f" --only {args.only}" if args.only else "")
        )
        text = (
            f"## {machine}\n\n{header}. Command: `{cmd}` (`make bench`).\n\n" + "\n".join(md) + "\n"
        )
        if growth_png is not None and growth_png.exists():
            text += f"\n![growth]({growth_png.name})\n"
        args.write.write_text(text)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
