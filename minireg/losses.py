"""Loss functions with PyTorch's names and semantics, built from differentiable minireg ops.

Every loss takes ``reduction="mean" | "sum" | "none"`` and supports double backward (gradient
penalties, Hessian-vector products), because it is composed of ops whose backward passes are
themselves differentiable.

Differences from PyTorch, on purpose:

* regression losses and ``binary_cross_entropy_with_logits`` require ``input.shape == target.shape``
  (PyTorch broadcasts ``(N, 1)`` against ``(N,)`` to ``(N, N)`` with only a warning);
* class labels are validated before anything is computed; for labels that live on a device this
  costs one transfer of two scalars (their min and max) to the host.
"""
import math

import numpy as np

from minireg import backend as _backends
from minireg._config import is_grad_enabled
from minireg import check
from minireg import functional as F
from minireg.errors import ArgumentError, DeviceError, ShapeError
from minireg.function import Function
from minireg.tensor import Tensor, operand, tensor

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    check.choice("reduction", reduction, _REDUCTIONS)


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _pair(input, target, name):
    """``input`` as a Tensor and ``target`` as a Tensor on its backend, with equal shapes."""
    input = input if isinstance(input, Tensor) else tensor(input)
    target = operand(target, like=input)
    if input.shape != target.shape:
        raise ShapeError(f"{name}: input shape {input.shape} and target shape {target.shape} differ; "
                         f"reshape one of them (minireg does not broadcast a loss's target)")
    return input, target


def mse_loss(input, target, reduction="mean"):
    """Squared error ``(input - target)**2``."""
    _check_reduction(reduction)
    input, target = _pair(input, target, "mse_loss")
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input, target, reduction="mean"):
    """Absolute error ``|input - target|`` (subgradient 0 where they are equal)."""
    _check_reduction(reduction)
    input, target = _pair(input, target, "l1_loss")
    return _reduce(F.abs(input - target), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """``0.5 d**2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``, with ``d = input - target``."""
    _check_reduction(reduction)
    delta = check.positive("huber_loss: delta", delta)
    input, target = _pair(input, target, "huber_loss")
    diff = input - target
    magnitude = F.abs(diff)
    loss = F.where(magnitude < delta, 0.5 * diff * diff, delta * (magnitude - 0.5 * delta))
    return _reduce(loss, reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """``0.5 d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``, with ``d = input - target``
    (PyTorch's smooth_l1_loss; ``beta = 0`` is the L1 loss; Huber with ``delta`` is ``delta`` times
    this loss with ``beta = delta``)."""
    beta = check.nonnegative("smooth_l1_loss: beta", beta)
    if beta == 0:
        return l1_loss(input, target, reduction)
    _check_reduction(reduction)
    input, target = _pair(input, target, "smooth_l1_loss")
    diff = input - target
    magnitude = F.abs(diff)
    return _reduce(F.where(magnitude < beta, (0.5 / beta) * diff * diff, magnitude - 0.5 * beta), reduction)


def binary_cross_entropy_with_logits(input, target, reduction="mean", pos_weight=None):
    """``-p t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))``, computed stably as
    ``(1 - t + p t) softplus(x) - p t x`` (``log sigmoid(x) = x - softplus(x)``; finite for any logit).

    ``pos_weight`` p (default 1) weighs the positive term, as in PyTorch: a number or a tensor that
    broadcasts to the input, usually one weight per class (last axis), e.g. negatives / positives.
    """
    _check_reduction(reduction)
    input, target = _pair(input, target, "binary_cross_entropy_with_logits")
    if pos_weight is None:
        return _reduce(F.softplus(input) - input * target, reduction)
    p = operand(pos_weight, like=input)
    try:
        shape = np.broadcast_shapes(tuple(p.shape), input.shape)
    except ValueError:
        shape = None
    if shape != input.shape:
        raise ShapeError(f"binary_cross_entropy_with_logits: pos_weight of shape {tuple(p.shape)} does not "
                         f"broadcast to the input's shape {input.shape}")
    weighted = p * target
    return _reduce((1 - target + weighted) * F.softplus(input) - weighted * input, reduction)


def _is_integer(dtype, backend):
    return backend.numpy_dtype(dtype).kind in "iu"


def _check_label_range(labels, num_classes, backend, name):
    """Host labels (and any on the CPU) are checked at once. Labels on a device are checked with one
    reduction whose result is read at the next explicit read from the device (logging time), not
    with a sync per step; MINIREG_SYNC_CHECKS=1 reads it at once (``Backend.check_in_range``)."""
    checker = backend if backend.owns(labels) else _backends.get_backend("numpy")
    checker.check_in_range(labels, 0, num_classes, ArgumentError,
                           f"{name}: label {{value}} is out of range [0, {num_classes}) for {num_classes} classes")


def class_labels(target, num_rows, num_classes, backend, name):
    """Integer labels of shape ``(num_rows,)`` in ``[0, num_classes)``, as a raw array on ``backend``.

    Accepts an integer Tensor on ``backend`` or integer host data (NumPy array, list), which is
    checked on the host and then copied to ``backend``'s device.
    """
    if isinstance(target, Tensor):
        if target.backend is not backend:
            raise DeviceError(f"{name}: labels are on {target.backend.device_name} but the scores are on "
                              f"{backend.device_name}; move them with .to({backend.device_name!r})")
        labels = target.data
    else:
        labels = target if backend.owns(target) else np.asarray(target)
    if not _is_integer(labels.dtype, backend):
        hint = "; for class probabilities pass a float target of shape (N, C)" if labels.ndim == 1 else ""
        raise ArgumentError(f"{name}: class labels must be integers, got dtype "
                            f"{backend.numpy_dtype(labels.dtype)}{hint}")
    if tuple(labels.shape) != (num_rows,):
        raise ShapeError(f"{name}: expected {num_rows} labels of shape ({num_rows},), got shape {tuple(labels.shape)}")
    _check_label_range(labels, num_classes, backend, name)
    return labels if backend.owns(labels) else backend.asarray(labels)


def label_mask(labels, num_classes, backend):
    """Boolean ``(N, num_classes)`` array, True at ``(n, labels[n])`` (``labels``: raw array on ``backend``)."""
    xp = backend.xp
    classes = xp.arange(num_classes, device=backend.device)
    return xp.astype(labels, xp.int64)[:, None] == classes[None, :]


def _check_scores(scores, name):
    scores = scores if isinstance(scores, Tensor) else tensor(scores)
    if scores.ndim != 2:
        raise ShapeError(f"{name}: expected scores of shape (N, C), got shape {scores.shape}")
    return scores


def _target_mask(scores, target, name):
    """Boolean mask of the labelled class in each row; picking ``scores`` through it (a masked row
    sum) runs on any array-API backend, and ``where`` keeps -inf scores of other classes out of the
    result and its gradients (a one-hot product would give 0 * -inf = nan)."""
    n, c = scores.shape
    return label_mask(class_labels(target, n, c, scores.backend, name), c, scores.backend)


def nll_loss(input, target, reduction="mean"):
    """Negative log-likelihood ``-input[n, target[n]]`` of log-probabilities ``input`` (N, C)."""
    _check_reduction(reduction)
    input = _check_scores(input, "nll_loss")
    mask = _target_mask(input, target, "nll_loss")
    return _reduce(-F.where(mask, input, 0.0).sum(axis=1), reduction)


def _inverse_count(n):
    return 1.0 / n if n else math.nan     # as F.mean: the mean of nothing is NaN


class LabelCrossEntropy(Function):
    """Cross entropy of logits x (N, C) against class labels (``mask``: True at (n, label_n)) with
    label smoothing eps, reduced, in one op:

        loss_n = -(1 - eps) log_softmax(x)[n, label_n] - eps / C * sum_c log_softmax(x)[n, c]

    The forward pass and, for eps = 0, the gradient round exactly as the composite of
    log_softmax, where and sums that it replaces (that composite still serves probability
    targets). Backward is written with differentiable ops, gx = g (softmax(x) - q) with
    q = (1 - eps) onehot + eps / C and g the upstream gradient per row, so it can be
    differentiated again (gradient penalties on a classifier)."""
    saves = (0,)

    def __init__(self, mask, label_smoothing, reduction):
        self.mask, self.eps, self.reduction = mask, label_smoothing, reduction

    def forward(self, x):
        xp, eps = self.xp, self.eps
        shifted = x - xp.max(x, axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        self.log_probs = log_probs     # log_softmax(x), for a first-order backward
        loss = -xp.sum(xp.where(self.mask, log_probs, 0), axis=1)
        if eps:
            loss = (1.0 - eps) * loss - (eps / x.shape[1]) * xp.sum(log_probs, axis=1)
        if self.reduction == "none":
            return loss
        total = xp.sum(loss)
        return total * _inverse_count(x.shape[0]) if self.reduction == "mean" else total

    def backward(self, gy):
        x, xp = self.inputs[0], self.xp
        n, c = x.shape
        q = xp.astype(self.mask, x.dtype)
        if self.eps:
            q = (1.0 - self.eps) * q + self.eps / c
        # Outside create_graph the same arithmetic runs on raw arrays, from forward's log_softmax:
        # the same bits, without seven small ops (a sixth of an MLP step's time outside its GEMMs).
        graph = is_grad_enabled()
        g = gy if graph else gy.data
        if self.reduction == "mean":
            g = g * _inverse_count(n)
        elif self.reduction == "none":
            g = F.reshape(g, (n, 1)) if graph else xp.reshape(g, (n, 1))
        if not graph:
            return (self.const(xp.exp(self.log_probs) * g - q * g),)
        return (F.exp(F.log_softmax(x, axis=1)) * g - self.const(q) * g,)


def cross_entropy(input, target, label_smoothing=0.0, reduction="mean"):
    """``-sum_c q[n, c] log_softmax(input)[n, c]`` for logits ``input`` of shape (N, C).

    ``target``: integer labels (N,), so q is one-hot, or class probabilities (N, C) (float).
    Label smoothing ``eps`` replaces q by ``(1 - eps) q + eps / C``, as in PyTorch, for both kinds
    of target; computed as ``(1 - eps) * loss - eps / C * sum_c log_softmax(input)[n, c]``.
    ``log_softmax`` subtracts the row maximum first (log-sum-exp), so any finite logits give
    finite losses and gradients.
    """
    _check_reduction(reduction)
    label_smoothing = check.real("cross_entropy: label_smoothing", label_smoothing, low=0, high=1)
    input = _check_scores(input, "cross_entropy")
    n, c = input.shape
    target = target if hasattr(target, "dtype") else np.asarray(target)
    if _is_integer(target.dtype, input.backend) or target.ndim == 1:
        return LabelCrossEntropy(_target_mask(input, target, "cross_entropy"), label_smoothing, reduction)(input)
    probs = operand(target, like=input)
    if probs.shape != (n, c):
        raise ShapeError(f"cross_entropy: probability targets must have the logits' shape {(n, c)}, "
                         f"got {probs.shape}")
    log_probs = F.log_softmax(input, axis=1)
    loss = -(log_probs * probs).sum(axis=1)
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss - (label_smoothing / c) * log_probs.sum(axis=1)
    return _reduce(loss, reduction)
