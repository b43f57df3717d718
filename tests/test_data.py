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
