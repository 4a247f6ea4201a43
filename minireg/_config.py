"""Global switches, held in ContextVars so threads and asyncio tasks each see their own."""
import contextlib
from contextvars import ContextVar

import numpy as np

_grad_enabled = ContextVar("minireg_grad_enabled", default=True)
_default_dtype = ContextVar("minireg_default_dtype", default=np.dtype(np.float32))


def is_grad_enabled():
    return _grad_enabled.get()


@contextlib.contextmanager
def _set_grad(enabled):
    token = _grad_enabled.set(enabled)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


def no_grad():
    """Context manager: ops inside record no graph (evaluation, optimizer and constraint updates)."""
    return _set_grad(False)


def enable_grad():
    """Context manager: record the graph again, e.g. inside a ``no_grad`` block."""
    return _set_grad(True)


def get_default_dtype():
    """The dtype Python scalars and lists become (float32 unless changed)."""
    return _default_dtype.get()


def set_default_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        from minireg.errors import DTypeError
        raise DTypeError(f"default dtype must be a floating dtype such as float32 or float64, got {dtype}")
    _default_dtype.set(dtype)
