"""RMSprop, optionally centered and with momentum."""
from minireg.optim.optimizer import Optimizer, flag, nonnegative, positive, unit_interval


class RMSprop(Optimizer):
    """torch.optim.RMSprop. With g = g + weight_decay * w::

        s = alpha * s + (1 - alpha) * g^2
        a = alpha * a + (1 - alpha) * g;  d = sqrt(s - a^2) + eps    (centered)
        d = sqrt(s) + eps                                            (otherwise)
        b = momentum * b + g / d;  w = w - lr * b                    (momentum > 0)
        w = w - lr * g / d                                           (otherwise)

    Attached proximal steps (``minireg.reg.attach``) are taken in its metric: per-coordinate steps lr / d.
    """

    _checks = {"lr": nonnegative, "alpha": unit_interval, "eps": positive, "weight_decay": nonnegative,
               "momentum": nonnegative, "centered": flag}
    _array_state = ("square_avg", "grad_avg", "momentum_buffer")
    _count_state = ("step",)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _update(self, p, g, state, group):
        xp, w = p.backend.xp, p.data
        alpha = group["alpha"]
        state["step"] = state.get("step", 0) + 1
        if group["weight_decay"]:
            g = g + group["weight_decay"] * w
        square_avg = self._buffer(state, "square_avg", p)
        square_avg *= alpha
        square_avg += (1 - alpha) * (g * g)
        if group["centered"]:
            grad_avg = self._buffer(state, "grad_avg", p)
            grad_avg *= alpha
            grad_avg += (1 - alpha) * g
            denom = xp.sqrt(square_avg - grad_avg * grad_avg)
        else:
            denom = xp.sqrt(square_avg)
        denom += group["eps"]
        if group["momentum"] > 0:
            buf = self._buffer(state, "momentum_buffer", p)
            buf *= group["momentum"]
            buf += g / denom
            w -= group["lr"] * buf
        else:
            w -= group["lr"] * (g / denom)

    def _prox_step(self, p, state, group):
        """lr / d, d the denominator of the update just taken: the per-coordinate steps, the
        metric of the attached proximal steps (``minireg.reg.attach``)."""
        xp = p.backend.xp
        square_avg = state["square_avg"]
        if group["centered"]:
            square_avg = square_avg - state["grad_avg"] * state["grad_avg"]
        return float(group["lr"]) / (xp.sqrt(square_avg) + float(group["eps"]))
