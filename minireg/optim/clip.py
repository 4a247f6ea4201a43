"""Gradient clipping: ``clip_grad_norm_`` / ``clip_grad_value_`` (torch.nn.utils names) and the
optimizer hooks ``ClipGradNorm`` / ``ClipGradValue`` (timing "pre", stage "clip").

Clipping assigns a new gradient tensor to ``p.grad`` instead of writing into the old one: backward
may hand two parameters the same gradient tensor, or a read-only broadcast view.
"""
import math

from minireg import check
from minireg.errors import ArgumentError, DeviceError
from minireg.tensor import Tensor


def _with_grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def _norm_type(owner, value):
    """A p-norm order: a real > 0, or infinity (also spelt "inf")."""
    if isinstance(value, str) and value == "inf":
        return math.inf
    value = check.real(f"{owner}: norm_type", value, finite=False)
    if not value > 0:                   # also refuses NaN
        raise ArgumentError(f"{owner}: norm_type must be > 0 (or inf), got {value!r}")
    return value


def _vector_norm(xp, x, p):
    if p == math.inf:
        return xp.max(xp.abs(x))
    if p == 2:
        return xp.sqrt(xp.sum(x * x))
    return xp.sum(xp.abs(x) ** p) ** (1 / p)


def _clip_norm(params, max_norm, norm_type):
    """Scale every gradient by min(1, max_norm / (total + 1e-6)) where total is the norm of the
    per-parameter norms (as torch); returns total as a 0-d array, without leaving the device."""
    backend = params[0].grad.backend
    if any(p.grad.backend is not backend for p in params):
        raise DeviceError("gradient clipping needs all gradients on one device, got "
                          f"{sorted({p.grad.backend.device_name for p in params})}")
    xp = backend.xp
    norms = [_vector_norm(xp, p.grad.data, norm_type) for p in params]
    dtype = xp.result_type(*norms)
    # asarray: NumPy reductions give scalars, not 0-d arrays
    total = xp.asarray(_vector_norm(xp, xp.stack([xp.astype(n, dtype) for n in norms]), norm_type))
    coef = xp.clip(max_norm / (total + 1e-6), None, 1.0)
    for p in params:
        p.grad = Tensor._make(p.grad.data * xp.astype(coef, p.grad.dtype), backend)
    return total


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Rescale the gradients of ``parameters`` so that their global ``norm_type``-norm is at most
    ``max_norm``; returns that norm before clipping as a float (0.0 when no parameter has a grad)."""
    max_norm = check.nonnegative("clip_grad_norm_: max_norm", max_norm)
    norm_type = _norm_type("clip_grad_norm_", norm_type)
    params = _with_grads(parameters)
    if not params:
        return 0.0
    total = _clip_norm(params, max_norm, norm_type)
    return float(params[0].grad.backend.to_numpy(total))


def clip_grad_value_(parameters, clip_value):
    """Clip every gradient element of ``parameters`` into [-clip_value, clip_value]."""
    clip_value = check.nonnegative("clip_grad_value_: clip_value", clip_value)
    for p in _with_grads(parameters):
        p.grad = Tensor._make(p.grad.backend.xp.clip(p.grad.data, -clip_value, clip_value), p.grad.backend)


class ClipGradNorm:
    """Optimizer hook: ``clip_grad_norm_`` over all of the optimizer's parameters at once.

    The norm is global (across param groups), so the whole clipping happens when the hook is called
    for the first group. ``total_norm`` keeps the last norm before clipping, as a 0-d Tensor on the
    parameters' device (reading it as a number is left to the caller: it synchronises a GPU).
    """

    timing = "pre"
    stage = "clip"

    def __init__(self, max_norm, norm_type=2.0, name="clip_grad_norm"):
        self.max_norm = check.nonnegative("ClipGradNorm: max_norm", max_norm)
        self.norm_type = _norm_type("ClipGradNorm", norm_type)
        self.name = check.instance("ClipGradNorm: name", name, str)
        self.total_norm = None

    def __repr__(self):
        return f"ClipGradNorm(max_norm={self.max_norm}, norm_type={self.norm_type})"

    def hook(self, optimizer, group, params):
        if group is not optimizer.param_groups[0]:
            return
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if params:
            self.total_norm = Tensor._make(_clip_norm(params, self.max_norm, self.norm_type),
                                           params[0].grad.backend)


class ClipGradValue:
    """Optimizer hook: ``clip_grad_value_`` on each group's gradients."""

    timing = "pre"
    stage = "clip"

    def __init__(self, clip_value, name="clip_grad_value"):
        self.clip_value = check.nonnegative("ClipGradValue: clip_value", clip_value)
        self.name = check.instance("ClipGradValue: name", name, str)

    def __repr__(self):
        return f"ClipGradValue(clip_value={self.clip_value})"

    def hook(self, optimizer, group, params):
        clip_grad_value_(params, self.clip_value)
