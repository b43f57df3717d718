"""``dropstudy compare``: one dropout net, evaluated by weight scaling, MC and exact averaging.

:func:`compare` trains (or loads) an MLP, evaluates every predictor on the test split and
returns a JSON-ready dict; :func:`format_table` prints it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import jax
import numpy as np

from dropstudy import checkpoint, predict
from dropstudy import masks as M
from dropstudy.average import MEANS
from dropstudy.data import Dataset, check_dataset, digits
from dropstudy.io import versions
from dropstudy.metrics import gaps, scores
from dropstudy.models import MLP, model_config
from dropstudy.train import TrainConfig, train
from dropstudy.validate import DropstudyError, check_positive_int


@dataclass(frozen=True)
class CompareConfig:
    """Everything ``dropstudy compare`` does, as one object (JSON-serialisable)."""

    hidden: tuple[int, ...] = (10, 10)
    activation: str = "relu"
    rate: float = 0.5
    input_rate: float = 0.0
    convention: str = "inverted"
    samples: tuple[int, ...] = (1, 10, 100, 1000)
    seed: int = 0
    steps: int = 4000
    batch_size: int = 128
    lr: float = 3e-3
    exact: bool = True
    max_units: int = M.MAX_EXACT_UNITS
    dataset: str = "digits"

    def model(self, n_out: int) -> MLP:
        """The MLP to train, with ``n_out`` classes."""
        return MLP(
            hidden=tuple(self.hidden),
            n_out=n_out,
            activation=self.activation,
            rate=self.rate,
            input_rate=self.input_rate,
            convention=self.convention,
        ).validate()

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr).validate()


def predictor_probs(
    model, variables, x, samples, key, do_exact, max_units
) -> dict[str, np.ndarray]:
    """Probabilities ``(B, C)`` of every predictor, by name, on the same weights, all through
    :func:`dropstudy.predict.predict`: ``weight_scaling``, ``mc_{mean}_{K}`` for each K, and
    ``exact_{mean}``, with mean arithmetic or geometric."""
    runs = [("weight_scaling", {}, "")]
    runs += [("mc", {"key": key, "k": k}, f"_{k}") for k in samples]
    if do_exact:
        runs.append(("exact", {"max_units": max_units}, ""))
    out = {}
    for name, options, suffix in runs:
        avg = predict.predict(name, model, variables, x, **options)
        if avg.count == 1 and name == "weight_scaling":
            out[name] = np.asarray(avg.probs())
            continue
        for mean in MEANS:
            out[f"{name}_{mean}{suffix}"] = np.asarray(avg.probs(mean))
    return out


def compare(
    cfg: CompareConfig, data: Dataset | None = None, checkpoint_dir=None, save_dir=None
) -> dict:
    """Train (or load) one net and score every predictor; see the module docstring."""
    for k in cfg.samples:
        check_positive_int("samples (K)", k)
    data = check_dataset(data if data is not None else digits())
    if data.task != "classification":
        raise DropstudyError("compare needs a classification data set")
    key = jax.random.key(cfg.seed)
    k_train, k_mc = jax.random.split(key)
    t0 = time.perf_counter()
    if checkpoint_dir is not None:
        model, variables, ck = checkpoint.load(checkpoint_dir)
        checkpoint.check_compatible(
            ck, model, data.x_train.shape[1], data.n_classes, str(checkpoint_dir)
        )
        train_info = {"checkpoint": str(checkpoint_dir), **ck.get("train", {})}
    else:
        model = cfg.model(data.n_classes)
    spec = M.mask_spec(model, data.x_test)
    do_exact = cfg.exact
    if do_exact:  # refuse before spending time on training
        M.check_enumerable(spec, cfg.max_units)
    if checkpoint_dir is None:
        variables, hist = train(model, k_train, data.x_train, data.y_train, cfg.train_config())
        train_info = {**cfg.train_config().to_dict(), "final_loss": float(hist.loss[-1])}
    t_train = time.perf_counter() - t0
    if save_dir is not None:
        checkpoint.save(
            save_dir,
            model,
            variables,
            example_input=data.x_train,
            train=cfg.train_config().to_dict(),
            extra={"dataset": data.name, "seed": cfg.seed},
        )
    t1 = time.perf_counter()
    probs = predictor_probs(
        model, variables, data.x_test, cfg.samples, k_mc, do_exact, cfg.max_units
    )
    t_eval = time.perf_counter() - t1
    preds = {name: scores(p, data.y_test) for name, p in probs.items()}
    refs = (
        ["exact_arithmetic", "exact_geometric"]
        if do_exact
        else [f"mc_arithmetic_{max(cfg.samples)}"]
    )
    gap = {f"{a}__vs__{r}": gaps(probs[a], probs[r]) for r in refs for a in probs if a != r}
    conf = asdict(cfg) | {"hidden": list(cfg.hidden), "samples": list(cfg.samples)}
    return {
        "config": conf
        | {
            "model": model_config(model),
            "train": train_info,
            "n_droppable": spec.n_droppable,
            "dataset": data.name,
            "n_test": len(data.x_test),
        },
        "predictors": preds,
        "gaps": gap,
        "timing_s": {"train": round(t_train, 3), "evaluate": round(t_eval, 3)},
        "versions": versions(),
    }


def format_table(result: dict) -> str:
    """The comparison as a fixed-width text table."""
    ref = "exact_arithmetic"
    rows = [
        f"{'predictor':<22}{'accuracy':>10}{'nll':>9}{'ece':>9}{'brier':>9}"
        f"{'max|dp| vs exact':>18}{'KL vs exact':>13}"
    ]
    for name, s in result["predictors"].items():
        g = result["gaps"].get(f"{name}__vs__{ref}")
        if name == ref:
            gp, gk = "0", "0"
        elif g is None:
            gp = gk = "-"
        else:
            gp, gk = f"{g['max_abs_prob']:.2e}", f"{g['mean_kl']:.2e}"
        rows.append(
            f"{name:<22}{s['accuracy']:>10.4f}{s['nll']:>9.4f}{s['ece']:>9.4f}"
            f"{s['brier']:>9.4f}{gp:>18}{gk:>13}"
        )
    c = result["config"]
    head = (
        f"{c['dataset']}: MLP {c['model']['hidden']} {c['model']['activation']}, drop rate "
        f"{c['model']['rate']} (input {c['model']['input_rate']}), {c['n_droppable']} droppable "
        f"units, {c['n_test']} test examples; train {result['timing_s']['train']:.1f} s, "
        f"evaluate {result['timing_s']['evaluate']:.1f} s"
    )
    return head + "\n" + "\n".join(rows)
