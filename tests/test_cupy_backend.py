"""The CuPy backend's own code paths, against NumPy on identical host data (GPU only).

These run where CuPy sees a GPU (``pytest -m gpu``; ``bench/gpu/run_gpu.sh`` does it): the
namespace overlay (one-pass clip/sign kernels, bounds-checked take), padding,
fill-kernel scalars, the device random stream and its state, deferred checks, and no device sync
inside forward and backward passes (``cupyx.allow_synchronize``, where this CuPy still has it).
"""
import contextlib
import warnings

import numpy as np
import pytest

import minireg as mr
from minireg import F, nn

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu():
    return mr.get_backend("cupy")


@pytest.fixture(scope="module")
def cupy(gpu):
    import cupy
    return cupy


def host(gpu, array):
    return gpu.to_numpy(array)


@pytest.fixture
def no_sync(cupy):
    """A context in which CuPy raises on a device synchronization (skips where CuPy dropped it)."""
    import cupyx
    allow = getattr(cupyx, "allow_synchronize", None)
    if allow is None:
        pytest.skip("this CuPy has no cupyx.allow_synchronize")

    @contextlib.contextmanager
    def forbid():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with allow(False):
                yield
    return forbid


# ---- namespace overlay ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lo, hi", [(0, None), (None, 0.5), (-0.5, 0.5), (None, None)])
def test_clip_kernel_matches_numpy_with_nan_and_signed_zero(gpu, dtype, lo, hi):
    x = np.array([-1.0, -0.25, -0.0, 0.0, 0.75, np.nan, np.inf, -np.inf], dtype=dtype)
    expected = x.copy() if lo is None and hi is None else np.clip(x, lo, hi)
    out = gpu.xp.clip(gpu.asarray(x), lo, hi)
    assert out.dtype == dtype
    np.testing.assert_array_equal(host(gpu, out), expected)


def test_clip_with_array_bounds_and_integers_uses_where(gpu):
    x = np.arange(-3, 4)
    np.testing.assert_array_equal(host(gpu, gpu.xp.clip(gpu.asarray(x), -1, 2)), np.clip(x, -1, 2))
    bounds = np.linspace(-1, 1, 7)
    xf = np.linspace(-2, 2, 7)
    np.testing.assert_array_equal(host(gpu, gpu.xp.clip(gpu.asarray(xf), gpu.asarray(bounds), None)),
                                  np.maximum(xf, bounds))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_sign_matches_numpy_and_keeps_nan(gpu, dtype):
    x = np.array([-2, -0.0, 0, 3, np.nan] if np.dtype(dtype).kind == "f" else [-2, 0, 3], dtype=dtype)
    np.testing.assert_array_equal(host(gpu, gpu.xp.sign(gpu.asarray(x))), np.sign(x))


@pytest.mark.parametrize("fn", [F.relu, F.softplus, F.elu, F.sign, F.abs, lambda t: F.clip(t, -0.5, 0.5)])
def test_activations_make_no_device_sync_forward_or_backward(gpu, no_sync, fn):
    x = mr.tensor(np.linspace(-2, 2, 64).reshape(8, 8) + 0.01).to("cuda").requires_grad_()
    with no_sync():
        y = fn(x).sum()
        y.backward()
    expected = fn(mr.tensor(np.linspace(-2, 2, 64).reshape(8, 8) + 0.01)).sum().item()
    np.testing.assert_allclose(y.item(), expected, rtol=1e-12)


def test_take_and_scatter_add_match_numpy_and_raise_numpy_s_error_for_bad_indices(gpu):
    x = np.arange(12.0).reshape(4, 3)
    index = np.array([3, -1, 0, 3])
    np.testing.assert_array_equal(host(gpu, gpu.xp.take(gpu.asarray(x), gpu.asarray(index), axis=0)), x[index])
    expected = np.zeros(4)
    np.add.at(expected, index, np.ones(4))
    np.testing.assert_array_equal(
        host(gpu, gpu.scatter_add(gpu.zeros((4,), np.float64), gpu.asarray(index), gpu.asarray(np.ones(4)))),
        expected)
    with pytest.raises(IndexError) as numpy_error:
        np.take(x, np.array([4]), axis=0)
    gpu.xp.take(gpu.asarray(x), gpu.asarray(np.array([4])), axis=0)     # CuPy alone would wrap to row 0
    with pytest.raises(IndexError) as ours:
        gpu.to_numpy(gpu.asarray(0.0))
    assert str(ours.value) == str(numpy_error.value)
    gpu.scatter_add(gpu.zeros((4,), np.float64), gpu.asarray(np.array([-5])), gpu.asarray(np.ones(1)))
    with pytest.raises(IndexError, match="index -5 is out of bounds for axis 0 with size 4"):
        gpu.raise_deferred_checks()


def test_getitem_with_a_bad_device_index_raises_at_the_next_read(gpu):
    x = mr.tensor(np.arange(6.0)).to("cuda")
    rows = x[mr.tensor(np.array([1, 6])).to("cuda")]
    with pytest.raises(IndexError, match="index 6 is out of bounds"):
        rows.numpy()


def test_device_labels_out_of_range_raise_at_the_next_read(gpu):
    logits = mr.tensor(np.zeros((3, 4))).to("cuda")
    loss = F.cross_entropy(logits, mr.tensor(np.array([0, 4, 1])).to("cuda"))
    with pytest.raises(ValueError, match="label 4 is out of range"):
        loss.item()


# ---- creation, windows, padding ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [0.5, 3, True, np.float32(1.5), np.int8(-2)])
def test_scalars_become_device_arrays_of_numpy_s_dtype(gpu, cupy, value):
    out = gpu.asarray(value)
    assert isinstance(out, cupy.ndarray) and out.shape == () and out.dtype == np.asarray(value).dtype
    assert host(gpu, out) == value
    assert gpu.asarray(value, dtype=np.float32).dtype == np.float32





def test_pad_matches_numpy(gpu):
    x = np.random.default_rng(1).normal(size=(2, 3, 4))
    width = ((0, 1), (2, 0), (1, 3))
    np.testing.assert_array_equal(host(gpu, gpu.pad(gpu.asarray(x), width, -1.5)),
                                  np.pad(x, width, constant_values=-1.5))


def test_conv_and_pool_forward_and_backward_make_no_device_sync(gpu, no_sync):
    mr.manual_seed(0)
    with mr.using_backend("cupy"):
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(4 * 4 * 4, 3))
        x = mr.randn(2, 1, 8, 8)
    with no_sync():
        model(x).sum().backward()


# ---- random numbers ---------------------------------------------------------------------------------
def test_device_stream_is_seeded_reproducible_and_stays_on_the_device(gpu, cupy):
    draws = []
    for _ in range(2):
        mr.manual_seed(3)
        with mr.using_backend("cupy"):
            u, z, k = mr.rand(10000), mr.randn(10000, dtype="float64"), mr.randint(0, 7, (10000,))
        assert all(isinstance(t.data, cupy.ndarray) for t in (u, z, k))
        draws.append([t.numpy() for t in (u, z, k)])
    for a, b in zip(*draws):
        np.testing.assert_array_equal(a, b)
    u, z, k = draws[0]
    assert u.dtype == np.float32 and 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    assert z.dtype == np.float64 and abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05
    assert k.dtype == np.int64 and set(np.unique(k)) == set(range(7))


def test_device_stream_state_round_trips(gpu):
    mr.manual_seed(4)
    with mr.using_backend("cupy"):
        mr.rand(5)
        state = mr.random.get_state()
        expected = mr.randn(100).numpy()
        mr.manual_seed(5)
        mr.randn(7)
        mr.random.set_state(state)
        np.testing.assert_array_equal(mr.randn(100).numpy(), expected)
    assert state["devices"]["cuda:0"]["curand_states"].dtype == np.int8


def test_dropout_on_the_gpu_uses_the_device_stream(gpu, no_sync):
    x = mr.tensor(np.ones((256, 256), dtype=np.float32)).to("cuda")
    with no_sync():
        y = F.dropout(x, 0.25)
    kept = (y.numpy() > 0).mean()
    assert abs(kept - 0.75) < 0.01


# ---- a training step on both devices --------------------------------------------------------------
def test_a_few_training_steps_match_the_cpu(gpu):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 10)), rng.integers(0, 3, size=32)
    losses = {}
    for device in ("cpu", "cuda"):
        mr.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 16, dtype="float64"), nn.ReLU(), nn.Linear(16, 3, dtype="float64"))
        model.to(device)
        optimizer = mr.optim.Adam(model.parameters(), lr=1e-2)
        xb, yb = mr.tensor(x).to(device), mr.tensor(y).to(device)
        values = []
        for _ in range(5):
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            values.append(loss)
        losses[device] = [v.item() for v in values]
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-9)
