"""Proximal optimizers for f(w) + R(w), f smooth (the loss), R a penalty with a closed-form prox.

    ProximalSGD     (ISTA)   w <- prox_{lr R}(w - lr * grad f(w))
    FISTA                     the same step at an extrapolated point (Beck & Teboulle 2009)
    ProximalAdamW             the AdamW step, then w <- prox_{lr R}(w)

Unlike adding R to the loss (or its subgradient to the gradient), the prox step of an L1 penalty
sets small weights to exactly zero. The penalty's selection applies: parameters it does not select
(by default biases and normalization scales) take the plain step. For ``L1``, ``L2`` and
``ElasticNet`` the step and the prox are one fused kernel of the parameter's backend
(``sgd_prox_step_``, ``adamw_prox_step_``: one pass over memory); any other penalty takes the step,
then its own ``prox_``. These optimizers apply R themselves: do not also attach R as a hook.
"""
import math

from minireg.optim.adam import AdamW
from minireg.optim.optimizer import Optimizer, nonnegative
from minireg.reg.base import Penalty
from minireg.reg.penalties import L1, L2, ElasticNet


def _checked_penalty(owner, penalty):
    if not isinstance(penalty, Penalty):
        raise TypeError(f"{owner}: penalty must be a minireg.reg Penalty, got {type(penalty).__name__}")
    if not penalty.has_prox:
        raise ValueError(f"{owner}: {type(penalty).__name__} has no closed-form prox; use a plain optimizer with "
                         f"attach(optimizer, penalty, mode='grad')")
    return penalty


# (l1, l2) with R(w) = l1*||w||_1 + l2/2*||w||^2: the form the fused kernels take. Exact types: a
# subclass may change R.
_ELASTIC_NET_FORMS = {
    L1: lambda r: (r.alpha, 0.0),                  # alpha*||w||_1
    L2: lambda r: (0.0, 2 * r.alpha),              # alpha*||w||^2 (Keras scaling)
    ElasticNet: lambda r: (r.alpha * r.l1_ratio, r.alpha * (1 - r.l1_ratio)),
}


def elastic_net_strengths(penalty, p):
    """(l1, l2) with R(w) = l1*||w||_1 + l2/2*||w||^2 on ``p`` ((0, 0) when ``penalty`` does not select
    ``p``), or None when R is not of that form and needs the penalty's own ``prox_``."""
    if not penalty.selected([p]):
        return 0.0, 0.0
    form = _ELASTIC_NET_FORMS.get(type(penalty))
    return form(penalty) if form else None


def _prox_gradient_step(penalty, p, g, lr):
    """p.data <- prox_{lr R}(p.data - lr*g), in one kernel pass where R is an elastic net."""
    strengths = elastic_net_strengths(penalty, p)
    if strengths is not None:
        p.backend.kernels.sgd_prox_step_(p.data, g, lr, *strengths)
    else:
        p.data -= lr * g
        penalty.prox_(p, lr)


class ProximalSGD(Optimizer):
    """Proximal gradient descent (ISTA): w <- prox_{lr R}(w - lr * g).

    With a full-batch gradient and lr <= 1/L (L the Lipschitz constant of grad f) it converges to a
    minimizer of f + R, O(1/k) in the objective; with minibatches it is proximal SGD.
    """

    _checks = {"lr": nonnegative}

    def __init__(self, params, lr, penalty):
        super().__init__(params, dict(lr=lr))
        self.penalty = _checked_penalty(type(self).__name__, penalty)

    def _update(self, p, g, state, group):
        _prox_gradient_step(self.penalty, p, g, group["lr"])


_T = [1.0]   # t_1, t_2, ...: a pure function of k, so one list serves every FISTA instance


def fista_t(k):
    """Beck & Teboulle's t_k: t_1 = 1, t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2 (about (k + 1)/2)."""
    while len(_T) < k:
        _T.append((1 + math.sqrt(1 + 4 * _T[-1] ** 2)) / 2)
    return _T[k - 1]


class FISTA(ProximalSGD):
    """Accelerated proximal gradient (Beck & Teboulle 2009, constant step lr = 1/L). At step k,
    with ``p.data`` holding y_k (y_1 = x_0 = the initial value)::

        x_k = prox_{lr R}(y_k - lr * grad f(y_k))
        y_{k+1} = x_k + (t_k - 1) / t_{k+1} * (x_k - x_{k-1})

    f(x_k) + R(x_k) - min = O(1/k^2) for convex f and R, but only with the exact gradient: use it
    full-batch (one ``step`` per pass over the data); the momentum amplifies minibatch noise. After
    ``step`` the parameter holds the extrapolated point y_{k+1}; the last prox-gradient point x_k
    is ``optimizer.state[p]["iterate"]``. Both converge to the same minimizer.
    """

    _array_state = ("iterate",)
    _count_state = ("step",)

    def _update(self, p, g, state, group):
        if "iterate" not in state:
            state["iterate"] = p.backend.xp.asarray(p.data, copy=True)
        k = state["step"] = state.get("step", 0) + 1
        _prox_gradient_step(self.penalty, p, g, group["lr"])
        x, previous = p.data, state["iterate"]
        delta = x - previous
        previous[...] = x
        x += (fista_t(k) - 1) / fista_t(k + 1) * delta


class ProximalAdamW(AdamW):
    """AdamW (``minireg.optim.AdamW``; decoupled ``weight_decay``, default 0 here) followed by the
    prox step w <- prox_{lr R}(w) with the group's learning rate.

    For L1 (and the L1 part of an elastic net) moments, bias correction, decay and the soft
    threshold soft(w, lr*l1) are one call of ``adamw_prox_step_``; an L2 part is then the scaling
    w / (1 + lr*l2). Other penalties, and ``amsgrad``, take the AdamW step, then ``penalty.prox_``.
    The threshold is lr*l1 whatever Adam's per-coordinate step: weights whose updates stay below it
    are held at exactly zero.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *, penalty):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        self.penalty = _checked_penalty(type(self).__name__, penalty)

    def _update(self, p, g, state, group):
        strengths = None if group["amsgrad"] else elastic_net_strengths(self.penalty, p)
        if strengths is None:
            super()._update(p, g, state, group)
            if self.penalty.selected([p]):
                self.penalty.prox_(p, group["lr"])
            return
        l1, l2 = strengths
        lr, (beta1, beta2) = group["lr"], group["betas"]
        m, v = self._buffer(state, "exp_avg", p), self._buffer(state, "exp_avg_sq", p)
        step = state["step"] = state.get("step", 0) + 1
        p.backend.kernels.adamw_prox_step_(p.data, g, m, v, step, lr, beta1, beta2, group["eps"],
                                           group["weight_decay"], l1)
        if l2:
            p.backend.kernels.prox_l2_(p.data, lr * l2)
