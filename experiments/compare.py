"""``dropstudy compare``: one dropout net, evaluated by weight scaling, MC and exact averaging.

:func:`compare` trains (or loads) an MLP, evaluates every predictor on the test split and
returns a JSON-ready dict; :func:`format_table` prints it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import jax
import numpy as np

from dropstudy import checkpoint, predict
from dropstudy import masks as M
from dropstudy import progress as PG
from dropstudy.average import MEANS
from dropstudy.data import Dataset, check_dataset, digits
from dropstudy.io import versions
from dropstudy.metrics import gaps, scores
from dropstudy.models import MLP, model_config
from dropstudy.train import TrainConfig, train
from dropstudy.train import progress as train_progress
from dropstudy.validate import DropstudyError, check_positive_int


@dataclass(frozen=True)
class CompareConfig:
    """Everything ``dropstudy compare`` does, as one object (JSON-serialisable)."""

    hidden: tuple[int, ...] = (10, 10)
    activation: str = "relu"
    rate: float | tuple[float, ...] = 0.5  # one per hidden layer, or one for all
    input_rate: float = 0.0
    convention: str = "inverted"
    samples: tuple[int, ...] = (1, 10, 100, 1000)
    seed: int | None = None  # None: 0, or a loaded checkpoint's saved seed
    steps: int = 4000
    batch_size: int = 128
    lr: float = 3e-3
    exact: bool = True
    max_units: int = M.MAX_EXACT_UNITS
    dataset: str = "digits"
    # Two classes (a, b) of the data set: a binary task, b as label 1, a net with one logit.
    pair: tuple[int, int] | None = None

    @property
    def task(self) -> str:
        """``"binary"`` with a ``pair``, else ``"classification"``."""
        return "classification" if self.pair is None else "binary"

    def model(self, n_out: int) -> MLP:
        """The MLP to train, with ``n_out`` classes (one logit for a ``pair``).

        Args:
          n_out: the number of classes.

        Returns:
          The validated :class:`~dropstudy.models.MLP` of this configuration.
        """
        return MLP(
            hidden=tuple(self.hidden),
            n_out=n_out if self.pair is None else 1,
            activation=self.activation,
            rate=self.rate,
            input_rate=self.input_rate,
            convention=self.convention,
        ).validate()

    def train_config(self) -> TrainConfig:
        """How to train the MLP.

        Returns:
          The validated ``TrainConfig`` of ``steps``, ``batch_size`` and ``lr`` (Adam by
          default), for the configuration's task.
        """
        return TrainConfig(
            steps=self.steps, batch_size=self.batch_size, lr=self.lr, task=self.task
        ).validate()


def class_pair(data: Dataset, pair) -> Dataset:
    """The examples of two classes of ``data`` as a binary task: ``pair[1]`` is label 1.

    Args:
      data: a classification data set.
      pair: two distinct class indices ``(a, b)`` of it.

    Returns:
      The :class:`~dropstudy.data.Dataset` of those examples, named ``"<name> a-vs-b"``,
      with labels 0 (class ``a``) and 1 (class ``b``) and ``n_classes`` 2.

    Raises:
      DropstudyError: if ``pair`` is not two distinct classes of ``data``.
    """
    ok = (
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and all(isinstance(c, int | np.integer) and 0 <= c < data.n_classes for c in pair)
        and pair[0] != pair[1]
    )
    if not ok:
        raise DropstudyError(
            f"pair must be two distinct classes of {data.name} (0 to {data.n_classes - 1}), "
            f"got {pair!r}; e.g. --pair 1,8"
        )
    a, b = (int(c) for c in pair)
    return replace(data.classes(a, b), name=f"{data.name} {a}-vs-{b}")


# The most droppable units any exact average enumerates (2^31 subnetworks: uint32 indices).
MAX_ENUMERABLE = 31


def predictor_probs(
    model, variables, x, samples, key, do_exact, max_units, progress: bool = False, task=None
) -> dict[str, np.ndarray]:
    """Probabilities of every predictor, by name, on the same weights.

    All through :func:`dropstudy.predict.predict`: ``weight_scaling``, ``mc_{mean}_{K}`` for
    each K, and ``exact_{mean}``, with mean arithmetic or geometric.

    Args:
      model: the MLP.
      variables: its variables dict.
      x: inputs ``(B, ...)``.
      samples: the Monte-Carlo sample counts K.
      key: the Monte-Carlo key.
      do_exact: whether to add the exact average over all subnetworks.
      max_units: the most droppable units the exact average enumerates.
      progress: a bar over the subnetworks evaluated, advanced as each predictor finishes.
      task: the predictors' task (``None``: classification; ``"binary"`` for one logit).

    Returns:
      ``{name: probabilities (B, C)}`` (``C = 2`` for binary).
    """
    runs = [("weight_scaling", {}, "", 1)]
    runs += [("mc", {"key": key, "k": k}, f"_{k}", k) for k in samples]
    if do_exact:
        n = M.mask_spec(model, x).n_droppable
        runs.append(("exact", {"max_units": max_units}, "", 2**n))
    from tqdm.auto import tqdm

    out = {}
    total = sum(r[3] for r in runs)
    # No estimate of the time left: the first predictors run few subnetworks at a speed set by
    # compiling, so a rate over subnetworks would first promise hundreds of hours.
    fmt = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} subnetworks [{elapsed}{postfix}]"
    with tqdm(
        total=total, desc="evaluating", disable=not progress, leave=False, bar_format=fmt
    ) as bar:
        for name, options, suffix, count in runs:
            bar.set_postfix_str(f"{name}{suffix}")
            avg = predict.predict(name, model, variables, x, task=task, **options)
            bar.update(count)
            if avg.count == 1 and name == "weight_scaling":
                out[name] = np.asarray(avg.probs())
                continue
            for mean in MEANS:
                out[f"{name}_{mean}{suffix}"] = np.asarray(avg.probs(mean))
    return out


def check_bound(cfg: CompareConfig, spec: M.MaskSpec, n_test: int) -> None:
    """Refuse, before any training, an average the predictors would refuse after it: more
    subnetwork-examples than :data:`dropstudy.progress.MAX_WORK`, or a K past the stream's.

    Args:
      cfg: what to do.
      spec: the net's mask layout.
      n_test: test examples.

    Raises:
      DropstudyError: naming the flag to change.
    """
    bound = f"the bound of {PG.MAX_WORK:.3g} subnetwork-examples (dropstudy.progress.MAX_WORK)"
    for k in cfg.samples:
        if k > predict.MAX_K or k * n_test > PG.MAX_WORK:
            raise DropstudyError(
                f"--samples {k}: {k:,} subnetworks x {n_test:,} test examples is past "
                f"{bound}, or K past {predict.MAX_K:,}: use a smaller K"
            )
    n = spec.n_droppable
    if cfg.exact and n <= cfg.max_units and 2**n * n_test > PG.MAX_WORK:
        raise DropstudyError(
            f"the exact average: 2^{n} subnetworks x {n_test:,} test examples is past "
            f"{bound}: pass --no-exact, or fewer hidden units"
        )


def compare(
    cfg: CompareConfig,
    data: Dataset | None = None,
    checkpoint_dir=None,
    save_dir=None,
    progress: bool = False,
) -> dict:
    """Train (or load) one net and score every predictor; see the module docstring.

    With ``checkpoint_dir`` the saved model is evaluated, with the MC seed it was saved with
    unless ``cfg.seed`` is given; the result's ``config`` then describes the loaded model and its
    training. The exact average is refused before any training when the net has too many units
    to enumerate.

    Args:
      cfg: what to do.
      data: a classification data set named ``cfg.dataset`` (default: digits, the only one
        that needs no loading).
      checkpoint_dir: a folder with a saved model to evaluate instead of training one.
      save_dir: a folder to save the trained model into.
      progress: show training steps and then the predictors on stderr.

    Returns:
      A JSON-ready dict: ``config`` (seed, samples, model, training, reference, ...),
      ``predictors`` (each predictor's scores on the test split), ``gaps`` (each predictor's
      gaps to the exact arithmetic and geometric means, else to the largest-K MC arithmetic
      mean), ``timing_s`` and ``versions``.

    Raises:
      DropstudyError: if a K or ``max_units`` is not a positive integer, ``data`` is missing
        (for a data set other than digits) or is not the one ``cfg.dataset`` names, the data
        set is not for classification, or the exact average asks to enumerate more than
        ``max_units`` units.
    """
    for k in cfg.samples:
        check_positive_int("samples (K)", k)
    check_positive_int("max_units", cfg.max_units)
    if data is None:
        if cfg.dataset != "digits":
            raise DropstudyError(
                f"CompareConfig(dataset={cfg.dataset!r}) needs its data: pass "
                f"data=load_mnist(DIR, {cfg.dataset!r}) (only digits ships with scikit-learn)"
            )
        data = digits()
    elif data.name != cfg.dataset:
        raise DropstudyError(
            f"data is {data.name!r} but CompareConfig(dataset={cfg.dataset!r}): set the "
            "config's dataset to the data's name, so the result records what was evaluated"
        )
    data = check_dataset(data)
    if data.task != "classification":
        raise DropstudyError("compare needs a classification data set")
    if cfg.pair is not None:
        data = class_pair(data, cfg.pair)
    t0 = time.perf_counter()
    if checkpoint_dir is not None:
        model, variables, ck = checkpoint.load(checkpoint_dir)
        saved_pair = ck.get("extra", {}).get("pair")
        given = None if cfg.pair is None else [int(c) for c in cfg.pair]
        if saved_pair != given:
            trained = (
                f"on the pair {saved_pair[0]},{saved_pair[1]} (pass --pair "
                f"{saved_pair[0]},{saved_pair[1]})"
                if saved_pair
                else "on all the classes (leave --pair out)"
            )
            raise DropstudyError(
                f"{checkpoint_dir}: the checkpoint was trained {trained}, not "
                f"{'on all the classes' if given is None else f'on the pair {given[0]},{given[1]}'}"
            )
        checkpoint.check_compatible(
            ck,
            model,
            data.x_train.shape[1],
            1 if cfg.pair else data.n_classes,
            str(checkpoint_dir),
        )
        saved_seed = ck.get("extra", {}).get("seed", 0)
        seed = saved_seed if cfg.seed is None else cfg.seed
        train_info = {"loaded_from": str(checkpoint_dir), **ck.get("train", {})}
    else:
        model = cfg.model(data.n_classes)
        seed = 0 if cfg.seed is None else cfg.seed
    k_train, k_mc = jax.random.split(jax.random.key(seed))
    spec = M.mask_spec(model, data.x_test)
    check_bound(cfg, spec, len(data.x_test))
    if cfg.exact:  # refuse before spending time on training
        try:
            M.check_enumerable(spec, cfg.max_units)
        except DropstudyError as e:
            n = spec.n_droppable
            more = (
                f", or --max-units {n} (about {2 ** (n - 20):,} times the default 2^20 net's "
                "exact time)"
                if n <= MAX_ENUMERABLE
                else f"; no flag enumerates more than 2^{MAX_ENUMERABLE} subnetworks"
            )
            raise DropstudyError(
                f"{str(e).split('; use')[0]}; pass --no-exact (Monte-Carlo only){more}"
            ) from None
    if checkpoint_dir is None:
        tcfg = cfg.train_config()
        variables, hist = train_with_progress(model, k_train, data, tcfg, progress)
        train_info = {**tcfg.to_dict(), "final_loss": float(hist.loss[-1])}
    t_train = time.perf_counter() - t0
    if save_dir is not None:
        checkpoint.save(
            save_dir,
            model,
            variables,
            example_input=data.x_train,
            train=cfg.train_config().to_dict(),
            extra={
                "dataset": data.name,
                "seed": seed,
                "pair": None if cfg.pair is None else [int(c) for c in cfg.pair],
            },
        )
    t1 = time.perf_counter()
    probs = predictor_probs(
        model, variables, data.x_test, cfg.samples, k_mc, cfg.exact, cfg.max_units, progress,
        task=cfg.task,
    )  # fmt: skip
    t_eval = time.perf_counter() - t1
    preds = {name: scores(p, data.y_test) for name, p in probs.items()}
    reference = "exact_arithmetic" if cfg.exact else f"mc_arithmetic_{max(cfg.samples)}"
    refs = ["exact_arithmetic", "exact_geometric"] if cfg.exact else [reference]
    gap = {f"{a}__vs__{r}": gaps(probs[a], probs[r]) for r in refs for a in probs if a != r}
    conf = {
        "seed": seed,
        "samples": list(cfg.samples),
        "exact": cfg.exact,
        "max_units": cfg.max_units,
        "dataset": data.name,
        "pair": None if cfg.pair is None else list(cfg.pair),
        "model": model_config(model),
        "train": train_info,
        "loaded": checkpoint_dir is not None,
        "n_droppable": spec.n_droppable,
        "n_test": len(data.x_test),
        "reference": reference,
    }
    return {
        "config": conf,
        "predictors": preds,
        "gaps": gap,
        "timing_s": {"train": round(t_train, 3), "evaluate": round(t_eval, 3)},
        "versions": versions(),
    }


def train_with_progress(model, key, data: Dataset, cfg: TrainConfig, progress: bool):
    """:func:`dropstudy.train.train`, with a bar over its steps on stderr when ``progress``.

    With the bar the run is compiled in segments: bitwise the same result.

    Args:
      model: the model.
      key: the training key.
      data: the data set; trained on its training split.
      cfg: how to train.
      progress: show the bar.

    Returns:
      What :func:`dropstudy.train.train` returns: the variables and the history.
    """
    if not progress:
        return train(model, key, data.x_train, data.y_train, cfg)
    from tqdm.auto import tqdm

    with tqdm(total=cfg.steps, desc="training", unit="step", leave=False) as bar:
        with train_progress(lambda done, total: bar.update(done - bar.n)):
            return train(model, key, data.x_train, data.y_train, cfg)


def format_table(result: dict) -> str:
    """The comparison as a fixed-width text table.

    Gaps are against the config's reference (the exact arithmetic mean, else the largest-K MC
    arithmetic mean).

    Args:
      result: what :func:`compare` returned.

    Returns:
      A header line (data, model, timings), then one row per predictor: accuracy, NLL, ECE,
      Brier score, and the largest probability difference and mean KL against the reference.
    """
    c = result["config"]
    ref = c["reference"]
    short = "exact" if ref.startswith("exact") else f"MC K={ref.rsplit('_', 1)[1]}"
    rows = [
        f"{'predictor':<22}{'accuracy':>10}{'nll':>9}{'ece':>9}{'brier':>9}"
        f"{f'max|dp| vs {short}':>22}{f'KL vs {short}':>17}"
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
            f"{s['brier']:>9.4f}{gp:>22}{gk:>17}"
        )
    m = c["model"]
    t = result["timing_s"]
    how = "loaded" if c["loaded"] else f"train {t['train']:.1f} s"
    head = (
        f"{c['dataset']}: MLP {m['hidden']} {m['activation']}, drop rate {m['rate']} (input "
        f"{m['input_rate']}), {c['n_droppable']} droppable units, {c['n_test']} test examples; "
        f"{how}, evaluate {t['evaluate']:.1f} s; gaps against {ref}"
    )
    return head + "\n" + "\n".join(rows)
