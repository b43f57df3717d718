"""The XLA flags the test suite compiles with (:mod:`conftest` sets them before JAX starts)."""

import os
import subprocess
import sys

# The suite compiles far more than it computes (small nets, a few steps, hundreds of
# programs), and most of a CPU compile is code generation: LLVM's optimisation (level 0 cut
# the suite's CPU time by about a third) and XLA's newer fusion emitters (the older ones
# compile test_predict's exact and weight-scaling tests 2.6x faster at level 0).
FAST = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
# For an XLA that does not know the emitters' flag.
LEVEL_0 = "--xla_backend_optimization_level=0"


def accepts(flags: str) -> bool:
    """Whether this jaxlib's XLA starts with ``flags`` (it aborts on a flag it does not
    know), tried in a subprocess.

    Args:
      flags: an XLA_FLAGS value.

    Returns:
      True when a JAX computation runs under them.
    """
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def suite_flags() -> str:
    """The suite's XLA_FLAGS: a user's own (an empty value too: ``make test-slow`` runs its
    bitwise checks at XLA's defaults so), else :data:`FAST` where XLA accepts it, else
    :data:`LEVEL_0`.

    Returns:
      The value to set before JAX starts.
    """
    own = os.environ.get("XLA_FLAGS")
    return own if own is not None else (FAST if accepts(FAST) else LEVEL_0)
