"""Every op of minireg, as a Function class and a lowercase function (``import minireg.functional as F``).

Each Function's ``forward`` computes on raw arrays with the backend namespace ``self.xp`` (array-API
functions only, so the same code runs on NumPy, CuPy and test backends); ``backward`` is written with
these same differentiable ops. Gradient reduction over broadcast axes happens once, in the backward
pass (minireg.autograd), so binary ops return full-shape gradients.

Subgradient convention at kinks: the minimum-norm subgradient, as in PyTorch. d|x|/dx = 0 and
relu'(x) = 0 at x = 0; clip has gradient 0 at its bounds; leaky_relu has slope ``negative_slope``
at 0; max/min/maximum/minimum split the gradient evenly between tied elements.
"""
import builtins
import math
import numbers

from minireg import check
from minireg._config import is_grad_enabled
from minireg.function import Function
from minireg.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError
from minireg.tensor import Tensor, operand, tensor


def _t(x, like=None):
    """Accept arrays and scalars wherever a Tensor is expected."""
    if isinstance(x, Tensor):
        return x
    return operand(x, like) if like is not None else tensor(x)


def _axes(axis, ndim, op):
    """None | int | tuple as a sorted tuple of non-negative axes; out-of-range axes never wrap."""
    return check.axes(f"{op}: axis", axis, ndim)


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


# ==== arithmetic ===================================================================================
class Add(Function):
    saves = ()
    def forward(self, a, b): return a + b
    def backward(self, gy): return gy, gy


class Sub(Function):
    saves = ()
    def forward(self, a, b): return a - b
    def backward(self, gy): return gy, -gy


class Mul(Function):
    saves = (0, 1)
    def forward(self, a, b): return a * b

    def backward(self, gy):
        (a, b), (need_a, need_b) = self.inputs, self.needs_input_grad
        return gy * b if need_a else None, gy * a if need_b else None


class Div(Function):
    saves = (0, 1)
    def forward(self, a, b): return a / b

    def backward(self, gy):
        a, b = self.inputs
        ga = gy / b
        return ga, (-ga * a / b) if b.requires_grad else None


class Neg(Function):
    saves = ()
    def forward(self, a): return -a
    def backward(self, gy): return (-gy,)


class Pow(Function):
    saves = (0, 1, "output")
    def forward(self, a, b): return self.xp.pow(a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = gy * b * a ** (b - 1) if a.requires_grad else None
        gb = gy * self.output * log(a) if b.requires_grad else None
        return ga, gb


class Exp(Function):
    saves = ("output",)
    def forward(self, a): return self.xp.exp(a)
    def backward(self, gy): return (gy * self.output,)


class Log(Function):
    saves = (0,)
    def forward(self, a): return self.xp.log(a)
    def backward(self, gy): return (gy / self.inputs[0],)


class Sqrt(Function):
    saves = ("output",)
    def forward(self, a): return self.xp.sqrt(a)
    def backward(self, gy): return (gy * 0.5 / self.output,)


class Abs(Function):
    saves = (0,)
    def forward(self, a): return self.xp.abs(a)
    def backward(self, gy): return (gy * sign(self.inputs[0]),)


class Sign(Function):
    saves = ()
    def forward(self, a): return self.xp.sign(a)
    def backward(self, gy): return (self.const(self.xp.zeros_like(gy.data)),)


class Clip(Function):
    saves = (0,)

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, a): return self.xp.clip(a, self.lo, self.hi)

    def backward(self, gy):
        a = self.inputs[0].data
        inside = self.xp.ones_like(a, dtype=self.xp.bool)
        if self.lo is not None:
            inside = inside & (a > self.lo)
        if self.hi is not None:
            inside = inside & (a < self.hi)
        return (gy * self.const(self.xp.astype(inside, a.dtype)),)


class Maximum(Function):
    saves = (0, 1)
    sign = 1

    def forward(self, a, b): return self.xp.maximum(a, b) if self.sign > 0 else self.xp.minimum(a, b)

    def backward(self, gy):
        a, b = self.inputs[0].data, self.inputs[1].data
        xp = self.xp
        wins = (a > b) if self.sign > 0 else (a < b)
        dtype = xp.result_type(a, b)
        share_a = xp.astype(wins, dtype) + 0.5 * xp.astype(a == b, dtype)  # ties split evenly
        share_a = self.const(share_a)
        return gy * share_a, gy * (1 - share_a)


class Minimum(Maximum):
    sign = -1


class Where(Function):
    saves = ()

    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b): return self.xp.where(self.condition, a, b)

    def backward(self, gy):
        mask = self.const(self.xp.astype(self.condition, gy.dtype))
        return gy * mask, gy * (1 - mask)


def add(a, b): return _t(a, b if isinstance(b, Tensor) else None) + b
def subtract(a, b): return _t(a, b if isinstance(b, Tensor) else None) - b
def multiply(a, b): return _t(a, b if isinstance(b, Tensor) else None) * b
def divide(a, b): return _t(a, b if isinstance(b, Tensor) else None) / b
def power(a, b): return _t(a, b if isinstance(b, Tensor) else None) ** b
def neg(x): return Neg()(_t(x))
def exp(x): return Exp()(_t(x))
def log(x): return Log()(_t(x))
def sqrt(x): return Sqrt()(_t(x))
def abs(x): return Abs()(_t(x))
def sign(x): return Sign()(_t(x))


def clip(x, min=None, max=None):
    if min is not None and max is not None and min > max:
        raise ArgumentError(f"clip: min ({min}) must not exceed max ({max})")
    return Clip(min, max)(_t(x))


def _pair(a, b):
    if not isinstance(a, Tensor):
        b = _t(b)
        a = operand(a, b)
    return a, operand(b, a)


def maximum(a, b): return Maximum()(*_pair(a, b))
def minimum(a, b): return Minimum()(*_pair(a, b))


def where(condition, a, b):
    """Elementwise ``a`` where ``condition`` else ``b``; ``condition`` is a boolean mask (no gradient)."""
    a, b = _pair(a, b)
    condition = condition.data if isinstance(condition, Tensor) else a.backend.asarray(condition)
    return Where(condition)(a, b)


def compare(a, b, op):
    """Elementwise comparison (``less``, ``greater``, ...) as a constant boolean tensor."""
    a, b = _pair(a, b)
    return Tensor._make(getattr(a.backend.xp, op)(a.data, b.data), a.backend)


# ==== matmul =======================================================================================
class MatMul(Function):
    """a @ b, with either operand's last two axes swapped first (``transpose_a``, ``transpose_b``, as
    in TensorFlow): gradients of products are products with transposed operands, so backward needs
    no transpose ops and the result of a gradient GEMM comes out contiguous."""
    saves = (0, 1)

    def __init__(self, transpose_a=False, transpose_b=False):
        self.transpose_a, self.transpose_b = transpose_a, transpose_b

    def forward(self, a, b):
        xp = self.xp
        a = xp.matrix_transpose(a) if self.transpose_a else a
        b = xp.matrix_transpose(b) if self.transpose_b else b
        if a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned: "
                             f"{a.shape[-1]} (last axis of the first) != {b.shape[-2]} (second-to-last of the second)")
        return xp.matmul(a, b)

    def backward(self, gy):
        # y = op_a(a) @ op_b(b): d op_a(a) = gy @ op_b(b)^T and d op_b(b) = op_a(a)^T @ gy, each written
        # as one MatMul of the saved operands (TensorFlow's _MatMulGrad).
        a, b = self.inputs
        ta, tb = self.transpose_a, self.transpose_b
        need_a, need_b = self.needs_input_grad
        ga = gb = None
        if need_a:
            ga = MatMul(tb, True)(b, gy) if ta else MatMul(False, not tb)(gy, b)
        if need_b:
            gb = MatMul(True, ta)(gy, a) if tb else MatMul(not ta, False)(a, gy)
        return ga, gb


def matmul(a, b):
    """Matrix product with NumPy semantics: batched over leading axes, 1-D operands promoted."""
    a, b = _pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
    if a.ndim == 1 and b.ndim == 1:
        return MatMul()(reshape(a, (1, -1)), reshape(b, (-1, 1))).reshape(())
    if a.ndim == 1:
        y = MatMul()(reshape(a, (1, -1)), b)
        return squeeze(y, -2)
    if b.ndim == 1:
        return squeeze(MatMul()(a, reshape(b, (-1, 1))), -1)
    return MatMul()(a, b)


# ==== reductions ===================================================================================
class Sum(Function):
    saves = ()

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        self.axes = _axes(self.axis, a.ndim, "sum")
        return self.xp.sum(a, axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        shape = self.inputs[0].shape
        if not self.keepdims:
            gy = reshape(gy, _keepdims_shape(shape, self.axes))
        return (broadcast_to(gy, shape),)


class Max(Function):
    """Max over axes; the gradient is shared evenly by tied maxima (minimum-norm subgradient)."""
    saves = (0, "output")
    reduce = "max"

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        self.axes = _axes(self.axis, a.ndim, self.reduce)
        if a.size == 0:
            raise ShapeError(f"{self.reduce} of an empty tensor of shape {tuple(a.shape)} is undefined")
        return getattr(self.xp, self.reduce)(a, axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp, x = self.xp, self.inputs[0].data
        kshape = _keepdims_shape(x.shape, self.axes)
        hits = xp.astype(x == xp.reshape(self.output.data, kshape), x.dtype)
        share = self.const(hits / xp.sum(hits, axis=self.axes, keepdims=True))
        return (broadcast_to(reshape(gy, kshape), x.shape) * share,)


class Min(Max):
    reduce = "min"


def sum(x, axis=None, keepdims=False): return Sum(axis, keepdims)(_t(x))
def max(x, axis=None, keepdims=False): return Max(axis, keepdims)(_t(x))
def min(x, axis=None, keepdims=False): return Min(axis, keepdims)(_t(x))


def mean(x, axis=None, keepdims=False):
    x = _t(x)
    count = math.prod(x.shape[a] for a in _axes(axis, x.ndim, "mean"))
    return sum(x, axis, keepdims) * (1.0 / count if count else math.nan)


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance with NumPy's ``ddof`` (0: population variance, as in batch normalization)."""
    x = _t(x)
    count = math.prod(x.shape[a] for a in _axes(axis, x.ndim, "var"))
    centered = x - mean(x, axis, keepdims=True)
    return sum(centered * centered, axis, keepdims) * (1.0 / builtins.max(count - ddof, 0) if count > ddof else math.nan)


def any(x, axis=None, keepdims=False):
    """Whether any element (along ``axis``) is nonzero: a constant boolean tensor."""
    x = _t(x)
    return Tensor._make(x.backend.xp.any(x.data, axis=_axes(axis, x.ndim, "any"), keepdims=keepdims), x.backend)


def all(x, axis=None, keepdims=False):
    """Whether every element (along ``axis``) is nonzero: a constant boolean tensor."""
    x = _t(x)
    return Tensor._make(x.backend.xp.all(x.data, axis=_axes(axis, x.ndim, "all"), keepdims=keepdims), x.backend)


def argmax(x, axis=None, op="argmax"):
    """Indices of maxima (an integer tensor, no gradient)."""
    x = _t(x)
    axis = None if axis is None else check.axis(f"{op}: axis", axis, x.ndim)
    return Tensor._make(getattr(x.backend.xp, op)(x.data, axis=axis), x.backend)


def argmin(x, axis=None): return argmax(x, axis, op="argmin")


# ==== shape ========================================================================================
class Reshape(Function):
    saves = ()

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a): return self.xp.reshape(a, self.shape)
    def backward(self, gy): return (reshape(gy, self.inputs[0].shape),)


class Transpose(Function):
    saves = ()

    def __init__(self, axes):
        self.axes = axes

    def forward(self, a):
        if self.axes is None:
            self.axes = tuple(range(a.ndim))[::-1]
        axes = tuple(check.axis("transpose: axes", a_, a.ndim) for a_ in self.axes)
        if sorted(axes) != list(range(a.ndim)):
            raise ShapeError(f"transpose: axes {self.axes} are not a permutation of {a.ndim} axes")
        self.axes = axes
        return self.xp.permute_dims(a, self.axes)

    def backward(self, gy):
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return (transpose(gy, tuple(inverse)),)


class BroadcastTo(Function):
    saves = ()

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, a): return self.xp.broadcast_to(a, self.shape)
    def backward(self, gy): return (sum_to(gy, self.inputs[0].shape),)


class SumTo(Function):
    """Sum a broadcast array back down to ``shape`` (the adjoint of broadcast_to)."""

    saves = ()

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, a):
        lead = a.ndim - len(self.shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(self.shape) if s == 1 and a.shape[lead + i] != 1)
        y = self.xp.sum(a, axis=axes, keepdims=True) if axes else a
        return self.xp.reshape(y, self.shape) if lead else y

    def backward(self, gy): return (broadcast_to(gy, self.inputs[0].shape),)


class Cast(Function):
    saves = ()

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, a): return self.xp.astype(a, self.dtype)
    def backward(self, gy): return (cast(gy, self.inputs[0].dtype),)


def reshape(x, shape):
    x = _t(x)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return x if shape == x.shape else Reshape(shape)(x)


def transpose(x, axes=None): return Transpose(None if axes is None else tuple(axes))(_t(x))
permute = transpose


def swapaxes(x, axis1, axis2):
    x = _t(x)
    axes = list(range(x.ndim))
    axis1, axis2 = check.axis("swapaxes: axis1", axis1, x.ndim), check.axis("swapaxes: axis2", axis2, x.ndim)
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return transpose(x, axes)


def broadcast_to(x, shape):
    x = _t(x)
    return x if tuple(shape) == x.shape else BroadcastTo(shape)(x)


def sum_to(x, shape):
    x = _t(x)
    return x if tuple(shape) == x.shape else SumTo(shape)(x)


def cast(x, dtype):
    x = _t(x)
    return x if x.dtype == dtype else Cast(dtype)(x)


def flatten(x, start_axis=0, end_axis=-1):
    """Merge axes ``start_axis..end_axis`` into one (all of them by default, like ndarray.flatten)."""
    x = _t(x)
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = check.axis("flatten: start_axis", start_axis, x.ndim), check.axis("flatten: end_axis", end_axis, x.ndim)
    if start > end:
        raise ShapeError(f"flatten: start_axis={start_axis} comes after end_axis={end_axis} for a {x.ndim}-d tensor")
    return reshape(x, x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:])


def squeeze(x, axis=None):
    x = _t(x)
    axes = tuple(i for i, s in enumerate(x.shape) if s == 1) if axis is None else _axes(axis, x.ndim, "squeeze")
    for a in axes:
        if x.shape[a] != 1:
            raise ShapeError(f"squeeze: axis {a} has size {x.shape[a]}, not 1")
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def expand_dims(x, axis):
    x = _t(x)
    axis = check.axis("expand_dims: axis", axis, x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


unsqueeze = expand_dims


# ==== indexing, joining, padding ===================================================================
class GetItem(Function):
    saves = ()

    def __init__(self, index):
        self.index = index

    def forward(self, a):
        if hasattr(self.index, "shape"):     # one integer array: rows along axis 0 (the array-API way)
            return self.xp.take(a, self.index, axis=0)
        self.backend.check_index(self.index, a.shape)   # CuPy would wrap out-of-range integer arrays
        return a[self.index]
    def backward(self, gy): return (IndexAdd(self.index, self.inputs[0].shape)(gy),)


class IndexAdd(Function):
    """zeros(shape) with ``gy`` added at ``index``; repeated indices accumulate (getitem's adjoint)."""

    saves = ()

    def __init__(self, index, shape):
        self.index, self.shape = index, shape

    def forward(self, gy):
        zeros = self.backend.zeros(self.shape, gy.dtype)
        if not _has_array(self.index):    # slices/ints address each element once: plain assignment
            index = tuple(i for i in self.index if i is not None)   # (the array API assigns without None)
            zeros[index] = self.xp.reshape(gy, zeros[index].shape)
            return zeros
        return self.backend.scatter_add(zeros, self.index, gy)

    def backward(self, ggx): return (getitem(ggx, self.index),)


def _has_array(index):
    items = index if isinstance(index, tuple) else (index,)
    return builtins.any(hasattr(i, "shape") and i.ndim > 0 for i in items)   # getitem made lists arrays


def _index_item(i, backend):
    """One index item as ints, slices, None, Ellipsis or an array on ``backend`` (Tensors, lists and
    host arrays are converted); booleans only as arrays (a Python bool would read as 0 or 1)."""
    if isinstance(i, Tensor):
        i = i.data
    elif isinstance(i, (bool, list)) or (hasattr(i, "shape") and not backend.owns(i)):
        i = backend.asarray(i)
    if hasattr(i, "shape"):
        if backend.is_float(i.dtype):
            raise DTypeError(f"getitem: index arrays must be integer or boolean, got dtype {i.dtype}")
        if i.dtype == backend.xp.bool and i.ndim == 0:
            raise IndexOutOfRangeError("getitem: a 0-d boolean index is not supported; use a boolean mask "
                                       "with the shape of the axes it selects from")
    return i


def _consumed(i, backend):
    """How many axes of the indexed tensor an index item uses up."""
    if i is None:
        return 0
    return i.ndim if hasattr(i, "shape") and i.dtype == backend.xp.bool else 1


def _take(x, index, axis, front=False):
    """x indexed by one integer array along ``axis``: the index's axes replace ``axis`` (or come first
    with ``front``), as axis-0 rows of a permuted view, so it runs on any array-API backend."""
    moved = transpose(x, [axis] + [a for a in range(x.ndim) if a != axis]) if axis else x
    rows = GetItem(x.backend.xp.reshape(index, (-1,)) if index.ndim != 1 else index)(moved)
    rows = reshape(rows, tuple(index.shape) + moved.shape[1:])
    if front or not axis:
        return rows
    order = list(range(index.ndim, index.ndim + axis)) + list(range(index.ndim)) + \
        list(range(index.ndim + axis, rows.ndim))
    return transpose(rows, order)


def getitem(x, index):
    """NumPy indexing: ints, slices, None, Ellipsis, integer arrays and boolean masks (a mask selects
    like its ``nonzero()`` indices); duplicate indices accumulate in backward. One array index
    (mixed with basic indices) works on every backend; several arrays index NumPy-style on NumPy and
    CuPy. Out-of-range integers raise IndexOutOfRangeError on every backend."""
    x = _t(x)
    b = x.backend
    items = [_index_item(i, b) for i in (index if isinstance(index, tuple) else (index,))]
    arrays = [k for k, i in enumerate(items) if hasattr(i, "shape")]
    extra = x.ndim - builtins.sum(_consumed(i, b) for i in items if i is not Ellipsis)
    if extra < 0 or builtins.sum(i is Ellipsis for i in items) > 1:
        raise IndexOutOfRangeError(f"getitem: too many indices ({len(items)}) for a tensor of shape {x.shape}")
    position = 0                 # the axis of x each item starts at; masks must fit those axes
    for k, i in enumerate(items):
        if hasattr(i, "shape") and i.dtype == b.xp.bool and tuple(i.shape) != x.shape[position:position + i.ndim]:
            raise IndexOutOfRangeError(f"getitem: boolean index of shape {tuple(i.shape)} does not match the "
                                       f"indexed axes {x.shape[position:position + i.ndim]} of a tensor of shape {x.shape}")
        position += extra if i is Ellipsis else _consumed(i, b)
    if not builtins.any(i is Ellipsis for i in items):
        items.append(Ellipsis)   # the array API wants partial indices spelled out; same meaning in NumPy
    try:
        if len(arrays) > 1:      # NumPy's advanced indexing; masks as their nonzero() indices
            spliced = []
            for i in items:
                spliced.extend(b.xp.nonzero(i) if hasattr(i, "shape") and i.dtype == b.xp.bool else (i,))
            return GetItem(tuple(spliced))(x)
        if not arrays:
            return GetItem(tuple(items))(x)
        k = arrays[0]
        array = items[k]
        is_mask = array.dtype == b.xp.bool
        # basic indices first (the array's axes kept whole), then the array along its axis there
        basic = tuple(items[:k]) + (slice(None),) * (array.ndim if is_mask else 1) + tuple(items[k + 1:])
        y = x if builtins.all(i is Ellipsis or (isinstance(i, slice) and i == slice(None)) for i in basic) \
            else GetItem(basic)(x)
        # the array's axis in y: one per slice or None before it, Ellipsis's axes, none per integer;
        # NumPy counts integers as array indices too, and puts their axes first when not adjacent
        advanced = [j for j, i in enumerate(items) if j == k or isinstance(i, numbers.Integral)]
        adjacent = advanced[-1] - advanced[0] == len(advanced) - 1
        axis = builtins.sum(extra if i is Ellipsis else 0 if isinstance(i, numbers.Integral) else 1 for i in items[:k])
        if is_mask:
            merged = y.shape[axis:axis + array.ndim]
            y = reshape(y, y.shape[:axis] + (math.prod(merged),) + y.shape[axis + array.ndim:])
            array = b.xp.nonzero(b.xp.reshape(array, (-1,)))[0]
        return _take(y, array, axis, front=not adjacent)
    except IndexError as exc:
        raise IndexOutOfRangeError(f"getitem: index {index!r} is invalid for a tensor of shape {x.shape}: {exc}") from exc


class Concatenate(Function):
    saves = ()

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *arrays):
        ndim = arrays[0].ndim
        for a in arrays:
            if a.ndim != ndim:
                raise ShapeError(f"concatenate: all inputs must have the same number of dimensions, got "
                                 f"{[x.ndim for x in arrays]}")
        self.axis = check.axis("concatenate: axis", self.axis, ndim)
        return self.xp.concat(arrays, axis=self.axis)

    def backward(self, gy):
        grads, start = [], 0
        for x in self.inputs:
            index = (slice(None),) * self.axis + (slice(start, start + x.shape[self.axis]),)
            grads.append(gy[index])
            start += x.shape[self.axis]
        return tuple(grads)


def concatenate(tensors, axis=0):
    tensors = [_t(t) for t in tensors]
    if not tensors:
        raise ArgumentError("concatenate needs at least one tensor, got an empty sequence")
    return Concatenate(axis)(*tensors)


cat = concatenate


def stack(tensors, axis=0):
    tensors = [_t(t) for t in tensors]
    if not tensors:
        raise ArgumentError("stack needs at least one tensor, got an empty sequence")
    if len({t.shape for t in tensors}) > 1:
        raise ShapeError(f"stack: all tensors must have the same shape, got {[t.shape for t in tensors]}")
    axis = check.axis("stack: axis", axis, tensors[0].ndim + 1)
    return concatenate([expand_dims(t, axis) for t in tensors], axis)


class Pad(Function):
    saves = ()

    def __init__(self, pad_width, value):
        self.pad_width, self.value = pad_width, value

    def forward(self, a): return self.backend.pad(a, self.pad_width, self.value)

    def backward(self, gy):
        index = tuple(slice(before, before + size) for (before, _), size in zip(self.pad_width, self.inputs[0].shape))
        return (gy[index],)


def pad(x, pad_width, value=0.0):
    """Constant padding. ``pad_width``: an int, a (before, after) pair, or one pair per axis."""
    x = _t(x)
    if isinstance(pad_width, int):
        pad_width = ((pad_width, pad_width),) * x.ndim
    elif len(pad_width) == 2 and builtins.all(isinstance(p, int) for p in pad_width):
        pad_width = (tuple(pad_width),) * x.ndim
    pad_width = tuple((int(b), int(a)) for b, a in pad_width)
    if len(pad_width) != x.ndim or builtins.any(b < 0 or a < 0 for b, a in pad_width):
        raise ShapeError(f"pad: expected {x.ndim} non-negative (before, after) pairs, got {pad_width}")
    return Pad(pad_width, value)(x)


# ==== activations ==================================================================================
class ReLU(Function):
    saves = (0,)
    def forward(self, a): return self.backend.kernels.relu(a)

    def backward(self, gy):
        a = self.inputs[0].data
        if is_grad_enabled() or gy.dtype != a.dtype:   # create_graph: a product with the mask, differentiable in gy
            return (gy * self.const(self.xp.astype(a > 0, a.dtype)),)
        return (self.const(self.backend.kernels.relu_grad(gy.data, a)),)    # the same values, one pass


class LeakyReLU(Function):
    saves = (0,)

    def __init__(self, negative_slope):
        self.slope = negative_slope

    def forward(self, a): return self.backend.kernels.leaky_relu(a, self.slope)

    def backward(self, gy):
        a, kernels = self.inputs[0].data, self.backend.kernels
        if is_grad_enabled() or gy.dtype != a.dtype:   # create_graph: a product with the slopes, differentiable in gy
            return (gy * self.const(kernels.leaky_relu_slopes(a, self.slope)),)
        return (self.const(kernels.leaky_relu_grad(gy.data, a, self.slope)),)    # the same values, one pass


class ELU(Function):
    saves = (0,)

    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, a):
        xp = self.xp
        return xp.where(a > 0, a, self.alpha * xp.expm1(xp.clip(a, None, 0)))

    def backward(self, gy):
        x = self.inputs[0]
        positive = self.const(self.xp.astype(x.data > 0, x.dtype))
        return (gy * (positive + (1 - positive) * self.alpha * exp(clip(x, None, 0))),)


class Erf(Function):
    """erf(x) = 2/sqrt(pi) int_0^x exp(-t^2) dt, with d erf/dx = 2/sqrt(pi) exp(-x^2).

    The array API has no erf, so it is computed here (to about 1e-15 in float64) from two classic
    expansions: for |x| < 3 the series erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (2n+1)!!
    (positive terms, no cancellation); beyond, erfc(x) = exp(-x^2) / (sqrt(pi) (x + 1/2 / (x + 1 /
    (x + 3/2 / (x + ...))))), the continued fraction evaluated from its 60th level up.
    """
    saves = (0,)
    split, series_terms, fraction_terms = 3.0, 50, 60

    def forward(self, a):
        xp = self.xp
        magnitude = xp.abs(a)
        small = xp.minimum(magnitude, self.split)
        term = total = small
        for n in range(1, self.series_terms):
            term = term * (2 * small * small) / (2 * n + 1)
            total = total + term
        series = (2 / math.sqrt(math.pi)) * xp.exp(-small * small) * total
        large = xp.maximum(magnitude, self.split)
        fraction = large
        for k in range(self.fraction_terms, 0, -1):
            fraction = large + (k / 2) / fraction
        tail = 1 - xp.exp(-large * large) / (math.sqrt(math.pi) * fraction)
        return xp.sign(a) * xp.where(magnitude < self.split, series, tail)

    def backward(self, gy):
        x = self.inputs[0]
        return (gy * (2 / math.sqrt(math.pi)) * exp(-(x * x)),)


class Sigmoid(Function):
    saves = ("output",)
    def forward(self, a):
        xp = self.xp
        e = xp.exp(-xp.abs(a))                       # never overflows
        return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))

    def backward(self, gy):
        y = self.output
        return (gy * y * (1 - y),)


class Tanh(Function):
    saves = ("output",)
    def forward(self, a): return self.xp.tanh(a)

    def backward(self, gy):
        y = self.output
        if is_grad_enabled() or gy.dtype != y.dtype:   # create_graph: differentiable in gy and y
            return (gy * (1 - y * y),)
        return (self.const(self.backend.kernels.tanh_grad(gy.data, y.data)),)    # the same values, one pass


class Softplus(Function):
    saves = (0,)
    def forward(self, a):
        xp = self.xp
        return xp.log1p(xp.exp(-xp.abs(a))) + xp.clip(a, 0, None)

    def backward(self, gy): return (gy * sigmoid(self.inputs[0]),)


class LogSumExp(Function):
    saves = (0, "output")

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        xp = self.xp
        self.axes = _axes(self.axis, a.ndim, "logsumexp")
        m = xp.max(a, axis=self.axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))  # all -inf rows give -inf, not NaN
        y = xp.log(xp.sum(xp.exp(a - m), axis=self.axes, keepdims=True)) + m
        return y if self.keepdims else xp.reshape(y, tuple(s for i, s in enumerate(a.shape) if i not in self.axes))

    def backward(self, gy):
        x = self.inputs[0]
        kshape = _keepdims_shape(x.shape, self.axes)
        return (reshape(gy, kshape) * exp(x - reshape(self.output, kshape)),)


class Softmax(Function):
    saves = ("output",)

    def __init__(self, axis):
        self.axis = axis

    def forward(self, a):
        xp = self.xp
        self.axis = check.axis("softmax: axis", self.axis, a.ndim)
        e = xp.exp(a - xp.max(a, axis=self.axis, keepdims=True))
        return e / xp.sum(e, axis=self.axis, keepdims=True)

    def backward(self, gy):
        y = self.output
        return (y * (gy - sum(gy * y, self.axis, keepdims=True)),)


class LogSoftmax(Function):
    saves = ("output",)

    def __init__(self, axis):
        self.axis = axis

    def forward(self, a):
        xp = self.xp
        self.axis = check.axis("log_softmax: axis", self.axis, a.ndim)
        m = xp.max(a, axis=self.axis, keepdims=True)
        shifted = a - m
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=self.axis, keepdims=True))

    def backward(self, gy):
        return (gy - exp(self.output) * sum(gy, self.axis, keepdims=True),)


def erf(x): return Erf()(_t(x))


def gelu(x):
    """GELU(x) = x Phi(x) = x (1 + erf(x / sqrt(2))) / 2, the exact form (Hendrycks & Gimpel 2016)."""
    x = _t(x)
    return 0.5 * x * (1.0 + erf(x * (1 / math.sqrt(2))))


def silu(x):
    """SiLU (swish) x sigmoid(x) (Elfwing et al. 2018)."""
    x = _t(x)
    return x * sigmoid(x)


def relu(x): return ReLU()(_t(x))
def leaky_relu(x, negative_slope=0.01): return LeakyReLU(negative_slope)(_t(x))
def elu(x, alpha=1.0): return ELU(alpha)(_t(x))
def sigmoid(x): return Sigmoid()(_t(x))
def tanh(x): return Tanh()(_t(x))
def softplus(x): return Softplus()(_t(x))
def logsumexp(x, axis=None, keepdims=False): return LogSumExp(axis, keepdims)(_t(x))
def softmax(x, axis=-1): return Softmax(axis)(_t(x))
def log_softmax(x, axis=-1): return LogSoftmax(axis)(_t(x))


# Layer-level ops live in their own modules and are re-exported so ``F`` is the one namespace.
from minireg.functional_nn import batch_norm, dropout, embedding, layer_norm, linear  # noqa: E402,F401
from minireg.functional_conv import avg_pool2d, conv2d, conv_transpose2d, max_pool2d, upsample_nearest2d  # noqa: E402,F401
from minireg.losses import (binary_cross_entropy_with_logits, cross_entropy, huber_loss, l1_loss,  # noqa: E402,F401
                            mse_loss, nll_loss, smooth_l1_loss)
