"""Real data sets that are available offline; nothing is downloaded.

Each loader returns ``(x_train, y_train), (x_test, y_test)`` as NumPy arrays: ``x`` float32,
class labels int64. Only NumPy is imported; scikit-learn's bundled files are read by path, without
importing scikit-learn.

``load_digits(flatten=True, scale=True)``
    scikit-learn's copy of the UCI "Optical Recognition of Handwritten Digits" test set
    (``sklearn/datasets/data/digits.csv.gz``; scikit-learn is BSD-3-Clause, the UCI data CC BY 4.0).
    1797 8x8 grey images with values 0..16, classes 0..9 (about 180 each). Fixed stratified split
    ``train_val_split(val_fraction=0.2, seed=0, stratify=y)``: 1437 train / 360 test.
    x: (N, 64), or (N, 1, 8, 8) with ``flatten=False``; divided by 16 (into [0, 1]) with ``scale``.

``load_fashion_mnist(path="/usr/share/datasets/fashion-mnist", flatten=False, scale=True)``
    Fashion-MNIST (Zalando Research, MIT licence) as shipped by the Debian package
    ``dataset-fashion-mnist``: the original idx files and the original split, 60000 train / 10000
    test, 28x28 grey images, 10 classes (6000 / 1000 per class). x: (N, 1, 28, 28), or (N, 784)
    with ``flatten=True``; divided by 255 (into [0, 1]) with ``scale``.

``load_mnist(path, flatten=False, scale=True)``
    The same for any directory holding the four canonical MNIST-format idx files
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each gzipped or not), e.g. MNIST itself (LeCun, Cortes and Burges;
    usually cited as CC BY-SA 3.0).

``load_diabetes(scale=True)``
    The diabetes data of Efron et al. (2004), "Least Angle Regression", from scikit-learn
    (``diabetes_data_raw.csv.gz``, ``diabetes_target.csv.gz``; BSD-3-Clause): 442 patients,
    10 raw features (age, sex, bmi, bp, s1..s6), target a disease progression score in [25, 346].
    Fixed split ``train_val_split(val_fraction=0.2, seed=0)``: 353 train / 89 test. With ``scale``
    the features are z-scored with the training split's mean and std (unlike scikit-learn's
    ``scaled=True``, which uses all rows and a different scale). y: float32 of shape (N,).
"""
import gzip
import importlib.util
import math
import os

import numpy as np

from minireg import check
from minireg.data import Standardizer, train_val_split
from minireg.errors import ArgumentError, MissingDataError

FASHION_MNIST_PATH = "/usr/share/datasets/fashion-mnist"
_FASHION_HINT = ("install with `sudo apt-get install dataset-fashion-mnist` "
                 "(or `apt-get update && apt-get install -y dataset-fashion-mnist` as root)")
_IDX_FILES = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
_SPLIT_SEED = 0


def read_idx(path):
    """An idx file (the MNIST format) as a read-only uint8 array (a view of the file's bytes);
    gzip-compressed files are detected by their content, not their name.

    Layout: magic ``00 00 08 ndim`` (0x08: unsigned bytes), ndim big-endian uint32 sizes, the data.
    """
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:2] == b"\x1f\x8b":
        try:
            buf = gzip.decompress(buf)
        except (OSError, EOFError) as exc:
            raise ArgumentError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(buf) < 4 or buf[:3] != b"\x00\x00\x08":
        raise ArgumentError(f"{path}: not an idx file of unsigned bytes: magic is {buf[:4].hex()!r}, "
                            f"expected '000008' followed by the number of dimensions")
    ndim = buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ArgumentError(f"{path}: truncated idx header ({len(buf)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    if len(buf) != header + math.prod(shape):
        raise ArgumentError(f"{path}: idx header promises shape {shape} ({math.prod(shape)} bytes of data), "
                            f"but the file holds {len(buf) - header}")
    return np.frombuffer(buf, np.uint8, offset=header).reshape(shape)


def _images(x, flatten, scale, max_value):
    """uint8/float images (N, H, W) -> float32 (N, 1, H, W) or (N, H*W), divided by max_value if scale."""
    flatten, scale = check.flag("flatten", flatten), check.flag("scale", scale)
    x = x.astype(np.float32)
    if scale:
        x /= max_value
    return x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *x.shape[1:])


def _find(directory, name, hint):
    for candidate in (name + ".gz", name):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise MissingDataError(f"{name}(.gz) not found in {directory}: {hint}")


def _load_idx_dataset(directory, flatten, scale, hint):
    splits = []
    for images_name, labels_name in _IDX_FILES:
        images = read_idx(_find(directory, images_name, hint))
        labels = read_idx(_find(directory, labels_name, hint))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ArgumentError(f"{directory}: {images_name} has shape {images.shape} and {labels_name} "
                                f"{labels.shape}; expected (N, H, W) images and N labels")
        splits.append((_images(images, flatten, scale, 255.0), labels.astype(np.int64)))
    return tuple(splits)


def load_fashion_mnist(path=FASHION_MNIST_PATH, flatten=False, scale=True):
    """Fashion-MNIST from the Debian package's idx files; see the module docstring."""
    return _load_idx_dataset(path, flatten, scale, f"Fashion-MNIST is missing; {_FASHION_HINT}")


def load_mnist(path, flatten=False, scale=True):
    """MNIST (or any MNIST-format data set) from a directory of the four idx files; see the module docstring."""
    names = ", ".join(name for pair in _IDX_FILES for name in pair)
    return _load_idx_dataset(path, flatten, scale, f"the directory must hold the MNIST idx files {names}, "
                                                   f"gzipped or not")


def _sklearn_data(name):
    """Path of a file bundled with scikit-learn, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise MissingDataError(f"{name} ships with scikit-learn, which is not installed: pip install scikit-learn")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)


def load_digits(flatten=True, scale=True):
    """scikit-learn's 8x8 digits, split 1437 / 360 (stratified, seed 0); see the module docstring."""
    table = np.loadtxt(_sklearn_data("digits.csv.gz"), delimiter=",")
    x, y = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    return train_val_split(_images(x, flatten, scale, 16.0), y, val_fraction=0.2, seed=_SPLIT_SEED, stratify=y)


def load_diabetes(scale=True):
    """The diabetes regression data, 442 x 10, split 353 / 89 (seed 0); see the module docstring."""
    scale = check.flag("load_diabetes: scale", scale)
    x = np.loadtxt(_sklearn_data("diabetes_data_raw.csv.gz"), dtype=np.float32)
    y = np.loadtxt(_sklearn_data("diabetes_target.csv.gz"), dtype=np.float32)
    (x_train, y_train), (x_test, y_test) = train_val_split(x, y, val_fraction=0.2, seed=_SPLIT_SEED)
    if scale:
        standardizer = Standardizer().fit(x_train)
        x_train, x_test = standardizer.transform(x_train), standardizer.transform(x_test)
    return (x_train, y_train), (x_test, y_test)
