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

    Without amsgrad the update is one call of the backend's fused ``adamw_prox_step_`` kernel.
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

    def _update(self, p, g, state, group):
        w = p.data
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        m, v = self._buffer(state, "exp_avg", p), self._buffer(state, "exp_avg_sq", p)
        step = state["step"] = state.get("step", 0) + 1
        if weight_decay and not self._decoupled:
            g = g + weight_decay * w
        decay = weight_decay if self._decoupled else 0.0   # the kernel's decay is the decoupled one
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
