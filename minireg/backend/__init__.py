"""Backend registry: which array library and device new tensors use, and which one owns an array.

    minireg.set_backend("cupy")            # everything created from now on lives on the GPU
    with minireg.using_backend("numpy"):   # temporarily back on the CPU
        ...
The start-up choice comes from the ``MINIREG_BACKEND`` environment variable (default "numpy").

Thread rules (as for the default dtype in ``minireg._config``): ``set_backend`` sets the
**process-wide** backend, seen by every thread, started before or after the call;
``using_backend`` changes it for a **scope**, only inside its ``with`` block and only in that
thread (or asyncio task), and wins over the process-wide one there.
"""
import contextlib
import os
import sys
from contextvars import ContextVar

from minireg.backend.base import Backend
from minireg.backend.cupy_backend import CupyBackend, cupy_status
from minireg.backend.numpy_backend import NumpyBackend
from minireg.errors import BackendUnavailableError, DeviceError

_FACTORIES = {"numpy": NumpyBackend, "cupy": CupyBackend}
_DEVICE_ALIASES = {"cpu": "numpy", "cuda": "cupy", "gpu": "cupy"}
_instances = {}          # name -> Backend, created on first use
_extra = []              # user-registered backends (e.g. a fake device in tests)
_scoped = ContextVar("minireg_backend", default=None)    # set only inside using_backend
_process = None          # the process-wide backend; None until first use (then MINIREG_BACKEND)


def get_backend(name_or_backend):
    """The backend called ``name`` ("numpy", "cupy"; "cpu"/"cuda" also accepted), or a Backend itself."""
    if isinstance(name_or_backend, Backend):
        return name_or_backend
    name = _DEVICE_ALIASES.get(name_or_backend, name_or_backend)
    if name not in _FACTORIES:
        known = sorted(set(_FACTORIES) | set(_DEVICE_ALIASES))
        raise BackendUnavailableError(f"unknown backend {name_or_backend!r}; expected one of {known}")
    if name not in _instances:
        _instances[name] = _FACTORIES[name]()
    return _instances[name]


def register_backend(backend):
    """Make a custom Backend known to ``backend_of`` (so tensors can be built from its arrays)."""
    if backend not in _extra:
        _extra.append(backend)
    return backend


def _environment_backend():
    name = os.environ.get("MINIREG_BACKEND", "numpy")
    try:
        return get_backend(name)
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"MINIREG_BACKEND={name!r} cannot be used: {exc}; unset it or choose one of "
                                      f"{available_backends()}") from None


def current_backend():
    """The backend new tensors are created on: the ``using_backend`` scope's, else the process-wide
    one (``set_backend``, or ``MINIREG_BACKEND`` at first use)."""
    global _process
    backend = _scoped.get()
    if backend is not None:
        return backend
    if _process is None:
        _process = _environment_backend()
    return _process


def set_backend(name):
    """Make ``name`` the process-wide backend new tensors are created on (every thread; a
    ``using_backend`` scope still wins inside its block)."""
    global _process
    _process = get_backend(name)
    return _process


@contextlib.contextmanager
def using_backend(name):
    """Context manager: ``name`` is the backend inside the block, in this thread only."""
    token = _scoped.set(get_backend(name))
    try:
        yield _scoped.get()
    finally:
        _scoped.reset(token)


def available_backends():
    """Names of the backends that can run on this machine."""
    return ["numpy"] + (["cupy"] if cupy_status()[0] else [])


def backend_of(array):
    """The backend that owns ``array``; raises for array types minireg does not know."""
    numpy_backend = get_backend("numpy")
    if numpy_backend.owns(array):
        return numpy_backend
    candidates = list(_extra) + [b for b in _instances.values() if b is not numpy_backend]
    if "cupy" in sys.modules and "cupy" not in _instances and type(array).__module__.startswith("cupy"):
        candidates.append(get_backend("cupy"))
    for backend in candidates:
        if backend.owns(array):
            return backend
    raise DeviceError(f"no registered backend owns an array of type {type(array).__name__}; "
                      f"use minireg.backend.register_backend() for custom array libraries")


__all__ = ["Backend", "NumpyBackend", "CupyBackend", "get_backend", "register_backend", "current_backend",
           "set_backend", "using_backend", "available_backends", "backend_of", "cupy_status"]
