"""Proximal optimizers for f(w) + R(w), f smooth (the loss), R a penalty with a closed-form prox.

    ProximalSGD     (ISTA)   w <- prox_{lr R}(w - lr * grad f(w))
    FISTA                     the same step at an extrapolated point (Beck & Teboulle 2009)
    ProximalAdamW             the AdamW step, then the prox of R in Adam's metric

Each is a thin shorthand: the constructor attaches ``penalty`` to the parameters it selects
(``minireg.reg.attach(optimizer, penalty, mode="prox")``), and the step applies it like any
attached proximal step. So the penalty lives on those parameters from then on (another optimizer
stepping them applies it too) and attaching it again is an error. Parameters the penalty does not
select (by default biases and normalization scales) take the plain step.

For ``L1``, ``L2`` and ``ElasticNet`` (``ElasticNetForm``) ISTA's step and prox are one fused
kernel of the parameter's backend (``sgd_prox_step_``: one pass over memory), as is
``ProximalAdamW(prox_lr=True)`` (``adamw_prox_step_``, threshold lr*l1). The default
``ProximalAdamW`` prox is taken in Adam's own metric (threshold lr*l1 / (sqrt(v_hat) + eps) per
coordinate, so that it minimizes f + R; see ``minireg.reg.attach``): the Adam kernel, then
``prox_elastic_net_scaled_``.
"""
import math

from minireg import check
from minireg.optim.adam import AdamW
from minireg.optim.optimizer import Optimizer, nonnegative
from minireg.reg.attach import attach, fused_strengths


class ProximalSGD(Optimizer):
    """Proximal gradient descent (ISTA): w <- prox_{lr R}(w - lr * g).

    With a full-batch gradient and lr <= 1/L (L the Lipschitz constant of grad f) it converges to a
    minimizer of f + R, O(1/k) in the objective; with minibatches it is proximal SGD.
    """

    _checks = {"lr": nonnegative}

    def __init__(self, params, lr, penalty):
        super().__init__(params, dict(lr=lr))
        attach(self, penalty, "prox")
        self.penalty = penalty

    def _update(self, p, g, state, group):
        """The gradient step, fused with the prox where ``fused_strengths`` allows."""
        strengths = fused_strengths(p, ("prox", "prox_lr"))    # SGD's metric is the plain lr
        if strengths is None:
            p.data -= group["lr"] * g
            return False
        p.backend.kernels.sgd_prox_step_(p.data, g, group["lr"], *strengths)
        return True


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
        if not super()._update(p, g, state, group):
            self._apply_prox(p, state, group)          # the prox comes before the extrapolation
        x, previous = p.data, state["iterate"]
        delta = x - previous
        previous[...] = x
        x += (fista_t(k) - 1) / fista_t(k + 1) * delta
        return True


class ProximalAdamW(AdamW):
    """AdamW (``minireg.optim.AdamW``; decoupled ``weight_decay``, default 0 here) with ``penalty``
    attached as a proximal step.

    By default the prox is taken in Adam's metric (mode "prox"): for L1 the per-coordinate
    threshold lr*alpha / (sqrt(v_hat) + eps), so the optimizer minimizes loss + R with R's strength
    meaning what it means in the loss. ``prox_lr=True`` (mode "prox_lr") keeps the threshold
    lr*alpha in parameter units, fused into ``adamw_prox_step_``: weights whose Adam updates stay
    below lr*alpha are held at zero, which is not the objective loss + R (see ``minireg.reg.attach``).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *, penalty,
                 prox_lr=False):
        prox_lr = check.flag("ProximalAdamW: prox_lr", prox_lr)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        attach(self, penalty, "prox_lr" if prox_lr else "prox")
        self.penalty = penalty
