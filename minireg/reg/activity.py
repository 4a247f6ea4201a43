"""Penalties on tensors computed in the forward pass: activations, outputs, inputs.

They are called on those tensors and the result is added to the loss::

    hidden = model.body(x)
    loss = F.cross_entropy(model.head(hidden), y) + sparsity(hidden)

``ActivityRegularization`` (L1/L2 on activations), ``TotalVariation`` (smooth images),
``ConfidencePenalty`` (penalize low-entropy predictions) and ``InputGradientPenalty`` (small
input gradients, via double backpropagation). Label smoothing, the other output regularizer of
this family, is an option of the loss: ``F.cross_entropy(logits, y, label_smoothing=0.1)``.
"""
import math

from minireg import check
from minireg import functional as F
from minireg.autograd import grad
from minireg.errors import ArgumentTypeError, GraphError, ShapeError
from minireg.reg.base import Penalty, check_strength
from minireg.tensor import Tensor, tensor


class ActivityPenalty(Penalty):
    """A penalty on a tensor of the forward pass: ``reg(x)`` is ``penalty(x)``, differentiable.

    It has no parameters to act on, so ``value``/``add_grad_`` (the parameter interface) raise an
    ArgumentTypeError and ``minireg.reg.attach`` refuses it: give it to a layer as
    ``activity_regularizer=`` and add ``model.regularization_loss()`` to the loss.
    """
    activity_only = True

    def __call__(self, x):
        return self.penalty(x if isinstance(x, Tensor) else tensor(x))

    def value(self, params):
        raise ArgumentTypeError(f"{type(self).__name__} penalizes activations, not parameters: call it on a tensor of "
                        f"the forward pass and add the result to the loss, e.g. loss = loss + reg(hidden)")

    def add_grad_(self, params):
        self.value(params)

    def accumulate_grad_(self, p):
        self.value([p])


class ActivityRegularization(ActivityPenalty):
    """R(a) = l1 * sum|a| + l2 * sum(a**2), summed over the whole batch.

    Keras 3 semantics (``activity_regularizer=`` on a layer and ``layers.ActivityRegularization(l1,
    l2)`` add the regularizer of the output, summed over the batch); tf.keras 2 divided it by the
    batch size, which is ``ActivityRegularization(l1 / n, l2 / n)`` here. PyTorch has none.
    L1 on activations gives sparse representations (e.g. sparse autoencoders); L2 keeps them small
    (Merity et al., "Revisiting activation regularization for language RNNs", 2017).
    """

    def __init__(self, l1=0.0, l2=0.0):
        l1, l2 = check_strength(f"{type(self).__name__}: l1", l1), check_strength(f"{type(self).__name__}: l2", l2)
        super().__init__()
        self.l1, self.l2 = l1, l2

    def penalty(self, a):
        return self.l1 * a.abs().sum() + self.l2 * (a * a).sum()


class TotalVariation(ActivityPenalty):
    """Total variation of an image batch x of shape (N, C, H, W), summed over the batch:

    - anisotropic (default): R = weight * sum |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|;
    - isotropic: R = weight * sum_{i,j} (sqrt(dv^2 + dh^2 + eps) - sqrt(eps)), with the forward
      differences dv, dh set to 0 past the last row/column (so every pixel has a term); eps
      makes it differentiable at flat regions and the - sqrt(eps) makes a constant image cost 0.

    Rudin, Osher & Fatemi, "Nonlinear total variation based noise removal algorithms" (1992); as a
    differentiable image prior e.g. Mahendran & Vedaldi (2015). ``tf.image.total_variation`` is the
    anisotropic sum per image; neither Keras nor PyTorch has it as a regularizer.
    """

    def __init__(self, weight, isotropic=False, eps=1e-8):
        weight = check_strength(f"{type(self).__name__}: weight", weight)
        eps = check_strength(f"{type(self).__name__}: eps", eps, allow_zero=False)
        super().__init__()
        self.weight, self.isotropic, self.eps = weight, bool(isotropic), eps

    def penalty(self, x):
        if x.ndim != 4:
            raise ShapeError(f"TotalVariation needs images of shape (N, C, H, W), got shape {tuple(x.shape)}")
        down = x[:, :, 1:, :] - x[:, :, :-1, :]
        right = x[:, :, :, 1:] - x[:, :, :, :-1]
        if not self.isotropic:
            return self.weight * (down.abs().sum() + right.abs().sum())
        down = F.pad(down, ((0, 0), (0, 0), (0, 1), (0, 0)))
        right = F.pad(right, ((0, 0), (0, 0), (0, 0), (0, 1)))
        magnitudes = F.sqrt(down * down + right * right + self.eps) - math.sqrt(self.eps)
        return self.weight * magnitudes.sum()


class ConfidencePenalty(ActivityPenalty):
    """R(z) = -beta * mean_i H(softmax(z_i)), H(p) = -sum_c p_c log p_c, classes on the last axis.

    Adding it to the loss rewards high-entropy (less confident) predictions (Pereyra et al.,
    "Regularizing neural networks by penalizing confident output distributions", 2017; they use
    beta in 0.1 .. 2). Label smoothing is the related KL(uniform || p) penalty, built into
    ``F.cross_entropy(..., label_smoothing=)``; this is KL(p || uniform) up to a constant.
    """

    def __init__(self, beta):
        beta = check_strength(f"{type(self).__name__}: beta", beta)
        super().__init__()
        self.beta = beta

    def penalty(self, logits):
        if logits.ndim < 1:
            raise ShapeError("ConfidencePenalty needs logits with a class axis (the last), got a 0-d tensor")
        log_p = F.log_softmax(logits, axis=-1)
        negative_entropy = (log_p.exp() * log_p).sum(axis=-1)
        return self.beta * negative_entropy.mean()


class InputGradientPenalty:
    """R = weight * mean_i ||d loss_i / d x_i||^2 ("l2") or weight * mean_i ||d loss_i / d x_i||_1 ("l1").

    Double backpropagation (Drucker & LeCun, "Improving generalization performance using double
    backpropagation", 1992); input-gradient regularization (Ross & Doshi-Velez, 2018). Usage::

        x = minireg.tensor(batch, requires_grad=True)        # before the forward pass
        losses = F.cross_entropy(model(x), y, reduction="none")
        loss = losses.mean() + penalty(losses, x)
        loss.backward()

    ``penalty(loss, inputs)``: ``loss`` holds the per-example losses (shape (N,)), computed from
    ``inputs`` (N, ...), which must require grad. Their gradient is taken with
    ``minireg.grad(..., create_graph=True)``, so the penalty is itself differentiable w.r.t. the
    model parameters (and the graph of ``loss`` is kept for the following backward). A scalar
    loss is differentiated as it is: a mean-reduced loss scales every input gradient by 1/N.
    Per-example gradients need examples that do not interact (no train-mode batch norm).
    Backward accumulates into ``inputs.grad`` too; ignore it.
    """

    def __init__(self, weight, norm="l2"):
        weight = check_strength(f"{type(self).__name__}: weight", weight)
        check.choice("norm", norm, ("l2", "l1"))
        self.weight, self.norm = weight, norm

    def __repr__(self):
        return f"InputGradientPenalty(weight={self.weight!r}, norm={self.norm!r})"

    def __call__(self, loss, inputs):
        if not inputs.requires_grad:
            raise GraphError("InputGradientPenalty: inputs must require grad before the forward pass: "
                             "x = minireg.tensor(batch, requires_grad=True) (or x.requires_grad_())")
        if inputs.ndim < 1 or loss.ndim > 1 or (loss.ndim == 1 and loss.shape[0] != inputs.shape[0]):
            raise ShapeError(f"InputGradientPenalty: loss must be per-example (shape (N,)) or a scalar and inputs "
                             f"(N, ...); got loss {tuple(loss.shape)} and inputs {tuple(inputs.shape)}")
        (g,) = grad(loss.sum(), inputs, create_graph=True)
        g = g.reshape(g.shape[0], -1)
        per_example = (g * g).sum(axis=1) if self.norm == "l2" else g.abs().sum(axis=1)
        return self.weight * per_example.mean()


__all__ = ["ActivityPenalty", "ActivityRegularization", "TotalVariation", "ConfidencePenalty", "InputGradientPenalty"]
