"""CuPy on one CUDA GPU. CuPy is imported only when this backend is first asked for."""
import numpy as np

from minireg.backend.base import Backend, strided_windows
from minireg.errors import BackendUnavailableError


def cupy_status():
    """(available, reason): CuPy counts as available only when it imports and sees a GPU."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return False, f"CuPy is not installed or failed to import ({exc}); install minireg[cuda12] or minireg[cuda13]"
    try:
        if not cupy.is_available():
            return False, "CuPy is installed but sees no CUDA GPU on this machine"
    except Exception as exc:
        return False, f"CuPy is installed but CUDA is not usable ({exc})"
    try:
        import array_api_compat.cupy  # noqa: F401
    except ImportError:
        return False, "the CuPy backend needs array-api-compat: pip install array-api-compat"
    return True, ""


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, device_id=0):
        available, reason = cupy_status()
        if not available:
            raise BackendUnavailableError(f"cannot use the 'cupy' backend: {reason}")
        import array_api_compat.cupy as xp
        import cupy
        import cupyx

        self._cupy, self._cupyx = cupy, cupyx
        super().__init__(xp, device=cupy.cuda.Device(device_id))

    def _make_kernels(self):
        from minireg.kernels.cuda import CupyKernels
        return CupyKernels(self.xp)

    @property
    def device_name(self):
        return f"cuda:{self.device.id}"

    def owns(self, array):
        return isinstance(array, self._cupy.ndarray) and array.device == self.device

    def asarray(self, obj, dtype=None):
        with self.device:
            return self._cupy.asarray(obj, dtype=dtype)

    def to_numpy(self, array):
        return self._cupy.asnumpy(array)

    def zeros(self, shape, dtype):
        with self.device:
            return self._cupy.zeros(shape, dtype=dtype)

    def ones(self, shape, dtype):
        with self.device:
            return self._cupy.ones(shape, dtype=dtype)

    def full(self, shape, value, dtype):
        with self.device:
            return self._cupy.full(shape, value, dtype=dtype)

    def dtype(self, name):
        return np.dtype(name)

    def copy(self, array):
        with self.device:
            return self._cupy.array(array, order="C", copy=True)

    def owns_buffer(self, array):
        return array.base is None and array.flags.c_contiguous

    def scatter_add(self, target, index, values):
        out = target.copy()
        self._cupyx.scatter_add(out, index, values)
        return out

    def pad(self, x, pad_width, value=0.0):
        return self._cupy.pad(x, pad_width, constant_values=value)

    def sliding_window(self, x, window_shape, axes, strides=None, dilations=None):
        return strided_windows(self._cupy.lib.stride_tricks.sliding_window_view, x, window_shape, axes, strides,
                               dilations)

    def synchronize(self):
        self.device.synchronize()
