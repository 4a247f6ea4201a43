"""Checkpoints: pickle-free, atomic, and all-or-nothing on mismatch."""
import os

import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.optim import Adam


def make_model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def train_a_bit(model, optimizer, steps=3):
    x = mr.tensor(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32))
    for _ in range(steps):
        loss = (model(x) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_round_trip_restores_model_optimizer_and_metadata(tmp_path):
    mr.manual_seed(0)
    model = make_model()
    opt = Adam(model.parameters(), lr=1e-2)
    train_a_bit(model, opt)
    path = mr.save(tmp_path / "ck.npz", model, opt, epoch=3, val_accuracy=0.5, tags=["a", "b"])
    with np.load(path, allow_pickle=False) as archive:   # really pickle-free
        assert "__document__" in archive.files
    mr.manual_seed(1)
    clone, clone_opt = make_model(), None
    clone_opt = Adam(clone.parameters(), lr=1e-2)
    meta = mr.load(path, clone, clone_opt)
    assert meta == {"epoch": 3, "val_accuracy": 0.5, "tags": ["a", "b"]}
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(clone.state_dict()[key], value)
    # both continue along the same trajectory
    train_a_bit(model, opt, 2)
    train_a_bit(clone, clone_opt, 2)
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(clone.state_dict()[key], value, rtol=1e-6)


def test_loading_into_another_architecture_lists_problems_and_changes_nothing(tmp_path):
    path = mr.save(tmp_path / "ck.npz", make_model())
    other = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    before = other.state_dict()
    with pytest.raises(mr.ShapeError) as info:
        mr.load(path, other)
    message = str(info.value)
    assert "unexpected keys" in message and "1.running_mean" in message
    assert "mis-shaped keys" in message and "0.weight: checkpoint (4, 3) vs model (5, 3)" in message
    assert "missing keys: ['2.weight', '2.bias']" in message
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_bad_optimizer_state_rolls_the_model_back(tmp_path):
    model = make_model()
    opt = Adam(model.parameters())
    train_a_bit(model, opt)
    path = mr.save(tmp_path / "ck.npz", model, opt)
    target = make_model()
    before = target.state_dict()
    wrong_opt = Adam(list(target.parameters())[:2])      # different parameter count
    with pytest.raises(mr.ShapeError, match="optimizer"):
        mr.load(path, target, wrong_opt)
    for key, value in target.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_write_is_atomic(tmp_path, monkeypatch):
    model = make_model()
    path = tmp_path / "ck.npz"
    mr.save(path, model, epoch=1)
    original = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        mr.save(path, model, epoch=2)
    assert path.read_bytes() == original                 # old checkpoint intact
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]   # no temp file left behind


def test_unserialisable_metadata_fails_before_writing(tmp_path):
    with pytest.raises(TypeError, match="cannot store object"):
        mr.save(tmp_path / "ck.npz", make_model(), bad=object())
    assert not os.path.exists(tmp_path / "ck.npz")


def test_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="not a minireg checkpoint"):
        mr.load(tmp_path / "other.npz", make_model())


def test_numpy_scalar_metadata_comes_back_as_python_numbers(tmp_path):
    path = mr.save(tmp_path / "ck.npz", make_model(), epoch=np.int64(3), loss=np.float32(0.25), lr=np.float64(0.1))
    meta = mr.load(path, make_model())
    assert meta == {"epoch": 3, "loss": 0.25, "lr": 0.1}
    assert type(meta["epoch"]) is int and type(meta["loss"]) is float
