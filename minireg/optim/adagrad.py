"""Adagrad: per-coordinate step sizes from the sum of squared gradients."""
from minireg.optim.optimizer import Optimizer, nonnegative, positive


class Adagrad(Optimizer):
    """torch.optim.Adagrad. With g = g + weight_decay * w and t the 1-based step count::

        s = s + g^2                       (s starts at initial_accumulator_value)
        w = w - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)

    Attached proximal steps (``minireg.reg.attach``) are taken in its metric: per-coordinate steps
    lr / (1 + (t - 1) * lr_decay) / (sqrt(s) + eps).
    """

    _checks = {"lr": nonnegative, "lr_decay": nonnegative, "weight_decay": nonnegative,
               "initial_accumulator_value": nonnegative, "eps": positive}
    _array_state = ("sum",)
    _count_state = ("step",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def _update(self, p, g, state, group):
        w = p.data
        step = state["step"] = state.get("step", 0) + 1
        if group["weight_decay"]:
            g = g + group["weight_decay"] * w
        total = self._buffer(state, "sum", p, group["initial_accumulator_value"])
        total += g * g
        w -= group["lr"] / (1 + (step - 1) * group["lr_decay"]) * (g / (p.backend.xp.sqrt(total) + group["eps"]))

    def _prox_step(self, p, state, group):
        """lr_t / (sqrt(s) + eps), the per-coordinate steps of the update just taken: the metric of
        the attached proximal steps (``minireg.reg.attach``)."""
        lr = float(group["lr"]) / (1 + (state["step"] - 1) * float(group["lr_decay"]))
        return lr / (p.backend.xp.sqrt(state["sum"]) + float(group["eps"]))   # Python floats keep p's dtype
