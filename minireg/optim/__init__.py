"""Optimizers, gradient clipping and schedules (torch.optim names and semantics).

    opt = minireg.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    opt.add_hook(minireg.optim.ClipGradNorm(1.0))
    sched = minireg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)

See ``minireg.optim.optimizer`` for param groups, the hook contract and state dicts.
"""
from minireg.optim import lr_scheduler
from minireg.optim.adagrad import Adagrad
from minireg.optim.adam import Adam, AdamW
from minireg.optim.clip import ClipGradNorm, ClipGradValue, clip_grad_norm_, clip_grad_value_
from minireg.optim.optimizer import POST_STAGES, PRE_STAGES, Optimizer
from minireg.optim.proximal import FISTA, ProximalAdamW, ProximalSGD
from minireg.optim.rmsprop import RMSprop
from minireg.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "ProximalSGD", "FISTA", "ProximalAdamW", "clip_grad_norm_", "clip_grad_value_",
           "ClipGradNorm", "ClipGradValue", "PRE_STAGES", "POST_STAGES", "lr_scheduler"]
