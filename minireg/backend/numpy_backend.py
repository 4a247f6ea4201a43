"""NumPy on the CPU, with the compiled kernel table when the extension is built."""
import numpy as np

from minireg.backend.base import Backend



class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self, pure=None):
        super().__init__(np, device="cpu")
        self.pure = pure

    def _make_kernels(self):
        from minireg.kernels import numpy_kernels
        return numpy_kernels(self.pure)

    @property
    def device_name(self):
        return "cpu"

    def owns(self, array):
        return type(array) is np.ndarray

    def asarray(self, obj, dtype=None):
        return np.asarray(obj, dtype=dtype)

    def to_numpy(self, array):
        return np.asarray(array)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def copy(self, array):
        return np.array(array, order="C")

    def owns_buffer(self, array):
        flags = array.flags
        return flags.owndata and flags.writeable and flags.c_contiguous

    def ones(self, shape, dtype):
        return np.ones(shape, dtype=dtype)

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype=dtype)

    def dtype(self, name):
        return np.dtype(name)

    # The host is this backend's device: checks run at once, and NumPy raises on bad indices itself.
    def check_in_range(self, values, low, high, error, message):
        if values.size:
            smallest, largest = values.min(), values.max()
            if smallest < low or largest >= high:
                raise error(message.format(value=int(smallest) if smallest < low else int(largest)))

    def check_index(self, index, shape):
        pass

    def take(self, x, index, axis=None):
        return np.take(x, index, axis=axis)

    def scatter_add(self, target, index, values):
        out = target.copy()
        np.add.at(out, index, values)
        return out

    def pad(self, x, pad_width, value=0.0):
        return np.pad(x, pad_width, constant_values=value)

