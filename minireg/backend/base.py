"""The generic backend: any array-API namespace on one device.

A backend is the only place ops meet an array library. It holds the namespace ``xp`` (array-API
functions), the device, array creation on that device, the few primitives the array API lacks
(scatter-add, padding, sliding windows, host-seeded random numbers, synchronize) and the kernel
table of compiled regularizer kernels. Subclasses override primitives with faster library calls;
the generic versions here use only the array API, so they also run on array_api_strict's fake
device, which is how the test suite catches host round-trips without a GPU.
"""
import itertools

import numpy as np



def window_geometry(shape, window_shape, axes, strides, dilations):
    """Normalized ``(axes, strides, dilations, counts)`` for ``sliding_window`` on an array of ``shape``.

    ``counts[k]`` is the number of windows along ``axes[k]``: floor((n - d*(w-1) - 1) / s) + 1.
    """
    ndim = len(shape)
    axes = tuple(a % ndim for a in axes)
    strides = tuple(strides) if strides is not None else (1,) * len(axes)
    dilations = tuple(dilations) if dilations is not None else (1,) * len(axes)
    if not len(window_shape) == len(axes) == len(strides) == len(dilations) or len(set(axes)) != len(axes):
        raise ValueError(f"sliding_window: need one window size, stride and dilation per distinct axis, got "
                         f"window_shape={tuple(window_shape)}, axes={axes}, strides={strides}, dilations={dilations}")
    counts = tuple((shape[a] - d * (w - 1) - 1) // s + 1 for a, w, s, d in zip(axes, window_shape, strides, dilations))
    if any(c < 1 for c in counts):
        raise ValueError(f"sliding_window: window {tuple(window_shape)} with dilation {dilations} does not fit "
                         f"axes {axes} of an array of shape {tuple(shape)}")
    return axes, strides, dilations, counts


def strided_windows(view_fn, x, window_shape, axes, strides=None, dilations=None):
    """``sliding_window`` from a library's ``sliding_window_view``: unit-step windows of the dilated span,
    then a strided slice (stride over positions, dilation inside windows); a view, no copy."""
    axes, strides, dilations, _ = window_geometry(x.shape, window_shape, axes, strides, dilations)
    spans = tuple(d * (w - 1) + 1 for w, d in zip(window_shape, dilations))
    view = view_fn(x, spans, axis=axes)
    index = [slice(None)] * x.ndim + [slice(None, None, d) for d in dilations]
    for a, s in zip(axes, strides):
        index[a] = slice(None, None, s)
    return view[tuple(index)]


class Backend:
    name = "array_api"

    def __init__(self, xp, device=None, name=None, kernels=None):
        self.xp = xp
        self.device = device
        if name is not None:
            self.name = name
        self._kernels = kernels
        self._float_dtypes = {}

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
            return array.__array_namespace__() is self.xp and array.device == self.device
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
        """An explicit copy to the host; the only way data leaves the device."""
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

    # -- random numbers: drawn on the host from a NumPy Generator, so every backend sees the
    # same numbers for the same seed (device RNG streams differ between libraries) -------------
    def random_normal(self, generator, shape, dtype, mean=0.0, std=1.0):
        return self.from_numpy(generator.normal(mean, std, size=shape).astype(self.numpy_dtype(dtype)))

    def random_uniform(self, generator, shape, dtype, low=0.0, high=1.0):
        return self.from_numpy(generator.uniform(low, high, size=shape).astype(self.numpy_dtype(dtype)))

    # -- primitives the array API lacks ---------------------------------------------------------
    def scatter_add(self, target, index, values):
        """``target[index] += values`` with repeated indices accumulating (numpy.add.at semantics).

        Generic version: index an array of flat positions, then sum ``values`` into those
        positions with a one-hot matrix product. O(n * target.size) memory: fine for tests,
        overridden by every real backend.
        """
        xp = self.xp
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

    def sliding_window(self, x, window_shape, axes, strides=None, dilations=None):
        """Windows of ``x`` along ``axes``, as new trailing axes (NumPy's sliding_window_view layout):

            out[..., p, ..., i, ...] = x[..., p * s + i * d, ...]

        shape: ``x.shape`` with each ``axes[k]`` replaced by its window count (see ``window_geometry``),
        then ``window_shape``. Read-only. Generic version: one strided slice per window offset,
        stacked (a copy of prod(window_shape) times the input); real backends return a view.
        """
        xp = self.xp
        axes, strides, dilations, counts = window_geometry(x.shape, window_shape, axes, strides, dilations)
        pieces = []
        for offsets in itertools.product(*(range(w) for w in window_shape)):
            index = [slice(None)] * x.ndim
            for a, i, n, s, d in zip(axes, offsets, counts, strides, dilations):
                index[a] = slice(i * d, i * d + (n - 1) * s + 1, s)
            pieces.append(x[tuple(index)])
        return xp.reshape(xp.stack(pieces, axis=-1), pieces[0].shape + tuple(window_shape))

    def synchronize(self):
        """Wait for queued device work (a no-op on the CPU); benchmarks call it before reading clocks."""
