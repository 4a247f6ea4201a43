"""Backend switching, device discipline and the fake accelerator."""
import os
import subprocess
import sys

import array_api_strict
import numpy as np
import pytest

import minireg as mr
from minireg import F
from minireg.backend import backend_of, get_backend, register_backend
from minireg.backend.base import Backend
from minireg.backend import cupy_status
from minireg.testing.devices import fake_device

FAKE_DEVICE = fake_device()
HAVE_GPU = cupy_status()[0]


def on_fake(values):
    return mr.tensor(FAKE_DEVICE.asarray(np.asarray(values, dtype=np.float64)))


def test_fake_device_tensors_stay_on_their_device_through_forward_and_backward():
    x = on_fake([[0.5, -1.0], [2.0, 0.25]])
    x.requires_grad_()
    w = on_fake([[1.0], [-2.0]])
    y = (F.tanh(x @ w) + F.logsumexp(x, axis=1, keepdims=True)).sum()
    y.backward()
    assert x.grad.backend is FAKE_DEVICE and x.grad.data.device == FAKE_DEVICE.device
    with pytest.raises(RuntimeError):
        np.asarray(x.grad.data)          # the fake device refuses implicit host copies
    assert x.grad.numpy().shape == (2, 2)  # the explicit copy works


def test_mixing_devices_raises_naming_both():
    cpu = mr.tensor(np.ones(2))
    fake = on_fake([1.0, 2.0])
    with pytest.raises(mr.DeviceError, match=r"cpu.*fake|fake.*cpu"):
        cpu + fake
    with pytest.raises(mr.DeviceError):
        fake + np.ones(2)               # a host array is not silently copied to the device


def test_to_moves_explicitly_and_numpy_copies_back():
    x = mr.tensor(np.arange(3.0), requires_grad=True)
    same = x.to("cpu")
    assert same is x
    moved = x.to(FAKE_DEVICE)
    assert moved.backend is FAKE_DEVICE and moved.requires_grad and moved.is_leaf
    np.testing.assert_array_equal(moved.numpy(), [0.0, 1.0, 2.0])


def test_set_backend_and_using_backend():
    assert mr.current_backend().name == "numpy"
    with mr.using_backend(FAKE_DEVICE):
        t = mr.tensor([1.0, 2.0])
        assert t.backend is FAKE_DEVICE
    assert mr.current_backend().name == "numpy"
    assert mr.tensor([1.0]).backend.name == "numpy"
    mr.set_backend(FAKE_DEVICE)
    try:
        assert mr.tensor([1.0]).backend is FAKE_DEVICE
    finally:
        mr.set_backend("numpy")


def test_unknown_backend_and_missing_gpu_are_clear_errors():
    with pytest.raises(mr.BackendUnavailableError, match="unknown backend 'tpu'"):
        mr.set_backend("tpu")
    if not HAVE_GPU:
        with pytest.raises(mr.BackendUnavailableError, match="cupy"):
            mr.set_backend("cupy")
        assert mr.available_backends() == ["numpy"]


def test_environment_variable_chooses_the_start_backend():
    code = "import minireg; print(minireg.current_backend().name)"
    env = dict(os.environ, MINIREG_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "numpy"
    env["MINIREG_BACKEND"] = "nonsense"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "unknown backend 'nonsense'" in out.stderr


def test_backend_of_finds_registered_backends():
    assert backend_of(np.ones(1)).name == "numpy"
    assert backend_of(FAKE_DEVICE.asarray([1.0])) is FAKE_DEVICE
    other = Backend(array_api_strict, device=array_api_strict.Device("device2"), name="other")
    with pytest.raises(mr.DeviceError, match="register_backend"):
        backend_of(other.asarray([1.0]))
    register_backend(other)
    assert backend_of(other.asarray([1.0])) is other


@pytest.mark.parametrize("index, values", [
    ((np.array([0, 2, 0, 0]),), [1.0, 2.0, 3.0, 4.0]),
    ((np.array([[1, 1], [0, 3]]),), [[1.0, 2.0], [3.0, 4.0]]),
])
def test_generic_scatter_add_matches_numpy_add_at(index, values):
    target = np.zeros(5)
    expected = target.copy()
    np.add.at(expected, index, np.asarray(values))
    generic = Backend(np, device="cpu", name="generic")   # the array-API fallback, run on NumPy
    np.testing.assert_allclose(generic.scatter_add(target, index, np.asarray(values)), expected)
    np.testing.assert_allclose(get_backend("numpy").scatter_add(target, index, np.asarray(values)), expected)


def test_an_explicit_numpy_generator_draws_on_the_host_the_same_numbers_on_every_backend():
    a = get_backend("numpy").random_normal(np.random.default_rng(3), (4,), np.float32)
    with FAKE_DEVICE.counting() as counts:
        b = FAKE_DEVICE.random_normal(np.random.default_rng(3), (4,), FAKE_DEVICE.dtype("float32"))
    np.testing.assert_array_equal(a, FAKE_DEVICE.to_numpy(b))
    assert a.dtype == np.float32 and counts.copies_to_device == 1      # host draw: one upload


def test_the_default_stream_of_a_device_is_its_own_seeded_and_reproducible():
    numpy_backend = get_backend("numpy")
    draws = []
    for _ in range(2):
        mr.manual_seed(7)
        with FAKE_DEVICE.counting() as counts:
            device = FAKE_DEVICE.random_uniform(mr.random.default_generator(), (5,), FAKE_DEVICE.dtype("float32"))
            again = FAKE_DEVICE.random_uniform(None, (5,), FAKE_DEVICE.dtype("float32"))
        host = numpy_backend.random_uniform(None, (5,), np.float32)
        draws.append((FAKE_DEVICE.to_numpy(device), FAKE_DEVICE.to_numpy(again), host))
        assert counts.copies_to_device == 0          # drawn "on the device"
    for first, second in zip(*draws):
        np.testing.assert_array_equal(first, second)           # each stream is reproducible
    assert not np.array_equal(draws[0][0], draws[0][1])        # and advances
    mr.manual_seed(7)
    np.testing.assert_array_equal(draws[0][2], np.random.default_rng(7).uniform(size=5).astype(np.float32))


def test_numpy_backend_stream_is_the_host_generator():
    mr.manual_seed(3)
    assert mr.random.device_generator(get_backend("numpy")) is mr.random.default_generator()
    assert mr.random.device_generator(FAKE_DEVICE) is not mr.random.default_generator()


def test_random_state_round_trips_host_and_device_streams():
    mr.manual_seed(11)
    mr.rand(3)
    FAKE_DEVICE.random_normal(None, (3,), FAKE_DEVICE.dtype("float64"))
    state = mr.random.get_state()
    expected_host = mr.rand(4).numpy()
    expected_device = FAKE_DEVICE.to_numpy(FAKE_DEVICE.random_normal(None, (4,), FAKE_DEVICE.dtype("float64")))
    mr.manual_seed(99)                                  # a different history ...
    mr.random.set_state(state)                          # ... then back to the saved point
    np.testing.assert_array_equal(mr.rand(4).numpy(), expected_host)
    np.testing.assert_array_equal(
        FAKE_DEVICE.to_numpy(FAKE_DEVICE.random_normal(None, (4,), FAKE_DEVICE.dtype("float64"))), expected_device)
    assert set(state) == {"format", "seed", "host", "devices"} and "fake:device1" in state["devices"]


def test_random_state_survives_a_checkpoint_file(tmp_path):
    mr.manual_seed(5)
    FAKE_DEVICE.random_uniform(None, (2,), FAKE_DEVICE.dtype("float32"))
    model = mr.nn.Linear(2, 1)
    mr.save(tmp_path / "c.npz", model, rng_state=True)
    expected = FAKE_DEVICE.to_numpy(FAKE_DEVICE.random_uniform(None, (3,), FAKE_DEVICE.dtype("float32")))
    mr.manual_seed(6)
    mr.load(tmp_path / "c.npz", model, rng_state=True)
    np.testing.assert_array_equal(
        FAKE_DEVICE.to_numpy(FAKE_DEVICE.random_uniform(None, (3,), FAKE_DEVICE.dtype("float32"))), expected)


@pytest.mark.parametrize("state", [None, {"format": "other"}, {"format": "minireg-random-1", "seed": 1}])
def test_set_state_rejects_what_get_state_did_not_make(state):
    before = mr.random.get_state()
    with pytest.raises(mr.errors.CheckpointError, match="get_state"):
        mr.random.set_state(state)
    assert mr.random.get_state()["host"] == before["host"]


def test_factories_draw_on_the_current_backend_with_torch_signatures():
    mr.manual_seed(0)
    a, b = mr.rand(2, 3), mr.randn((4,), dtype="float64", requires_grad=True)
    assert (a.shape, a.dtype, b.shape, b.dtype, b.requires_grad) == ((2, 3), np.float32, (4,), np.float64, True)
    assert ((a.numpy() >= 0) & (a.numpy() < 1)).all()
    ints = mr.randint(2, 5, (1000,)).numpy()
    assert ints.dtype == np.int64 and set(np.unique(ints)) == {2, 3, 4}
    assert set(np.unique(mr.randint(3, (200,)).numpy())) == {0, 1, 2}
    mr.manual_seed(0)
    np.testing.assert_array_equal(mr.rand(2, 3).numpy(), a.numpy())
    with FAKE_DEVICE:
        on_device = mr.randn(3)
    assert on_device.backend is FAKE_DEVICE


@pytest.mark.parametrize("call, error, message", [
    (lambda: mr.randint(3, 3), mr.errors.ArgumentError, "high must be greater than low"),
    (lambda: mr.randint(0, 3, dtype="float32"), mr.errors.ArgumentError, "integer dtype"),
    (lambda: mr.rand(2, dtype="int32"), mr.errors.ArgumentError, "floating dtype"),
    (lambda: mr.rand(-1), mr.errors.ArgumentError, "size"),
    (lambda: mr.randn(2.5), mr.errors.ArgumentTypeError, "size"),
    (lambda: mr.manual_seed(-1), mr.errors.ArgumentError, "seed"),
])
def test_factory_and_seed_arguments_are_checked(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- checks of device data: read at the next explicit read ---------------------------------------
def test_a_device_check_costs_no_sync_and_raises_at_the_next_read():
    labels = FAKE_DEVICE.asarray(np.array([0, 3, 9]))
    with FAKE_DEVICE.counting() as counts:
        FAKE_DEVICE.check_in_range(labels, 0, 5, mr.errors.ArgumentError, "op: label {value} is out of range")
    assert counts.syncs == 0
    with FAKE_DEVICE.counting() as counts, pytest.raises(mr.errors.ArgumentError, match="op: label 9 is out"):
        FAKE_DEVICE.to_numpy(FAKE_DEVICE.asarray(1.0))
    assert counts.syncs == 1                     # the value and the check travel together
    FAKE_DEVICE.to_numpy(labels)                 # the failed check was reported once, then cleared


def test_merged_device_checks_report_the_worst_value_and_a_big_read_comes_after_them():
    for values in ([0, 1], [-4, 2], [-1, 3]):
        FAKE_DEVICE.check_in_range(FAKE_DEVICE.asarray(np.array(values)), 0, 10, ValueError, "bad {value}")
    with FAKE_DEVICE.counting() as counts, pytest.raises(ValueError, match="bad -4"):
        FAKE_DEVICE.to_numpy(FAKE_DEVICE.asarray(np.zeros(1000)))
    assert counts.syncs == 1                     # raised before the big array was read


def test_sync_checks_flag_reads_each_device_check_at_once(monkeypatch):
    monkeypatch.setattr(FAKE_DEVICE, "sync_checks", True)
    with pytest.raises(ValueError, match="bad 7"):
        FAKE_DEVICE.check_in_range(FAKE_DEVICE.asarray(np.array([7])), 0, 5, ValueError, "bad {value}")


def test_numpy_backend_checks_at_once_and_skips_empty_arrays():
    numpy_backend = get_backend("numpy")
    numpy_backend.check_in_range(np.zeros(0, dtype=int), 0, 1, ValueError, "never {value}")
    with pytest.raises(ValueError, match="bad -1"):
        numpy_backend.check_in_range(np.array([-1, 0]), 0, 2, ValueError, "bad {value}")


@pytest.mark.parametrize("index, bad_axis", [(np.array([0, 3]), 0), ((slice(None), np.array([[1], [-5]])), 1),
                                             ((Ellipsis, np.array([2, 5])), 1), ((None, 0, np.array([4])), 1)])
def test_device_index_checks_give_numpy_s_index_error(index, bad_axis):
    shape = (3, 4)
    items = index if isinstance(index, tuple) else (index,)
    device_index = tuple(FAKE_DEVICE.asarray(i) if isinstance(i, np.ndarray) else i for i in items)
    with pytest.raises(IndexError) as numpy_error:
        np.zeros(shape)[index]
    FAKE_DEVICE.check_index(device_index if isinstance(index, tuple) else device_index[0], shape)
    with pytest.raises(IndexError) as ours:
        FAKE_DEVICE.raise_deferred_checks()
    assert str(ours.value) == str(numpy_error.value) and f"axis {bad_axis}" in str(ours.value)


def test_in_bounds_device_indices_including_negative_ones_pass():
    FAKE_DEVICE.check_index((FAKE_DEVICE.asarray(np.array([-3, 2])),), (3,))
    FAKE_DEVICE.raise_deferred_checks()
    FAKE_DEVICE.scatter_add(FAKE_DEVICE.zeros((3,), FAKE_DEVICE.dtype("float64")),
                            FAKE_DEVICE.asarray(np.array([0, 2, 2])), FAKE_DEVICE.asarray(np.ones(3)))
    FAKE_DEVICE.raise_deferred_checks()


# ---- primitives shared by the NumPy and CuPy backends -------------------------------------------
def test_namespace_overlay_replaces_only_the_named_functions():
    from minireg.backend.base import NamespaceOverlay
    xp = NamespaceOverlay(np, clip=lambda x, min=None, max=None: "replaced")
    assert xp.clip(1, 0, 2) == "replaced" and xp.sum is np.sum and xp.float32 is np.float32
    assert "clip" in repr(xp)


@pytest.mark.parametrize("lo, hi", [(0.0, None), (None, 0.5), (-0.5, 0.5), (None, None)])
def test_where_clip_matches_numpy_clip_and_keeps_nan(lo, hi):
    from minireg.backend.base import where_clip
    x = np.array([-1.0, -0.25, 0.0, 0.75, np.nan], dtype=np.float32)
    expected = x.copy() if lo is None and hi is None else np.clip(x, lo, hi)
    out = where_clip(np, x, lo, hi)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32 and out is not x
    np.testing.assert_array_equal(where_clip(np, x, np.float32(-0.5) if lo is not None else None,
                                             np.full(5, 0.5, np.float64) if hi is not None else None),
                                  np.clip(x, -0.5 if lo is not None else None, 0.5 if hi is not None else None)
                                  if (lo, hi) != (None, None) else x)


@pytest.mark.gpu
def test_cupy_round_trip_and_training_step_match_cpu():
    rng = np.random.default_rng(0)
    x0, w0 = rng.normal(size=(8, 5)), rng.normal(size=(5, 3))
    results = []
    for device in ("cpu", "cuda"):
        x = mr.tensor(x0).to(device)
        w = mr.tensor(w0, requires_grad=True).to(device)
        F.log_softmax(F.relu(x @ w), axis=1).sum().backward()
        assert w.grad.device == w.device
        results.append(w.grad.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-10, atol=1e-12)


def test_set_backend_is_process_wide_and_using_backend_is_scoped_to_its_thread():
    import threading
    seen = {}

    def record(key):
        seen[key] = mr.current_backend()
    try:
        mr.set_backend(FAKE_DEVICE)
        started_after = threading.Thread(target=record, args=("after",))
        started_after.start()
        started_after.join()
        assert seen["after"] is FAKE_DEVICE                 # threads see the process-wide backend
    finally:
        mr.set_backend("numpy")
    with mr.using_backend(FAKE_DEVICE):                      # a scope: this thread only
        other = threading.Thread(target=record, args=("scoped",))
        other.start()
        other.join()
        assert mr.current_backend() is FAKE_DEVICE
    assert seen["scoped"].name == "numpy"


def test_an_unusable_minireg_backend_names_the_variable(monkeypatch):
    import minireg.backend as backends
    monkeypatch.setattr(backends, "_process", None)
    monkeypatch.setenv("MINIREG_BACKEND", "tpu")
    with pytest.raises(mr.BackendUnavailableError, match="MINIREG_BACKEND='tpu' cannot be used: unknown backend"):
        mr.current_backend()
