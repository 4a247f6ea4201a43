"""Global switches: gradient mode and the default dtype.

Thread rules (the backend in ``minireg.backend`` follows the same ones):

- ``set_default_dtype`` sets a **process-wide** default: every thread sees it, including threads
  started before or after the call.
- ``using_dtype(dtype)`` changes it for a **scope**: only the code inside the ``with`` block, in
  that thread (or asyncio task) sees it; other threads keep the process-wide default. The scoped
  value wins over the process-wide one inside the block.
- The gradient mode (``no_grad``/``enable_grad``) is always scoped, per thread, as in PyTorch:
  a ``no_grad`` block in one thread never turns off gradients in another.

Scoped values live in ContextVars: a thread starts with no scoped value (the process-wide defaults
apply), and ``contextvars.copy_context().run`` carries a scope into a thread explicitly.
"""
import contextlib
from contextvars import ContextVar

import numpy as np

_grad_enabled = ContextVar("minireg_grad_enabled", default=True)
_scoped_dtype = ContextVar("minireg_default_dtype", default=None)   # set only inside using_dtype
_process_dtype = np.dtype(np.float32)


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
    """Context manager: ops inside record no graph (evaluation, optimizer and constraint updates).
    Scoped to this thread (see the module docstring)."""
    return _set_grad(False)


def enable_grad():
    """Context manager: record the graph again, e.g. inside a ``no_grad`` block (this thread only)."""
    return _set_grad(True)


def get_default_dtype():
    """The dtype Python scalars and lists become: the ``using_dtype`` scope's, else the
    process-wide one (float32 unless changed with ``set_default_dtype``)."""
    scoped = _scoped_dtype.get()
    return _process_dtype if scoped is None else scoped


def _float_dtype(dtype):
    from minireg.errors import ArgumentTypeError, DTypeError
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ArgumentTypeError(f"default dtype must be a floating dtype such as float32 or float64, "
                                f"got {dtype!r}") from None
    if dtype.kind != "f":
        raise DTypeError(f"default dtype must be a floating dtype such as float32 or float64, got {dtype}")
    return dtype


def set_default_dtype(dtype):
    """Make ``dtype`` (float32, float64, ...) the process-wide default: all threads, those already
    running and those started later, see it (a ``using_dtype`` scope still wins inside its block)."""
    global _process_dtype
    _process_dtype = _float_dtype(dtype)


@contextlib.contextmanager
def using_dtype(dtype):
    """Context manager: ``dtype`` is the default inside the block, in this thread only."""
    token = _scoped_dtype.set(_float_dtype(dtype))
    try:
        yield get_default_dtype()
    finally:
        _scoped_dtype.reset(token)
