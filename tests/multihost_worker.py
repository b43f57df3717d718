"""One process of a multi-process seed sweep (run by tests/test_multihost.py).

    python tests/multihost_worker.py --out FILE.npz [--coordinator HOST:PORT
        --num-processes N --process-id I] [--local-devices D] [--seeds S]

With ``--coordinator`` the process joins ``jax.distributed`` (CPU collectives over gloo);
the mesh then spans every process's devices and ``train_seeds`` splits the seeds over all
of them, and the MC and exact predictors deal their subnetworks out over it. Process 0
writes the gathered parameters, losses and averages to ``--out``. Without it, one process
does the same on its ``--local-devices`` devices, for comparison. Every process needs the
same checkout and environment, and passes the same seeds and data.
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
    ap.add_argument("--seeds", type=int, default=3)  # odd: padded to the device count
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

    from dropstudy import masks as M
    from dropstudy import predict as P
    from dropstudy import sharding
    from dropstudy.data import digits
    from dropstudy.models import MLP
    from dropstudy.train import TrainConfig, seed_keys, train_seeds

    d = digits()
    model = MLP(hidden=(16, 16), rate=0.5)
    cfg = TrainConfig(steps=10, batch_size=64, lr=1e-2)
    mesh = sharding.mesh()
    variables, hist = train_seeds(
        model, seed_keys(range(args.seeds)), d.x_train, d.y_train, cfg, mesh=mesh
    )
    # The predictors deal their subnetworks out over the same mesh.
    v0 = jax.tree.map(lambda a: a[0], sharding.gather(variables))
    x, key = d.x_test[:40], jax.random.key(7)
    small = MLP(hidden=(6, 5), rate=0.5)  # 2^11 subnetworks: the exact paths
    vs, _ = M.init(small, jax.random.key(1), x)
    averages = [
        P.mc(model, v0, x, key=key, k=63, mesh=mesh, method="gathered"),
        P.mc(model, v0, x, key=key, k=63, mesh=mesh, method="dense", chunk=8),
        P.exact(small, vs, x, mesh=mesh),
        P.exact(small, vs, x, mesh=mesh, method="generic", chunk=128),
    ]
    sums = [a for avg in averages for a in (avg.arithmetic, avg.log_geometric)]
    leaves = sharding.gather(jax.tree.leaves((variables, hist.loss)) + sums)
    if jax.process_index() == 0:
        np.savez(args.out, *[np.asarray(a) for a in leaves], devices=len(jax.devices()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
