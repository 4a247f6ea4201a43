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

    def _update_group(self, group, params, attached):
        """The parameters without attached proximal steps take one multi-tensor kernel call
        (``sgd_steps_``) per backend, and per first / later step when there is momentum (the first
        step fills the buffer); the others are updated one by one, each with its proximal steps."""
        def entry(p, state):      # key (backend, first step), arrays (w, g, momentum buffer)
            buf, first = self._momentum_buffer(p, state, group)
            return (p.backend, first), (p.data, p.grad.data, buf)

        batches = self._batches(group, params, attached, entry)
        for (backend, first), batch in batches.items():
            ws, gs, bufs = map(list, zip(*batch))
            self._kernel_step(backend, ws, gs, bufs, group, first)

    def _update(self, p, g, state, group):
        buf, first = self._momentum_buffer(p, state, group)
        self._kernel_step(p.backend, [p.data], [g], [buf], group, first)

    @staticmethod
    def _kernel_step(backend, ws, gs, bufs, group, first):
        backend.kernels.sgd_steps_(ws, gs, bufs, group["lr"], group["momentum"], group["dampening"],
                                   group["weight_decay"], group["nesterov"], first)

    def _momentum_buffer(self, p, state, group):
        """(buffer, first step): p's momentum buffer, made at the first step (the kernel then fills
        it with the first direction); (None, False) without momentum."""
        if not group["momentum"]:
            return None, False
        first = "momentum_buffer" not in state
        return self._buffer(state, "momentum_buffer", p), first
