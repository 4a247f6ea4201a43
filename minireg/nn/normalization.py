"""Batch and layer normalization modules."""
import numpy as np

from minireg import functional as F
from minireg.nn import init
from minireg.nn.layers import check_input, empty_parameter
from minireg.nn.module import Module
from minireg.tensor import tensor


class _BatchNorm(Module):
    """Per-channel normalization with learned scale/shift and running statistics as buffers.

    ``running_var`` starts at 1 and ``running_mean`` at 0, so eval mode before any training is the
    identity rather than a division by zero. ``momentum`` follows PyTorch (weight of the new batch).
    """
    input_ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = init.ones_(empty_parameter((num_features,), dtype)) if affine else None
        self.bias = init.zeros_(empty_parameter((num_features,), dtype)) if affine else None
        dt = self.weight.dtype if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", tensor(np.zeros(num_features, dtype=dt or np.float32)))
            self.register_buffer("running_var", tensor(np.ones(num_features, dtype=dt or np.float32)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x):
        layout = {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)"}
        expected = " or ".join(layout[n].replace("C", str(self.num_features)) for n in self.input_ndims)
        check_input(self, x, self.input_ndims, expected, x.ndim > 1 and x.shape[1] == self.num_features)
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=use_batch_stats, momentum=self.momentum, eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    input_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    input_ndims = (4,)


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = init.ones_(empty_parameter(self.normalized_shape, dtype)) if elementwise_affine else None
        self.bias = init.zeros_(empty_parameter(self.normalized_shape, dtype)) if elementwise_affine else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"
