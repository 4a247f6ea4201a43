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


def test_random_numbers_are_drawn_on_the_host_and_identical_across_backends():
    a = get_backend("numpy").random_normal(np.random.default_rng(3), (4,), np.float32)
    b = FAKE_DEVICE.random_normal(np.random.default_rng(3), (4,), FAKE_DEVICE.dtype("float32"))
    np.testing.assert_array_equal(a, FAKE_DEVICE.to_numpy(b))
    assert a.dtype == np.float32


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
