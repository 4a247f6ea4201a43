"""Batch and layer normalization modules."""
import numpy as np

from minireg import check
from minireg import functional as F
from minireg._config import get_default_dtype
from minireg.nn import init
from minireg.nn.layers import check_input, empty_parameter, layer_input
from minireg.nn.module import Module
from minireg.tensor import tensor


class _BatchNorm(Module):
    """Per-channel normalization with learned scale/shift and running statistics as buffers.

    ``running_var`` starts at 1 and ``running_mean`` at 0, so eval mode before any training is the
    identity rather than a division by zero. ``momentum`` in [0, 1] follows PyTorch (the weight of
    the new batch); ``eps > 0``. Parameters and running statistics all have the layer's ``dtype``
    (the default dtype unless given), with or without ``affine``.
    """
    input_ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=None):
        name = type(self).__name__
        num_features = check.positive_int(f"{name}: num_features", num_features)
        eps = check.positive(f"{name}: eps", eps)
        momentum = check.probability(f"{name}: momentum", momentum, allow_one=True)
        affine = check.flag(f"{name}: affine", affine)
        track_running_stats = check.flag(f"{name}: track_running_stats", track_running_stats)
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = init.ones_(empty_parameter((num_features,), dtype)) if affine else None
        self.bias = init.zeros_(empty_parameter((num_features,), dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", _buffer(num_features, 0.0, dtype))
            self.register_buffer("running_var", _buffer(num_features, 1.0, dtype))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x):
        x = layer_input(self, x, self.weight if self.affine else self.running_mean)
        layout = {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)"}
        expected = " or ".join(layout[n].replace("C", str(self.num_features)) for n in self.input_ndims)
        check_input(self, x, self.input_ndims, expected, x.ndim > 1 and x.shape[1] == self.num_features)
        use_batch_stats = self.training or not self.track_running_stats
        y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         training=use_batch_stats, momentum=self.momentum, eps=self.eps)
        if use_batch_stats and self.running_mean is not None:
            for buffer in (self.running_mean, self.running_var):
                buffer._bump_version()
        return y

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


def _buffer(size, value, dtype):
    """A running statistic: ``size`` copies of ``value`` in ``dtype`` (the default dtype if None)."""
    return tensor(np.full(size, value, dtype=np.dtype(dtype) if dtype is not None else get_default_dtype()))


class BatchNorm1d(_BatchNorm):
    input_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    input_ndims = (4,)


class LayerNorm(Module):
    """Normalization over the trailing ``normalized_shape`` axes of each sample, ``eps > 0``."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, dtype=None):
        shape = (normalized_shape,) if not isinstance(normalized_shape, (tuple, list)) else tuple(normalized_shape)
        shape = tuple(check.positive_int("LayerNorm: normalized_shape", n) for n in shape)
        eps = check.positive("LayerNorm: eps", eps)
        elementwise_affine = check.flag("LayerNorm: elementwise_affine", elementwise_affine)
        super().__init__()
        self.normalized_shape, self.eps = shape, eps
        self.weight = init.ones_(empty_parameter(self.normalized_shape, dtype)) if elementwise_affine else None
        self.bias = init.zeros_(empty_parameter(self.normalized_shape, dtype)) if elementwise_affine else None

    def forward(self, x):
        x = layer_input(self, x, self.weight)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"
