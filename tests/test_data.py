"""Datasets, DataLoader, splits and Standardizer."""
import numpy as np
import pytest

import minireg as mr
from minireg.data import (DataLoader, Dataset, Standardizer, Subset, TensorDataset, collate, random_split,
                          train_val_split)
from minireg.errors import ShapeError
from minireg.testing.devices import fake_device

X = np.arange(30, dtype=np.float32).reshape(10, 3)
Y = np.arange(10) % 3


def _epoch(loader):
    return [tuple(t.numpy() for t in batch) for batch in loader]


# ---- TensorDataset and DataLoader ---------------------------------------------------------------
def test_tensor_dataset_items_and_length():
    ds = TensorDataset(X, Y)
    assert len(ds) == 10
    x, y = ds[4]
    np.testing.assert_array_equal(x, X[4])
    assert y == Y[4]


def test_tensor_dataset_length_mismatch_names_the_lengths():
    with pytest.raises(ShapeError, match=r"\[10, 9\]"):
        TensorDataset(X, Y[:9])
    with pytest.raises(ValueError, match="at least one array"):
        TensorDataset()


def test_loader_batches_are_tensors_keeping_dtypes():
    x64 = X.astype(np.float64)
    batches = list(DataLoader(TensorDataset(X, x64, Y), batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 3), (4, 3), (2, 3)]
    xb, xb64, yb = batches[0]
    assert all(isinstance(t, mr.Tensor) for t in batches[0])
    assert (xb.dtype, xb64.dtype, yb.dtype) == (np.float32, np.float64, Y.dtype)
    np.testing.assert_array_equal(np.concatenate([b[2].numpy() for b in batches]), Y)   # in order without shuffle


def test_len_and_drop_last():
    ds = TensorDataset(X, Y)
    assert len(DataLoader(ds, batch_size=4)) == 3
    loader = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(loader) == 2 and [b[0].shape[0] for b in loader] == [4, 4]
    assert len(DataLoader(ds, batch_size=10)) == 1 and len(DataLoader(ds, batch_size=11)) == 1


def test_shuffle_visits_every_sample_once_and_is_reproducible():
    ds = TensorDataset(X, Y)
    mr.random.manual_seed(3)
    first = _epoch(DataLoader(ds, batch_size=3, shuffle=True))
    mr.random.manual_seed(3)
    loader = DataLoader(ds, batch_size=3, shuffle=True)
    again, next_epoch = _epoch(loader), _epoch(loader)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
    rows = np.concatenate([b[0] for b in first])
    np.testing.assert_array_equal(np.sort(rows[:, 0]), X[:, 0])
    assert not np.array_equal(rows, X)
    assert not np.array_equal(np.concatenate([b[0] for b in next_epoch]), rows)   # a new order each epoch
    np.testing.assert_array_equal(np.concatenate([b[1] for b in first]), rows[:, 0].astype(int) // 3 % 3)


def test_shuffle_with_own_generator_ignores_the_global_seed():
    ds = TensorDataset(X)
    orders = []
    for global_seed in (0, 1):
        mr.random.manual_seed(global_seed)
        orders.append(_epoch(DataLoader(ds, batch_size=10, shuffle=True, generator=np.random.default_rng(7)))[0][0])
    np.testing.assert_array_equal(*orders)


def test_tensor_dataset_batches_are_fancy_indexed_not_stacked():
    class NoItems(TensorDataset):
        def __getitem__(self, index):
            raise AssertionError("per-item access on the vectorised path")

    batches = _epoch(DataLoader(NoItems(X, Y), batch_size=4, shuffle=True))
    assert sum(len(b[0]) for b in batches) == 10


def test_batches_land_on_the_current_backend():
    device = fake_device()
    with mr.using_backend(device):
        xb, yb = next(iter(DataLoader(TensorDataset(X, Y), batch_size=4)))
    assert xb.backend is device and yb.backend is device
    np.testing.assert_array_equal(yb.numpy(), Y[:4])


def test_tensors_already_on_a_device_stay_there():
    device = fake_device()
    x = mr.tensor(device.asarray(X))
    xb, yb = next(iter(DataLoader(TensorDataset(x, Y), batch_size=4, shuffle=True, generator=np.random.default_rng(0))))
    assert xb.backend is device and yb.backend.name == "numpy"
    order = np.random.default_rng(0).permutation(10)[:4]
    np.testing.assert_array_equal(xb.numpy(), X[order])


def test_generic_datasets_are_collated_item_by_item():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full(2, i, dtype=np.float32), i * i

    (xb, yb), (xb2, yb2) = DataLoader(Squares(), batch_size=3)
    np.testing.assert_array_equal(xb.numpy(), [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(yb2.numpy(), [9, 16])
    assert xb.dtype == np.float32 and yb.dtype.kind == "i"


def test_collate_single_fields_and_tensors():
    (batch,) = collate([mr.tensor(np.ones(2)), np.zeros(2)])
    np.testing.assert_array_equal(batch, [[1, 1], [0, 0]])


def test_device_samples_are_collated_on_their_device():
    device = fake_device()   # refuses implicit host conversion, as CuPy does

    class OnDevice(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return mr.tensor(device.asarray(np.full(2, i, dtype=np.float32))), device.asarray(np.int64(i)), i

    xb, yb, ib = next(iter(DataLoader(OnDevice(), batch_size=3)))
    assert xb.backend is device and yb.backend is device and ib.backend.name == "numpy"
    np.testing.assert_array_equal(xb.numpy(), [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(yb.numpy(), [0, 1, 2])
    with pytest.raises(mr.DeviceError, match="collate: a batch mixes samples on fake:device1"):
        collate([mr.tensor(device.asarray(np.ones(2))), np.zeros(2)])


def test_train_val_split_keeps_device_arrays_on_their_device():
    device = fake_device()
    (x_train, y_train), (x_val, y_val) = train_val_split(device.asarray(X), device.asarray(Y), val_fraction=0.3,
                                                         seed=1, stratify=device.asarray(Y))
    (hx_train, _), (hx_val, hy_val) = train_val_split(X, Y, val_fraction=0.3, seed=1, stratify=Y)
    assert all(device.owns(a) for a in (x_train, y_train, x_val, y_val))
    np.testing.assert_array_equal(device.to_numpy(x_train), hx_train)
    np.testing.assert_array_equal(device.to_numpy(y_val), hy_val)
    subset = Subset(TensorDataset(X), mr.tensor(device.asarray(np.array([3, 1]))))   # indices from a device
    np.testing.assert_array_equal(subset.indices, [3, 1])


def test_an_epoch_over_device_data_never_reads_back_and_uploads_each_batchs_indices_once():
    with fake_device() as device:
        loader = DataLoader(TensorDataset(device.asarray(X), mr.tensor(device.asarray(Y))), batch_size=3, shuffle=True)
        with device.counting() as counts:
            batches = list(loader)
    assert counts.syncs == 0 and counts.implicit == 0, counts.report()
    assert counts.copies_to_device == len(batches) == 4, counts.report()
    assert all(xb.backend is device and yb.backend is device for xb, yb in batches)


def test_reprs_say_what_is_inside():
    dataset = TensorDataset(X, Y)
    assert repr(dataset) == "TensorDataset(10 samples: float32 (10, 3), int64 (10,))"
    on_device = TensorDataset(mr.tensor(fake_device().asarray(X)))
    assert repr(on_device) == "TensorDataset(10 samples: float32 (10, 3) on fake:device1)"
    loader = DataLoader(dataset, batch_size=4, shuffle=True)
    assert repr(loader) == ("DataLoader(TensorDataset(10 samples: float32 (10, 3), int64 (10,)), batch_size=4, "
                            "shuffle=True, drop_last=False: 3 batches)")
    assert repr(Subset(dataset, [1, 2])) == f"Subset(2 of the samples of {dataset!r})"
    assert repr(Standardizer()) == "Standardizer(not fitted)"
    assert repr(Standardizer().fit(X)) == "Standardizer(axis=0, statistics of shape (1, 3))"


# ---- random_split ---------------------------------------------------------------------------------
def test_random_split_partitions_the_dataset():
    parts = random_split(TensorDataset(X, Y), [6, 3, 1], generator=np.random.default_rng(0))
    assert [len(p) for p in parts] == [6, 3, 1]
    rows = np.concatenate([np.stack([p[i][0] for i in range(len(p))]) for p in parts])
    np.testing.assert_array_equal(np.sort(rows[:, 0]), X[:, 0])
    assert all(isinstance(p, Subset) for p in parts)


def test_random_split_fractions_and_reproducibility():
    ds = TensorDataset(X)
    a = random_split(ds, [0.75, 0.25], generator=np.random.default_rng(1))
    b = random_split(ds, [0.75, 0.25], generator=np.random.default_rng(1))
    assert [len(p) for p in a] == [8, 2]   # floor gives 7 and 2; the leftover goes to the first
    np.testing.assert_array_equal(a[0].indices, b[0].indices)


def test_subset_batches_use_the_vectorised_path():
    train, _ = random_split(TensorDataset(X, Y), [7, 3], generator=np.random.default_rng(0))
    (xb, yb), = DataLoader(train, batch_size=7)
    np.testing.assert_array_equal(xb.numpy(), X[train.indices])
    np.testing.assert_array_equal(yb.numpy(), Y[train.indices])


@pytest.mark.parametrize("lengths", [[5, 4], [5, 6], [-1, 11], [0.5, 0.2]])
def test_random_split_rejects_bad_lengths(lengths):
    with pytest.raises(ValueError, match="summing to len"):
        random_split(TensorDataset(X), lengths)


# ---- train_val_split ------------------------------------------------------------------------------
def test_train_val_split_sizes_alignment_and_determinism():
    a, b = np.arange(100), np.arange(100) * 10
    (a_tr, b_tr), (a_va, b_va) = train_val_split(a, b, val_fraction=0.25, seed=5)
    assert (len(a_tr), len(a_va)) == (75, 25)
    np.testing.assert_array_equal(b_tr, a_tr * 10)
    np.testing.assert_array_equal(b_va, a_va * 10)
    np.testing.assert_array_equal(np.sort(np.concatenate([a_tr, a_va])), a)
    (a_tr2, _), (a_va2, _) = train_val_split(a, b, val_fraction=0.25, seed=5)
    np.testing.assert_array_equal(a_va, a_va2)
    np.testing.assert_array_equal(a_tr, a_tr2)
    (_,), (a_va3,) = train_val_split(a, val_fraction=0.25, seed=6)
    assert not np.array_equal(np.sort(a_va), np.sort(a_va3))


def test_validation_size_is_rounded_up_like_sklearn():
    (train,), (val,) = train_val_split(np.arange(1797), val_fraction=0.2)
    assert (len(train), len(val)) == (1437, 360)


def test_stratified_split_keeps_class_shares():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    (y_tr,), (y_va,) = train_val_split(labels, val_fraction=0.2, seed=1, stratify=labels)
    assert len(y_va) == 20
    np.testing.assert_array_equal(np.bincount(y_va), [10, 6, 3, 1])
    assert not np.all(np.diff(y_tr) >= 0)   # shuffled, not left sorted by class


def test_stratified_split_distributes_remainders_exactly():
    labels = np.repeat(np.arange(3), [7, 7, 7])
    (_,), (y_va,) = train_val_split(labels, val_fraction=0.2, stratify=labels)   # 5 of 21: quotas 1.67 each
    assert len(y_va) == 5 and sorted(np.bincount(y_va, minlength=3)) == [1, 2, 2]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(val_fraction=0.0), ValueError, r"val_fraction must be in \(0, 1\)"),
    (dict(val_fraction=1.0), ValueError, r"val_fraction must be in \(0, 1\)"),
    (dict(val_fraction=0.95), ValueError, "none for training"),
    (dict(stratify=np.zeros(3)), ShapeError, r"\[10, 10, 3\]"),
])
def test_train_val_split_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        train_val_split(X, Y, **kwargs)


def test_train_val_split_length_mismatch():
    with pytest.raises(ShapeError, match=r"\[10, 4\]"):
        train_val_split(X, Y[:4])


# ---- Standardizer ---------------------------------------------------------------------------------
def test_standardizer_per_feature():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    s = Standardizer()
    z = s.fit_transform(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(s.inverse_transform(z), x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.mean.ravel(), x.astype(np.float64).mean(axis=0))


def test_standardizer_per_channel_for_images():
    images = np.random.default_rng(0).integers(0, 256, size=(20, 3, 5, 5), dtype=np.uint8)
    s = Standardizer().fit(images, axis=(0, 2, 3))
    assert s.mean.shape == (1, 3, 1, 1)
    z = s.transform(images)
    assert z.dtype == mr.get_default_dtype()
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-5)


def test_constant_features_get_std_one_and_map_to_zero():
    x = np.column_stack([np.full(7, 0.1), np.zeros(7), np.arange(7.0)])
    s = Standardizer().fit(x)
    np.testing.assert_array_equal(s.std.ravel()[:2], [1.0, 1.0])
    np.testing.assert_allclose(s.transform(x)[:, :2], 0, atol=1e-15)


def test_standardizer_errors():
    with pytest.raises(mr.NotFittedError, match="before fit"):
        Standardizer().transform(X)
    with pytest.raises(mr.NotFittedError, match="before fit"):
        Standardizer().inverse_transform(X)
    with pytest.raises(ShapeError, match=r"shape \(10, 2\)"):
        Standardizer().fit(X).transform(X[:, :2])
