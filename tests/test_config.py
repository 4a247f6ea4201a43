"""Process-wide defaults and scoped switches, across threads (minireg._config)."""
import threading

import numpy as np
import pytest

import minireg as mr
from minireg._config import get_default_dtype, using_dtype
from minireg.errors import ArgumentTypeError, DTypeError


def in_thread(fn):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()))
    thread.start()
    thread.join()
    return out["value"]


def test_set_default_dtype_is_seen_by_threads_started_later():
    try:
        mr.set_default_dtype("float64")
        assert in_thread(get_default_dtype) == np.float64
        assert in_thread(lambda: mr.tensor([1.0]).dtype) == np.float64
    finally:
        mr.set_default_dtype("float32")
    assert in_thread(get_default_dtype) == np.float32


def test_using_dtype_is_scoped_to_its_block_and_thread():
    with using_dtype(np.float64) as dtype:
        assert dtype == np.float64 and mr.tensor([1.0]).dtype == np.float64
        assert in_thread(get_default_dtype) == np.float32
        with using_dtype("float16"):
            assert get_default_dtype() == np.float16
        assert get_default_dtype() == np.float64
    assert get_default_dtype() == np.float32


def test_no_grad_stays_in_its_thread():
    with mr.no_grad():
        assert not mr.is_grad_enabled()
        assert in_thread(mr.is_grad_enabled)


@pytest.mark.parametrize("dtype, error", [("int32", DTypeError), ("complex64", DTypeError), ("nonsense", ArgumentTypeError),
                                          (object(), ArgumentTypeError)])
def test_non_float_defaults_are_refused_and_change_nothing(dtype, error):
    with pytest.raises(error):
        mr.set_default_dtype(dtype)
    with pytest.raises(error):
        with using_dtype(dtype):
            pass
    assert get_default_dtype() == np.float32
