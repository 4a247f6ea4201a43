"""The generic backend: any array-API namespace on one device.

A backend is the only place ops meet an array library. It holds the namespace ``xp`` (array-API
functions, possibly a ``NamespaceOverlay`` that swaps a few of them), the device, array creation on
that device, the few primitives the array API lacks (scatter-add and bounds-checked take, padding,
random numbers from the device's stream, checks of device data read lazily,
synchronize) and the kernel table of compiled regularizer kernels. Subclasses override primitives
with faster library calls; the generic versions here use only the array API, so they also run on
array_api_strict's fake device (``minireg.testing.devices``), which is how the test suite catches
host round-trips without a GPU.
"""
import os

import numpy as np

from minireg import random as _random
from minireg.errors import IndexOutOfRangeError


class NamespaceOverlay:
    """An array namespace with a few functions replaced; every other name is ``base``'s.

    Backends use it to swap single functions of a library namespace for versions without host
    round-trips (CuPy's array-API ``clip``/``sign`` use masked assignment, which syncs) or with
    checks the library lacks (bounds checks for ``take``). Looked-up names are cached on the
    instance, so ``xp.name`` costs one dictionary lookup, as on a module.
    """

    def __init__(self, base, **overrides):
        self.__dict__.update(overrides)
        self._base, self._overrides = base, tuple(sorted(overrides))

    def __getattr__(self, name):           # only called for names not cached yet
        value = getattr(self._base, name)
        setattr(self, name, value)
        return value

    def __repr__(self):
        return f"<{getattr(self._base, '__name__', self._base)} with {', '.join(self._overrides)} replaced>"


def index_axes(index, ndim):
    """``(axis, integer array)`` for each integer array in a NumPy-style ``index`` of an array with
    ``ndim`` axes (ints, slices, None and Ellipsis consume axes as in NumPy; boolean masks, which
    cannot go out of bounds, are skipped)."""
    items = index if isinstance(index, tuple) else (index,)
    consumed = sum(0 if i is None or i is Ellipsis else getattr(i, "ndim", 1) if _is_bool(i) else 1 for i in items)
    axis, found = 0, []
    for item in items:
        if item is Ellipsis:
            axis += ndim - consumed
        elif item is None:
            continue
        elif _is_bool(item):
            axis += item.ndim
        else:
            if hasattr(item, "shape") and item.ndim > 0:
                found.append((axis, item))
            axis += 1
    return found


def where_clip(xp, x, lo=None, hi=None):
    """``clip`` built from ``where`` (no masked assignment, so no sync on CuPy): bounds are numbers
    or arrays, the result keeps x's dtype and NaN passes through."""
    def bound(b):
        return xp.astype(b, x.dtype) if hasattr(b, "shape") else b
    y = x if lo is None else xp.where(x < lo, bound(lo), x)
    y = y if hi is None else xp.where(y > hi, bound(hi), y)
    return xp.asarray(x, copy=True) if y is x else xp.astype(y, x.dtype, copy=False)


_READ_ALONG_LIMIT = 64    # elements of a read that may travel with the pending checks, as float64


def _raise_failed(keys, extremes):
    """Raise for the first deferred check whose (min, max) left its range."""
    for (error, message, low, high), (smallest, largest) in zip(keys, extremes):
        if smallest < low or largest >= high:
            raise error(message.format(value=smallest if smallest < low else largest))


def _host_draw(kind, generator, shape, dtype, a, b):
    """``kind`` ("uniform" on [a, b), "normal" with mean a and std b, "integers" in [a, b)) from a
    NumPy Generator, in ``dtype`` (floats are drawn in float64 and rounded, as minireg always has)."""
    if kind == "integers":
        return generator.integers(a, b, size=shape, dtype=dtype)
    return getattr(generator, kind)(a, b, size=shape).astype(dtype)


def _is_bool(item):
    return hasattr(item, "dtype") and str(item.dtype).rsplit(".", 1)[-1] == "bool"


class Backend:
    name = "array_api"

    def __init__(self, xp, device=None, name=None, kernels=None):
        self.xp = xp
        self._namespace = getattr(xp, "_base", xp)   # the library's own namespace under an overlay
        self.device = device
        if name is not None:
            self.name = name
        self._kernels = kernels
        self._float_dtypes = {}
        self._pending_checks = {}
        # MINIREG_SYNC_CHECKS=1: device checks read their result at once (one sync each), like
        # CUDA_LAUNCH_BLOCKING, so an error points at the op that caused it
        self.sync_checks = os.environ.get("MINIREG_SYNC_CHECKS", "") not in ("", "0")

    @property
    def kernels(self):
        """The kernel table (regularizer updates); built on first use to keep import light."""
        if self._kernels is None:
            self._kernels = self._make_kernels()
        return self._kernels

    def _make_kernels(self):
        from minireg.kernels import Kernels
        return Kernels(self.xp)

    # -- identity -------------------------------------------------------------------------------
    @property
    def device_name(self):
        label = getattr(self.device, "_device", self.device)   # array_api_strict.Device("device1") -> device1
        return self.name if label is None else f"{self.name}:{label}"

    def __repr__(self):
        return f"<Backend {self.device_name}>"

    def owns(self, array):
        """True when ``array`` is an array of this library on this backend's device."""
        try:
            return array.__array_namespace__() is self._namespace and array.device == self.device
        except AttributeError:
            return False

    def is_float(self, dtype):
        """Whether ``dtype`` is a real floating dtype (cached: called on every op's hot path)."""
        try:
            return self._float_dtypes[dtype]
        except KeyError:
            result = self._float_dtypes[dtype] = bool(self.xp.isdtype(dtype, "real floating"))
            return result

    # -- creation and transfer ------------------------------------------------------------------
    def asarray(self, obj, dtype=None):
        """An array on this backend's device from host data (Python scalars, lists, NumPy arrays)."""
        return self.xp.asarray(obj, dtype=dtype, device=self.device)

    def from_numpy(self, array):
        return self.asarray(array)

    def to_numpy(self, array):
        """An explicit copy to the host; the only way data leaves the device. Checks deferred on
        this device (``check_in_range``) are read too and raise if one failed: a small float or
        boolean array (a loss, a flag) travels with them in one transfer, anything else after them."""
        if not self._pending_checks:
            return self._to_host(array)
        dtype = self.numpy_dtype(array.dtype)
        if array.size > _READ_ALONG_LIMIT or dtype.kind not in "fb":
            self.raise_deferred_checks()
            return self._to_host(array)
        xp = self.xp
        keys, extremes = self._take_checks()
        values = self._to_host(xp.concat([xp.reshape(xp.astype(array, xp.float64), (-1,)),
                                          xp.reshape(xp.astype(extremes, xp.float64), (-1,))]))
        _raise_failed(keys, values[array.size:].reshape(-1, 2).astype(np.int64).tolist())
        return values[:array.size].astype(dtype).reshape(tuple(array.shape))

    def _to_host(self, array):
        return np.from_dlpack(self.xp.asarray(array, device=self.xp.Device("CPU_DEVICE")))

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype, device=self.device)

    def copy(self, array):
        """A fresh, C-contiguous copy on the same device."""
        return self.xp.asarray(array, copy=True)

    def owns_buffer(self, array):
        """Whether ``array`` is a writable, contiguous array that is no view of another (the generic
        namespace cannot tell, so it says no and callers copy)."""
        return False

    def ones(self, shape, dtype):
        return self.xp.ones(shape, dtype=dtype, device=self.device)

    def full(self, shape, value, dtype):
        return self.xp.full(shape, value, dtype=dtype, device=self.device)

    def dtype(self, name):
        """This library's dtype object for a NumPy dtype or name ('float32', np.float64, ...)."""
        return getattr(self.xp, self.numpy_dtype(name).name)

    @staticmethod
    def numpy_dtype(dtype):
        """The NumPy dtype with the same name as ``dtype`` (which may belong to another library)."""
        try:
            return np.dtype(dtype)
        except TypeError:
            return np.dtype(str(dtype).rsplit(".", 1)[-1])

    # -- random numbers ----------------------------------------------------------------------------
    # ``generator`` selects the stream (see minireg.random for the seeding contract):
    #   None or minireg.random.default_generator(): minireg's stream on this device
    #       (minireg.random.device_generator), drawn where the data lives, no copy;
    #   a numpy.random.Generator: drawn on the host and copied here (the same numbers on every
    #       backend, at the price of one upload per draw);
    #   this library's own generator object (e.g. cupy.random.Generator): drawn from it.
    def random_uniform(self, generator, shape, dtype, low=0.0, high=1.0):
        """Uniform samples in [low, high) of ``shape`` and ``dtype`` on this device."""
        return self._draw("uniform", generator, tuple(shape), dtype, low, high)

    def random_normal(self, generator, shape, dtype, mean=0.0, std=1.0):
        """Normal samples N(mean, std^2) of ``shape`` and ``dtype`` on this device."""
        return self._draw("normal", generator, tuple(shape), dtype, mean, std)

    def random_integers(self, generator, low, high, shape, dtype):
        """Integers uniform in [low, high) of ``shape`` and integer ``dtype`` on this device."""
        return self._draw("integers", generator, tuple(shape), dtype, low, high)

    def _draw(self, kind, generator, shape, dtype, a, b):
        if generator is None or generator is _random.default_generator():
            return self._stream_draw(kind, _random.device_generator(self), shape, dtype, a, b)
        if isinstance(generator, np.random.Generator):
            return self.from_numpy(_host_draw(kind, generator, shape, self.numpy_dtype(dtype), a, b))
        return self._stream_draw(kind, generator, shape, dtype, a, b)

    def _stream_draw(self, kind, generator, shape, dtype, a, b):
        """A draw from this device's own stream (a ``make_generator`` result). The generic backend has
        no device RNG: its stream is a NumPy Generator whose numbers are moved here."""
        return self._host_draw_to_device(_host_draw(kind, generator, shape, self.numpy_dtype(dtype), a, b))

    def _host_draw_to_device(self, array):
        return self.from_numpy(array)

    def make_generator(self, seed_sequence):
        """A new random stream for this device from a ``numpy.random.SeedSequence``. The generic
        backend has no device RNG: it draws with a NumPy Generator and moves the numbers here."""
        return np.random.Generator(np.random.PCG64(seed_sequence))

    def generator_state(self, generator):
        """The state of a stream made by ``make_generator``, as plain data (dicts, ints, strings,
        NumPy arrays) that checkpoints can store."""
        return generator.bit_generator.state

    def set_generator_state(self, generator, state):
        generator.bit_generator.state = state

    # -- checks on device data ----------------------------------------------------------------------
    # Reading a device array costs a sync, so a check of device data (label ranges, index bounds)
    # runs as one min/max reduction on the device now and is read at the next explicit read from
    # the device (to_numpy: Tensor.item()/.numpy(), i.e. logging time), which then raises. Checks of
    # the same kind are merged (running min and max), so pending checks take constant memory.
    # With ``sync_checks`` (MINIREG_SYNC_CHECKS=1) each check is read at once. Host data and the
    # NumPy backend are always checked at once, before anything changes.
    def check_in_range(self, values, low, high, error, message):
        """Require ``low <= values < high`` for the integer array ``values`` on this backend.

        ``error`` is the exception class and ``message`` its text with ``{value}`` standing for the
        first offending value (the minimum if it is below ``low``, else the maximum).
        """
        if values.size == 0:
            return
        xp = self.xp
        extremes = xp.stack([xp.astype(xp.min(values), xp.int64), xp.astype(xp.max(values), xp.int64)])
        key = (error, message, int(low), int(high))
        pending = self._pending_checks.get(key)
        if pending is not None:
            extremes = xp.stack([xp.minimum(pending[0], extremes[0]), xp.maximum(pending[1], extremes[1])])
        self._pending_checks[key] = extremes
        if self.sync_checks:
            self.raise_deferred_checks()

    def raise_deferred_checks(self):
        """Read every pending check in one transfer; raise the first that failed (all are cleared)."""
        if self._pending_checks:
            keys, extremes = self._take_checks()
            _raise_failed(keys, self._to_host(extremes).tolist())

    def _take_checks(self):
        """The pending checks (cleared) and their (min, max) pairs as one (k, 2) device array."""
        pending, self._pending_checks = self._pending_checks, {}
        return list(pending), self.xp.stack(list(pending.values()))

    def check_index(self, index, shape):
        """IndexOutOfRangeError (an IndexError, NumPy's message) unless every integer array in ``index`` addresses
        ``[-n, n)`` along its axis of an array of ``shape``. NumPy raises by itself (its backend
        skips this); CuPy would wrap the index modulo n and return wrong rows silently."""
        for axis, item in index_axes(index, len(shape)):
            if self.owns(item) and not self.is_float(item.dtype):
                n = shape[axis]
                self.check_in_range(item, -n, n, IndexOutOfRangeError,
                                    f"index {{value}} is out of bounds for axis {axis} with size {n}")

    # -- primitives the array API lacks ---------------------------------------------------------
    def take(self, x, index, axis=None):
        """``x`` at integer ``index`` along ``axis`` (array-API ``take``), bounds-checked on every
        backend (see ``check_index``)."""
        axis = 0 if axis is None else axis % x.ndim
        self.check_index((slice(None),) * axis + (index,), x.shape)
        return self._namespace.take(x, index, axis=axis)

    def scatter_add(self, target, index, values):
        """``target[index] += values`` with repeated indices accumulating (numpy.add.at semantics).

        Generic version: index an array of flat positions, then sum ``values`` into those
        positions with a one-hot matrix product. O(n * target.size) memory: fine for tests,
        overridden by every real backend.
        """
        xp = self.xp
        self.check_index(index, target.shape)
        grid = xp.reshape(xp.arange(target.size, device=self.device), target.shape)
        positions = xp.take(grid, index, axis=0) if hasattr(index, "shape") else grid[index]
        positions = xp.reshape(positions, (-1,))
        flat_values = xp.reshape(xp.broadcast_to(values, positions.shape if values.ndim == 0 else values.shape), (1, -1))
        onehot = xp.astype(positions[:, None] == xp.arange(target.size, device=self.device)[None, :], target.dtype)
        return target + xp.reshape(xp.matmul(flat_values, onehot), target.shape)

    def pad(self, x, pad_width, value=0.0):
        """Constant padding; ``pad_width`` is one (before, after) pair per axis."""
        xp = self.xp
        for axis, (before, after) in enumerate(pad_width):
            parts = []
            for size in (before, after):
                shape = list(x.shape)
                shape[axis] = size
                parts.append(self.full(tuple(shape), value, x.dtype))
            x = xp.concat([parts[0], x, parts[1]], axis=axis)
        return x

    def synchronize(self):
        """Wait for queued device work (a no-op on the CPU); benchmarks call it before reading clocks."""
