"""Penalties that carry learnable or remembered information about the weights.

- ``L2SP`` (alias ``Anchor``): pull weights towards reference values (e.g. pretrained weights),
  which may themselves be learnable.
- ``SoftWeightSharing``: a mixture-of-Gaussians prior whose means, precisions and mixing weights
  are learned with the network, clustering the weights for compression.
"""
import math

import numpy as np

from minireg import functional as F
from minireg._config import get_default_dtype, is_grad_enabled, no_grad
from minireg.autograd import grad
from minireg.errors import ArgumentError, ArgumentTypeError, DeviceError, ShapeError
from minireg.function import Function
from minireg.nn.module import Module
from minireg.nn.parameter import Parameter
from minireg.reg.base import Regularizer, check_strength, weights_only
from minireg.reg.base import Penalty
from minireg import check
from minireg.reg.penalties import KernelPenalty
from minireg.tensor import Tensor


def _reference_for(param, ref):
    """``ref`` as a Tensor on ``param``'s backend: kept as is when learnable (requires grad), else
    a constant copy (a snapshot that later updates of ``param``'s data do not change)."""
    shape = tuple(ref.shape) if hasattr(ref, "shape") else np.shape(ref)
    if shape != tuple(param.shape):
        raise ShapeError(f"L2SP: a reference of shape {shape} for a parameter of shape {tuple(param.shape)}")
    if isinstance(ref, Tensor):
        if ref.backend is not param.backend:
            raise DeviceError(f"L2SP: a reference on {ref.device} for a parameter on {param.device}")
        if ref.requires_grad:
            return ref
        ref = ref.data
    backend = param.backend
    if backend.owns(ref):
        data = backend.xp.astype(ref, param.dtype, copy=True)
    else:
        data = backend.from_numpy(np.array(ref, dtype=backend.numpy_dtype(param.dtype)))
    return Tensor._make(data, backend)


class L2SP(KernelPenalty):
    """R(w) = alpha * ||w - w_ref||^2 (Li, Grandvalet & Davoine, "Explicit inductive bias for transfer
    learning with convolutional networks", 2018: the L2-SP penalty, starting point as reference).

    Scaled like ``L2`` (no 1/2; Li et al. write alpha/2, so their alpha is 2x ours): gradient
    2 * alpha * (w - w_ref); prox (v + 2*step*alpha*w_ref) / (1 + 2*step*alpha). With w_ref = 0 it is
    ``L2(alpha)``. Li et al. add beta * ||w||^2 on the new layers: combine with ``L2`` for that.

    ``reference``: a dict {parameter: array or Tensor}, or a list of them aligned with ``params``;
    or use ``L2SP.from_model(model, alpha)`` to snapshot the current (e.g. pretrained) weights.
    Arrays and constant Tensors are copied; a reference that requires grad (a ``Parameter``) is
    kept, so ``value`` is differentiable w.r.t. both and training moves the target too (the prox
    then treats it as a constant). Rule for parameters without a reference: they are skipped (the
    penalty acts on the parameters that pass ``select`` AND have a reference); ``penalty``/``prox_``
    called directly on one raise a ValueError.
    """

    def __init__(self, alpha, reference, params=None, select=None):
        alpha = check_strength(f"{type(self).__name__}: alpha", alpha)
        if isinstance(reference, dict):
            if params is not None:
                raise ArgumentError("L2SP: give params only with a list of references, not with a dict")
            pairs = list(reference.items())
        elif isinstance(reference, (list, tuple)):
            params = list(params) if params is not None else None
            if params is None or len(params) != len(reference):
                raise ArgumentError(f"L2SP: a list of {len(reference)} references needs params, a list of the same "
                                    f"length (got {'none' if params is None else len(params)})")
            pairs = list(zip(params, reference))
        else:
            raise ArgumentTypeError(f"L2SP: reference must be a dict {{param: reference}} or a list aligned with "
                                    f"params, got {type(reference).__name__}")
        references = {p: _reference_for(p, ref) for p, ref in pairs}
        super().__init__(select)
        self.alpha = alpha
        self._references = references

    @classmethod
    def from_model(cls, model, alpha, select=None):
        """L2-SP towards a snapshot of ``model``'s current values of the selected parameters."""
        chosen = select or weights_only
        return cls(alpha, {p: p.data for p in model.parameters() if chosen(p)}, select=select)

    def reference(self, param):
        """The reference Tensor of ``param`` (ValueError when it has none)."""
        try:
            return self._references[param]
        except KeyError:
            raise ArgumentError(f"L2SP has no reference for this parameter of shape {tuple(param.shape)}") from None

    def selected(self, params):
        return [p for p in super().selected(params) if p in self._references]

    def penalty(self, w):
        diff = w - self.reference(w)
        return self.alpha * (diff * diff).sum()

    def _add_grad(self, g, p):
        return p.backend.kernels.l2_grad_(g, p.data - self.reference(p).data, 2 * self.alpha)

    def _prox(self, p, step):
        ref = self.reference(p).data
        t = 2 * step * self.alpha
        w = p.backend.kernels.prox_l2_(p.data, t)
        w += (t / (1 + t)) * ref

    def _scaled_prox(self, p, steps):
        # per coordinate, with t = 2*s*alpha: (v + t*w_ref) / (1 + t)
        t = (2 * self.alpha) * steps
        p.data[...] = (p.data + t * self.reference(p).data) / (1 + t)


Anchor = L2SP

_LOG_2PI = math.log(2 * math.pi)
# Ullrich et al.'s Gamma(shape, rate) hyper-priors on the precisions: zero component, the others.
ULLRICH_PRECISION_PRIOR = ((5e3, 2.0), (250.0, 0.1))


def mixture_nll_reference(w, means, log_precisions, log_mix):
    """-sum_i log sum_j pi_j N(w_i | mu_j, 1 / lambda_j) over all entries of ``w``, from core ops (a
    logsumexp over the components): the differentiable definition that ``MixtureNLL`` computes fused."""
    diff = w.reshape(-1, 1) - means
    log_joint = log_mix + 0.5 * (log_precisions - _LOG_2PI) - 0.5 * log_precisions.exp() * diff * diff
    return -F.logsumexp(log_joint, axis=1).sum()


class SoftWeightSharingValue(Function):
    """``SoftWeightSharing.reference_value`` as one op: inputs (means, log_precisions, mixing_logits,
    *weights), output tau * (sum over the weights of ``mixture_nll_reference`` [+ the hyper-prior]).

    Forward forms the J components from the prior's parameters (as ``SoftWeightSharing.components``)
    and runs the backend's fused kernel once over all the weights (``kernels.mixture_nll``: the
    value and its gradients with respect to the weights and the components in one pass, without
    the (weights x components) temporaries). The gradients with respect to the prior's parameters
    follow in closed form: d/dmu_j for the free means; through log pi = log(1 - pi_zero) +
    log_softmax(logits), d/dlogit_k = g_k - softmax_k sum_j g_j with g_j = d/dlog pi_j; and the
    hyper-prior's (1 - a_j) + b_j lambda_j. Backward scales the gradients kept from forward; under
    ``create_graph`` (a double backward) it differentiates the composite definition instead, so the
    gradient is itself differentiable.
    """

    def __init__(self, prior, with_hyperprior):
        self.prior, self.with_hyperprior = prior, with_hyperprior

    def forward(self, means, log_precisions, mixing_logits, *weights):
        xp, prior = self.xp, self.prior
        zero, log_pi_zero, one_minus_shape, rate = prior._fixed_arrays(self.backend, means.dtype)
        z = mixing_logits - xp.max(mixing_logits)
        exp_z = xp.exp(z)
        total_exp = xp.sum(exp_z)
        log_pi = xp.concat((log_pi_zero, math.log(1 - prior.pi_zero) + (z - xp.log(total_exp))))
        nll, grads_w, d_means, d_log_precisions, d_log_pi = self.backend.kernels.mixture_nll(
            weights, xp.concat((zero, means)), log_precisions, log_pi)
        d_free_log_pi = d_log_pi[1:]
        d_logits = d_free_log_pi - (exp_z / total_exp) * xp.sum(d_free_log_pi)
        if self.with_hyperprior and rate is not None:
            precisions = xp.exp(log_precisions)
            nll = nll + xp.sum(one_minus_shape * log_precisions + rate * precisions)
            d_log_precisions = d_log_precisions + (one_minus_shape + rate * precisions)
        self.grads = (d_means[1:], d_log_precisions, d_logits, *grads_w)
        return prior.tau * nll

    def backward(self, gy):
        if is_grad_enabled():
            wanted = [x for x in self.inputs if x.requires_grad]
            means, log_precisions, mixing_logits, *weights = self.inputs
            value = self.prior.reference_value(weights, means, log_precisions, mixing_logits, self.with_hyperprior)
            grads = iter(grad(value, wanted, create_graph=True))
            return tuple(gy * next(grads) if x.requires_grad else None for x in self.inputs)
        scale = self.prior.tau * gy.data
        return tuple(self.const(g * scale) if x.requires_grad else None for g, x in zip(self.grads, self.inputs))


def _check_precision_prior(prior):
    if prior is None:
        return None
    try:
        (a0, b0), (a, b) = prior
        return tuple((check_strength("SoftWeightSharing: precision_prior shape", s, allow_zero=False),
                       check_strength("SoftWeightSharing: precision_prior rate", r, allow_zero=False))
                     for s, r in ((a0, b0), (a, b)))
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"SoftWeightSharing: precision_prior must be None or ((shape, rate) for the zero component, (shape, rate) "
                            f"for the others), all finite and > 0; got {prior!r} ({exc})") from None


class SoftWeightSharing(Module, Penalty):
    """A learnable mixture-of-Gaussians prior on the weights (Nowlan & Hinton, "Simplifying neural
    networks by soft weight-sharing", 1992; Ullrich, Meeds & Welling, "Soft weight-sharing for
    neural network compression", 2017). A Module (its parameters: ``means``, ``log_precisions``,
    ``mixing_logits``) and a Penalty:

        penalty(w) = tau * (-sum_i log sum_j pi_j N(w_i | mu_j, 1 / lambda_j))

    computed with a logsumexp over the J components, differentiable w.r.t. w and the prior's
    parameters: put both in the optimizer and add ``value(model.parameters())`` to the loss, and
    the prior is learned with the network (the optimizer-hook path ``add_grad_`` only updates the
    weights, treating the prior as fixed). ``value`` adds, once, tau times the negative log of the
    Gamma hyper-priors on the precisions, sum_j (1 - a_j) gamma_j + b_j lambda_j (up to a constant).

    As Ullrich et al.: component 0 has mean fixed at 0 and a fixed mixing weight ``pi_zero`` (the
    "pruning" component); the other J - 1 means start at linspace(-init_range, init_range, J - 1)
    and share the remaining 1 - pi_zero by softmax(``mixing_logits``) (initially equal);
    ``log_precisions`` gamma_j = log lambda_j = -log sigma_j^2 start at sigma = ``init_std``;
    ``precision_prior`` defaults to their Gamma(5e3, rate 2) for component 0 and Gamma(250, rate 0.1)
    for the others (pass None for no hyper-prior); tau = 5e-3 is their value for a mean data loss.
    The hyper-priors keep components from collapsing onto single weights (infinite precision).

    After training, ``quantize`` sets each weight to the mean of its most responsible component
    (weights of component 0 become exactly 0); Ullrich et al. also merge close components first,
    which is not done here.
    """

    def __init__(self, n_components=16, pi_zero=0.99, init_range=0.6, init_std=0.25, tau=5e-3,
                 precision_prior=ULLRICH_PRECISION_PRIOR, select=None, dtype=None):
        n_components = check.positive_int("n_components", n_components)
        if n_components < 2:
            raise ArgumentError(f"SoftWeightSharing: n_components must be >= 2 (the zero component and at least "
                                f"one more), got {n_components}")
        if isinstance(pi_zero, bool) or not isinstance(pi_zero, (int, float)) or not 0 < pi_zero < 1:
            raise ArgumentError(f"pi_zero must be a number in (0, 1), got {pi_zero!r}")
        init_range = check_strength(f"{type(self).__name__}: init_range", init_range)
        init_std = check_strength(f"{type(self).__name__}: init_std", init_std, allow_zero=False)
        tau = check_strength(f"{type(self).__name__}: tau", tau)
        precision_prior = _check_precision_prior(precision_prior)
        Module.__init__(self)
        Regularizer.__init__(self, select)
        dtype = dtype or get_default_dtype()
        self.n_components, self.pi_zero, self.tau, self.precision_prior = n_components, float(pi_zero), tau, precision_prior
        self._fixed = {}     # the fused value's constant arrays (see _fixed_arrays)
        self.means = Parameter(np.linspace(-init_range, init_range, n_components - 1), dtype=dtype)
        self.log_precisions = Parameter(np.full(n_components, -2 * math.log(init_std)), dtype=dtype)
        self.mixing_logits = Parameter(np.zeros(n_components - 1), dtype=dtype)

    def extra_repr(self):
        return f"n_components={self.n_components}, pi_zero={self.pi_zero}, tau={self.tau}"

    def _constant(self, values):
        backend = self.means.backend
        return Tensor._make(backend.asarray(values, dtype=self.means.dtype), backend)

    def _fixed_arrays(self, backend, dtype):
        """The constant arrays of the fused value: [0] (the mean of component 0), [log pi_zero], and
        the hyper-prior's 1 - a_j and b_j (None, None without one), made once per backend, dtype and
        setting of pi_zero and precision_prior."""
        key = (backend, dtype, self.pi_zero, self.precision_prior)
        arrays = self._fixed.get(key)
        if arrays is None:
            hyper = (None, None)
            if self.precision_prior is not None:
                shapes, rates = self._precision_prior_lists()
                hyper = (backend.asarray([1 - a for a in shapes], dtype=dtype), backend.asarray(rates, dtype=dtype))
            arrays = (backend.asarray([0.0], dtype=dtype), backend.asarray([math.log(self.pi_zero)], dtype=dtype), *hyper)
            self._fixed[key] = arrays
        return arrays

    def components(self):
        """(means mu_j, log precisions gamma_j, log mixing weights log pi_j) of all J components, as Tensors."""
        return self._components(self.means, self.log_precisions, self.mixing_logits)

    def _components(self, means, log_precisions, mixing_logits):
        means = F.concatenate([self._constant([0.0]), means])
        log_pi = F.concatenate([self._constant([math.log(self.pi_zero)]),
                                math.log(1 - self.pi_zero) + F.log_softmax(mixing_logits)])
        return means, log_precisions, log_pi

    def _log_joint(self, w):
        """log pi_j + log N(w_i | mu_j, 1 / lambda_j): one row per weight, one column per component."""
        means, gamma, log_pi = self.components()
        diff = w.reshape(-1, 1) - means
        return log_pi + 0.5 * (gamma - _LOG_2PI) - 0.5 * gamma.exp() * diff * diff

    def penalty(self, w):
        return self._fused_value([w], with_hyperprior=False)

    def hyperprior(self):
        """tau * sum_j (1 - a_j) gamma_j + b_j lambda_j, the negative log Gamma(a_j, rate b_j) density
        of the precisions up to a constant; None without ``precision_prior``."""
        return self._hyperprior(self.log_precisions)

    def _hyperprior(self, gamma):
        if self.precision_prior is None:
            return None
        shape, rate = map(self._constant, self._precision_prior_lists())
        return self.tau * ((1 - shape) * gamma + rate * gamma.exp()).sum()

    def _precision_prior_lists(self):
        """The Gamma hyper-priors' shapes a_j and rates b_j, one per component (component 0 first)."""
        (a0, b0), (a, b) = self.precision_prior
        rest = self.n_components - 1
        return [a0] + [a] * rest, [b0] + [b] * rest

    def reference_value(self, weights, means=None, log_precisions=None, mixing_logits=None, with_hyperprior=True):
        """tau * sum over ``weights`` of ``mixture_nll_reference`` (+ ``hyperprior``), from core ops: the
        differentiable definition that ``value`` computes fused. The prior's own parameters unless
        others are given."""
        means, gamma, log_pi = self._components(self.means if means is None else means,
                                                self.log_precisions if log_precisions is None else log_precisions,
                                                self.mixing_logits if mixing_logits is None else mixing_logits)
        total = self.tau * mixture_nll_reference(weights[0], means, gamma, log_pi)
        for w in weights[1:]:
            total = total + self.tau * mixture_nll_reference(w, means, gamma, log_pi)
        hyper = self._hyperprior(gamma) if with_hyperprior else None
        return total if hyper is None else total + hyper

    def _fused_value(self, weights, with_hyperprior):
        if any(w.dtype != self.means.dtype for w in weights):   # the fused kernel takes one dtype; the composite promotes
            return self.reference_value(weights, with_hyperprior=with_hyperprior)
        return SoftWeightSharingValue(self, with_hyperprior)(self.means, self.log_precisions, self.mixing_logits, *weights)

    def _value(self, selected):
        """The data term over all the selected weights and the hyper-prior, as one op."""
        return self._fused_value(selected, with_hyperprior=True)

    def selected(self, params):
        own = {id(p) for p in self.parameters()}
        return [p for p in super().selected(params) if id(p) not in own]

    def forward(self, params):
        return self.value(params)

    def responsibilities(self, w):
        """p(component j | w_i) as a constant Tensor of shape w.shape + (J,)."""
        with no_grad():
            return F.softmax(self._log_joint(w), axis=1).reshape(tuple(w.shape) + (self.n_components,))

    def quantize(self, params):
        """Set each selected weight, in place, to the mean of its most responsible component."""
        with no_grad():
            means = self.components()[0].data
            for p in self.selected(params):
                xp = p.backend.xp
                nearest = xp.argmax(self._log_joint(p).data, axis=1)
                p.data[...] = xp.reshape(xp.astype(xp.take(means, nearest, axis=0), p.dtype), p.shape)


__all__ = ["L2SP", "Anchor", "SoftWeightSharing", "ULLRICH_PRECISION_PRIOR"]
