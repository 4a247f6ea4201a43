"""minireg.testing.devices: the counting fake accelerator."""
import numpy as np
import pytest

import minireg as mr
from minireg.testing import FakeDevice, TransferCounts, fake_device

FAKE_DEVICE = fake_device()


def test_fake_device_is_one_shared_registered_backend():
    assert fake_device() is FAKE_DEVICE and isinstance(FAKE_DEVICE, FakeDevice)
    assert mr.backend.backend_of(FAKE_DEVICE.asarray([1.0])) is FAKE_DEVICE
    assert FAKE_DEVICE.device_name == "fake:device1"


def test_fake_device_is_a_context_manager_for_the_current_backend():
    assert mr.current_backend().name == "numpy"
    with fake_device() as device:
        assert device is FAKE_DEVICE and mr.current_backend() is device
        assert mr.tensor([1.0]).backend is device
        with mr.using_backend("numpy"):
            assert mr.current_backend().name == "numpy"
        with device:                                   # re-entrant
            assert mr.current_backend() is device
        assert mr.current_backend() is device
    assert mr.current_backend().name == "numpy"
    assert "context manager" in fake_device.__doc__ or "context manager" in __import__(
        "minireg.testing.devices", fromlist=["x"]).__doc__


def test_counts_reads_copies_and_refused_conversions_with_their_place():
    x = FAKE_DEVICE.asarray(np.array([1.0, -2.0, 3.0]))
    xp = FAKE_DEVICE.xp
    with FAKE_DEVICE.counting() as counts:
        FAKE_DEVICE.to_numpy(x)
        int(xp.sum(xp.astype(x > 0, xp.int64)))
        xp.nonzero(x > 0)
        FAKE_DEVICE.asarray(2.5)                 # a Python number: a fill on the device, not a copy
        FAKE_DEVICE.asarray([1.0, 2.0])
        with pytest.raises(RuntimeError):
            np.asarray(x)
    assert (counts.syncs, counts.copies_to_device, counts.implicit) == (3, 1, 1), counts.report()
    reasons = counts.by_reason()
    assert reasons[("implicit", "np.asarray() of a device array")] == 1
    assert reasons[("sync", "int() of a device array")] == 1
    assert "tests/testing/test_devices.py" in counts.report()


def test_boolean_masks_and_scalar_reads_count_as_syncs_other_devices_do_not_count():
    x = FAKE_DEVICE.asarray(np.array([1.0, -2.0, 3.0]))
    import array_api_strict
    y = array_api_strict.asarray(np.array([1.0]), device=array_api_strict.Device("device2"))
    with FAKE_DEVICE.counting() as counts:
        x[x > 0]
        x[x < 0] = 0.0
        float(x[0])
        bool(x[1] == 0)
        float(y[0])                               # another device's reads are not counted here
        FAKE_DEVICE.asarray(y)                    # a copy from another device lands here
    assert (counts.syncs, counts.copies_to_device) == (4, 1), counts.report()


def test_counting_blocks_nest_and_the_total_can_be_reset():
    x = FAKE_DEVICE.asarray(np.ones(2))
    FAKE_DEVICE.reset_counts()
    with FAKE_DEVICE.counting() as outer:
        FAKE_DEVICE.to_numpy(x)
        with FAKE_DEVICE.counting() as inner:
            FAKE_DEVICE.to_numpy(x)
    assert (outer.syncs, inner.syncs, FAKE_DEVICE.counts.syncs) == (2, 1, 2)
    FAKE_DEVICE.reset_counts()
    assert FAKE_DEVICE.counts.syncs == 0 and isinstance(FAKE_DEVICE.counts, TransferCounts)
    assert repr(outer) == "<TransferCounts syncs=2 copies_to_device=0 implicit=0>"


def test_random_draws_from_the_device_stream_are_not_copies():
    with FAKE_DEVICE.counting() as counts:
        FAKE_DEVICE.random_normal(None, (3,), FAKE_DEVICE.dtype("float32"))
        FAKE_DEVICE.random_integers(None, 0, 4, (3,), FAKE_DEVICE.dtype("int64"))
        FAKE_DEVICE.random_uniform(np.random.default_rng(0), (3,), FAKE_DEVICE.dtype("float32"))   # host draw
    assert (counts.syncs, counts.copies_to_device) == (0, 1), counts.report()
