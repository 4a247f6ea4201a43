"""Stochastic gradient descent with momentum, dampening, Nesterov and coupled weight decay."""
from minireg.errors import ArgumentError
from minireg.optim.optimizer import Optimizer, flag, nonnegative


class SGD(Optimizer):
    """torch.optim.SGD. With d = g + weight_decay * w (coupled L2: the decay passes through momentum)::

        b = d at the first step, else b = momentum * b + (1 - dampening) * d
        d = d + momentum * b if nesterov else b          (when momentum != 0)
        w = w - lr * d
    """

    _checks = {"lr": nonnegative, "momentum": nonnegative, "dampening": nonnegative,
               "weight_decay": nonnegative, "nesterov": flag}
    _array_state = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_group(self, group):
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ArgumentError(f"nesterov=True needs momentum > 0 and dampening == 0, got "
                             f"momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _update(self, p, g, state, group):
        w = p.data
        momentum = group["momentum"]
        if group["weight_decay"]:
            g = g + group["weight_decay"] * w
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = p.backend.xp.asarray(g, copy=True)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        w -= group["lr"] * g
