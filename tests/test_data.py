"""Data loaders, on small files the tests write themselves."""

import gzip
import struct

import numpy as np
import pytest

from dropstudy.data import digits, load_mnist, read_idx, tutorial_regression
from dropstudy.validate import DropstudyError


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[arr.dtype.type]
    head = struct.pack(">BBBB", 0, 0, code, arr.ndim) + b"".join(
        struct.pack(">I", s) for s in arr.shape
    )
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_mnist(d, n_train=12, n_test=5, gz=False, rng=None):
    rng = rng or np.random.default_rng(0)
    arrs = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, a in arrs.items():
        data = idx_bytes(a)
        if gz:
            (d / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (d / name).write_bytes(data)
    return arrs


def test_digits_split_is_fixed():
    a, b = digits(), digits()
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert set(np.unique(a.y_test)) == set(range(10))


def test_tutorial_regression_is_keyed():
    import jax

    a = tutorial_regression(jax.random.key(0))
    b = tutorial_regression(jax.random.key(0))
    c = tutorial_regression(jax.random.key(1))
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_train, c.y_train)
    assert a.x_train.shape == (10, 1)
    np.testing.assert_allclose(a.x_train[[0, -1], 0], [-1, 1])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, gz):
    arrs = write_mnist(tmp_path, gz=gz)
    ds = load_mnist(tmp_path)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)
    np.testing.assert_allclose(
        ds.x_train[0], arrs["train-images-idx3-ubyte"][0].ravel() / 255, rtol=1e-6
    )
    np.testing.assert_array_equal(ds.y_test, arrs["t10k-labels-idx1-ubyte"])


def test_npz(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 7),
        x_test=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 3),
    )
    ds = load_mnist(tmp_path)
    assert ds.x_train.shape == (7, 784) and len(ds.y_test) == 3


def test_truncated_idx_names_file(tmp_path):
    write_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DropstudyError, match="train-images-idx3-ubyte.*truncated"):
        load_mnist(tmp_path)


def test_bad_magic(tmp_path):
    write_mnist(tmp_path)
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(b"\x12\x34" + p.read_bytes()[2:])
    with pytest.raises(DropstudyError, match="t10k-labels-idx1-ubyte: bad magic number"):
        load_mnist(tmp_path)


def test_bad_gzip(tmp_path):
    write_mnist(tmp_path, gz=True)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(DropstudyError, match="train-labels-idx1-ubyte.gz: not a readable gzip"):
        load_mnist(tmp_path)


def test_label_range_and_shape_checks(tmp_path):
    arrs = write_mnist(tmp_path)
    bad = arrs["train-labels-idx1-ubyte"].copy()
    bad[0] = 11
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(bad))
    with pytest.raises(DropstudyError, match=r"labels must be integers in \[0, 9\]"):
        load_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(bad[:5] % 10))
    with pytest.raises(DropstudyError, match="expected \\(12,\\) to match x_train"):
        load_mnist(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(DropstudyError, match="missing IDX files"):
        load_mnist(tmp_path)
    with pytest.raises(DropstudyError, match="not a directory"):
        load_mnist(tmp_path / "nope")
    (tmp_path / "mnist.npz").write_bytes(b"garbage")
    with pytest.raises(DropstudyError, match="not a readable npz"):
        load_mnist(tmp_path)
    objects = {
        k: np.array([None, 1], dtype=object) for k in ("x_train", "y_train", "x_test", "y_test")
    }
    np.savez(tmp_path / "mnist.npz", **objects)
    with pytest.raises(DropstudyError, match="Python objects, not numeric") as e:
        load_mnist(tmp_path)
    assert "allow_pickle" not in str(e.value)


def test_read_idx_int32(tmp_path):
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), a)


def test_compare_on_mnist_files(tmp_path):
    from dropstudy_experiments.cli import main

    write_mnist(tmp_path, n_train=64, n_test=20, rng=np.random.default_rng(3))
    assert (
        main(
            [
                "compare",
                "--dataset",
                "mnist",
                "--data-dir",
                str(tmp_path),
                "--hidden",
                "3,3",
                "--steps",
                "5",
                "--samples",
                "2",
                "--batch-size",
                "16",
            ]
        )
        == 0
    )


def test_classes_keeps_and_relabels_the_chosen_digits():
    ds = digits()
    pair = ds.classes(8, 3)
    assert pair.n_classes == 2 and pair.name == "digits[8v3]"
    assert np.array_equal(pair.x_train, ds.x_train[(ds.y_train == 8) | (ds.y_train == 3)])
    assert np.array_equal(pair.y_train, (ds.y_train[np.isin(ds.y_train, [8, 3])] == 3))
    assert len(pair.x_test) == np.isin(ds.y_test, [8, 3]).sum()
    for bad in ((3,), (3, 3), (3, 10)):
        with pytest.raises(DropstudyError, match="classes"):
            ds.classes(*bad)


# --- MNIST-1D: generated offline, cached in the user's cache folder ----------------------


@pytest.fixture
def mnist1d_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DROPSTUDY_CACHE", str(tmp_path / "cache"))
    # Nothing may reach the network or unpickle: the package's download-and-unpickle path
    # (get_dataset) and its pickle reader fail loudly here.
    import pickle

    import mnist1d.data
    import requests

    def refuse(*a, **k):
        raise AssertionError("MNIST-1D must be generated, never downloaded or unpickled")

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    return tmp_path / "cache"


def test_mnist1d_is_generated_cached_and_leaves_global_random_state(mnist1d_cache, monkeypatch):
    import random

    from dropstudy import data as D

    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state(), random.getstate()
    ds = D.mnist1d()
    np_after, py_after = np.random.get_state(), random.getstate()
    assert all(np.array_equal(a, b) for a, b in zip(np_before[1:2], np_after[1:2]))
    assert np_before[2:] == np_after[2:] and py_before == py_after
    assert ds.name == "mnist1d" and ds.n_classes == 10
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert set(np.unique(ds.y_train)) == set(range(10))
    (cached,) = mnist1d_cache.glob("mnist1d-*.npz")
    with np.load(cached, allow_pickle=False) as z:
        assert str(z["digest"]) == ds.digest()

    # A second load reads the cache: the generator is not run again.
    def no_generator(args):
        raise AssertionError("regenerated although the cache was valid")

    monkeypatch.setattr(D, "generate_mnist1d", no_generator)
    again = D.mnist1d()
    assert again.digest() == ds.digest()

    # A cache file whose content does not match its digest is made again.
    with np.load(cached, allow_pickle=False) as z:
        arrs = {k: z[k] for k in z.files}
    arrs["x_train"] = arrs["x_train"] + 1
    np.savez(cached, **arrs)
    calls = []
    monkeypatch.setattr(D, "generate_mnist1d", lambda a: calls.append(a) or (
        ds.x_train, ds.y_train, ds.x_test, ds.y_test))  # fmt: skip
    assert D.mnist1d().digest() == ds.digest() and len(calls) == 1


def test_mnist1d_generator_arguments_change_the_data_and_its_name(mnist1d_cache):
    from dropstudy import data as D

    base = D.mnist1d(cache=False)
    shifted = D.mnist1d(cache=False, iid_noise_scale=0.2)
    assert shifted.name == "mnist1d[iid_noise_scale=0.2]"
    assert np.array_equal(base.y_test, shifted.y_test)  # same seed: same labels
    assert not np.allclose(base.x_test, shifted.x_test)
    assert not list(mnist1d_cache.glob("*.npz"))  # cache=False writes nothing
    with pytest.raises(DropstudyError, match="unknown generator arguments.*noise"):
        D.mnist1d(noise=1.0)


def test_a_corrupted_mnist1d_cache_is_made_again(mnist1d_cache):
    from dropstudy import data as D

    ds = D.mnist1d()
    (cached,) = mnist1d_cache.glob("mnist1d-*.npz")
    raw = bytearray(cached.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped byte: the zip's CRC fails
    cached.write_bytes(bytes(raw))
    assert D.mnist1d().digest() == ds.digest()
    assert D.mnist1d(padding=[36, 60]).name == "mnist1d"  # a list is the default tuple
