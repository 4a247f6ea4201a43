"""CuPy on one CUDA GPU. CuPy is imported only when this backend is first asked for.

No host round-trips inside ops: the namespace ``xp`` is array_api_compat's CuPy namespace with
``clip`` and ``sign`` replaced by one-pass CUDA kernels (the compat versions use masked
assignment, which reads each mask's count back to the host) and ``take`` bounds-checked; padding is a fill plus a copy; Python scalars become device arrays with a fill kernel, not
an upload; random numbers come from a ``cupy.random.Generator`` on the device (see minireg.random).
Out-of-range indices, which CuPy wraps modulo the axis size, and class labels are checked on the
device and read at the next explicit read (``Backend.check_in_range``).
"""
import numbers

import numpy as np

from minireg.backend.base import Backend, NamespaceOverlay, where_clip
from minireg.errors import BackendUnavailableError, CheckpointError


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


def _is_number(value):
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool))


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, device_id=0):
        available, reason = cupy_status()
        if not available:
            raise BackendUnavailableError(f"cannot use the 'cupy' backend: {reason}")
        import array_api_compat.cupy as compat
        import cupy
        import cupyx

        from minireg.kernels import cuda

        self._cupy, self._cupyx, self._cuda = cupy, cupyx, cuda
        xp = NamespaceOverlay(compat, clip=self._clip, sign=self._sign, take=self.take)
        super().__init__(xp, device=cupy.cuda.Device(device_id))

    def _make_kernels(self):
        from minireg.kernels.cuda import CupyKernels
        return CupyKernels(self.xp)

    @property
    def device_name(self):
        return f"cuda:{self.device.id}"

    def owns(self, array):
        return isinstance(array, self._cupy.ndarray) and array.device == self.device

    # -- namespace replacements ------------------------------------------------------------------
    def _clip(self, x, /, min=None, max=None):
        if self._cuda.is_float_array(x) and _is_number(min) and _is_number(max):
            return self._cuda.clip(x, min, max)
        return where_clip(self._namespace, x, min, max)

    def _sign(self, x, /):
        if self._cuda.is_float_array(x):
            return self._cuda.sign(x)
        return self._cupy.sign(x)            # integers: no NaN to patch, so CuPy's own sign is right

    # -- creation and transfer -------------------------------------------------------------------
    def asarray(self, obj, dtype=None):
        with self.device:
            if isinstance(obj, (bool, int, float, np.generic)):
                # a fill kernel with the value as its argument: no host-to-device copy
                return self._cupy.full((), obj, dtype=dtype if dtype is not None else np.asarray(obj).dtype)
            return self._cupy.asarray(obj, dtype=dtype)

    def _to_host(self, array):
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

    # -- random numbers: cupy.random.Generator (cuRAND XORWOW states on the device) ----------------
    def make_generator(self, seed_sequence):
        with self.device:
            return self._cupy.random.Generator(self._cupy.random.XORWOW(seed_sequence))

    def _stream_draw(self, kind, generator, shape, dtype, a, b):
        with self.device:
            if kind == "integers":
                return generator.integers(a, b, size=shape, dtype=dtype)
            native = np.dtype(dtype).char in "fd"      # CuPy draws floats in float32 or float64 only
            draw = generator.random if kind == "uniform" else generator.standard_normal
            y = draw(shape, dtype=dtype if native else np.float32)
            y = y if native else y.astype(dtype)
            scale, shift = (b - a, a) if kind == "uniform" else (b, a)
            if scale != 1:
                y *= scale
            if shift != 0:
                y += shift
            return y

    def generator_state(self, generator):
        bit_generator = generator.bit_generator
        return {"bit_generator": type(bit_generator).__name__,
                "curand_states": self._cupy.asnumpy(self._curand_states(bit_generator))}

    def set_generator_state(self, generator, state):
        states = self._curand_states(generator.bit_generator)
        saved = np.asarray(state["curand_states"])
        if state["bit_generator"] != type(generator.bit_generator).__name__ or saved.nbytes != states.nbytes:
            raise CheckpointError(f"the random state for {self.device_name} holds {saved.nbytes} bytes of "
                                  f"{state['bit_generator']} states, but this GPU's stream has {states.nbytes} "
                                  f"bytes of {type(generator.bit_generator).__name__} states (saved on another "
                                  f"GPU model?)")
        states[...] = self._cupy.asarray(saved.view(states.dtype))

    def _curand_states(self, bit_generator):
        # CuPy keeps the cuRAND states in a private int8 device array; one per parallel thread, so
        # the stream depends on the GPU model (its multiprocessor count) as well as on the seed.
        try:
            return bit_generator._state
        except AttributeError as exc:
            raise CheckpointError(f"this CuPy version ({self._cupy.__version__}) keeps its random "
                                  f"generator state where minireg cannot read it") from exc

    # -- primitives -------------------------------------------------------------------------------
    def scatter_add(self, target, index, values):
        self.check_index(index, target.shape)      # cupyx.scatter_add wraps out-of-range indices
        out = target.copy()
        self._cupyx.scatter_add(out, index, values)
        return out

    def pad(self, x, pad_width, value=0.0):
        shape = tuple(n + before + after for n, (before, after) in zip(x.shape, pad_width))
        out = self.full(shape, value, x.dtype)
        out[tuple(slice(before, before + n) for n, (before, _) in zip(x.shape, pad_width))] = x
        return out


    def synchronize(self):
        self.device.synchronize()
