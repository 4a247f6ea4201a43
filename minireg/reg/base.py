"""The regularizer interface: one way to compute a value, a gradient, a prox or a projection.

- ``Penalty`` (soft): ``value(params) -> Tensor`` is differentiable, so it can be added to the loss
  by hand; ``accumulate_grad_(p)`` adds the same gradient straight into ``p.grad`` (a compiled
  kernel where one exists) without building a graph; ``prox_(p, step)`` replaces the values by
  prox_{step R}(values) where a closed form exists (``has_prox``). ``step`` is the learning rate,
  or an array of per-coordinate steps (an adaptive optimizer's metric, see ``minireg.reg.attach``).
- ``Constraint`` (hard): ``project_(p)`` replaces the values by their projection onto the
  feasible set.

Regularizers live on parameters: ``minireg.reg.attach(param_or_module_or_optimizer, regularizer)``
records an ``Attachment`` (regularizer + mode) in ``param.regularizers``, and every minireg
optimizer applies the attachments of the parameters it steps, in one fixed order:

    penalty gradients -> gradient clipping -> optimizer update -> proximal steps -> constraints

By default a regularizer attached to a module or an optimizer acts on weights only (parameters
with at least two dimensions, which skips biases and normalization scales); pass ``select=`` to
choose otherwise. Attached to one parameter it acts on that parameter, whatever ``select`` says.
"""
from minireg import check
from minireg._config import is_grad_enabled, no_grad
from minireg.errors import ArgumentError


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
    """A finite number >= 0 (> 0 unless ``allow_zero``) as a float (NumPy scalars too), else an
    ArgumentError (ArgumentTypeError for a non-number) saying what was expected."""
    try:
        return check.nonnegative(name, value) if allow_zero else check.positive(name, value)
    except ArgumentError:
        expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ArgumentError(f"{name} must be {expected}, got {value!r}") from None


def is_scalar_step(step):
    """True for a learning rate (a number), False for an array of per-coordinate steps."""
    return not hasattr(step, "shape") or step.shape == ()


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
        """sum_p R(p) over the selected parameters, differentiable (add it to the loss).

        A penalty attached to one of these parameters already acts through the optimizer, so taking
        its differentiable value (to add it to a loss) is an ArgumentError; under ``no_grad()`` (to
        report the objective) it is fine.
        """
        selected = self.selected(params)
        if not selected:
            raise ArgumentError(f"{type(self).__name__}: none of the given parameters is selected "
                                f"(default: weights with ndim >= 2); pass select= to choose others")
        if is_grad_enabled() and any(a.regularizer is self for p in selected for a in p.__dict__.get("regularizers", ())):
            raise ArgumentError(f"{self!r} is attached to these parameters, so the optimizer already applies it; "
                                f"adding its value to the loss would count it twice. Detach it "
                                f"(reg.detach(...)) to put it in the loss, or compute the value under no_grad() "
                                f"to report it")
        return self._value(selected)

    def _value(self, selected):
        """``value`` of these (selected, checked) parameters: sum_p R(p); a penalty that computes
        the whole sum in one op overrides this."""
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
        with enable_grad():       # called under no_grad by optimizers; the penalty's own graph is needed
            return grad(self.penalty(leaf), leaf)[0].data

    def accumulate_grad_(self, p):
        """p.grad += dR/dp for this one parameter (no selection): what an attached penalty does."""
        with no_grad():
            buffer = grad_buffer(p)
            buffer += self.gradient(p)

    def add_grad_(self, params):
        """p.grad += dR/dp for each selected parameter of ``params``."""
        for p in self.selected(params):
            self.accumulate_grad_(p)

    def prox_(self, param, step):
        """Replace param's values by prox_{step R}(values); only where ``has_prox``. ``step`` is a
        number (the learning rate) or an array of per-coordinate steps shaped like ``param``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form proximal operator")


class Constraint(Regularizer):
    """A hard constraint: after each update the parameter is projected onto the feasible set."""

    def project_(self, param):
        raise NotImplementedError

    def is_feasible(self, param, tol=1e-6):
        raise NotImplementedError
