"""Regularizers: soft penalties, hard constraints, proximal steps and learnable priors.

    from minireg import reg
    nn.Linear(64, 10, weight_regularizer=reg.L2(1e-4), weight_constraint=reg.MaxNorm(3.0))
    reg.attach(optimizer, reg.L1(1e-4))       # on the weights it steps: a proximal step (exact zeros)
    reg.attach(model[0].weight, reg.GroupLasso(1e-3, groups="columns"))
    loss = data_loss + model.regularization_loss()   # activity regularizers (forward-dependent)

Regularizers live on parameters (``param.regularizers``). Every minireg optimizer applies the
regularizers of the parameters it steps, exactly once per step, in one fixed order:

    penalty gradients -> gradient clipping -> optimizer update -> proximal steps -> constraints

whatever drives the loop (``fit``, ``Trainer``, ``GANTrainer``, a hand-written loop). Print the
optimizer to see what it will apply.

What a strength means: a penalty R with strength alpha (``L1(alpha)`` is alpha * sum|w|) always
stands for the objective L + alpha * R(w), whether it is added to the loss by hand
(``loss + penalty.value(params)``; then do not attach it), attached as a gradient (mode "grad")
or as a proximal step (mode "prox", the default where a closed form exists). For adaptive
optimizers (Adam, AdamW, RMSprop, Adagrad) the proximal step is taken in the optimizer's own
metric: the L1 threshold is lr * alpha / (sqrt(v_hat) + eps) per coordinate, so alpha is an
ordinary objective strength, not a number of "Adam steps". The old threshold lr * alpha in
parameter units is the explicitly named mode "prox_lr". Derivation: docs/regularizers.md.

See ``minireg.reg.base`` for the interface, ``minireg.reg.attach`` for the modes and activity
regularizers, and docs/regularizers.md for the catalogue with formulas and papers.
"""
from minireg.reg.activity import (ActivityPenalty, ActivityRegularization, ConfidencePenalty, InputGradientPenalty,
                                  TotalVariation)
from minireg.reg.attach import Attachment, attach, attachments, detach, regularization_loss
from minireg.reg.base import Constraint, Penalty, Regularizer, check_strength, weights_only
from minireg.reg.capacity import BudgetedSequential, CapacityBudget, CapacityError
from minireg.reg.constraints import L1Ball, L2Ball, MaxNorm, MinMaxNorm, NonNeg, TopK, UnitNorm, WeightClip
from minireg.reg.penalties import L1, L2, ElasticNet, GroupLasso, Orthogonal, SpectralNormPenalty
from minireg.reg.priors import L2SP, Anchor, SoftWeightSharing

__all__ = ["ActivityPenalty", "ActivityRegularization", "ConfidencePenalty", "InputGradientPenalty", "TotalVariation",
           "Attachment", "attach", "attachments", "detach", "regularization_loss",
           "Constraint", "Penalty", "Regularizer", "check_strength",
           "weights_only", "BudgetedSequential", "CapacityBudget", "CapacityError",
           "L1Ball", "L2Ball", "MaxNorm", "MinMaxNorm", "NonNeg", "TopK", "UnitNorm", "WeightClip",
           "L1", "L2", "ElasticNet", "GroupLasso", "Orthogonal", "SpectralNormPenalty", "L2SP", "Anchor",
           "SoftWeightSharing"]
