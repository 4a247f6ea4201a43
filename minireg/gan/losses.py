"""GAN objectives as (discriminator loss, generator loss) pairs; both are minimized.

Each ``GANLoss`` has ``d_loss(real_logits, fake_logits)`` and ``g_loss(fake_logits)``, where the
logits are the discriminator's raw outputs D(x) on real data and D(G(z)) on generated data (any
shape; every expectation is a mean over all elements). With sigma the logistic sigmoid:

- ``minimax`` (Goodfellow et al. 2014): L_D = -E log sigma(D(x)) - E log(1 - sigma(D(G(z)))),
  L_G = E log(1 - sigma(D(G(z)))), the original zero-sum game (G's gradient vanishes when D wins).
- ``non_saturating`` (Goodfellow et al. 2014): the same L_D, L_G = -E log sigma(D(G(z))).
- ``wgan`` (Arjovsky et al. 2017): L_D = E D(G(z)) - E D(x), L_G = -E D(G(z)); D is a critic
  that needs a Lipschitz constraint (weight clipping, a gradient penalty or spectral norm).
- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): L_D = E relu(1 - D(x)) + E relu(1 + D(G(z))),
  L_G = -E D(G(z)).
- ``least_squares`` (Mao et al. 2017, the a=0, b=c=1 coding): L_D = 1/2 E (D(x) - 1)^2 +
  1/2 E D(G(z))^2, L_G = 1/2 E (D(G(z)) - 1)^2, on the raw outputs (no sigmoid).

The log-sigmoid terms are written with softplus, -log sigma(t) = softplus(-t) and
-log(1 - sigma(t)) = softplus(t), so values and gradients stay finite for logits of any size.
"""
from typing import Callable, NamedTuple

from minireg import functional as F
from minireg.errors import ArgumentError
from minireg.tensor import Tensor, tensor


class GANLoss(NamedTuple):
    """A named pair of objectives: ``d_loss, g_loss = get_loss("hinge")`` also works."""
    name: str
    d_loss: Callable
    g_loss: Callable

    def __repr__(self):
        """``GANLoss('hinge': L_D = ..., L_G = ...)``, the formulas from the two functions' docstrings."""
        def formula(fn):
            doc = (fn.__doc__ or "").strip().rstrip(".")
            return doc or getattr(fn, "__name__", repr(fn))
        return f"GANLoss({self.name!r}: L_D = {formula(self.d_loss)}, L_G = {formula(self.g_loss)})"


def _logits(x):
    return x if isinstance(x, Tensor) else tensor(x)


def _logistic_d_loss(real_logits, fake_logits):
    """-E log sigma(D(x)) - E log(1 - sigma(D(G(z))))."""
    return F.mean(F.softplus(-_logits(real_logits))) + F.mean(F.softplus(_logits(fake_logits)))


def _minimax_g_loss(fake_logits):
    """E log(1 - sigma(D(G(z))))."""
    return -F.mean(F.softplus(_logits(fake_logits)))


def _non_saturating_g_loss(fake_logits):
    """-E log sigma(D(G(z)))."""
    return F.mean(F.softplus(-_logits(fake_logits)))


def _wgan_d_loss(real_logits, fake_logits):
    """E D(G(z)) - E D(x)."""
    return F.mean(_logits(fake_logits)) - F.mean(_logits(real_logits))


def _critic_g_loss(fake_logits):   # WGAN's and hinge's generator loss
    """-E D(G(z))."""
    return -F.mean(_logits(fake_logits))


def _hinge_d_loss(real_logits, fake_logits):
    """E relu(1 - D(x)) + E relu(1 + D(G(z)))."""
    return F.mean(F.relu(1.0 - _logits(real_logits))) + F.mean(F.relu(1.0 + _logits(fake_logits)))


def _squared_error(logits, target):
    diff = _logits(logits) - target
    return 0.5 * F.mean(diff * diff)


def _least_squares_d_loss(real_logits, fake_logits):
    """1/2 E (D(x) - 1)^2 + 1/2 E D(G(z))^2."""
    return _squared_error(real_logits, 1.0) + _squared_error(fake_logits, 0.0)


def _least_squares_g_loss(fake_logits):
    """1/2 E (D(G(z)) - 1)^2."""
    return _squared_error(fake_logits, 1.0)


minimax = GANLoss("minimax", _logistic_d_loss, _minimax_g_loss)
non_saturating = GANLoss("non_saturating", _logistic_d_loss, _non_saturating_g_loss)
wgan = GANLoss("wgan", _wgan_d_loss, _critic_g_loss)
hinge = GANLoss("hinge", _hinge_d_loss, _critic_g_loss)
least_squares = GANLoss("least_squares", _least_squares_d_loss, _least_squares_g_loss)

GAN_LOSSES = {loss.name: loss for loss in (minimax, non_saturating, wgan, hinge, least_squares)}


def get_loss(name):
    """The ``GANLoss`` registered as ``name`` (a key of ``GAN_LOSSES``)."""
    try:
        return GAN_LOSSES[name]
    except (KeyError, TypeError):
        raise ArgumentError(f"unknown GAN loss {name!r}; expected one of {', '.join(GAN_LOSSES)}") from None
