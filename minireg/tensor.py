"""Tensor: an array on a backend, plus what autograd needs (grad, the op that made it, generation)."""
import numbers

import numpy as np

from minireg import backend as _backends
from minireg._config import _grad_enabled, get_default_dtype
from minireg.errors import ArgumentError, ArgumentTypeError, DTypeError, DeviceError, GraphError, ShapeError


class Tensor:
    """An array on a backend (``data``), plus what autograd needs.

    In-place writes go through the in-place methods (``copy_``, ``zero_``, ``fill_``, ``add_``,
    ``sub_``, ``mul_``, ``div_``) or call ``_bump_version()``: each bumps ``_version``, so an op that
    saved the tensor for backward raises a GraphError instead of computing a wrong gradient. They
    refuse tensors that require grad while grad mode is on (wrap updates in ``minireg.no_grad()``).
    Writing ``t.data`` (or into it) directly is the untracked escape hatch: no version bump, no check.
    Tensors that share memory (``detach()``, views from reshape or slicing) do not share versions.
    """
    # Class-level defaults keep op outputs cheap to create: only data and backend are set per tensor.
    grad = None
    creator = None          # the Function that produced this tensor (None for leaves)
    generation = 0
    requires_grad = False
    name = None
    _version = 0            # bumped by every in-place write minireg performs (_bump_version)
    __array_ufunc__ = None  # NumPy defers to Tensor's reflected operators: np_array + tensor -> Tensor

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        """A leaf sharing memory with ``data`` where it can (see ``minireg.tensor``, which copies)."""
        if isinstance(data, Tensor):
            data = data.data
        backend = _backends.current_backend()
        if isinstance(data, np.generic):
            data = np.asarray(data)
        elif isinstance(data, (numbers.Number, list, tuple)):   # Python data takes the default dtype
            try:
                data = np.asarray(data)
            except ValueError as exc:   # ragged nested lists
                raise ArgumentTypeError(f"cannot make a tensor from this {type(data).__name__}: {exc}") from None
            dtype = get_default_dtype() if dtype is None else dtype
        elif not isinstance(data, np.ndarray):
            if not hasattr(data, "__array_namespace__") and not hasattr(data, "__dlpack__"):
                raise ArgumentTypeError(f"cannot make a tensor from a {type(data).__name__}: expected a number, "
                                        f"a (nested) list or an array")
            backend = _backends.backend_of(data)   # an array of another library stays on its device
        _check_dtype(backend, data.dtype)
        if isinstance(data, np.ndarray) and backend.name != "numpy":
            data = backend.from_numpy(data)        # explicit creation from host data
        if dtype is not None and backend.numpy_dtype(data.dtype) != backend.numpy_dtype(dtype):
            _check_dtype(backend, dtype)
            data = backend.xp.astype(data, backend.dtype(dtype))
        self.data = data
        self.backend = backend
        self.name = name
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, data, backend):
        t = object.__new__(Tensor)
        t.data = data
        t.backend = backend
        return t

    # -- properties -----------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: self.backend.device_name)
    is_leaf = property(lambda self: self.creator is None)
    T = property(lambda self: F.transpose(self))

    def __len__(self):
        if self.ndim == 0:
            raise ArgumentTypeError("len() of a 0-d tensor (it has no first axis)")
        return self.data.shape[0]

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extras = [f"dtype={self.backend.numpy_dtype(self.dtype).name}"]
        if self.backend.name != "numpy":
            extras.append(f"device={self.device!r}")
        if self.requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extras)})"

    # -- autograd -------------------------------------------------------------------------------
    def _bump_version(self):
        """Record an in-place write to ``data``: ops that saved this tensor for backward then refuse
        to use it. Every in-place write minireg performs calls this; raw ``.data`` writes do not."""
        self._version += 1

    # -- in-place writes: one path (_write) that checks, writes into the existing buffer and bumps ----
    def _write(self, op, values):
        if self.requires_grad and _grad_enabled.get():
            kind = "a leaf" if self.creator is None else "a tensor"
            raise GraphError(f"{op}: {kind} that requires grad cannot be changed in place while grad mode "
                             f"is on (the change would not be recorded); do it inside minireg.no_grad()")
        values = operand(values, like=self).data
        if not self.backend.is_float(self.dtype) and self.backend.is_float(values.dtype):
            raise DTypeError(f"{op}: cannot write floating values into a tensor of dtype {self.dtype}")
        if tuple(values.shape) != self.shape:
            try:
                values = self.backend.xp.broadcast_to(values, self.shape)
            except ValueError as exc:
                raise ShapeError(f"{op}: values of shape {tuple(values.shape)} do not broadcast to the "
                                 f"tensor's shape {self.shape}") from exc
        try:
            self.data[...] = values
        except ValueError as exc:   # a read-only view, e.g. from broadcast_to
            raise ArgumentError(f"{op}: the tensor's data is read-only ({exc}); write into a copy") from exc
        self._bump_version()
        return self

    def copy_(self, src): return self._write("copy_", src)
    def fill_(self, value): return self._write("fill_", value)
    def zero_(self): return self._write("zero_", 0)
    def add_(self, other, alpha=1): return self._write("add_", self.data + operand(other, like=self).data * alpha)
    def sub_(self, other, alpha=1): return self._write("sub_", self.data - operand(other, like=self).data * alpha)
    def mul_(self, other): return self._write("mul_", self.data * operand(other, like=self).data)
    def div_(self, other): return self._write("div_", self.data / operand(other, like=self).data)

    def requires_grad_(self, flag=True):
        if flag and not self.backend.is_float(self.dtype):
            raise DTypeError(f"only floating tensors can require gradients, got dtype {self.dtype}; "
                             f"convert with .astype('float32') first")
        self.requires_grad = flag
        return self

    def backward(self, grad=None, retain_graph=False, create_graph=False):
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf that requires grad."""
        from minireg.autograd import backward_pass
        if not self.requires_grad:
            raise GraphError("backward on a tensor that does not require grad (no graph was recorded)")
        if grad is None:
            if self.size != 1:
                raise GraphError(f"backward on a non-scalar tensor of shape {self.shape} needs a grad argument "
                                 f"of the same shape (or reduce it first, e.g. loss.sum())")
            grad = self._ones_like()
        else:
            grad = operand(grad, like=self)
        backward_pass([self], [grad], retain_graph=retain_graph, create_graph=create_graph)

    def detach(self):
        """The same data without history (shares memory)."""
        return Tensor._make(self.data, self.backend)

    def _ones_like(self):
        return Tensor._make(self.backend.xp.ones_like(self.data), self.backend)

    # -- conversion -----------------------------------------------------------------------------
    def numpy(self):
        """The values as a NumPy array (copied from the device when not on the CPU)."""
        return self.backend.to_numpy(self.data)

    def item(self):
        if self.size != 1:
            raise ShapeError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device):
        """A copy on ``device`` ("cpu", "cuda", a backend name or Backend), as a new leaf."""
        target = _backends.get_backend(device)
        if target is self.backend:
            return self
        t = Tensor._make(target.from_numpy(self.backend.to_numpy(self.data)), target)
        return t.requires_grad_(self.requires_grad)

    def __dlpack__(self, **kwargs):
        """DLPack export of ``data`` (no copy): ``np.from_dlpack(t)``, ``cupy.from_dlpack(t)``, ..."""
        return self.data.__dlpack__(**kwargs)

    def __dlpack_device__(self): return self.data.__dlpack_device__()

    def astype(self, dtype):
        _check_dtype(self.backend, dtype)
        return F.cast(self, self.backend.dtype(dtype))

    # -- operators (one line each; the ops live in minireg.functional) --------------------------
    # (``other if isinstance(other, Tensor)`` is operand()'s first case, inlined: the hot path)
    def __add__(self, other): return F.Add()(self, other if isinstance(other, Tensor) else operand(other, self))
    def __radd__(self, other): return F.Add()(operand(other, like=self), self)
    def __sub__(self, other): return F.Sub()(self, other if isinstance(other, Tensor) else operand(other, self))
    def __rsub__(self, other): return F.Sub()(operand(other, like=self), self)
    def __mul__(self, other): return F.Mul()(self, other if isinstance(other, Tensor) else operand(other, self))
    def __rmul__(self, other): return F.Mul()(operand(other, like=self), self)
    def __truediv__(self, other): return F.Div()(self, other if isinstance(other, Tensor) else operand(other, self))
    def __rtruediv__(self, other): return F.Div()(operand(other, like=self), self)
    def __pow__(self, other): return F.Pow()(self, operand(other, like=self))
    def __rpow__(self, other): return F.Pow()(operand(other, like=self), self)
    def __neg__(self): return F.Neg()(self)
    def __pos__(self): return self
    def __matmul__(self, other): return F.matmul(self, other)
    def __rmatmul__(self, other): return F.matmul(other, self)
    def __getitem__(self, index): return F.getitem(self, index)
    # comparisons, == and != included, give constant boolean tensors (masks), as in NumPy; hashing
    # stays by identity, so tensors key dicts and sets (never put them in lists to search them)
    __hash__ = object.__hash__
    def __eq__(self, other): return F.compare(self, other, "equal") if self._comparable(other) else NotImplemented
    def __ne__(self, other): return F.compare(self, other, "not_equal") if self._comparable(other) else NotImplemented
    def __lt__(self, other): return F.compare(self, other, "less")
    def __le__(self, other): return F.compare(self, other, "less_equal")
    def __gt__(self, other): return F.compare(self, other, "greater")
    def __ge__(self, other): return F.compare(self, other, "greater_equal")

    def _comparable(self, other):
        """Values == compares elementwise; anything else (None, strings) is simply not equal."""
        return isinstance(other, (Tensor, numbers.Number, np.ndarray, np.generic)) or self.backend.owns(other)

    def __bool__(self):
        if self.size != 1:
            raise ShapeError(f"the truth value of a tensor with {self.size} elements (shape {self.shape}) is "
                             f"ambiguous; use .any() or .all(), e.g. `if (a == b).all():`")
        return bool(self.item())

    # -- NumPy-style methods ----------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False): return F.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return F.mean(self, axis, keepdims)
    def var(self, axis=None, keepdims=False, ddof=0): return F.var(self, axis, keepdims, ddof)
    def max(self, axis=None, keepdims=False): return F.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return F.min(self, axis, keepdims)
    def any(self, axis=None, keepdims=False): return F.any(self, axis, keepdims)
    def all(self, axis=None, keepdims=False): return F.all(self, axis, keepdims)
    def argmax(self, axis=None): return F.argmax(self, axis)
    def argmin(self, axis=None): return F.argmin(self, axis)
    def reshape(self, *shape): return F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
    def transpose(self, *axes): return F.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))
    def permute(self, *axes): return self.transpose(*axes)
    def swapaxes(self, a, b): return F.swapaxes(self, a, b)
    def flatten(self, start_axis=0, end_axis=-1): return F.flatten(self, start_axis, end_axis)
    def squeeze(self, axis=None): return F.squeeze(self, axis)
    def expand_dims(self, axis): return F.expand_dims(self, axis)
    def unsqueeze(self, axis): return F.expand_dims(self, axis)
    def view(self, *shape): return self.reshape(*shape)   # a view where the backend can, as reshape
    def clip(self, min=None, max=None): return F.clip(self, min, max)
    def exp(self): return F.exp(self)
    def log(self): return F.log(self)
    def sqrt(self): return F.sqrt(self)
    def abs(self): return F.abs(self)
    def sign(self): return F.sign(self)
    def tanh(self): return F.tanh(self)
    def sigmoid(self): return F.sigmoid(self)
    def relu(self): return F.relu(self)
    def softmax(self, axis=-1): return F.softmax(self, axis)
    def log_softmax(self, axis=-1): return F.log_softmax(self, axis)
    def logsumexp(self, axis=None, keepdims=False): return F.logsumexp(self, axis, keepdims)


def _check_dtype(backend, dtype):
    """The dtype rule: tensors hold booleans, integers or real floats (no complex, strings, objects)."""
    dtype = backend.numpy_dtype(dtype)
    if dtype.kind not in "biuf":
        what = f"complex input ({dtype})" if dtype.kind == "c" else f"dtype {dtype}"
        raise DTypeError(f"{what} is not supported: tensors hold booleans, integers or real floating numbers")


def tensor(data, requires_grad=False, dtype=None, name=None):
    """A new leaf tensor holding a copy of ``data`` (as ``torch.tensor`` and ``np.array``).

    NumPy and device arrays keep their dtype; Python scalars and lists become the default dtype
    (float32 unless changed with ``minireg.set_default_dtype``). Host data lands on the current
    backend's device; arrays of another library (CuPy) stay where they are. ``minireg.as_tensor``
    and ``minireg.from_numpy`` share memory instead.
    """
    source = data.data if isinstance(data, Tensor) else data
    t = Tensor(data, dtype=dtype, name=name)
    if t.data is source:
        t.data = t.backend.copy(source)
    return t.requires_grad_(True) if requires_grad else t


def operand(value, like):
    """``value`` as a constant Tensor on ``like``'s backend (shared, no copy): the other operand of
    an op. Python scalars take ``like``'s dtype (floats into integer tensors: the default dtype)."""
    if isinstance(value, Tensor):
        return value
    backend = like.backend
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        dtype = like.dtype
        if isinstance(value, float) and not backend.is_float(dtype):
            dtype = backend.dtype(get_default_dtype())
        return Tensor._make(backend.asarray(value, dtype=dtype), backend)
    if isinstance(value, (bool, complex, list, tuple)):
        array = backend.asarray(value, dtype=like.dtype if backend.is_float(like.dtype) and
                                not isinstance(value, (bool, complex)) else None)
    elif isinstance(value, (np.ndarray, np.generic)) and backend.name == "numpy":
        array = np.asarray(value)
    elif backend.owns(value):
        array = value
    elif isinstance(value, np.ndarray) or hasattr(value, "__dlpack__"):
        raise DeviceError(f"cannot combine a {type(value).__name__} with a tensor on {backend.device_name}; "
                          f"convert it explicitly with minireg.tensor(...).to({backend.device_name!r})")
    else:
        raise ArgumentTypeError(f"cannot combine a {type(value).__name__} with a tensor: expected a Tensor, "
                                f"a number or an array")
    _check_dtype(backend, array.dtype)
    return Tensor._make(array, backend)


from minireg import functional as F  # noqa: E402  (ops are built on top of Tensor)
