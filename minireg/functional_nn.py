"""Layer-level ops built from the core ops (so their gradients, and second gradients, come for free):
linear, dropout, batch and layer normalization, embedding lookup."""
import math

from minireg._config import no_grad
from minireg import check
from minireg.errors import DTypeError, IndexOutOfRangeError, ShapeError
from minireg.function import Function
from minireg.functional import MatMul, _t, getitem, matmul, reshape, sqrt, sum
from minireg.random import default_generator
from minireg.tensor import Tensor


class Linear(Function):
    """y = x W^T (+ b) over the last axis of x. One op rather than matmul(x, W.T): the weight
    gradient gy^T x then comes out contiguous in W's own layout, as the optimizer kernels want."""
    saves = (0, 1)

    def forward(self, x, w, b=None):
        y = self.xp.matmul(x, self.xp.matrix_transpose(w))
        if b is None:
            return y
        if y.dtype == b.dtype:
            y += b         # into the fresh product: no second output array
            return y
        return y + b

    def backward(self, gy):
        x, w = self.inputs[0], self.inputs[1]
        need = self.needs_input_grad
        gx = matmul(gy, w) if need[0] else None
        gy_2d = gy if gy.ndim == 2 else reshape(gy, (-1, gy.shape[-1]))
        x_2d = x if x.ndim == 2 else reshape(x, (-1, x.shape[-1]))
        gw = MatMul(transpose_a=True)(gy_2d, x_2d) if need[1] else None
        if len(self.inputs) == 2:
            return gx, gw
        return gx, gw, sum(gy_2d, axis=0) if need[2] else None


def linear(x, weight, bias=None):
    """y = x W^T + b, with W of shape (out_features, in_features) as in PyTorch."""
    return Linear()(_t(x), weight) if bias is None else Linear()(_t(x), weight, bias)


def dropout(x, p=0.5, training=True, generator=None):
    """Inverted dropout: zero each element with probability p, scale survivors by 1/(1-p).

    The identity when not training, so the expected activation equals the input in both modes.
    """
    p = check.probability("dropout: p", p, allow_one=True)
    x = _t(x)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    b = x.backend
    u = b.random_uniform(generator or default_generator(), x.shape, x.dtype)
    mask = b.xp.astype(u >= p, x.dtype) * (1.0 / (1.0 - p))
    return x * Tensor._make(mask, b)


def _channel_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=True, momentum=0.1, eps=1e-5):
    """Normalize each channel (axis 1) over the batch and spatial axes.

    Training uses the batch statistics (biased variance) and updates the running ones as
    ``running = (1 - momentum) * running + momentum * batch`` (PyTorch's convention; Keras's
    ``momentum=0.99`` corresponds to 0.01 here), with the unbiased variance for ``running_var``.
    Evaluation uses the running statistics.
    """
    x = _t(x)
    momentum = check.real("batch_norm: momentum", momentum, low=0, high=1)
    eps = check.positive("batch_norm: eps", eps)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = _channel_shape(x)
    if training:
        count = math.prod(x.shape[a] for a in axes)
        if count < 2:
            raise ShapeError(f"batch_norm needs more than one value per channel when training, got input {x.shape}")
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(axis=axes, keepdims=True)
        if running_mean is not None:
            with no_grad():
                xp = x.backend.xp
                batch_mean = xp.reshape(mean.data, (x.shape[1],))
                batch_var = xp.reshape(var.data, (x.shape[1],)) * (count / (count - 1))
                running_mean.data = running_mean.data * (1 - momentum) + xp.astype(batch_mean, running_mean.dtype) * momentum
                running_var.data = running_var.data * (1 - momentum) + xp.astype(batch_var, running_var.dtype) * momentum
        y = centered / sqrt(var + eps)
    else:
        y = (x - reshape(running_mean, shape)) / sqrt(reshape(running_var, shape) + eps)
    if weight is not None:
        y = y * reshape(weight, shape)
    if bias is not None:
        y = y + reshape(bias, shape)
    return y


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the trailing ``normalized_shape`` axes of each sample (Ba et al. 2016)."""
    x = _t(x)
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ShapeError(f"layer_norm: input {x.shape} does not end with normalized_shape {normalized_shape}")
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    centered = x - x.mean(axis=axes, keepdims=True)
    y = centered / sqrt((centered * centered).mean(axis=axes, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def embedding(indices, weight):
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``indices`` of any shape."""
    b = weight.backend
    idx = indices.data if isinstance(indices, Tensor) else b.asarray(indices)
    xp = b.xp
    if xp.isdtype(idx.dtype, "real floating") or idx.dtype == xp.bool:
        raise DTypeError(f"embedding indices must be integers, got dtype {idx.dtype}")
    b.check_in_range(idx, 0, weight.shape[0], IndexOutOfRangeError,   # no negative rows, unlike getitem
                     f"embedding: index {{value}} is out of range [0, {weight.shape[0]})")
    rows = getitem(weight, xp.reshape(idx, (-1,)))
    return reshape(rows, tuple(idx.shape) + (weight.shape[1],))
