"""The regularizer interface: one way to compute a value, a gradient, a prox or a projection.

- ``Penalty`` (soft): ``value(params) -> Tensor`` is differentiable, so it can simply be added to
  the loss; ``add_grad_(params)`` is the fast path that adds the same gradient straight into
  ``param.grad`` (a compiled kernel where one exists) without building a graph; ``prox_(param,
  step)`` replaces the values by prox_{step R}(values) where a closed form exists (``has_prox``).
- ``Constraint`` (hard): ``project_(param)`` replaces the values by their projection onto the
  feasible set.

Three ways to attach (see ``minireg.reg.attach``): add ``value`` to the loss; register as optimizer
hooks; or give to a layer (``Linear(..., weight_regularizer=..., weight_constraint=...)``).
Optimizer hooks run in one fixed, documented order every step:

    penalty gradients -> gradient clipping -> optimizer update -> proximal steps -> constraints

(``timing``/``stage`` below; the optimizer enforces it). Proximal steps use the step's learning
rate ``group["lr"]``. By default regularizers act on weights only: parameters with at least two
dimensions, which skips biases and normalization scales; pass ``select=`` to choose otherwise.
"""
import math

from minireg._config import no_grad


def weights_only(param):
    """Default parameter selection: matrices and kernels (ndim >= 2), not biases or norm scales."""
    return param.ndim >= 2


def grad_buffer(p):
    """``p.grad``'s array, for an in-place update (zeros first when p has no gradient yet).

    Safe because backward gives every leaf a private, writable gradient buffer.
    """
    if p.grad is None:
        from minireg.tensor import Tensor
        p.grad = Tensor._make(p.backend.xp.zeros_like(p.data), p.backend)
    return p.grad.data


def check_strength(name, value, allow_zero=True):
    """A finite, non-negative (or positive) float, else a ValueError saying what was expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            value < 0 or (value == 0 and not allow_zero)):
        expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


class Regularizer:
    """Common to penalties and constraints: which parameters they act on."""

    def __init__(self, select=None):
        self.select = select or weights_only

    def selected(self, params):
        return [p for p in params if self.select(p)]

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "select" and not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Penalty(Regularizer):
    """A soft penalty R(w) added to the training objective."""
    has_prox = False

    def penalty(self, w):
        """R(w) for one parameter tensor, as a differentiable Tensor (subclasses implement this)."""
        raise NotImplementedError

    def value(self, params):
        """sum_p R(p) over the selected parameters, differentiable (add it to the loss)."""
        selected = self.selected(params)
        if not selected:
            raise ValueError(f"{type(self).__name__}: none of the given parameters is selected "
                             f"(default: weights with ndim >= 2); pass select= to choose others")
        total = self.penalty(selected[0])
        for p in selected[1:]:
            total = total + self.penalty(p)
        return total

    def gradient(self, w):
        """dR/dw as a raw array, computed without recording a graph. Default: autograd of ``penalty``."""
        from minireg._config import enable_grad
        from minireg.autograd import grad
        from minireg.tensor import Tensor
        leaf = Tensor._make(w.data, w.backend).requires_grad_()
        with enable_grad():       # add_grad_ calls this under no_grad; the penalty's own graph is needed
            return grad(self.penalty(leaf), leaf)[0].data

    def add_grad_(self, params):
        """param.grad += dR/dparam for the selected parameters (the optimizer-hook fast path)."""
        with no_grad():
            for p in self.selected(params):
                buffer = grad_buffer(p)
                buffer += self.gradient(p)

    def prox_(self, param, step):
        """Replace param's values by prox_{step R}(values); only where ``has_prox``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form proximal operator")


class Constraint(Regularizer):
    """A hard constraint: after each update the parameter is projected onto the feasible set."""

    def project_(self, param):
        raise NotImplementedError

    def is_feasible(self, param, tol=1e-6):
        raise NotImplementedError


class PenaltyGradient:
    """Optimizer hook: add the penalty's gradient before the update (coupled regularization)."""
    timing, stage = "pre", "penalty"

    def __init__(self, penalty):
        self.penalty, self.name = penalty, f"grad:{type(penalty).__name__}"

    def hook(self, optimizer, group, params):
        self.penalty.add_grad_(params)


class ProximalStep:
    """Optimizer hook: w <- prox_{lr R}(w) after the update, with the step's learning rate."""
    timing, stage = "post", "prox"

    def __init__(self, penalty):
        if not penalty.has_prox:
            raise ValueError(f"{type(penalty).__name__} has no closed-form prox; attach it with mode='grad'")
        self.penalty, self.name = penalty, f"prox:{type(penalty).__name__}"

    def hook(self, optimizer, group, params):
        with no_grad():
            for p in self.penalty.selected(group["params"]):
                self.penalty.prox_(p, group["lr"])


class Projection:
    """Optimizer hook: project onto the constraint set after the update (and after prox steps)."""
    timing, stage = "post", "constraint"

    def __init__(self, constraint):
        self.constraint, self.name = constraint, f"project:{type(constraint).__name__}"

    def hook(self, optimizer, group, params):
        with no_grad():
            for p in self.constraint.selected(group["params"]):
                self.constraint.project_(p)
