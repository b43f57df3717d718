"""Claim 5: dropout shrinks the weights, like L2 regularisation.

**Linear part (the precise claim).** Srivastava et al. (2014, section 9.1): linear regression
with input dropout at keep ``p`` has the expected loss ``||y - pXw||^2 + p(1-p)||Gw||^2``,
``G = diag(X^T X)^(1/2)``. Under the inverted convention used here (``w~ = p w``) it is

    ||y - X w - b||^2 + (1 - p) / p * w^T diag(X^T X) w,

ridge with a *data-dependent* penalty, minimised (centred data) by the **data-dependent
ridge** ``w_dd = (X^T X + (1-p)/p diag(X^T X))^-1 X^T y``. On standardised features
``diag(X^T X) = n I`` and this is plain ridge, so the data are made heterogeneous: the
standardised diabetes features (scikit-learn, 442 x 10) times fixed per-feature scales
``10^u``, ``u`` evenly spread over ``decades`` and assigned by a fixed permutation. The
**plain ridge of equal total strength** penalises ``lambda ||w||^2`` with
``lambda = (1-p)/p * trace(X^T X) / d``: the same trace of the penalty matrix, spread evenly.
Full-batch SGD (momentum, cosine-decayed lr, a fresh input mask per example and step) is
compared with both closed forms; plain SGD (keep 1) against least squares checks that SGD
converges. The seeds vary the initialisation and the mask stream; the data are fixed.

**Logistic part.** Wager et al. (2013): dropout on logistic regression is, to second order,
the penalty ``(1-p)/(2p) * sum_j w_j^2 sum_i p_i(1-p_i) x_ij^2`` (``p_i`` the model's
probability, a function of ``w``): L2 after scaling by the diagonal Fisher information. The
labels are ``y > mean``; the features as above. The plain-L2 counterpart penalises
``lambda/2 ||w||^2`` with ``lambda`` the mean over ``j`` of the Fisher-scaled coefficients
``(1-p)/p * sum_i p_i(1-p_i) x_ij^2`` at the Wager solution.

**MLP part.** Digits MLPs against the drop rate and against the L2 strength, under SGD with
momentum and under Adam. Three measures of the test-time weights and function: the Frobenius
norm of all kernels, the product of the kernels' spectral norms (a bound on the net's
Lipschitz constant), and the test logit norm: the mean over test examples of the L2 norm of
the class-centred logits (the softmax ignores a shift shared by all classes; for the MC
average, the class-centred log of its mean probabilities, floored at float32's smallest
normal number where a probability underflows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import numpy as np
from scipy import optimize

from dropstudy.data import Dataset, diabetes
from dropstudy.metrics import accuracy, nll
from dropstudy.models import MLP
from dropstudy.predict import weight_scaling
from dropstudy.train import TrainConfig, seed_keys, take, train_seeds
from dropstudy.validate import DropstudyError

from .common import (
    ExperimentConfig,
    cell,
    ci,
    flips,
)
from .evaluate import predict, seed_key
from .stats import direction, equivalence

NAME = "shrinkage"
CLAIM = "Dropout shrinks the weights, like L2 regularisation."
MEASURES = {
    "frob": "Frobenius norm of all kernels",
    "spec": "product of the kernels' spectral norms",
    "logit": "test logit norm (class-centred)",
}
OPT_NAMES = {"sgd": "SGD", "adam": "Adam"}
MLP_PREDICTED = ("logit",)  # measures of the net's prediction: by weight scaling and by MC


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Sizes and hyperparameters of the shrinkage experiment."""

    seeds: int = 5
    width: int = 64
    rates: tuple[float, ...] = (0.0, 0.5, 0.8)  # must hold 0.0 and test_rate
    test_rate: float = 0.5  # the drop rate the MLP tests compare with the plain net
    l2s: tuple[float, ...] = (1e-3, 1e-2)
    adam: TrainConfig = TrainConfig(steps=3000, batch_size=128, lr=1e-3)
    sgd: TrainConfig = TrainConfig(
        steps=3000, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9
    )
    mlp_optimizers: tuple[str, ...] = ("sgd", "adam")  # which of the two train the MLPs
    keeps: tuple[float, ...] = (0.5, 0.8)  # input keep probabilities of the linear models
    decades: float = 1.5  # spread of the per-feature scales (orders of magnitude)
    scale_seed: int = 0  # the permutation that assigns the scales to the features
    linear: TrainConfig = TrainConfig(
        steps=8000,
        batch_size=0,
        optimizer="sgd",
        lr=0.025,
        momentum=0.9,
        task="regression",
        schedule="cosine",
    )
    logistic: TrainConfig | None = TrainConfig(  # None: no logistic part
        steps=8000, batch_size=0, optimizer="sgd", lr=0.3, momentum=0.9, schedule="cosine"
    )
    agree: float = 0.05  # equivalence margin: relative distance to the predicted solution
    apart: float = 0.20  # relative distance from the plain ridge the claim's refinement needs
    # The claim is the tutorial's, about its networks (hidden dropout, SGD with momentum):
    # the weights' squared norm shrinks. The linear data-dependent ridge is the mechanism in
    # linear models (exploratory).
    primary: str = "mlp_sgd_frob"
    QUICK: ClassVar[dict] = {
        "seeds": 2,
        "width": 16,
        "rates": (0.0, 0.5),
        "l2s": (),
        "sgd": sgd.replace(steps=300),
        "mlp_optimizers": ("sgd",),  # every cell is a compile: the quick run keeps four
        "keeps": (0.5,),
        "linear": linear.replace(steps=800),
        "logistic": None,
    }

    def check(self) -> None:
        super().check()
        if 0.0 not in self.rates or self.test_rate not in self.rates:
            raise DropstudyError(f"rates {self.rates} must hold 0.0 and test_rate {self.test_rate}")
        if not set(self.mlp_optimizers) <= {"sgd", "adam"}:
            raise DropstudyError(f"mlp_optimizers {self.mlp_optimizers} must name sgd and/or adam")

    def optimizers(self) -> dict[str, TrainConfig]:
        """The MLPs' training configurations by optimiser name."""
        both = {"sgd": self.sgd, "adam": self.adam}
        return {o: both[o] for o in self.mlp_optimizers}


# ---------------------------------------------------------------------------- linear part


def heterogeneous_diabetes(decades: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised diabetes features times fixed scales: ``x (442, 10)`` centred, ``y (442,)``
    centred, ``scales (10,)`` = ``10^u``, ``u`` evenly spaced on ``[-decades/2, decades/2]``,
    permuted by ``seed`` (so the scale is unrelated to the feature's index)."""
    x, y = diabetes()
    u = np.linspace(-decades / 2, decades / 2, x.shape[1])
    scales = 10.0 ** u[np.random.default_rng(seed).permutation(x.shape[1])]
    return x * scales, y, scales


def dd_ridge(x: np.ndarray, y: np.ndarray, keep: float) -> np.ndarray:
    """The data-dependent ridge ``(X^T X + (1-p)/p diag(X^T X))^-1 X^T y``: ``(d,)``."""
    xtx = x.T @ x
    return np.linalg.solve(xtx + (1 - keep) / keep * np.diag(np.diag(xtx)), x.T @ y)


def equal_trace_lambda(x: np.ndarray, keep: float) -> float:
    """``(1-p)/p * trace(X^T X) / d``: the plain ridge whose penalty matrix has the trace of
    the data-dependent one."""
    return (1 - keep) / keep * float(np.trace(x.T @ x)) / x.shape[1]


def plain_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """``(X^T X + lam I)^-1 X^T y``: ``(d,)``; ``lam = 0`` is least squares."""
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def rel(w: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Relative L2 distance ``||w - ref|| / ||ref||`` of each row of ``w (S, d)``: ``(S,)``."""
    return np.linalg.norm(w - ref, axis=-1) / np.linalg.norm(ref)


def linear_cell(keep: float, decades: float, scale_seed: int, train: TrainConfig, seeds: list):
    """SGD with input dropout at ``keep`` (keep 1: plain SGD) on the heterogeneous data:
    per seed, the coefficients ``w (S, d)`` and their training MSE."""
    x, y, _ = heterogeneous_diabetes(decades, scale_seed)
    model = MLP(hidden=(), n_out=1, input_rate=1 - keep)
    v, _ = train_seeds(
        model, seed_keys(seeds), x.astype(np.float32), y.astype(np.float32)[:, None], train,
        seeds=seeds,
    )  # fmt: skip
    p = v["params"]["out"]
    w = np.asarray(p["kernel"][:, :, 0], np.float64)
    b = np.asarray(p["bias"][:, 0], np.float64)
    mse = np.mean((x @ w.T + b - y[:, None]) ** 2, axis=0)
    return {"w": w.tolist(), "train_mse": mse.tolist()}


def wager_logistic(x: np.ndarray, y: np.ndarray, keep: float, lam: float | None = None):
    """Logistic regression with Wager et al.'s dropout penalty at ``keep`` (or, with ``lam``,
    with the plain penalty ``lam/2 ||w||^2``); the intercept is not penalised. Minimises the
    summed NLL plus penalty by L-BFGS with the exact gradient. Returns ``(w (d,), b)``."""
    c = (1 - keep) / (2 * keep)
    x2 = x * x

    def f(theta):
        w, b = theta[:-1], theta[-1]
        z = x @ w + b
        p = 1 / (1 + np.exp(-z))
        value = np.sum(np.logaddexp(0, z) - y * z)
        grad = np.r_[x.T @ (p - y), np.sum(p - y)]
        if lam is None:
            a, q = p * (1 - p), x2 @ (w * w)  # Bernoulli variance; Fisher-weighted ||w||^2
            da = a * (1 - 2 * p)  # d a / d z
            value += c * np.sum(a * q)
            grad += c * np.r_[x.T @ (da * q) + 2 * w * (x2.T @ a), np.sum(da * q)]
        else:
            value += 0.5 * lam * np.sum(w * w)
            grad[:-1] += lam * w
        return value, grad

    opts = {"maxiter": 20000, "gtol": 1e-10, "ftol": 1e-15}
    r = optimize.minimize(f, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options=opts)
    if not r.success:
        raise DropstudyError(f"the logistic closed form did not converge: {r.message}")
    return r.x[:-1], float(r.x[-1])


def fisher_lambda(x: np.ndarray, w: np.ndarray, b: float, keep: float) -> float:
    """Mean over features of Wager's per-feature L2 coefficient at ``(w, b)``."""
    p = 1 / (1 + np.exp(-(x @ w + b)))
    return (1 - keep) / keep * float(np.mean((x * x).T @ (p * (1 - p))))


def logistic_cell(keep: float, decades: float, scale_seed: int, train: TrainConfig, seeds: list):
    """SGD with input dropout at ``keep`` on logistic regression (two-class softmax, whose
    logit difference is a logistic regression with ``w = w_1 - w_0``): ``w (S, d)``, and
    the training accuracy and NLL of the test-time weights."""
    x, y, _ = heterogeneous_diabetes(decades, scale_seed)
    labels = (y > 0).astype(np.int32)
    model = MLP(hidden=(), n_out=2, input_rate=1 - keep)
    v, _ = train_seeds(model, seed_keys(seeds), x.astype(np.float32), labels, train, seeds=seeds)
    p = v["params"]["out"]
    k, bias = np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64)
    w, b = k[:, :, 1] - k[:, :, 0], bias[:, 1] - bias[:, 0]
    prob = 1 / (1 + np.exp(-(x @ w.T + b)))  # (N, S)
    probs = [np.stack([1 - prob[:, s], prob[:, s]], 1) for s in range(len(seeds))]
    return {
        "w": w.tolist(),
        "train_acc": [accuracy(q, labels) for q in probs],
        "train_nll": [nll(q, labels) for q in probs],
    }


# ------------------------------------------------------------------------------- MLP part


def kernel_norm(params) -> float:
    """Frobenius norm of all weight matrices (biases excluded)."""
    return float(np.sqrt(sum(np.sum(np.square(v["kernel"])) for v in params.values())))


def spectral_product(params) -> float:
    """Product over layers of the largest singular value of each kernel ``(fan_in, fan_out)``."""
    return float(np.prod([np.linalg.norm(np.asarray(v["kernel"]), 2) for v in params.values()]))


def logit_norm(log_probs) -> float:
    """Mean over examples of the L2 norm of ``log_probs (B, C)`` centred over classes: the
    centred logits (for an MC average, the centred mean of the subnetworks' logits)."""
    lp = np.asarray(log_probs, np.float64)
    return float(np.mean(np.linalg.norm(lp - lp.mean(1, keepdims=True), axis=1)))


def norm_cell(
    ds: Dataset, rate: float, width: int, train: TrainConfig, seeds: list, stream: tuple[str, ...]
) -> list:
    """Per seed, a digits MLP at drop ``rate`` (and ``train.l2``): its weight measures, test
    logit norm, test accuracy/NLL by weight scaling and (dropout nets) by the MC average,
    and train accuracy/NLL by weight scaling."""
    model = MLP(hidden=(width, width), n_out=ds.n_classes, rate=rate)
    v, _ = train_seeds(model, seed_keys(seeds), ds.x_train, ds.y_train, train, seeds=seeds)
    out = []
    for i, s in enumerate(seeds):
        vi = take(v, i)
        p = vi["params"]
        if rate == 0:  # every mask is all ones: the MC average is the net itself
            ws = weight_scaling(model, vi, ds.x_test)
            preds = {"ws": ws, "mc": ws}
        else:
            preds = predict(model, vi, ds.x_test, seed_key((*stream, "mc"), s))
        row = {"frob": kernel_norm(p), "spec": spectral_product(p)}
        for name, a in preds.items():
            if name == "ws" or rate == 0:  # one prediction: its log-softmax, exact and finite
                lp = a.log_probs("geometric")
            else:  # the MC average's mean probabilities, floored where float32 underflows
                lp = np.log(np.maximum(np.asarray(a.arithmetic), np.finfo(np.float32).tiny))
            row[f"logit_{name}"] = logit_norm(lp)
            row[f"test_acc_{name}"] = accuracy(a.arithmetic, ds.y_test)
            row[f"test_nll_{name}"] = nll(a.arithmetic, ds.y_test)
        train_probs = jax.nn.softmax(model.apply(vi, ds.x_train), axis=-1)  # weight scaling
        row["train_acc"] = accuracy(train_probs, ds.y_train)
        row["train_nll"] = nll(train_probs, ds.y_train)
        out.append(row)
    return out


# ------------------------------------------------------------------------------ the study


def plan(cfg: Config, ds: Dataset) -> dict:
    seeds = list(range(cfg.seeds))
    cells = {}
    for o, tc in cfg.optimizers().items():
        for r in cfg.rates:
            label = f"{o}_rate={r}"
            cells[label] = cell(
                norm_cell, ds=ds, rate=r, width=cfg.width, train=tc, seeds=seeds,
                stream=(NAME, label),
            )  # fmt: skip
        for l2 in cfg.l2s:
            label = f"{o}_l2={l2}"
            cells[label] = cell(
                norm_cell, ds=ds, rate=0.0, width=cfg.width, train=tc.replace(l2=l2),
                seeds=seeds, stream=(NAME, label),
            )  # fmt: skip
    data = {"decades": cfg.decades, "scale_seed": cfg.scale_seed, "seeds": seeds}
    for k in (*cfg.keeps, 1.0):  # keep 1: plain SGD, the convergence check
        cells[f"linear_keep={k}"] = cell(linear_cell, keep=k, train=cfg.linear, **data)
        if cfg.logistic is not None:
            cells[f"logistic_keep={k}"] = cell(logistic_cell, keep=k, train=cfg.logistic, **data)
    return cells


def _linear(cfg: Config, raw: dict) -> tuple[dict, dict]:
    """Closed forms, distances and tests of the linear regressions."""
    x, y, scales = heterogeneous_diabetes(cfg.decades, cfg.scale_seed)
    mse = lambda w: float(np.mean((x @ w - y) ** 2))  # noqa: E731  (centred: no intercept)
    ols, plain = plain_ridge(x, y, 0.0), raw["linear_keep=1.0"]
    w_plain = np.asarray(plain["w"])
    out = {
        "scales": scales.tolist(),
        "ols": ols.tolist(),
        "sanity": {
            "rel": ci(rel(w_plain, ols)), "train_mse": ci(plain["train_mse"]), "mse": mse(ols),
        },
        "keeps": {},
    }  # fmt: skip
    tests = {
        "sanity_ols": equivalence(
            rel(w_plain, ols), cfg.agree, distance=True,
            what="relative L2 distance of plain SGD (keep 1) to least squares", predictor="-",
        )
    }  # fmt: skip
    for k in cfg.keeps:
        lin = raw[f"linear_keep={k}"]
        w, lam = np.asarray(lin["w"]), equal_trace_lambda(x, k)
        w_dd, w_pr = dd_ridge(x, y, k), plain_ridge(x, y, lam)
        d_dd, d_pr = rel(w, w_dd), rel(w, w_pr)
        # The plain ridge closest to the data-dependent one over a log grid of lambda: the
        # hardest plain-ridge alternative, not just the one of equal trace.
        lams = lam * np.logspace(-4, 4, 161)
        near = [float(rel(plain_ridge(x, y, v), w_dd)) for v in lams]
        best = int(np.argmin(near))
        w_near = plain_ridge(x, y, lams[best])
        closest = {"lambda": float(lams[best]), "dd_vs_closest": near[best],
                   "rel": ci(rel(w, w_near))}  # fmt: skip
        norm, norm_plain = np.linalg.norm(w, axis=1), np.linalg.norm(w_plain, axis=1)
        out["keeps"][str(k)] = {
            "lambda": lam,
            "rel_dd": ci(d_dd),
            "rel_pr": ci(d_pr),
            "dd_vs_pr": float(rel(w_pr, w_dd)),
            "closest": closest,
            "train_mse": ci(lin["train_mse"]),
            "mse_dd": mse(w_dd),
            "mse_pr": mse(w_pr),
            "norm": ci(norm),
            "norm_plain": ci(norm_plain),
            "coef": {"sgd": w.mean(0).tolist(), "dd": w_dd.tolist(), "pr": w_pr.tolist()},
        }
        # A linear model's MC average equals weight scaling exactly (the output is linear
        # in the mask): the learned coefficients are the prediction of either.
        what = f"SGD with input dropout (keep {k})"
        tests[f"ridge_dd_keep={k}"] = equivalence(
            d_dd,
            cfg.agree,
            predictor="ws",
            distance=True,
            what=f"relative L2 distance of {what} to the data-dependent ridge",
        )
        tests[f"ridge_pr_keep={k}"] = direction(
            d_pr - cfg.apart,
            predictor="ws",
            what=f"relative L2 distance of {what} from the plain ridge of equal trace, "
            f"minus {cfg.apart}",
        )
        tests[f"ridge_closest_keep={k}"] = direction(
            rel(w, w_near) - cfg.apart,
            predictor="ws",
            what=f"relative L2 distance of {what} from the closest plain ridge (any lambda), "
            f"minus {cfg.apart}",
        )
        tests[f"linear_shrink_keep={k}"] = direction(
            norm - norm_plain, positive_supports=False, predictor="ws",
            what=f"L2 norm of the linear coefficients, {what} minus plain SGD",
        )  # fmt: skip
    return out, tests


def _logistic(cfg: Config, raw: dict) -> tuple[dict, dict]:
    """Closed forms (Wager's penalty, plain L2), distances and tests of the logistic part."""
    x, y, _ = heterogeneous_diabetes(cfg.decades, cfg.scale_seed)
    labels = (y > 0).astype(np.float64)
    mle, _ = wager_logistic(x, labels, 1.0)
    plain = raw["logistic_keep=1.0"]
    g_plain = np.asarray(plain["w"])
    out = {
        "mle": mle.tolist(),
        "sanity": {"rel": ci(rel(g_plain, mle)), "train_acc": ci(plain["train_acc"]),
                   "train_nll": ci(plain["train_nll"])},
        "keeps": {},
    }  # fmt: skip
    tests = {
        "sanity_mle": equivalence(
            rel(g_plain, mle), cfg.agree, predictor="-", distance=True,
            what="relative L2 distance of plain logistic SGD (keep 1) to the MLE",
        )
    }  # fmt: skip
    for k in cfg.keeps:
        log = raw[f"logistic_keep={k}"]
        g = np.asarray(log["w"])
        g_wa, b_wa = wager_logistic(x, labels, k)
        lam = fisher_lambda(x, g_wa, b_wa, k)
        g_pr, _ = wager_logistic(x, labels, k, lam=lam)
        d_wa, d_pr = rel(g, g_wa), rel(g, g_pr)
        out["keeps"][str(k)] = {
            "lambda": lam,
            "rel_wager": ci(d_wa),
            "rel_pr": ci(d_pr),
            "wager_vs_pr": float(rel(g_pr, g_wa)),
            "train_acc": ci(log["train_acc"]),
            "train_nll": ci(log["train_nll"]),
            "coef": {"sgd": g.mean(0).tolist(), "wager": g_wa.tolist(), "pr": g_pr.tolist()},
        }
        what = f"logistic SGD with input dropout (keep {k})"
        tests[f"wager_keep={k}"] = equivalence(
            d_wa,
            cfg.agree,
            predictor="ws",
            distance=True,
            what=f"relative L2 distance of {what} to Wager's Fisher-scaled L2 solution",
        )
        tests[f"wager_pr_keep={k}"] = direction(
            d_pr - cfg.apart, predictor="ws",
            what=f"relative L2 distance of {what} from the plain L2 of equal mean strength, "
            f"minus {cfg.apart}",
        )  # fmt: skip
    return out, tests


def _mlp(cfg: Config, raw: dict) -> tuple[dict, dict]:
    """Per optimiser and net, intervals of every measure; tests of drop rate ``test_rate``
    minus plain for each measure (and predictor)."""
    out, tests = {}, {}
    for o in cfg.optimizers():
        nets = {k.removeprefix(f"{o}_"): v for k, v in raw.items() if k.startswith(f"{o}_")}
        out[o] = {
            net: {m: ci([row[m] for row in rows]) for m in rows[0]} for net, rows in nets.items()
        }
        plain, drop = nets["rate=0.0"], nets[f"rate={cfg.test_rate}"]
        for m, words in MEASURES.items():
            for pred in ("ws", "mc") if m in MLP_PREDICTED else ("ws",):
                key = f"{m}_{pred}" if m in MLP_PREDICTED else m
                name = f"mlp_{o}_{key}"
                tests[name] = direction(
                    [a[key] - b[key] for a, b in zip(drop, plain, strict=True)],
                    positive_supports=False,
                    what=f"{words}, drop rate {cfg.test_rate} minus plain, {OPT_NAMES[o]}",
                    # weight norms are no prediction: "-" (not weight scaling)
                    predictor=pred if m in MLP_PREDICTED else "-",
                )
    return out, tests


def summarise(cfg: Config, raw: dict) -> dict:
    lin, t_lin = _linear(cfg, raw)
    log, t_log = _logistic(cfg, raw) if cfg.logistic is not None else (None, {})
    mlp, t_mlp = _mlp(cfg, raw)
    tests = {**t_lin, **t_log, **t_mlp}
    if cfg.primary not in tests:
        raise DropstudyError(f"primary {cfg.primary!r} is not one of the tests {sorted(tests)}")
    pairs = [(f"mlp_{o}_{m}_ws", f"mlp_{o}_{m}_mc") for o in mlp for m in MLP_PREDICTED]
    return {
        "width": cfg.width,
        "test_rate": cfg.test_rate,
        "mlp": mlp,
        "linear": lin,
        "logistic": log,
        "tests": tests,
        "primary": cfg.primary,
        "findings": flips(tests, pairs),
    }
