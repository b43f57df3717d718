"""The identities the GPU figures rest on, checked on the device they are measured on.

    python benchmarks/gpu_checks.py

Needs only jax, flax, optax and scikit-learn (no pytest): the device image runs it as is.
Each check prints PASS or FAIL with its measured error; the exit status is the number of
failures. Run with ``JAX_DEFAULT_MATMUL_PRECISION=highest`` on GPUs whose float32 matmuls
default to TF32 (``benchmarks/gpu.sh`` sets it).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp

from dropstudy import masks as M
from dropstudy import predict as P
from dropstudy.data import digits
from dropstudy.models import MLP

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, err: float, tol: float) -> None:
    RESULTS.append((name, err <= tol, f"{err:.1e} (tolerance {tol:.0e})"))
    print(f"{'PASS' if err <= tol else 'FAIL'}  {name}: {RESULTS[-1][2]}", flush=True)


def max_diff(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def main() -> int:
    x = jnp.asarray(digits().x_test)
    # The exact average: exp-free factorised kernel against a full forward pass per subnetwork.
    model = MLP(hidden=(6, 6), rate=0.5)
    v, _ = M.init(model, jax.random.key(0), x)
    fac, gen = P.exact(model, v, x), P.exact(model, v, x, method="generic")
    check(
        "exact 2^12: factorised = generic (probabilities)",
        max_diff(fac.arithmetic, gen.arithmetic),
        1e-5,
    )
    check(
        "exact 2^12: factorised = generic (log geometric)",
        max_diff(fac.log_geometric, gen.log_geometric),
        1e-4,
    )
    # Sums that do not drift: a 3,4,2 ReLU net (drop 0.35, input drop 0.2, 5 inputs).
    small = MLP(hidden=(3, 4), n_out=2, rate=0.35, input_rate=0.2)
    xs = jax.random.normal(jax.random.key(3), (64, 5))
    vs, _ = M.init(small, jax.random.key(4), xs)
    vs = jax.tree.map(lambda p: 3 * p, vs)
    for name, avg in (
        ("MC K=20,000", P.mc(small, vs, xs, key=jax.random.key(2), k=20_000)),
        ("exact, factorised", P.exact(small, vs, xs)),
        ("exact, generic", P.exact(small, vs, xs, method="generic")),
    ):
        check(f"{name}: rows sum to 1", max_diff(avg.arithmetic.sum(-1), 1.0), 1e-6)
    # MC that skips dropped units: the same subnetworks as the dense pass.
    wide = MLP(hidden=(128, 128), rate=0.5, input_rate=0.2)
    vw, _ = M.init(wide, jax.random.key(5), x)
    key = jax.random.key(6)
    g = P.mc(wide, vw, x, key=key, k=200, method="gathered")
    d = P.mc(wide, vw, x, key=key, k=200, method="dense")
    check("MC K=200: gathered = dense (probabilities)", max_diff(g.arithmetic, d.arithmetic), 1e-5)
    # Weight scaling is the network without masks.
    ws = P.weight_scaling(wide, vw, x).arithmetic
    check(
        "weight scaling = softmax(model.apply)",
        max_diff(ws, jax.nn.softmax(wide.apply(vw, x))),
        1e-6,
    )
    print(f"devices: {jax.devices()}; matmul precision: {jax.config.jax_default_matmul_precision}")
    return sum(not ok for _, ok, _ in RESULTS)


if __name__ == "__main__":
    sys.exit(main())
