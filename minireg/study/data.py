"""The study's data splits: per-seed train / validation (or k folds) from each data set's own
training images, and that data set's whole test split, which no choice ever reads.

Classification (``classification_split``): the development pool is the data set's training split
(digits: the 1437 of ``minireg.datasets.load_digits``; Fashion-MNIST: 60000). For each seed a
stratified draw of ``train_size + val_size`` images is taken from it (the draw, and the fold
assignment, come from the seed: paired comparisons share them), then
- held out (``folds=None``): ``val_size`` of them validate, ``train_size`` train;
- k-fold (``folds=K``, ``fold=k``): stratified fold k validates, the other K-1 train; ``fold=None``
  trains on all of them (the refit of the chosen strength).
``label_noise`` replaces that share of the drawn labels (training and validation alike: a
validation set is as noisy as the data it comes from) by a uniformly drawn other class; the test
labels stay clean. Inputs are standardized with the training part's statistics only (per pixel
for flat inputs, one mean and std for images).

Regression (``regression_split``): diabetes (442 x 10): the fixed 353 / 89 split of
``minireg.datasets.load_diabetes`` (raw features); per seed, a random 20% of the 353 validate (or
k folds); features are z-scored and the target centred with the training part's statistics.
"""
import dataclasses
import functools

import numpy as np

from minireg.data import Standardizer
from minireg.datasets import load_diabetes, load_digits, load_fashion_mnist
from minireg.errors import ArgumentError

DATASETS = ("digits", "fashion-mnist")
_LOADERS = {"digits": load_digits, "fashion-mnist": load_fashion_mnist}
SPLIT_STREAM = 20_26          # the split's random stream: (SPLIT_STREAM, seed), apart from the weights' seed


@dataclasses.dataclass(frozen=True)
class Split:
    """Host NumPy arrays of one run's data; ``x_val``/``y_val`` are None for a refit on everything."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: object
    y_val: object
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=4)
def load_images(dataset, flat):
    """``(x_train, y_train), (x_test, y_test)`` of ``dataset``; flat (N, D) or images (N, 1, H, W)."""
    if dataset not in _LOADERS:
        raise ArgumentError(f"study: dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    return _LOADERS[dataset](flatten=flat)


def _rng(seed, *stream):
    return np.random.default_rng([SPLIT_STREAM, seed, *stream])


def stratified_draw(labels, n, rng):
    """``n`` indices with every class at its share of ``labels`` (remainders to random classes)."""
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    quota = np.array([len(p) for p in per_class]) * n / len(labels)
    take = np.floor(quota).astype(np.int64)
    extra = np.lexsort((rng.random(len(classes)), -(quota - take)))[:n - take.sum()]
    take[extra] += 1
    return rng.permutation(np.concatenate([p[:t] for p, t in zip(per_class, take)]))


def stratified_folds(labels, k, rng):
    """A fold number in [0, k) for each of ``labels``, each class dealt round-robin over the folds."""
    fold = np.empty(len(labels), dtype=np.int64)
    start = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = (start + np.arange(len(members))) % k
        start += len(members)          # the next class continues where this one stopped: balanced sizes
    return fold


def noisy_labels(labels, share, num_classes, rng):
    """``labels`` with ``share`` of them (drawn at random) replaced by a uniformly drawn other class."""
    labels = labels.copy()
    flip = rng.permutation(len(labels))[:int(round(share * len(labels)))]
    labels[flip] = (labels[flip] + rng.integers(1, num_classes, size=len(flip))) % num_classes
    return labels


def _parts(n, seed, folds, fold, labels=None):
    """(train indices, validation indices or None) of ``n`` development samples."""
    rng = _rng(seed, 1)
    assignment = (stratified_folds(labels, folds, rng) if labels is not None
                  else rng.permutation(n) % folds)
    if fold is None:
        return np.arange(n), None
    return np.flatnonzero(assignment != fold), np.flatnonzero(assignment == fold)


def classification_split(dataset, flat, train_size, val_size, label_noise, seed, folds=None, fold=None):
    """One run's ``Split`` (see the module docstring)."""
    (x_pool, y_pool), (x_test, y_test) = load_images(dataset, flat)
    n = train_size + val_size
    if n > len(y_pool):
        raise ArgumentError(f"study: train_size + val_size = {n} is more than the {len(y_pool)} training images of "
                            f"{dataset}")
    rng = _rng(seed, 0)
    drawn = stratified_draw(y_pool, n, rng)
    x, y = x_pool[drawn], y_pool[drawn]
    if label_noise:
        y = noisy_labels(y, label_noise, int(y_pool.max()) + 1, _rng(seed, 2))
    if folds is None:
        train, val = np.arange(train_size), np.arange(train_size, n)       # the draw is already shuffled
    else:
        train, val = _parts(n, seed, folds, fold, labels=y)
    scaler = Standardizer().fit(x[train], axis=0 if flat else None)

    def scaled(a):
        return np.ascontiguousarray(scaler.transform(a), dtype=np.float32)
    return Split(scaled(x[train]), y[train], None if val is None else scaled(x[val]),
                 None if val is None else y[val], scaled(x_test), y_test)


@functools.lru_cache(maxsize=1)
def _diabetes():
    return load_diabetes(scale=False)


def regression_split(seed, val_fraction=0.2, folds=None, fold=None):
    """One run's ``Split`` of the diabetes data (float64; see the module docstring)."""
    (x_dev, y_dev), (x_test, y_test) = _diabetes()
    n = len(y_dev)
    if folds is None:
        order = _rng(seed, 1).permutation(n)
        n_val = int(round(val_fraction * n))
        train, val = order[n_val:], order[:n_val]
    else:
        train, val = _parts(n, seed, folds, fold)
    x_dev, y_dev = x_dev.astype(np.float64), y_dev.astype(np.float64)
    scaler = Standardizer().fit(x_dev[train])
    offset = y_dev[train].mean()

    def xs(a):
        return scaler.transform(np.asarray(a, dtype=np.float64))
    return Split(xs(x_dev[train]), y_dev[train] - offset, None if val is None else xs(x_dev[val]),
                 None if val is None else y_dev[val] - offset, xs(x_test), np.asarray(y_test, np.float64) - offset)
