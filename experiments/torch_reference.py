"""The tutorial's own PyTorch code, run on the replication's data as its reference."""

from __future__ import annotations

import numpy as np

from dropstudy.train import TrainConfig
from dropstudy.validate import DropstudyError

from .tutorial_task import fit_measures, rough_grid, tutorial_sets


def torch_reference_cell(
    rate: float, train: TrainConfig, seeds: list[int], k: int, slope: float, rough_points: int
) -> dict:
    """The tutorial's own PyTorch code on the same data sets as :func:`tutorial_cell`.

    ``nn.Sequential`` of Linear-ReLU-Dropout blocks (PyTorch's default initialisation,
    ``torch.manual_seed(seed)``), SGD with momentum, full batch, MSE; evaluated in eval mode
    (weight scaling) and, with dropout, by the mean of ``k`` training-mode passes. Those draw a
    mask per *example*, so the MC curve's points carry independent noise and its roughness
    measures that noise: it is left out (dropstudy's MC shares each subnetwork's mask across the
    batch).

    Args:
      rate: the drop rate of every hidden layer; 0 for the plain net.
      train: the training configuration (``steps``, ``lr``, ``momentum``).
      seeds: the seeds, each with its own data set (:func:`.tutorial_task.tutorial_sets`).
      k: training-mode passes in the MC average.
      slope: the true line's slope.
      rough_points: points of the grid the risk and roughness are measured on.

    Returns:
      ``{"diverged": [seeds], "ws": measures, "mc": measures}`` (``mc`` only with dropout),
      where ``measures`` maps each of ``train_mse``, ``test_mse``, ``risk`` and ``roughness``
      (not for ``mc``) to its per-seed values (:func:`.tutorial_task.fit_measures`), None for a
      seed whose training diverged.

    Raises:
      DropstudyError: if PyTorch (the reference extra) is not installed.
    """
    try:
        import torch
    except ImportError:
        raise DropstudyError(
            "the tutorial experiment checks its replication against the "
            "tutorial's PyTorch code: install the reference extra, "
            "pip install -e '.[reference]' (make study and make test do)"
        ) from None
    torch.set_num_threads(1)  # deterministic and cheap: the nets are tiny
    sets, _, _ = tutorial_sets(seeds, slope)
    predictors = ("ws", "mc") if rate > 0 else ("ws",)
    out = {"diverged": []}
    out.update(
        {p: {"train_mse": [], "test_mse": [], "risk": [], "roughness": []} for p in predictors}
    )
    if "mc" in predictors:
        del out["mc"]["roughness"]
    width = 200
    for seed, d in zip(seeds, sets):
        torch.manual_seed(seed)
        layers = []
        for fan_in in (1, width, width):
            layers += [torch.nn.Linear(fan_in, width), torch.nn.ReLU(), torch.nn.Dropout(rate)]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
        opt = torch.optim.SGD(net.parameters(), lr=train.lr, momentum=train.momentum)
        xt, yt = torch.tensor(d.x_train), torch.tensor(d.y_train)
        ok = True
        for _ in range(train.steps):
            loss = torch.nn.functional.mse_loss(net(xt), yt)
            if not torch.isfinite(loss):
                ok = False
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        if not ok:
            out["diverged"].append(seed)
            for p in predictors:
                for name in out[p]:
                    out[p][name].append(None)
            continue
        n = len(d.x_train)
        x = torch.from_numpy(np.concatenate([d.x_train, d.x_test, rough_grid(rough_points)]))
        with torch.no_grad():
            net.eval()
            outs = {"ws": net(x).numpy()}
            if "mc" in predictors:
                net.train()
                outs["mc"] = torch.stack([net(x) for _ in range(k)]).mean(0).numpy()
        for p in predictors:
            m = fit_measures(outs[p][:n], outs[p][n : 2 * n], outs[p][2 * n :], d, slope)
            for name in out[p]:
                out[p][name].append(m[name])
    return out
