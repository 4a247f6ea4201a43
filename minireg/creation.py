"""Tensor factories with NumPy's and PyTorch's names: ``zeros``, ``ones``, ``full``, ``empty``,
``*_like``, ``arange``, ``linspace``, ``eye``, and the ways in and out of other libraries without a
copy (``as_tensor``, ``from_numpy``, ``from_dlpack``; ``Tensor.__dlpack__``).

Every factory makes a leaf on the active backend (``minireg.set_backend``), takes ``dtype=``
(default: the default dtype, float32 unless changed; ``arange`` of integers gives int64, as in
PyTorch) and ``requires_grad=``. Random factories (``rand``, ``randn``, ``randint``) live in
``minireg.random``. ``minireg.tensor`` copies its data; the functions here share it where they can.
"""
import numbers

import numpy as np

from minireg import backend as _backends
from minireg import check
from minireg._config import get_default_dtype
from minireg.errors import ArgumentError, DeviceError
from minireg.tensor import Tensor, _check_dtype

_DLPACK_CPU, _DLPACK_CUDA = 1, 2   # DLPack device types


def _size(name, size):
    """``zeros(2, 3)`` and ``zeros((2, 3))`` alike, as a tuple of non-negative ints."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(check.integer(f"{name}: size", s, low=0) for s in size)


def _leaf(array, backend, requires_grad):
    t = Tensor._make(array, backend)
    return t.requires_grad_(True) if requires_grad else t


def _dtype(backend, dtype, default=None):
    dtype = default if dtype is None else dtype
    dtype = get_default_dtype() if dtype is None else dtype
    _check_dtype(backend, dtype)
    return backend.dtype(dtype)


def full(size, fill_value, *, dtype=None, requires_grad=False):
    """A tensor of shape ``size`` filled with ``fill_value`` (bool and int values give bool and int64
    tensors unless ``dtype`` says otherwise, as in PyTorch)."""
    backend = _backends.current_backend()
    size = _size("full", size if isinstance(size, (tuple, list)) else (size,))
    if isinstance(fill_value, (bool, np.bool_)):
        default = np.bool_
    else:
        check.real("full: fill_value", fill_value, finite=False)
        default = np.int64 if isinstance(fill_value, numbers.Integral) else None
    return _leaf(backend.full(size, fill_value, _dtype(backend, dtype, default)), backend, requires_grad)


def zeros(*size, dtype=None, requires_grad=False):
    backend = _backends.current_backend()
    return _leaf(backend.zeros(_size("zeros", size), _dtype(backend, dtype)), backend, requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    backend = _backends.current_backend()
    return _leaf(backend.ones(_size("ones", size), _dtype(backend, dtype)), backend, requires_grad)


def empty(*size, dtype=None, requires_grad=False):
    """Uninitialised values (whatever the memory held): write every element before reading it."""
    backend = _backends.current_backend()
    shape, dtype = _size("empty", size), _dtype(backend, dtype)
    return _leaf(backend.xp.empty(shape, dtype=dtype, device=backend.device), backend, requires_grad)


def _like(name, fill, t, dtype, requires_grad):
    t = check.instance(f"{name}: input", t, Tensor)
    dtype = t.dtype if dtype is None else t.backend.dtype(dtype)
    _check_dtype(t.backend, dtype)
    return _leaf(t.backend.full(t.shape, fill, dtype), t.backend, requires_grad)


def zeros_like(t, *, dtype=None, requires_grad=False):
    """Zeros with ``t``'s shape, dtype and device."""
    return _like("zeros_like", 0, t, dtype, requires_grad)


def ones_like(t, *, dtype=None, requires_grad=False):
    """Ones with ``t``'s shape, dtype and device."""
    return _like("ones_like", 1, t, dtype, requires_grad)


def arange(start, end=None, step=1, *, dtype=None, requires_grad=False):
    """``start, start + step, ...`` up to but excluding ``end`` (``arange(n)``: 0..n-1)."""
    if end is None:
        start, end = 0, start
    for name, value in (("start", start), ("end", end), ("step", step)):
        check.real(f"arange: {name}", value)
    if step == 0:
        raise ArgumentError("arange: step must not be 0")
    integral = all(isinstance(v, numbers.Integral) for v in (start, end, step))
    backend = _backends.current_backend()
    dtype = _dtype(backend, dtype, np.int64 if integral else None)
    if integral:
        start, end, step = int(start), int(end), int(step)
    return _leaf(backend.xp.arange(start, end, step, dtype=dtype, device=backend.device), backend, requires_grad)


def linspace(start, end, steps, *, dtype=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end``, both included."""
    start, end = check.real("linspace: start", start), check.real("linspace: end", end)
    steps = check.integer("linspace: steps", steps, low=0)
    backend = _backends.current_backend()
    dtype = _dtype(backend, dtype)
    return _leaf(backend.xp.linspace(start, end, steps, dtype=dtype, device=backend.device), backend, requires_grad)


def eye(n, m=None, *, dtype=None, requires_grad=False):
    """The ``n x m`` identity (``m = n`` by default)."""
    n = check.integer("eye: n", n, low=0)
    m = n if m is None else check.integer("eye: m", m, low=0)
    backend = _backends.current_backend()
    return _leaf(backend.xp.eye(n, m, dtype=_dtype(backend, dtype), device=backend.device), backend, requires_grad)


def as_tensor(data, dtype=None):
    """``data`` as a tensor, sharing memory where it can (a Tensor of that dtype is returned as it is;
    a NumPy array on the CPU backend, or a device array, is wrapped without a copy)."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype == data.backend.dtype(dtype)):
        return data
    return Tensor(data, dtype=dtype)


def from_numpy(array):
    """A CPU tensor sharing memory with the NumPy array ``array`` (as ``torch.from_numpy``): writes
    through either are seen by both (they are untracked by version counters)."""
    check.instance("from_numpy: array", array, np.ndarray, "a NumPy array")
    _check_dtype(_backends.get_backend("numpy"), array.dtype)
    return Tensor._make(array, _backends.get_backend("numpy"))


def from_dlpack(x):
    """A tensor sharing memory with any DLPack producer (a NumPy, CuPy, PyTorch or JAX array, or a
    Tensor): CPU data gives a NumPy-backed tensor, CUDA data a CuPy-backed one."""
    if isinstance(x, Tensor):
        return x.detach()
    if not hasattr(x, "__dlpack_device__"):
        check.instance("from_dlpack: x", x, Tensor, "an object with __dlpack__ and __dlpack_device__")
    kind = int(x.__dlpack_device__()[0])
    if kind not in (_DLPACK_CPU, _DLPACK_CUDA):
        raise DeviceError(f"from_dlpack: DLPack device type {kind} is not supported (CPU = 1 or CUDA = 2)")
    backend = _backends.get_backend("numpy" if kind == _DLPACK_CPU else "cupy")
    array = np.from_dlpack(x) if kind == _DLPACK_CPU else backend.xp.from_dlpack(x)
    _check_dtype(backend, array.dtype)
    return Tensor._make(array, backend)
