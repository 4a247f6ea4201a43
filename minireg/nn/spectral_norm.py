"""Spectral normalization (Miyato et al. 2018) as a layer wrapper.

Semantics of ``torch.nn.utils.parametrizations.spectral_norm`` (defaults n_power_iterations=1,
eps=1e-12, 15 warm-up iterations at construction, and its order of updates: u from v, then v from
the new u); Keras ``SpectralNormalization`` and Chainer's link hook do the same with other
defaults. The older ``torch.nn.utils.spectral_norm`` updates v first.
"""
from minireg import check
from minireg import functional as F
from minireg._config import no_grad
from minireg.nn.conv import ConvTranspose2d
from minireg.errors import ArgumentError, ShapeError
from minireg.nn.module import Module
from minireg.random import default_generator
from minireg.tensor import Tensor

_WARMUP_ITERATIONS = 15   # torch runs 15 power iterations when the parametrization is registered


def call_with_weight(module, name, weight, *args, **kwargs):
    """``module(*args, **kwargs)`` with ``module.<name>`` read as ``weight`` for this call only.

    The tensor goes into the instance ``__dict__``, which attribute lookup consults before
    ``Module.__getattr__`` (the parameter registry): a registered parameter of that name is
    shadowed, not replaced, and nothing outlives the call.
    """
    module.__dict__[name] = weight
    try:
        return module(*args, **kwargs)
    finally:
        del module.__dict__[name]


def wrapped_parameter(wrapper, module, name):
    """``module``'s own parameter ``name``, which the wrapper class ``wrapper`` replaces on each call."""
    check.instance(f"{wrapper}: module", module, Module, "a Module to wrap")
    parameters = dict(module.named_parameters(recurse=False))
    if name not in parameters:
        raise ArgumentError(f"{wrapper}: {type(module).__name__} has no parameter {name!r}; its parameters are "
                            f"{list(parameters)}{check.suggest(name, parameters)}")
    return parameters[name]


def _normalize(xp, x, eps):
    """x / max(||x||_2, eps), as torch.nn.functional.normalize."""
    return x / xp.maximum(xp.sqrt(xp.sum(x * x)), eps)   # maximum, not clip: CuPy's compat clip syncs


class SpectralNorm(Module):
    """Wraps ``module`` so that its weight is W = W_orig / sigma(W_orig) on every call.

    W_mat = W_orig with axis ``dim`` moved first, reshaped to (rows, -1). ``dim`` defaults to 1 for
    ConvTranspose2d (weight (in, out, kh, kw): rows are output channels, as in torch) and 0 for
    everything else. Per call in training mode, ``n_power_iterations`` steps of

        u <- normalize(W_mat v),   v <- normalize(W_mat^T u)

    update the buffers ``u`` (rows,) and ``v`` (cols,); eval mode uses them as stored. Then
    sigma = u^T W_mat v with u, v held constant, so gradients flow through sigma exactly as in
    torch. For convolutions this is the norm of the reshaped kernel, not of the convolution
    operator (pytorch/pytorch#99149).

    The trained parameter is ``<name>_orig`` (``weight_orig``) of this wrapper; ``u`` and ``v`` are
    persistent buffers, so all three are in the state dict next to ``module.bias``. Initial u, v are
    standard normal draws from the host generator ``minireg.random.default_generator()`` (like every
    initialiser, so the same seed gives the same start on every backend), normalized, followed by
    15 power iterations.
    """

    def __init__(self, module, name="weight", n_power_iterations=1, eps=1e-12, dim=None):
        weight = wrapped_parameter("SpectralNorm", module, name)
        if weight.ndim < 2:
            raise ShapeError(f"SpectralNorm needs a weight with at least 2 dimensions, got {name!r} of shape "
                             f"{tuple(weight.shape)}")
        n_power_iterations = check.positive_int("SpectralNorm: n_power_iterations", n_power_iterations)
        eps = check.positive("SpectralNorm: eps", eps)
        if dim is None:
            dim = 1 if isinstance(module, ConvTranspose2d) else 0
        dim = check.axis(f"SpectralNorm: dim (for a weight of shape {tuple(weight.shape)})", dim, weight.ndim)
        super().__init__()
        delattr(module, name)
        self.module = module
        self.name, self.n_power_iterations, self.eps, self.dim = name, n_power_iterations, eps, dim
        setattr(self, name + "_orig", weight)
        rows, cols = self._matrix(weight).shape
        # Drawn on the host, like every initialiser, so the same seed gives the same start everywhere.
        backend, dtype = weight.backend, weight.backend.numpy_dtype(weight.dtype)
        for buffer, size in (("u", rows), ("v", cols)):
            draw = backend.from_numpy(default_generator().standard_normal(size).astype(dtype))
            self.register_buffer(buffer, Tensor._make(_normalize(backend.xp, draw, self.eps), backend))
        self._power_iteration(_WARMUP_ITERATIONS)

    def _original(self):
        return self._parameters[self.name + "_orig"]

    def _matrix(self, weight):
        """W_mat: ``weight`` with axis ``dim`` first, reshaped to (rows, -1) (differentiable)."""
        if self.dim != 0:
            weight = F.transpose(weight, (self.dim,) + tuple(a for a in range(weight.ndim) if a != self.dim))
        return F.reshape(weight, (weight.shape[0], -1))

    def _power_iteration(self, steps):
        with no_grad():
            mat = self._matrix(self._original()).data
        xp = self.u.backend.xp
        u, v = self.u.data, self.v.data
        for _ in range(steps):
            u = _normalize(xp, xp.matmul(mat, v), self.eps)
            v = _normalize(xp, xp.matmul(u, mat), self.eps)
        # New arrays, never in-place writes: a graph built in an earlier call keeps its own u and v.
        self.u.data, self.v.data = u, v

    def sigma(self):
        """u^T W_mat v with the stored u, v (constants); differentiable in ``weight_orig``."""
        weight = self._original()
        u, v = (Tensor._make(b.data, weight.backend) for b in (self.u, self.v))
        return F.sum(u * F.matmul(self._matrix(weight), v))

    def compute_weight(self):
        """W_orig / sigma, the weight the wrapped module sees (no power iteration)."""
        return self._original() / self.sigma()

    def forward(self, *args, **kwargs):
        stored = self.u.data, self.v.data
        try:
            if self.training:
                self._power_iteration(self.n_power_iterations)
            return call_with_weight(self.module, self.name, self.compute_weight(), *args, **kwargs)
        except Exception:
            self.u.data, self.v.data = stored   # a call the wrapped layer refuses changes nothing
            raise

    def extra_repr(self):
        return f"name={self.name!r}, n_power_iterations={self.n_power_iterations}, eps={self.eps}, dim={self.dim}"
