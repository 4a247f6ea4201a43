"""Weight initialisers (PyTorch's names and formulas), seeded through ``minireg.manual_seed``.

Each fills a tensor in place and returns it. Numbers are drawn on the host (``generator`` or the
global one) so the same seed gives the same weights on every backend.
"""
import math

import numpy as np

from minireg import check
from minireg.errors import ShapeError
from minireg.random import default_generator


def calculate_gain(nonlinearity, param=None):
    gains = {"linear": 1.0, "conv2d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 0.75}
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    check.choice("calculate_gain: nonlinearity", nonlinearity, sorted(gains) + ["leaky_relu"])
    return gains[nonlinearity]


def fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) for Linear (out, in) and conv (out, in, kH, kW) weights."""
    if tensor.ndim < 2:
        raise ShapeError(f"fan in/out needs a tensor with at least 2 dimensions, got shape {tensor.shape}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fill(tensor, host_values):
    """Replace ``tensor``'s values by ``host_values`` (on its device, in its dtype): an in-place write."""
    tensor.data = tensor.backend.from_numpy(host_values.astype(tensor.backend.numpy_dtype(tensor.dtype)))
    tensor._bump_version()
    return tensor


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    a = check.real("uniform_: a", a)
    b = check.real("uniform_: b", b, low=a)
    return _fill(tensor, (generator or default_generator()).uniform(a, b, size=tensor.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    mean, std = check.real("normal_: mean", mean), check.nonnegative("normal_: std", std)
    return _fill(tensor, (generator or default_generator()).normal(mean, std, size=tensor.shape))


def constant_(tensor, value):
    value = check.real("constant_: value", value, finite=False)
    return _fill(tensor, np.full(tensor.shape, value))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot & Bengio: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot & Bengio: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    check.choice("kaiming init: mode", mode, ("fan_in", "fan_out"))
    return calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He et al.: U(-b, b), b = gain * sqrt(3 / fan)."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He et al.: N(0, std^2), std = gain / sqrt(fan)."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def orthogonal_(tensor, gain=1.0, generator=None):
    """Saxe et al.: a (semi-)orthogonal matrix from the QR decomposition of a Gaussian matrix."""
    if tensor.ndim < 2:
        raise ShapeError(f"orthogonal_ needs at least 2 dimensions, got shape {tensor.shape}")
    rows, cols = tensor.shape[0], math.prod(tensor.shape[1:])
    flat = (generator or default_generator()).normal(size=(rows, cols))
    q, r = np.linalg.qr(flat.T if rows < cols else flat)
    q = q * np.sign(np.diag(r))      # makes the decomposition unique (uniform over orthogonal matrices)
    q = q.T if rows < cols else q
    return _fill(tensor, gain * q.reshape(tensor.shape))


def default_weight_init_(weight, bias=None, generator=None):
    """PyTorch's default for Linear and conv layers: kaiming_uniform(a=sqrt(5)), bias U(+-1/sqrt(fan_in))."""
    kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        bound = 1.0 / math.sqrt(fan_in_and_fan_out(weight)[0])
        uniform_(bias, -bound, bound, generator)
