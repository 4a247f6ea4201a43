"""A fake accelerator for tests: catches and counts host round-trips on a machine without a GPU.

``fake_device()`` is a backend on array_api_strict's ``Device("device1")``. Like CuPy arrays, its
arrays refuse implicit conversion to NumPy (``np.asarray``) and mixing with arrays of other
devices, so code that runs on it touches the data only through the backend. It also **counts**,
by CuPy's rules, everything that would cross the bus on a GPU:

* ``syncs``: every device-to-host read, which on a GPU waits for all queued work: ``to_numpy``
  (``Tensor.numpy()``/``.item()``), ``bool()``/``float()``/``int()``/``operator.index()`` of a
  device array, boolean-mask indexing and functions with data-dependent output shapes
  (``nonzero``, ``unique_*``), whose sizes CuPy must read back;
* ``copies_to_device``: host data (lists, NumPy arrays, NumPy scalars) turned into device arrays;
  Python numbers are not counted (a real backend fills them in on the device), nor are random
  numbers drawn from the device's own stream (a real backend draws them on the device);
* ``implicit``: refused implicit conversions (``np.asarray`` of a device array), counted even if
  some code catches the error.

Use it as a context manager to make it the current backend, and ``counting()`` to count a block::

    from minireg.testing.devices import fake_device
    with fake_device() as device:            # new tensors land on the fake device
        model, batch = build(), make_batch()
        train_step(model, batch)             # warm-up: lazy state, first-call work
        with device.counting() as counts:
            train_step(model, batch)
    assert counts.implicit == 0 and counts.syncs == 0, counts.report()

``counts.report()`` lists each event with the line of minireg (or test) code that caused it.
What it cannot show: CuPy's own kernels (the CuPy backend's overrides only run on a GPU), and
``numpy.from_dlpack`` of a device array, which array_api_strict allows.
"""
import collections
import contextlib
import functools
import os
import sys

from minireg.backend import Backend, register_backend, using_backend
from minireg.backend.base import NamespaceOverlay

_COUNTING_DEVICES = {}            # array_api_strict.Device -> FakeDevice, for the Array hooks
_THIS_FILE = os.path.abspath(__file__)


class TransferCounts:
    """Host/device traffic seen during one ``FakeDevice.counting()`` block (or since a reset).

    ``events`` holds ``(kind, what, where)`` triples; ``where`` is the ``file:line`` of the code
    that caused it (the first frame outside this module, minireg.backend and array_api_strict).
    """

    def __init__(self):
        self.events = []

    syncs = property(lambda self: self._count("sync"))
    copies_to_device = property(lambda self: self._count("copy_to_device"))
    implicit = property(lambda self: self._count("implicit"))

    def _count(self, kind):
        return sum(1 for k, _, _ in self.events if k == kind)

    def by_reason(self):
        """``Counter`` of ``(kind, what)``."""
        return collections.Counter((kind, what) for kind, what, _ in self.events)

    def report(self):
        """One line per distinct event: count, kind, what and where it happened."""
        lines = collections.Counter(self.events)
        body = "\n".join(f"  {n} x {kind}: {what} at {where}" for (kind, what, where), n in lines.items())
        return f"{self.syncs} syncs, {self.copies_to_device} copies to the device, {self.implicit} implicit" + \
            (f":\n{body}" if body else "")

    def __repr__(self):
        return f"<TransferCounts syncs={self.syncs} copies_to_device={self.copies_to_device} implicit={self.implicit}>"


def _array_class():
    from array_api_strict._array_object import Array   # not exported by the package itself
    return Array


_BACKEND_DIR = os.path.dirname(os.path.abspath(sys.modules[Backend.__module__].__file__))


def _caller():
    """``file:line`` of the code that caused an event: the first frame outside this module, the
    backends and array_api_strict."""
    frame = sys._getframe(2)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if path != _THIS_FILE and os.path.dirname(path) != _BACKEND_DIR and "array_api_strict" not in path:
            return f"{os.path.relpath(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


class FakeDevice(Backend):
    """The generic array-API backend on an array_api_strict device, counting host/device traffic
    (see the module docstring). Create it with ``fake_device()``."""

    name = "fake"

    def __init__(self, device_name="device1"):
        try:
            import array_api_strict
        except ImportError as exc:
            raise ImportError("the fake device needs array-api-strict: pip install array-api-strict") from exc
        self._strict = array_api_strict
        counted = {name: self._counted_data_dependent(name, getattr(array_api_strict, name))
                   for name in ("nonzero", "unique_all", "unique_counts", "unique_inverse", "unique_values")}
        super().__init__(NamespaceOverlay(array_api_strict, take=self.take, **counted),
                         device=array_api_strict.Device(device_name), name="fake")
        self.counts = TransferCounts()          # everything since creation or reset_counts()
        self._blocks = []
        self._contexts = []
        _install_array_hooks(array_api_strict)
        _COUNTING_DEVICES[self.device] = self

    # -- counting -------------------------------------------------------------------------------
    def _record(self, kind, what):
        event = (kind, what, _caller())
        self.counts.events.append(event)
        for block in self._blocks:
            block.events.append(event)

    @contextlib.contextmanager
    def counting(self):
        """Count the traffic of a block: ``with device.counting() as counts: ...``."""
        block = TransferCounts()
        self._blocks.append(block)
        try:
            yield block
        finally:
            self._blocks.remove(block)

    def reset_counts(self):
        self.counts = TransferCounts()

    def _counted_data_dependent(self, name, function):
        @functools.wraps(function)
        def counted(x, *args, **kwargs):
            if getattr(x, "device", None) == self.device:
                self._record("sync", f"{name}() (data-dependent output shape)")
            return function(x, *args, **kwargs)
        return counted

    # -- current backend --------------------------------------------------------------------------
    def __enter__(self):
        """Make this the current backend (``minireg.using_backend``) until the block ends."""
        context = using_backend(self)
        context.__enter__()
        self._contexts.append(context)
        return self

    def __exit__(self, *exc_info):
        return self._contexts.pop().__exit__(*exc_info)

    # -- transfers: counted ---------------------------------------------------------------------
    def asarray(self, obj, dtype=None):
        if isinstance(obj, _array_class()):
            if obj.device != self.device:
                self._record("copy_to_device", f"array from device {obj.device}")
        elif not isinstance(obj, (bool, int, float)):
            shape = getattr(obj, "shape", None)
            self._record("copy_to_device", f"{type(obj).__name__}" + (f" of shape {tuple(shape)}" if shape else ""))
        return super().asarray(obj, dtype)

    def _to_host(self, array):
        self._record("sync", f"to_numpy of shape {tuple(array.shape)}")
        return super()._to_host(array)

    def _host_draw_to_device(self, array):
        # models a device RNG: the numbers are made "on the device", nothing crosses the bus
        return self._strict.asarray(array, device=self.device)


def _install_array_hooks(strict):
    """Wrap array_api_strict.Array's conversions so that arrays on a counting device report them
    (once per process; arrays on other devices behave exactly as before)."""
    array_class = _array_class()
    if getattr(array_class, "_minireg_hooked", False):
        return
    array_class._minireg_hooked = True

    def hook(name, kind, what, applies=lambda args: True):
        original = getattr(array_class, name)

        @functools.wraps(original)
        def method(self, *args, **kwargs):
            device = _COUNTING_DEVICES.get(self._device)
            if device is not None and applies(args):
                device._record(kind, what)
            return original(self, *args, **kwargs)
        setattr(array_class, name, method)

    def has_mask(args):
        items = args[0] if isinstance(args[0], tuple) else (args[0],)
        return any(isinstance(i, array_class) and i.dtype == strict.bool for i in items)

    for name, spelled in (("__bool__", "bool()"), ("__float__", "float()"), ("__int__", "int()"),
                          ("__index__", "operator.index()"), ("__complex__", "complex()")):
        hook(name, "sync", f"{spelled} of a device array")
    hook("__getitem__", "sync", "boolean-mask indexing (getitem)", has_mask)
    hook("__setitem__", "sync", "boolean-mask indexing (setitem)", has_mask)
    # np.asarray ends here on every Python version (on 3.12+ after __buffer__ has refused)
    hook("__array__", "implicit", "np.asarray() of a device array")


@functools.cache
def fake_device(name="device1"):
    """The counting fake accelerator on array_api_strict's ``Device(name)`` (one per name, shared),
    registered so that tensors can be built from its arrays. See the module docstring."""
    return register_backend(FakeDevice(name))


__all__ = ["FakeDevice", "TransferCounts", "fake_device"]
