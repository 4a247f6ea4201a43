"""Datasets, mini-batches, splits and feature standardisation.

Data lives in NumPy arrays on the host (or in Tensors already placed on a device); the
``DataLoader`` turns each batch into Tensors on the current backend, so the same loop runs on the
CPU and on the GPU. Shuffling draws from ``minireg.random.default_generator()`` unless a NumPy
Generator is given, so ``minireg.manual_seed`` makes the batch order reproducible.

    x, y = np.random.rand(100, 3).astype(np.float32), np.arange(100) % 2
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True):
        ...   # xb: float32 Tensor (32, 3), yb: int64 Tensor (32,)
"""
import math
import numbers

import numpy as np

from minireg import check
from minireg._config import get_default_dtype
from minireg.backend import backend_of
from minireg.errors import ArgumentError, ArgumentTypeError, DeviceError, NotFittedError, ShapeError
from minireg.random import default_generator
from minireg.tensor import Tensor, tensor


class Dataset:
    """A map-style dataset: ``len(ds)`` samples, ``ds[i]`` one sample (a tuple of arrays or scalars)."""

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError


def _length(arrays, what):
    lengths = [a.shape[0] for a in arrays]
    if len(set(lengths)) > 1:
        raise ShapeError(f"{what}: all arrays must have the same first dimension, got lengths {lengths}")
    return lengths[0]


def _on_host(values):
    """Indices or labels as a NumPy array: device data (Tensors, CuPy arrays) is copied explicitly
    through its backend, host data converted as NumPy does."""
    if isinstance(values, Tensor):
        return values.numpy()
    if isinstance(values, (np.ndarray, np.generic, list, tuple, range, numbers.Number)):
        return np.asarray(values)
    return backend_of(values).to_numpy(values)


def _take(array, indices, uploaded=None):
    """``array[indices]`` along axis 0 for a NumPy array, a Tensor or an array of any registered backend.

    Host ``indices`` are copied to a device array's device; ``uploaded`` (a dict, backend -> indices
    there) lets several arrays of one batch share that copy.
    """
    if isinstance(array, (np.ndarray, Tensor)):
        return array[indices]
    backend = backend_of(array)
    uploaded = {} if uploaded is None else uploaded
    if backend not in uploaded:
        uploaded[backend] = backend.asarray(indices)
    return backend.xp.take(array, uploaded[backend], axis=0)


class TensorDataset(Dataset):
    """Samples ``(a[i], b[i], ...)`` of arrays (NumPy arrays or Tensors) with equal first dimension.

    Tensors keep their device (their data is used without history); batches are fancy-indexed
    from the whole arrays at once (``get_batch``), not stacked item by item.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ArgumentError("TensorDataset needs at least one array")
        self.arrays = tuple(a.data if isinstance(a, Tensor) else a if hasattr(a, "shape") else np.asarray(a)
                            for a in arrays)
        for a in self.arrays:
            if a.ndim == 0:
                raise ShapeError("TensorDataset: arrays must have a first (sample) dimension, got a 0-d array")
        self._len = _length(self.arrays, "TensorDataset")

    def __len__(self):
        return self._len

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def get_batch(self, indices):
        uploaded = {}   # one copy of the indices per device and batch, whatever the number of arrays
        return tuple(_take(a, indices, uploaded) for a in self.arrays)

    def __repr__(self):
        fields = ", ".join(_describe_array(a) for a in self.arrays)
        return f"TensorDataset({self._len} samples: {fields})"


def _describe_array(array):
    """``float32 (100, 3)``, with the device when the array is not a NumPy array."""
    backend = backend_of(array)
    where = "" if isinstance(array, np.ndarray) else f" on {backend.device_name}"
    return f"{backend.numpy_dtype(array.dtype)} {tuple(array.shape)}{where}"


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``."""

    def __init__(self, dataset, indices):
        indices = _on_host(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise ArgumentError(f"Subset: indices must be a 1-d sequence of integers, got shape {indices.shape} "
                                f"and dtype {indices.dtype}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(dataset)):
            raise ArgumentError(f"Subset: indices must lie in [0, {len(dataset)}), got values from {indices.min()} "
                                f"to {indices.max()}")
        self.dataset, self.indices = dataset, indices.astype(np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def get_batch(self, indices):
        return _fetch(self.dataset, self.indices[indices])

    def __repr__(self):
        return f"Subset({len(self.indices)} of the samples of {self.dataset!r})"


def _stack(values):
    """One field's values stacked where they live: host data (NumPy arrays, numbers) on the host,
    Tensors and device arrays on their own device with their backend's ``stack``, never moved."""
    arrays = [v.data if isinstance(v, Tensor) else v for v in values]
    if all(isinstance(a, (np.ndarray, np.generic, numbers.Number)) for a in arrays):
        return np.stack(arrays)
    backend = backend_of(next(a for a in arrays if not isinstance(a, (np.ndarray, np.generic, numbers.Number))))
    if not all(backend.owns(a) for a in arrays):
        raise DeviceError(f"collate: a batch mixes samples on {backend.device_name} with samples elsewhere; "
                          f"put the whole dataset on one device")
    return backend.xp.stack(arrays)


def collate(samples):
    """Stack samples field by field: ``[(x0, y0), (x1, y1)] -> (stack([x0, x1]), stack([y0, y1]))``.

    A sample that is not a tuple or list counts as a single field. Host samples are stacked on the
    host; samples on a device (Tensors, CuPy arrays) are stacked on that device.
    """
    if not isinstance(samples[0], (tuple, list)):
        samples = [(s,) for s in samples]
    return tuple(_stack(field) for field in zip(*samples))


def _fetch(dataset, indices):
    """The batch at ``indices``: vectorised when the dataset has ``get_batch``, else item by item."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices)
    return collate([dataset[int(i)] for i in indices])


class DataLoader:
    """Iterate over ``dataset`` in batches: tuples of Tensors on the current backend.

    Floating arrays keep their dtype and integer labels stay integer. ``shuffle`` draws a new
    permutation every epoch from ``generator`` (a ``numpy.random.Generator``), else from
    ``minireg.random.default_generator()``. ``drop_last`` drops a final batch smaller than
    ``batch_size``.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, generator=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise ArgumentTypeError(f"DataLoader: dataset must be a map-style dataset (with len() and indexing), "
                                    f"got {type(dataset).__name__}")
        batch_size = check.positive_int("DataLoader: batch_size", batch_size)
        shuffle = check.flag("DataLoader: shuffle", shuffle)
        drop_last = check.flag("DataLoader: drop_last", drop_last)
        if generator is not None:
            check.instance("DataLoader: generator", generator, np.random.Generator, "a numpy.random.Generator or None")
        if len(dataset) == 0:
            raise ArgumentError("DataLoader: the dataset is empty")
        if drop_last and len(dataset) < batch_size:
            raise ArgumentError(f"DataLoader: drop_last=True with {len(dataset)} samples and batch_size={batch_size} "
                                f"would yield no batches")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last, self.generator = shuffle, drop_last, generator

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = (self.generator or default_generator()).permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield tuple(tensor(a) for a in _fetch(self.dataset, order[start:start + self.batch_size]))

    def __repr__(self):
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}: {len(self)} batches)")


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given lengths.

    ``lengths``: integers summing to ``len(dataset)``, or fractions summing to 1 (each gets
    ``floor(f * n)`` samples, the remainder goes one by one to the first subsets, as in PyTorch).
    """
    n = len(dataset)
    if lengths and all(isinstance(f, float) for f in lengths) and math.isclose(sum(lengths), 1.0):
        counts = [math.floor(f * n) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    counts_ok = all(not isinstance(k, bool) and isinstance(k, (int, np.integer)) and k >= 0 for k in lengths)
    if not counts_ok or sum(lengths) != n:
        raise ArgumentError(f"random_split: lengths must be non-negative integers summing to len(dataset) = {n} "
                            f"(or fractions summing to 1), got {list(lengths)}")
    order = (generator or default_generator()).permutation(n)
    ends = np.cumsum(lengths)
    return [Subset(dataset, order[end - k:end]) for k, end in zip(lengths, ends)]


def _stratified_val_indices(labels, n_val, rng):
    """Indices of a validation set of ``n_val`` samples with each class at its overall share.

    Class quotas ``count * n_val / n`` are rounded down; the missing samples go to the classes with
    the largest remainders (ties broken at random), so the total is exactly ``n_val``.
    """
    _, y = np.unique(labels, return_inverse=True)
    counts = np.bincount(y)
    quota = counts * n_val / len(y)
    take = np.floor(quota).astype(np.int64)
    by_remainder = np.lexsort((rng.random(len(counts)), -(quota - take)))
    take[by_remainder[:n_val - take.sum()]] += 1
    return np.concatenate([rng.permutation(np.flatnonzero(y == k))[:t] for k, t in enumerate(take)])


def train_val_split(*arrays, val_fraction=0.1, seed=0, stratify=None):
    """Split arrays of equal length into ``((a_train, b_train, ...), (a_val, b_val, ...))``.

    ``ceil(n * val_fraction)`` samples go to validation (as scikit-learn's ``train_test_split``);
    with ``stratify`` (labels of length n) every class keeps its share in both parts. Both parts
    are in random order. Deterministic for a given ``seed``.
    """
    if not arrays:
        raise ArgumentError("train_val_split needs at least one array")
    val_fraction = check.real("train_val_split: val_fraction", val_fraction, low=0, high=1, low_open=True,
                              high_open=True)
    seed = check.integer("train_val_split: seed", seed, low=0)
    arrays = [a if hasattr(a, "shape") else np.asarray(a) for a in arrays]
    stratify = None if stratify is None else _on_host(stratify)
    n = _length(arrays + ([stratify] if stratify is not None else []), "train_val_split")
    n_val = math.ceil(n * val_fraction)
    if n_val >= n:
        raise ArgumentError(f"train_val_split: val_fraction={val_fraction} of {n} samples leaves none for training")
    rng = np.random.default_rng(seed)
    if stratify is None:
        val = rng.permutation(n)[:n_val]
    else:
        val = _stratified_val_indices(stratify, n_val, rng)
    in_val = np.zeros(n, dtype=bool)
    in_val[val] = True
    train, val = rng.permutation(np.flatnonzero(~in_val)), rng.permutation(val)
    on_train, on_val = {}, {}
    return tuple(_take(a, train, on_train) for a in arrays), tuple(_take(a, val, on_val) for a in arrays)


class Standardizer:
    """``z = (x - mean) / std`` with per-feature statistics from ``fit`` (NumPy arrays on the host).

    ``fit(x, axis=0)`` reduces over the sample axis (one statistic per feature); use
    ``axis=(0, 2, 3)`` for per-channel statistics of (N, C, H, W) images. Statistics are computed
    in float64. A zero std (a constant feature) is replaced by 1, so that feature maps to 0
    instead of nan. Floating input keeps its dtype; other input becomes the default float dtype.
    """

    mean = std = axis = None

    def fit(self, x, axis=0):
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise ArgumentTypeError(f"Standardizer.fit: expected numeric data, got dtype {x.dtype}")
        axes = check.axes("Standardizer.fit: axis", axis, x.ndim)
        if any(x.shape[a] == 0 for a in axes):
            raise ShapeError(f"Standardizer.fit: no samples to compute statistics from (input of shape {x.shape})")
        self.axis = axis
        self.mean = x.mean(axis=axis, keepdims=True, dtype=np.float64)
        std = x.std(axis=axis, keepdims=True, dtype=np.float64)
        # rounding in the mean leaves a std of a few ulps on constant features: treat it as zero
        self.std = np.where(std > 10 * np.finfo(np.float64).eps * np.abs(self.mean), std, 1.0)
        return self

    def _statistics(self, x, method):
        if self.mean is None:
            raise NotFittedError(f"Standardizer.{method} called before fit(x): fit it on the training data first")
        x = np.asarray(x)
        if x.ndim != self.mean.ndim or any(m not in (1, s) for m, s in zip(self.mean.shape, x.shape)):
            raise ShapeError(f"Standardizer.{method}: input of shape {x.shape} does not match the fitted "
                             f"statistics of shape {self.mean.shape}")
        dtype = x.dtype if x.dtype.kind == "f" else get_default_dtype()
        return x.astype(dtype, copy=False), self.mean.astype(dtype), self.std.astype(dtype)

    def __repr__(self):
        if self.mean is None:
            return "Standardizer(not fitted)"
        return f"Standardizer(axis={self.axis!r}, statistics of shape {self.mean.shape})"

    def transform(self, x):
        x, mean, std = self._statistics(x, "transform")
        return (x - mean) / std

    def fit_transform(self, x, axis=0):
        return self.fit(x, axis).transform(x)

    def inverse_transform(self, z):
        z, mean, std = self._statistics(z, "inverse_transform")
        return z * std + mean
