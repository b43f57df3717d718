"""Data sets: scikit-learn's digits, MNIST-1D (generated), the tutorial's 1-D regression,
MNIST from local files.

Nothing is downloaded. Inputs are float32 arrays ``(N, d)``; labels int32 ``(N,)`` for
classification, float32 ``(N, 1)`` targets for regression.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .io import atomic_write
from .validate import DropstudyError, check_array, check_positive_int

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """A fixed train/test split.

    Attributes:
      name: the data set's name (with any subset or class selection).
      x_train: training inputs ``(N, d)``.
      y_train: training labels ``(N,)`` (classification) or targets ``(N, 1)`` (regression).
      x_test: test inputs ``(M, d)``.
      y_test: test labels ``(M,)`` (classification) or targets ``(M, 1)`` (regression).
      n_classes: the number of classes; 0 for regression.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def task(self) -> str:
        """``"classification"``, or ``"regression"`` when ``n_classes`` is 0."""
        return "classification" if self.n_classes else "regression"

    def digest(self) -> str:
        """SHA-256 of the split's arrays: the data's identity.

        Returns:
          The first 16 characters of the hex digest of the four arrays (dtype, shape and bytes).
        """
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
        return h.hexdigest()[:16]

    def classes(self, *labels: int) -> Dataset:
        """Only the examples of ``labels``, relabelled ``0 .. len(labels) - 1`` in the order given.

        ``digits().classes(3, 8)`` is the binary task 3 (label 0) vs 8 (label 1).

        Args:
          *labels: two or more distinct classes of this data set.

        Returns:
          The new :class:`Dataset`, named after the classes kept.

        Raises:
          DropstudyError: for a regression data set, fewer than 2 or repeated labels, or labels
            that are not classes of this data set.
        """
        if not self.n_classes:
            raise DropstudyError(f"{self.name} is a regression data set: it has no classes")
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise DropstudyError(f"classes() needs >= 2 distinct labels, got {labels}")
        bad = [c for c in labels if not (isinstance(c, int) and 0 <= c < self.n_classes)]
        if bad:
            raise DropstudyError(
                f"labels {bad} are not classes of {self.name} (0 .. {self.n_classes - 1})"
            )
        relabel = np.full(self.n_classes, -1, np.int32)
        relabel[list(labels)] = np.arange(len(labels), dtype=np.int32)
        tr, te = relabel[self.y_train] >= 0, relabel[self.y_test] >= 0
        return Dataset(
            f"{self.name}[{'v'.join(str(c) for c in labels)}]",
            self.x_train[tr],
            relabel[self.y_train[tr]],
            self.x_test[te],
            relabel[self.y_test[te]],
            len(labels),
        )

    def subset(self, n_train: int, seed: int = 0) -> Dataset:
        """The first ``n_train`` examples of a fixed permutation of the training set.

        The test set is kept whole.

        Args:
          n_train: the number of training examples to keep.
          seed: the permutation's seed.

        Returns:
          The new :class:`Dataset`.

        Raises:
          DropstudyError: if ``n_train`` is not a positive integer or exceeds the training set.
        """
        n_train = check_positive_int("n_train", n_train)
        if n_train > len(self.x_train):
            raise DropstudyError(
                f"n_train={n_train} exceeds the {len(self.x_train)} training examples "
                f"of {self.name}"
            )
        idx = np.random.default_rng(seed).permutation(len(self.x_train))[:n_train]
        return Dataset(
            f"{self.name}[:{n_train}]",
            self.x_train[idx],
            self.y_train[idx],
            self.x_test,
            self.y_test,
            self.n_classes,
        )


def digits() -> Dataset:
    """scikit-learn's 8x8 digits (1797 images), pixels scaled to [0, 1].

    Split: stratified, 20% test (360 images), ``random_state=0``: 1437 train / 360 test.

    Returns:
      The :class:`Dataset`: inputs ``(N, 64)`` float32, labels int32, 10 classes.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    xtr, xte, ytr, yte = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    return Dataset("digits", xtr, ytr, xte, yte, 10)


# The published defaults of mnist1d's generator (``get_dataset_args``), less its download
# address: 5,000 signals, 4,000 train / 1,000 test, 40 features, 10 classes.
MNIST1D_ARGS = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": (36, 60),
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}
MNIST1D_CACHE_FORMAT = 1


def cache_dir() -> Path:
    """Where generated data are cached.

    Returns:
      ``$DROPSTUDY_CACHE``, else ``$XDG_CACHE_HOME/dropstudy``, else ``~/.cache/dropstudy``
      (the user's cache folder, never the install folder).
    """
    if os.environ.get("DROPSTUDY_CACHE"):
        return Path(os.environ["DROPSTUDY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dropstudy"


def mnist1d(cache: bool = True, **overrides) -> Dataset:
    """MNIST-1D (Greydanus 2020): 1-D signals of 40 points made from ten digit templates.

    The signals are made by padding, shear, scale, translation and correlated and i.i.d.
    noise: ``(4000, 40)`` train, ``(1000, 40)`` test, 10 classes, inputs float32 standardised
    by the generator. Made offline by the ``mnist1d`` package's generator (``make_dataset``)
    from :data:`MNIST1D_ARGS`. Nothing is downloaded or unpickled. The generator reseeds
    numpy's and Python's global random state; both are restored afterwards.

    Args:
      cache: keep the arrays as an npz in :func:`cache_dir` under the arguments' digest,
        with the content digest checked on every load (a mismatch regenerates the file).
      **overrides: replace some of :data:`MNIST1D_ARGS` (a larger ``max_translation``,
        ``scale_coeff``, ``corr_noise_scale`` or ``iid_noise_scale`` makes a shifted test
        set, the name says which).

    Returns:
      The :class:`Dataset`.

    Raises:
      DropstudyError: if an override is not a generator argument, or the ``mnist1d``
        package is not installed.
    """
    bad = sorted(set(overrides) - set(MNIST1D_ARGS))
    if bad:
        raise DropstudyError(
            f"mnist1d: unknown generator arguments {bad}; known: {sorted(MNIST1D_ARGS)}"
        )
    # A list and a tuple of the same numbers are the same argument (padding).
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    args = {**MNIST1D_ARGS, **overrides}
    changed = {k: v for k, v in overrides.items() if MNIST1D_ARGS[k] != v}
    name = "mnist1d" + "".join(f"[{k}={v}]" for k, v in sorted(changed.items()))
    # The generator's version is part of the cache key: another version may make other data.
    ident = {**args, "generator": _generator_version()}
    tag = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{tag}.npz"
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrs = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
                stored = str(z["digest"])
                ok = int(z["format"]) == MNIST1D_CACHE_FORMAT
            ds = Dataset(name, *arrs.values(), 10)
            if ok and ds.digest() == stored:
                return ds
        except Exception:  # unreadable, corrupted (a bad zip) or foreign
            pass  # make it again
    ds = Dataset(name, *generate_mnist1d(args), 10)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(
            buf,
            x_train=ds.x_train,
            y_train=ds.y_train,
            x_test=ds.x_test,
            y_test=ds.y_test,
            digest=np.array(ds.digest()),
            format=np.array(MNIST1D_CACHE_FORMAT),
        )
        atomic_write(path, buf.getvalue())
    return ds


def _generator_version() -> str:
    """The installed ``mnist1d`` package's version ("absent" when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnist1d")
    except PackageNotFoundError:
        return "absent"


def generate_mnist1d(args: dict) -> tuple[np.ndarray, ...]:
    """Run the package's generator with ``args``.

    numpy's and Python's global random state are left as they were.

    Args:
      args: the generator's arguments, as :data:`MNIST1D_ARGS`.

    Returns:
      ``(x_train, y_train, x_test, y_test)``: inputs float32, labels int32.

    Raises:
      DropstudyError: if the ``mnist1d`` package is not installed.
    """
    import random

    try:
        from mnist1d.data import make_dataset
        from mnist1d.utils import ObjectView
    except ImportError:
        raise DropstudyError(
            "MNIST-1D needs the mnist1d package (pip install mnist1d); it generates the data "
            "offline"
        ) from None
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(ObjectView({**args, "padding": list(args["padding"])}))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    f = np.float32
    return (
        np.asarray(d["x"], f),
        np.asarray(d["y"], np.int32),
        np.asarray(d["x_test"], f),
        np.asarray(d["y_test"], np.int32),
    )


def tutorial_regression(
    key: jax.Array,
    *,
    n: int = 10,
    slope: float = 1.5,
    train_sd: float = 0.5,
    test_sd: float = 0.3,
    x_range: tuple[float, float] = (-1.0, 1.0),
) -> Dataset:
    """The tutorial's data: ``n`` points on a grid of ``x_range``, ``y = slope*x + noise``.

    Train and test share the grid; their noise comes from two halves of ``key``.

    Args:
      key: the PRNG key of the noise.
      n: the number of points.
      slope: the line's slope.
      train_sd: the training noise's standard deviation.
      test_sd: the test noise's standard deviation.
      x_range: the grid's ends.

    Returns:
      A regression :class:`Dataset`: inputs and targets ``(n, 1)`` float32.

    Raises:
      DropstudyError: if ``n`` is not a positive integer.
    """
    n = check_positive_int("n", n)
    kt, ke = jax.random.split(key)
    x = jnp.linspace(*x_range, n)[:, None]
    ytr = slope * x + train_sd * jax.random.normal(kt, x.shape)
    yte = slope * x + test_sd * jax.random.normal(ke, x.shape)
    f = np.float32
    return Dataset(
        "tutorial_regression",
        np.asarray(x, f),
        np.asarray(ytr, f),
        np.asarray(x, f),
        np.asarray(yte, f),
        0,
    )


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes regression data, standardised.

    Returns:
      ``(X, y)``, float64: ``X (442, 10)`` standardised per feature, ``y (442,)`` the
      target less its mean.
    """
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x = (d.data - d.data.mean(0)) / d.data.std(0)
    y = d.target - d.target.mean()
    return x.astype(np.float64), y.astype(np.float64)


def check_dataset(ds: Dataset) -> Dataset:
    """Check a data set: shapes agree, values are finite, labels lie in range.

    Args:
      ds: the data set.

    Returns:
      ``ds`` unchanged.

    Raises:
      DropstudyError: naming the data set and what is wrong.
    """
    for name in ("x_train", "x_test"):
        check_array(f"{ds.name}.{name}", getattr(ds, name), ndim=2)
    if ds.x_train.shape[1] != ds.x_test.shape[1]:
        raise DropstudyError(f"{ds.name}: train and test inputs have different widths")
    for xs, ys, part in (
        (ds.x_train, ds.y_train, "train"),
        (ds.x_test, ds.y_test, "test"),
    ):
        y = check_array(f"{ds.name}.y_{part}", ys)
        if len(y) != len(xs):
            raise DropstudyError(f"{ds.name}: {len(xs)} {part} inputs but {len(y)} targets")
        if ds.n_classes and (y.min() < 0 or y.max() >= ds.n_classes):
            raise DropstudyError(
                f"{ds.name}: {part} labels must lie in [0, {ds.n_classes}), got "
                f"[{y.min()}, {y.max()}]"
            )
    return ds


# --- MNIST and Fashion-MNIST from local files ------------------------------------------------

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read one IDX file (optionally gzipped): magic number, dimensions, then the data.

    Args:
      path: the file.

    Returns:
      The array, of the header's shape and type.

    Raises:
      DropstudyError: naming the file, if it is missing or an unreadable gzip file, for a
        bad magic number, an unknown type code, or a size that does not match the header (a
        truncated download).
    """
    import gzip

    p = Path(path)
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DropstudyError(f"{p}: file not found") from None
    except (OSError, EOFError) as e:
        raise DropstudyError(f"{p}: not a readable gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DropstudyError(f"{p}: bad magic number {raw[:4].hex()}: not an IDX file")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES or ndim == 0:
        raise DropstudyError(f"{p}: unknown IDX type code 0x{code:02x} or rank {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DropstudyError(f"{p}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    need = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != need:
        raise DropstudyError(
            f"{p}: header says shape {shape} ({need} bytes of data) but the file holds "
            f"{len(raw) - header}: truncated or corrupted"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def _find(directory, stem: str):

    d = Path(directory)
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if (d / name).is_file():
            return d / name
    return None


def _check_mnist_arrays(arrs: dict, source: str) -> None:
    for part in ("train", "test"):
        x, y = arrs[f"x_{part}"], arrs[f"y_{part}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DropstudyError(f"{source}: x_{part} has shape {x.shape}; expected (N, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise DropstudyError(
                f"{source}: y_{part} has shape {y.shape}; expected ({len(x)},) to match x_{part}"
            )
        if x.dtype != np.uint8:
            raise DropstudyError(f"{source}: x_{part} has dtype {x.dtype}; expected uint8 pixels")
        if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() > 9)):
            raise DropstudyError(f"{source}: y_{part} labels must be integers in [0, 9]")


def load_mnist(directory, name: str = "mnist") -> Dataset:
    """MNIST or Fashion-MNIST from ``directory``.

    The four IDX files (``.gz`` or not) or an npz (keys ``x_train, y_train, x_test,
    y_test``). Pixels scaled to [0, 1] and flattened to 784 features; the standard 60k/10k
    split. Nothing is downloaded.

    Args:
      directory: the folder holding the files.
      name: the data set's name; an npz named after it (``-`` as ``_``) is read before
        ``mnist.npz``.

    Returns:
      The :class:`Dataset`: inputs ``(N, 784)`` float32, labels int32, 10 classes.

    Raises:
      DropstudyError: if ``directory`` is not a directory, holds neither the IDX files nor
        an npz, or the files are unreadable or not 28 x 28 uint8 images with labels 0 to 9.
    """

    d = Path(directory)
    if not d.is_dir():
        raise DropstudyError(f"--data-dir {d} is not a directory")
    found = {k: _find(d, stem) for k, stem in _IDX_FILES.items()}
    if all(found.values()):
        arrs = {k: read_idx(p) for k, p in found.items()}
        source = str(d)
    else:
        npz = d / f"{name.replace('-', '_')}.npz"
        if not npz.is_file():
            npz = d / "mnist.npz"
        if not npz.is_file():
            missing = [_IDX_FILES[k] for k, v in found.items() if v is None]
            raise DropstudyError(
                f"{d}: no {name} data: missing IDX files {missing} (optionally .gz) "
                "and no mnist.npz"
            )
        try:
            with np.load(npz, allow_pickle=False) as z:
                arrs = {k: z[k] for k in _IDX_FILES}
        except KeyError as e:
            raise DropstudyError(f"{npz}: missing array {e}; expected {list(_IDX_FILES)}") from None
        except (ValueError, OSError, EOFError) as e:
            why = "it holds Python objects, not numeric arrays" if "pickle" in str(e) else e
            raise DropstudyError(
                f"{npz}: not a readable npz file of numeric arrays ({why}); write it with "
                f"np.savez({', '.join(f'{k}=...' for k in _IDX_FILES)})"
            ) from None
        source = str(npz)
    _check_mnist_arrays(arrs, source)
    f = np.float32
    return Dataset(
        name,
        (arrs["x_train"].reshape(len(arrs["x_train"]), -1) / 255.0).astype(f),
        arrs["y_train"].astype(np.int32),
        (arrs["x_test"].reshape(len(arrs["x_test"]), -1) / 255.0).astype(f),
        arrs["y_test"].astype(np.int32),
        10,
    )
