"""Adam (coupled L2 weight decay) and AdamW (decoupled weight decay)."""
import math

from minireg.kernels.reference import adamw_coefficients
from minireg.optim.optimizer import Optimizer, betas, flag, nonnegative, positive
from minireg.reg.attach import fused_strengths


class Adam(Optimizer):
    """torch.optim.Adam. With g = g + weight_decay * w (coupled L2, rescaled by the adaptive step)::

        m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g^2       (t: 1-based step count)
        v' = max(v', v) if amsgrad else v
        w = w - lr / (1 - b1^t) * m / (sqrt(v') / sqrt(1 - b2^t) + eps)

    Without amsgrad the update is the backend's fused ``adamw_prox_step_`` kernel, and one call of
    its multi-tensor form ``adamw_prox_steps_`` for all the parameters of a group that carry no
    attached proximal step.
    Attached proximal steps (``minireg.reg.attach``) are taken in Adam's metric, with the
    per-coordinate steps lr / (sqrt(v_hat) + eps) (``_prox_step``); a "prox_lr" L1 or elastic net
    is fused into the kernel (threshold lr*l1).
    """

    _checks = {"lr": nonnegative, "betas": betas, "eps": positive, "weight_decay": nonnegative, "amsgrad": flag}
    _array_state = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _count_state = ("step",)
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))

    def _update_group(self, group, params, attached):
        """Without amsgrad, the parameters without attached proximal steps take one multi-tensor
        kernel call (``adamw_prox_steps_``) per backend and step count: usually one call per group,
        bitwise the per-parameter kernels' results. The others are updated one by one (``_update``),
        each with its proximal steps (fused into its kernel where ``fused_strengths`` allows)."""
        if group["amsgrad"]:
            return super()._update_group(group, params, attached)
        def entry(p, state):      # key (backend, step count), arrays (w, g, m, v)
            g, m, v, step = self._moments(p, p.grad.data, state, group)
            return (p.backend, step), (p.data, g, m, v)

        batches = self._batches(group, params, attached, entry)
        lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], self._kernel_decay(group)
        for (backend, step), batch in batches.items():
            ws, gs, ms, vs = map(list, zip(*batch))
            backend.kernels.adamw_prox_steps_(ws, gs, ms, vs, step, lr, beta1, beta2, eps, decay, 0.0)

    def _kernel_decay(self, group):
        """The kernel's weight decay, the decoupled one (Adam's coupled decay is added to g instead)."""
        return group["weight_decay"] if self._decoupled else 0.0

    def _moments(self, p, g, state, group):
        """(g, m, v, step) for this step's update of ``p``: the gradient with Adam's coupled L2 term
        added, the moment buffers (created at the first step) and the step count, incremented."""
        step = state["step"] = state.get("step", 0) + 1
        if group["weight_decay"] and not self._decoupled:
            g = g + group["weight_decay"] * p.data
        return g, self._buffer(state, "exp_avg", p), self._buffer(state, "exp_avg_sq", p), step

    def _update(self, p, g, state, group):
        w = p.data
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        g, m, v, step = self._moments(p, g, state, group)
        decay = self._kernel_decay(group)
        if not group["amsgrad"]:
            fused = fused_strengths(p, ("prox_lr",))   # an attached "prox_lr" L1 / elastic net: threshold lr*l1
            l1, l2 = fused or (0.0, 0.0)
            p.backend.kernels.adamw_prox_step_(w, g, m, v, step, lr, beta1, beta2, eps, decay, l1)
            if l2:
                p.backend.kernels.prox_l2_(w, lr * l2)
            return fused is not None
        # AMSGrad has no kernel: the same arithmetic as the kernel, with the running maximum of v.
        xp = p.backend.xp
        v_max = self._buffer(state, "max_exp_avg_sq", p)
        coef = adamw_coefficients(step, lr, beta1, beta2, decay, 0.0)
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        v_max[...] = xp.maximum(v_max, v)
        w *= coef.decay
        w -= coef.step_size * m / (xp.sqrt(v_max) * coef.inv_sqrt_bc2 + eps)

    def _prox_step(self, p, state, group):
        """lr / (sqrt(v_hat) + eps), v_hat = v / (1 - beta2^t) (AMSGrad: its running maximum): the
        per-coordinate steps of the update just taken, the metric of the attached proximal steps."""
        v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
        inv_sqrt_bc2 = 1 / math.sqrt(1 - group["betas"][1] ** state["step"])
        return float(group["lr"]) / (p.backend.xp.sqrt(v) * inv_sqrt_bc2 + float(group["eps"]))


class AdamW(Adam):
    """torch.optim.AdamW: Adam without the L2 term in g, and a decoupled decay before the step::

        w = w - lr * weight_decay * w;   then the Adam update of w with the raw gradient
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
