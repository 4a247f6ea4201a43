"""Regularizers: soft penalties, hard constraints, proximal steps and learnable priors (see reg.base)."""
from minireg.reg.base import (Constraint, Penalty, PenaltyGradient, Projection, ProximalStep, Regularizer,
                              check_strength, weights_only)
