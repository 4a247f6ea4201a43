"""Checkpoints: pickle-free, atomic, umask-respecting, all-or-nothing on mismatch, loud on corruption."""
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import minireg as mr
import minireg.checkpoint
from minireg import nn
from minireg.errors import CheckpointError
from minireg.optim import SGD, Adam, AdamW
from minireg.optim.lr_scheduler import StepLR
from minireg.testing.devices import fake_device


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
    with pytest.raises(CheckpointError) as info:
        mr.load(path, other)
    message = str(info.value)
    assert "unexpected keys" in message and "1.running_mean" in message
    assert "mis-shaped keys" in message and "0.weight: checkpoint (4, 3) vs model (5, 3)" in message
    assert "missing keys: ['2.weight', '2.bias']" in message
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def model_snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}, [p._version for p in model.parameters()]


def assert_untouched(model, snapshot):
    values, versions = snapshot
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, values[key])
    assert [p._version for p in model.parameters()] == versions      # not even written and rolled back


@pytest.mark.parametrize("make_optimizer, match", [
    (lambda params: Adam(list(params)[:2]), "param group 0 has 6 params in the state dict, 2 here"),
    (lambda params: SGD(params, lr=0.1), "cannot load a state dict of 'Adam' into SGD"),
    (lambda params: AdamW(params), "cannot load a state dict of 'Adam' into AdamW"),
])
def test_a_bad_optimizer_entry_leaves_the_model_untouched(tmp_path, make_optimizer, match):
    model = make_model()
    opt = Adam(model.parameters())
    train_a_bit(model, opt)
    path = mr.save(tmp_path / "ck.npz", model, opt)
    target = make_model()
    target_opt = make_optimizer(target.parameters())
    before, opt_before = model_snapshot(target), repr(target_opt.state_dict())
    with pytest.raises(CheckpointError, match=match) as info:
        mr.load(path, target, target_opt)
    assert "optimizer state" in str(info.value) and str(path) in str(info.value)
    assert_untouched(target, before)
    assert repr(target_opt.state_dict()) == opt_before


def test_a_bad_model_entry_leaves_optimizer_schedulers_and_rng_untouched(tmp_path):
    model = make_model()
    opt = Adam(model.parameters(), lr=0.1)
    scheduler = StepLR(opt, 1, gamma=0.5)
    train_a_bit(model, opt)
    scheduler.step()
    path = mr.save(tmp_path / "ck.npz", model, opt, schedulers=[scheduler], rng_state=True)
    contents = mr.checkpoint.read(path)
    contents["model"]["3.bias"] = np.zeros(5, np.float32)          # a bad entry after good ones
    target = make_model()
    target_opt = Adam(target.parameters(), lr=0.1)
    target_scheduler = StepLR(target_opt, 1, gamma=0.5)
    before, rng_before = model_snapshot(target), mr.random.get_state()
    opt_before, sched_before = repr(target_opt.state_dict()), target_scheduler.state_dict()
    with pytest.raises(CheckpointError, match="model state"):
        mr.checkpoint._restore(path, contents, target, target_opt, [target_scheduler], rng_state=True)
    assert_untouched(target, before)
    assert repr(target_opt.state_dict()) == opt_before and target_scheduler.state_dict() == sched_before
    assert repr(mr.random.get_state()) == repr(rng_before)


def test_random_state_round_trip_repeats_the_draws(tmp_path):
    mr.manual_seed(5)
    mr.random.default_generator().normal(size=3)
    path = mr.save(tmp_path / "ck.npz", make_model(), rng_state=True)
    expected = mr.random.default_generator().normal(size=4)
    mr.manual_seed(99)
    mr.load(path, make_model(), rng_state=True)
    np.testing.assert_array_equal(mr.random.default_generator().normal(size=4), expected)
    with pytest.raises(CheckpointError, match="no random state"):
        mr.load(mr.save(tmp_path / "plain.npz", make_model()), make_model(), rng_state=True)


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
    with pytest.raises(mr.errors.ArgumentTypeError, match="cannot store object"):
        mr.save(tmp_path / "ck.npz", make_model(), bad=object())
    assert not os.path.exists(tmp_path / "ck.npz")


def rewrite_document(path, edit):
    """Rewrite the checkpoint at ``path`` with ``edit(document_text, arrays)`` applied."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    text = edit(str(arrays.pop("__document__")), arrays)
    np.savez(path, __document__=np.array(text), **arrays)


def drop_first_array(text, arrays):
    arrays.pop(sorted(k for k in arrays)[0])
    return text


CORRUPTIONS = {
    "truncated": (lambda path: path.write_bytes(path.read_bytes()[:200]), "truncated or corrupt"),
    "truncated late": (lambda path: path.write_bytes(path.read_bytes()[:-30]), "truncated or corrupt"),
    "random bytes": (lambda path: path.write_bytes(np.random.default_rng(0).bytes(500)), "pickled data"),
    "empty": (lambda path: path.write_bytes(b""), "truncated or corrupt"),
    "pickle": (lambda path: np.save(path.open("wb"), np.array([object()], dtype=object), allow_pickle=True),
               "pickled data"),
    "object array": (lambda path: np.savez(path, __document__=np.array([{"a": 1}], dtype=object)), "pickled data"),
    "not a checkpoint": (lambda path: np.savez(path, a=np.ones(2)), "not a minireg checkpoint .no __document__"),
    "bad json": (lambda path: rewrite_document(path, lambda text, arrays: text[:-5]), "JSON document is corrupt"),
    "json list": (lambda path: rewrite_document(path, lambda text, arrays: "[1, 2]"), "JSON document is a list"),
    "other format": (lambda path: rewrite_document(path, lambda t, a: t.replace("checkpoint-1", "checkpoint-9")),
                     "unsupported checkpoint format 'minireg-checkpoint-9'"),
    "dangling reference": (lambda path: rewrite_document(path, drop_first_array), "dangling reference at model"),
    "missing entry": (lambda path: rewrite_document(path, lambda t, a: t.replace('"metadata"', '"metadatum"')),
                      r"lacks the entries \['metadata'\]"),
    "bad marker": (lambda path: rewrite_document(path, lambda t, a: t.replace('"__tuple__": [', '"__items__": [7, ')),
                   "malformed entry"),
}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_checkpoints_raise_a_checkpoint_error_naming_the_path(tmp_path, kind):
    corrupt, match = CORRUPTIONS[kind]
    model = make_model()
    opt = Adam(model.parameters())
    train_a_bit(model, opt)
    path = mr.save(tmp_path / "ck.npz", model, opt, epoch=1)
    corrupt(tmp_path / "ck.npz")
    target = make_model()
    target_opt = Adam(target.parameters())
    before = model_snapshot(target)
    with pytest.raises(CheckpointError, match=match) as info:
        mr.load(path, target, target_opt)
    assert str(path) in str(info.value)
    assert_untouched(target, before)
    assert target_opt.state == {}


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        mr.load(tmp_path / "nothing.npz", make_model())


def test_stale_temporaries_of_the_same_target_are_removed_on_the_next_save(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)                          # a process that has exited
    stale = tmp_path / f".tmp-ck.npz.{dead_pid}.0badc0de.npz"
    live = tmp_path / f".tmp-ck.npz.{os.getppid()}.0badc0de.npz"          # its writer is alive
    other_target = tmp_path / f".tmp-other.npz.{dead_pid}.0badc0de.npz"   # another checkpoint's
    unrelated = tmp_path / ".tmp-ck.npz.notapid.npz"
    for f in (stale, live, other_target, unrelated):
        f.write_bytes(b"x" * 100)
    mr.save(tmp_path / "ck.npz", make_model())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ck.npz", live.name, other_target.name,
                                                                 unrelated.name])
    old = time.time() - 2 * 24 * 3600                    # a live pid's temporary, but two days old
    os.utime(live, (old, old))
    mr.save(tmp_path / "ck.npz", make_model())
    assert not live.exists() and other_target.exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoints_get_the_users_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = mr.save(tmp_path / "ck.npz", make_model())
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_device_arrays_and_tensors_in_metadata_go_through_their_backend(tmp_path):
    device = fake_device()
    values = device.asarray(np.arange(3.0))
    path = mr.save(tmp_path / "ck.npz", make_model(), curve=values, weights=mr.tensor(values))
    meta = mr.load(path, make_model())
    np.testing.assert_array_equal(meta["curve"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(meta["weights"], [0.0, 1.0, 2.0])


def test_numpy_scalar_metadata_comes_back_as_python_numbers(tmp_path):
    path = mr.save(tmp_path / "ck.npz", make_model(), epoch=np.int64(3), loss=np.float32(0.25), lr=np.float64(0.1))
    meta = mr.load(path, make_model())
    assert meta == {"epoch": 3, "loss": 0.25, "lr": 0.1}
    assert type(meta["epoch"]) is int and type(meta["loss"]) is float
