"""One process of a multi-process seed sweep (run by tests/test_multihost.py).

    python tests/multihost_worker.py --out FILE.npz [--coordinator HOST:PORT
        --num-processes N --process-id I] [--local-devices D]

With ``--coordinator`` the process joins ``jax.distributed`` (CPU collectives over gloo);
the mesh then spans every process's devices and ``train_seeds`` splits the seeds over all
of them. Process 0 writes the gathered parameters and losses to ``--out``. Without it, one
process trains the same sweep on its ``--local-devices`` devices, for comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--coordinator")
    ap.add_argument("--num-processes", type=int, default=1)
    ap.add_argument("--process-id", type=int, default=0)
    ap.add_argument("--local-devices", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_num_cpu_devices", args.local_devices)
    if args.coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    import numpy as np

    from dropstudy import sharding
    from dropstudy.data import digits
    from dropstudy.models import MLP
    from dropstudy.train import TrainConfig, seed_keys, train_seeds

    d = digits()
    model = MLP(hidden=(16, 16), rate=0.5)
    cfg = TrainConfig(steps=30, batch_size=64, lr=1e-2)
    variables, hist = train_seeds(
        model, seed_keys(range(args.seeds)), d.x_train, d.y_train, cfg, mesh=sharding.mesh()
    )
    leaves = sharding.gather(jax.tree.leaves((variables, hist.loss)))
    if jax.process_index() == 0:
        np.savez(args.out, *[np.asarray(a) for a in leaves], devices=len(jax.devices()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
