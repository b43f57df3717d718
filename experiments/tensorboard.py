"""TensorBoard events of the tutorial replication's training curves (``--tensorboard``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from dropstudy.validate import DropstudyError


def tutorial_events(cfg, label: str, result: dict, logdir: Path) -> None:
    """Write TensorBoard events of one finished (or reused) cell, as the tutorial logs them.

    For each net and seed a run folder (``plain/seed0``, ``dropout/seed0``, ...) with the
    training loss at every step, train and test MSE at every snapshot, and weight and gradient
    histograms of every layer at every snapshot. A re-run replaces the folders. The PyTorch
    reference's cells keep no training curves: they write nothing.

    Args:
      cfg: the tutorial's configuration; its first rate is the plain net's.
      label: the cell's label, ``tutorial_rate=RATE`` for a cell with curves.
      result: the cell's result; its ``detail`` holds each seed's curves.
      logdir: the folder to write the run folders into.

    Raises:
      DropstudyError: if tensorboardX (the optional extra) is not installed.
    """
    if not label.startswith("tutorial_rate="):
        return  # the PyTorch reference's cells keep no training curves
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise DropstudyError(
            "--tensorboard needs the optional extra: pip install -e '.[tensorboard]'"
        ) from None
    rate = float(label.removeprefix("tutorial_rate="))
    net = "plain" if rate == cfg.rates[0] else "dropout"
    for seed, d in result["detail"].items():
        run = Path(logdir) / net / f"seed{seed}"
        shutil.rmtree(run, ignore_errors=True)  # replace, never append
        with SummaryWriter(str(run)) as w:
            for step, value in enumerate(d["loss"], 1):
                w.add_scalar("loss/train_dropout_active", value, step)
            for snap in d["snapshots"]:
                w.add_scalar("mse/train_weight_scaling", snap["train_mse"], snap["step"])
                w.add_scalar("mse/test_weight_scaling", snap["test_mse"], snap["step"])
                for name, h in snap["hist"].items():
                    layer, kind = name.split("/")
                    edges = np.asarray(h["edges"])
                    counts = np.asarray(h["counts"], dtype=float)
                    centers = 0.5 * (edges[1:] + edges[:-1])
                    w.add_histogram_raw(
                        f"{'weights' if kind == 'weight' else 'gradients'}/{layer}",
                        min=float(edges[0]),
                        max=float(edges[-1]),
                        num=float(counts.sum()),
                        sum=float((counts * centers).sum()),
                        sum_squares=float((counts * centers**2).sum()),
                        bucket_limits=edges[1:].tolist(),
                        bucket_counts=counts.tolist(),
                        global_step=snap["step"],
                    )


WRITERS = {"tutorial": tutorial_events}  # experiment -> its writer, called per cell
