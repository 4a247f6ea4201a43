"""Regularizers: soft penalties, hard constraints, proximal steps and learnable priors.

    from minireg import reg
    reg.attach(optimizer, reg.L1(1e-4))              # proximal step after each update (exact zeros)
    reg.attach(optimizer, reg.MaxNorm(3.0))          # projection after the update
    loss = loss + reg.L2(1e-4).value(model.parameters())   # or simply add a penalty to the loss
    nn.Linear(64, 10, weight_regularizer=reg.L2(1e-4), weight_constraint=reg.MaxNorm(3.0))

See ``minireg.reg.base`` for the interface and the hook order (penalty gradients -> gradient
clipping -> optimizer update -> proximal steps -> constraints), ``minireg.reg.attach`` for the
three ways to attach, and docs/regularizers.md for the catalogue with formulas and papers.
"""
from minireg.reg.activity import (ActivityPenalty, ActivityRegularization, ConfidencePenalty, InputGradientPenalty,
                                  TotalVariation)
from minireg.reg.attach import attach, attach_model, detach, hook_for, regularization_loss
from minireg.reg.base import (Constraint, Penalty, PenaltyGradient, Projection, ProximalStep, Regularizer,
                              check_strength, weights_only)
from minireg.reg.capacity import BudgetedSequential, CapacityBudget, CapacityError
from minireg.reg.constraints import L1Ball, L2Ball, MaxNorm, MinMaxNorm, NonNeg, TopK, UnitNorm, WeightClip
from minireg.reg.penalties import L1, L2, ElasticNet, GroupLasso, Orthogonal, SpectralNormPenalty
from minireg.reg.priors import L2SP, Anchor, SoftWeightSharing

__all__ = ["ActivityPenalty", "ActivityRegularization", "ConfidencePenalty", "InputGradientPenalty", "TotalVariation",
           "attach", "attach_model", "detach", "hook_for", "regularization_loss",
           "Constraint", "Penalty", "PenaltyGradient", "Projection", "ProximalStep", "Regularizer", "check_strength",
           "weights_only", "BudgetedSequential", "CapacityBudget", "CapacityError",
           "L1Ball", "L2Ball", "MaxNorm", "MinMaxNorm", "NonNeg", "TopK", "UnitNorm", "WeightClip",
           "L1", "L2", "ElasticNet", "GroupLasso", "Orthogonal", "SpectralNormPenalty", "L2SP", "Anchor",
           "SoftWeightSharing"]
