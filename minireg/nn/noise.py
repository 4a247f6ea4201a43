"""Noise regularizers: layers that perturb activations (or a wrapped layer's weights) in training
and are the identity in eval mode.

Each is unbiased, E[output] = input (DropConnect: E[masked W] = W). Random numbers are drawn through
the backend from minireg's stream on the data's device (``minireg.random.device_generator``), so
they never cross the bus; a seed set with ``minireg.manual_seed`` gives the same noise again on the
same kind of device (see ``minireg.random`` for what is reproduced where).
"""
import math

from minireg import check
from minireg.nn.layers import check_input, layer_input
from minireg.nn.module import Module
from minireg.nn.spectral_norm import call_with_weight, wrapped_parameter
from minireg.random import default_generator
from minireg.tensor import Tensor


def _keep_mask(backend, shape, dtype, p):
    """Bernoulli(1 - p) keep-mask scaled by 1/(1 - p) (inverted dropout's convention: keep u >= p)."""
    u = backend.random_uniform(default_generator(), shape, dtype)
    keep = backend.xp.astype(u >= p, dtype)
    return Tensor._make(keep * (1.0 / (1.0 - p)) if p < 1 else keep, backend)


class DropConnect(Module):
    """Drops weights, not activations (Wan et al. 2013): in training the wrapped layer runs with

        W' = W * m / (1 - p),   m_ij ~ Bernoulli(1 - p)

    one mask per call, shared by the whole batch (Wan et al. draw one per example; Chainer's
    ``simplified_dropconnect`` offers both). Works for any layer whose ``name`` parameter feeds its
    forward (Linear, Conv2d, ...); the bias is not dropped. Eval mode runs the layer with W itself
    (the mean weights; Wan et al. instead moment-match a Gaussian at inference). Default p = 0.5 as
    in the paper.
    """

    def __init__(self, module, p=0.5, name="weight"):
        wrapped_parameter("DropConnect", module, name)
        p = check.probability("DropConnect: p", p, allow_one=True)
        super().__init__()
        self.module, self.p, self.name = module, p, name

    def forward(self, x):
        if not self.training or self.p == 0:
            return self.module(x)
        weight = getattr(self.module, self.name)
        x = layer_input(self.module, x, weight)   # before the draw: a refused input consumes no randomness
        return call_with_weight(self.module, self.name, weight * _keep_mask(weight.backend, weight.shape,
                                                                             weight.dtype, self.p), x)

    def extra_repr(self):
        return f"p={self.p}, name={self.name!r}"


class SpatialDropout2d(Module):
    """Drops whole channels of (N, C, H, W) inputs (Tompson et al. 2015; torch ``Dropout2d``, Keras
    ``SpatialDropout2D``): y[n, c] = x[n, c] * m[n, c] / (1 - p), m ~ Bernoulli(1 - p). Neighbouring
    pixels are correlated, so dropping single activations would barely regularize. Default p = 0.5
    (torch)."""

    def __init__(self, p=0.5):
        p = check.probability("SpatialDropout2d: p", p, allow_one=True)
        super().__init__()
        self.p = p

    def forward(self, x):
        x = layer_input(self, x)
        check_input(self, x, (4,), "(N, C, H, W)", True)
        if not self.training or self.p == 0:
            return x
        return x * _keep_mask(x.backend, (x.shape[0], x.shape[1], 1, 1), x.dtype, self.p)

    def extra_repr(self):
        return f"p={self.p}"


class GaussianNoise(Module):
    """Additive noise y = x + e, e ~ N(0, stddev^2) elementwise (Keras ``GaussianNoise``; stddev has no
    default there either)."""

    def __init__(self, stddev):
        stddev = check.nonnegative("GaussianNoise: stddev", stddev)
        super().__init__()
        self.stddev = stddev

    def forward(self, x):
        x = layer_input(self, x)
        if not self.training or self.stddev == 0:
            return x
        noise = x.backend.random_normal(default_generator(), x.shape, x.dtype, std=self.stddev)
        return x + Tensor._make(noise, x.backend)

    def extra_repr(self):
        return f"stddev={self.stddev}"


class GaussianDropout(Module):
    """Multiplicative noise y = x * e, e ~ N(1, rate / (1 - rate)) elementwise: the Gaussian with the
    mean and variance of inverted dropout's factor m / (1 - rate) (Srivastava et al. 2014, section
    10; Keras ``GaussianDropout``, rate required, in [0, 1))."""

    def __init__(self, rate):
        rate = check.probability("GaussianDropout: rate", rate)
        super().__init__()
        self.rate = rate

    def forward(self, x):
        x = layer_input(self, x)
        if not self.training or self.rate == 0:
            return x
        std = math.sqrt(self.rate / (1.0 - self.rate))
        noise = x.backend.random_normal(default_generator(), x.shape, x.dtype, mean=1.0, std=std)
        return x * Tensor._make(noise, x.backend)

    def extra_repr(self):
        return f"rate={self.rate}"
