"""One seeded source of randomness for minireg (initialisers, dropout, noise, shuffling).

Seeding contract (``manual_seed(s)``):

* **Host stream.** ``default_generator()`` becomes ``numpy.random.default_rng(s)``. Initialisers,
  data shuffling and anything that draws on the host use it, on every backend, so the same seed
  gives the same initial weights and batch order on the CPU and on the GPU.
* **Device streams.** Numbers drawn *during* training (dropout masks, noise layers, GAN noise and
  penalties' random draws, ``rand``/``randn``/``randint``) come from the stream of the device the
  data lives on, ``device_generator(backend)``, so they never cross the bus:
  - on the CPU (NumPy backend) that stream *is* the host stream above (nothing changes on the CPU);
  - on a GPU it is a ``cupy.random.Generator`` (cuRAND XORWOW) seeded from ``s`` (through
    ``numpy.random.SeedSequence(s, spawn_key=(a number derived from the device name,))``).
* **What is reproduced.** The same seed gives the same run on the same kind of device: bitwise on
  the CPU, and on the GPU for the same GPU model and CuPy version (CuPy keeps one cuRAND state per
  thread and sizes that by the GPU's multiprocessor count). CPU and GPU streams are *different*
  numbers: a GPU run is not the CPU run with the same dropout masks. Pass a ``numpy.random.Generator``
  explicitly where an API takes ``generator=`` to draw on the host and copy to the device instead
  (the same numbers everywhere, one upload per draw).
* **Checkpoints.** ``get_state()`` returns all of it (seed, host stream, every device stream made so
  far) as plain data (dicts, ints, strings, NumPy arrays) that ``minireg.save`` can store;
  ``set_state(state)`` restores it, in this process or a fresh one, so a resumed run draws exactly
  the numbers the uninterrupted run would have drawn.

Without ``manual_seed`` every stream starts from fresh OS entropy.
"""
import zlib

import numpy as np

from minireg import check
from minireg.errors import ArgumentError, CheckpointError

_STATE_FORMAT = "minireg-random-1"

_seed = None                     # the last manual_seed, or None (OS entropy)
_generator = np.random.default_rng()
_device_streams = {}             # Backend -> its stream, made on first use from _seed
_restored = {}                   # device name -> stream state from set_state, applied on first use


def manual_seed(seed):
    """Seed every random draw minireg makes (see the module docstring for what it reproduces)."""
    global _seed, _generator
    seed = check.integer("manual_seed: seed", seed, low=0)
    _seed, _generator = seed, np.random.default_rng(seed)
    _device_streams.clear()
    _restored.clear()


def default_generator():
    """The host NumPy Generator; pass your own ``numpy.random.Generator`` where an API takes one.

    Backends treat it as "minireg's stream on this device": ``backend.random_*(default_generator(),
    ...)`` draws from ``device_generator(backend)``, which on the CPU is this same generator.
    """
    return _generator


def device_generator(backend):
    """minireg's random stream on ``backend``'s device: the host generator for NumPy, else the
    backend's own generator (``backend.make_generator``), seeded from the last ``manual_seed``."""
    if backend.name == "numpy":
        return _generator
    stream = _device_streams.get(backend)
    if stream is None:
        stream = _device_streams[backend] = backend.make_generator(_seed_sequence(backend.device_name))
        saved = _restored.pop(backend.device_name, None)
        if saved is not None:
            backend.set_generator_state(stream, saved)
    return stream


def _seed_sequence(device_name):
    # a distinct, stable child per device, so two GPUs never share a stream
    return np.random.SeedSequence(_seed, spawn_key=(zlib.crc32(device_name.encode()),))


def get_state():
    """Everything ``manual_seed`` set and every draw since changed, as plain data for checkpoints:
    ``{"format", "seed", "host", "devices": {device name: stream state}}``. Reading a GPU stream's
    state copies it to the host (about 13 MB of cuRAND states on a large GPU; one sync)."""
    devices = {b.device_name: b.generator_state(stream) for b, stream in _device_streams.items()}
    devices.update({name: saved for name, saved in _restored.items() if name not in devices})
    return {"format": _STATE_FORMAT, "seed": _seed, "host": _generator.bit_generator.state, "devices": devices}


def set_state(state):
    """Restore a ``get_state()`` result. Device streams are restored when first used (their backend
    may not exist yet in a fresh process); streams not in ``state`` restart from its seed."""
    global _seed, _generator
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT or \
            not {"seed", "host", "devices"} <= set(state) or not isinstance(state["devices"], dict):
        raise CheckpointError(f"set_state: expected a minireg.random.get_state() result "
                              f"(format {_STATE_FORMAT!r} with seed, host and devices), got {_describe(state)}")
    if state["seed"] is not None:
        check.integer("set_state: seed", state["seed"], low=0)
    generator = np.random.default_rng()
    try:
        generator.bit_generator.state = state["host"]
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"set_state: the host generator state is not a PCG64 state: {exc}") from exc
    _seed, _generator = state["seed"], generator
    _device_streams.clear()
    _restored.clear()
    _restored.update(state["devices"])


def _describe(value):
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    return type(value).__name__


# -- factories (torch names) -------------------------------------------------------------------------
def _shape(name, size):
    size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)
    return tuple(check.integer(f"{name}: size", n, low=0) for n in size)


def _float_dtype(name, dtype, backend):
    from minireg._config import get_default_dtype
    dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
    if dtype.kind != "f":
        raise ArgumentError(f"{name}: dtype must be a floating dtype, got {dtype.name}")
    return backend.dtype(dtype)


def _make(data, backend, requires_grad):
    from minireg.tensor import Tensor
    t = Tensor._make(data, backend)
    return t.requires_grad_(True) if requires_grad else t


def rand(*size, dtype=None, requires_grad=False):
    """A tensor of uniform samples in [0, 1) on the current backend, from its device stream
    (seeded by ``manual_seed``); ``size`` as ints or one tuple; default dtype float32."""
    from minireg.backend import current_backend
    backend = current_backend()
    shape = _shape("rand", size)
    return _make(backend.random_uniform(None, shape, _float_dtype("rand", dtype, backend)), backend, requires_grad)


def randn(*size, dtype=None, requires_grad=False):
    """A tensor of standard normal samples on the current backend, from its device stream."""
    from minireg.backend import current_backend
    backend = current_backend()
    shape = _shape("randn", size)
    return _make(backend.random_normal(None, shape, _float_dtype("randn", dtype, backend)), backend, requires_grad)


def randint(low, high=None, size=(), dtype="int64"):
    """A tensor of integers uniform in [low, high) (``randint(high, size)``: in [0, high)) on the
    current backend, from its device stream."""
    from minireg.backend import current_backend
    if isinstance(high, (tuple, list)):          # randint(high, size), as in torch
        high, size = None, high
    if high is None:
        low, high = 0, low
    low, high = check.integer("randint: low", low), check.integer("randint: high", high)
    if high <= low:
        raise ArgumentError(f"randint: high must be greater than low, got low={low}, high={high}")
    size = _shape("randint", size if isinstance(size, (tuple, list)) else (size,))
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ArgumentError(f"randint: dtype must be an integer dtype, got {dtype.name}")
    backend = current_backend()
    return _make(backend.random_integers(None, low, high, size, backend.dtype(dtype)), backend, False)


__all__ = ["default_generator", "device_generator", "get_state", "manual_seed", "rand", "randint", "randn",
           "set_state"]
