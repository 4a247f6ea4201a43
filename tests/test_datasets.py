"""Offline data sets: shapes, dtypes, ranges, label counts, fixed splits, and the idx reader."""
import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from minireg import datasets
from minireg.errors import MissingDataError

HAVE_FASHION = os.path.isfile(os.path.join(datasets.FASHION_MNIST_PATH, "train-images-idx3-ubyte.gz"))
needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason="Fashion-MNIST not installed: "
                                   "apt-get update && apt-get install -y dataset-fashion-mnist")


def idx_bytes(array):
    """An idx file of unsigned bytes: magic 00 00 08 ndim, big-endian uint32 sizes, then the data."""
    array = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist_dir(directory, gzipped, n_train=6, n_test=4):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 5, 3)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 5, 3)),
              "t10k-labels-idx1-ubyte": np.arange(n_test)[::-1]}
    for name, array in arrays.items():
        data = idx_bytes(array)
        with open(os.path.join(directory, name + (".gz" if gzipped else "")), "wb") as f:
            f.write(gzip.compress(data) if gzipped else data)
    return arrays


# ---- idx reader -----------------------------------------------------------------------------------
@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_round_trip(tmp_path, gzipped):
    array = np.random.default_rng(0).integers(0, 256, (3, 4, 2)).astype(np.uint8)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(idx_bytes(array)) if gzipped else idx_bytes(array))
    out = datasets.read_idx(str(path))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd", "magic is '00000d01'"),
    (b"\x12\x34\x08\x01", "not an idx file"),
    (b"\x00\x00", "not an idx file"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated idx header"),
    (idx_bytes(np.zeros((2, 3)))[:-1], r"promises shape \(2, 3\) \(6 bytes of data\), but the file holds 5"),
    (gzip.compress(idx_bytes(np.zeros(4)))[:-6], "corrupt gzip"),
])
def test_read_idx_rejects_corrupt_files(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        datasets.read_idx(str(path))


@pytest.mark.parametrize("gzipped", [False, True])
def test_load_mnist_from_a_directory(tmp_path, gzipped):
    arrays = write_mnist_dir(tmp_path, gzipped)
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(str(tmp_path))
    assert x_train.shape == (6, 1, 5, 3) and x_test.shape == (4, 1, 5, 3)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_allclose(x_train[:, 0] * 255, arrays["train-images-idx3-ubyte"], rtol=1e-6)
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
    (flat, _), _ = datasets.load_mnist(str(tmp_path), flatten=True, scale=False)
    np.testing.assert_array_equal(flat, arrays["train-images-idx3-ubyte"].reshape(6, 15))


def test_load_mnist_checks_image_and_label_counts(tmp_path):
    write_mnist_dir(tmp_path, gzipped=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(3)))
    with pytest.raises(ValueError, match=r"expected \(N, H, W\) images and N labels"):
        datasets.load_mnist(str(tmp_path))


def test_load_mnist_names_the_missing_file(tmp_path):
    write_mnist_dir(tmp_path, gzipped=True)
    os.remove(tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(MissingDataError, match=r"t10k-images-idx3-ubyte\(.gz\) not found in .*MNIST idx files"):
        datasets.load_mnist(str(tmp_path))


def test_missing_fashion_mnist_gives_the_install_hint(tmp_path):
    with pytest.raises(MissingDataError) as info:
        datasets.load_fashion_mnist(path=str(tmp_path / "nowhere"))
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    assert "install with `sudo apt-get install dataset-fashion-mnist` " \
           "(or `apt-get update && apt-get install -y dataset-fashion-mnist` as root)" in message


# ---- the real data sets ---------------------------------------------------------------------------
@pytest.mark.parametrize("flatten, shape", [(True, (64,)), (False, (1, 8, 8))])
def test_digits(flatten, shape):
    (x_train, y_train), (x_test, y_test) = datasets.load_digits(flatten=flatten)
    assert x_train.shape == (1437,) + shape and x_test.shape == (360,) + shape
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    for y in (y_train, y_test):
        assert set(np.unique(y)) == set(range(10))
    # stratified: every class has its overall share (about 20 %) in the test split
    counts = np.bincount(y_train, minlength=10) + np.bincount(y_test, minlength=10)
    assert np.all(np.abs(np.bincount(y_test) - counts * 360 / 1797) < 1)


def test_digits_split_is_fixed_and_unscaled_values_are_counts():
    (a, ya), (b, yb) = datasets.load_digits()
    (a2, ya2), (b2, yb2) = datasets.load_digits(scale=False)
    np.testing.assert_array_equal(a * 16, a2)
    np.testing.assert_array_equal(ya, ya2)
    np.testing.assert_array_equal(yb, yb2)
    assert a2.max() == 16.0
    # train and test together hold every row of the source file exactly once
    raw = np.loadtxt(datasets._sklearn_data("digits.csv.gz"), delimiter=",")
    both = np.column_stack([np.concatenate([a2, b2]), np.concatenate([ya, yb])])
    sort_rows = lambda t: t[np.lexsort(t.T[::-1])]
    np.testing.assert_array_equal(sort_rows(both), sort_rows(raw))


def test_diabetes():
    (x_train, y_train), (x_test, y_test) = datasets.load_diabetes()
    assert x_train.shape == (353, 10) and x_test.shape == (89, 10)
    assert y_train.shape == (353,) and x_train.dtype == np.float32 and y_train.dtype == np.float32
    np.testing.assert_allclose(x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=0), 1, atol=1e-5)
    assert np.abs(x_test.mean(axis=0)).max() > 1e-3   # test data scaled with training statistics
    y = np.concatenate([y_train, y_test])
    assert y.min() == 25 and y.max() == 346
    (raw_train, raw_y), _ = datasets.load_diabetes(scale=False)
    np.testing.assert_array_equal(raw_y, y_train)
    assert set(np.unique(raw_train[:, 1])) == {1.0, 2.0}   # sex, raw coding


def test_loading_does_not_import_sklearn():
    code = "import sys, minireg.datasets as d; d.load_digits(); d.load_diabetes(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@needs_fashion
def test_fashion_mnist():
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)
    np.testing.assert_array_equal(y_train[:5], [9, 0, 0, 3, 0])   # the original file order


@needs_fashion
def test_fashion_mnist_flat():
    _, (x_test, _) = datasets.load_fashion_mnist(flatten=True)
    assert x_test.shape == (10000, 784)
