"""Weight penalties: L2, L1, elastic net, group lasso, orthogonality and spectral-norm penalties.

Every class implements ``minireg.reg.base.Penalty``: ``penalty(w)`` is differentiable (add
``value(params)`` to the loss), ``gradient``/``add_grad_`` give the same gradient without a graph,
and ``prox_`` (where ``has_prox``) replaces w by prox_{step R}(w). L2, L1, elastic net and L2-SP
run their gradients and proxes as in-place kernels of the parameter's backend
(``p.backend.kernels``: Cython on NumPy, CUDA on CuPy, array-API code elsewhere), so the data
never leaves its device.

Scaling conventions differ between libraries; minireg follows Keras for L1/L2 (no 1/2) and
scikit-learn for the elastic net. Each docstring states the exact formula and how to translate.
"""
import weakref

from minireg import check
from minireg import functional as F
from minireg.errors import ShapeError
from minireg.random import default_generator
from minireg.reg.base import Penalty, check_strength, grad_buffer, is_scalar_step
from minireg.tensor import Tensor


class KernelPenalty(Penalty):
    """A penalty whose gradient and prox are in-place kernels of the parameter's backend.

    Subclasses implement ``_add_grad(g, p)`` (g += dR/dp on arrays), ``_prox(p, step)``
    (p.data = prox_{step R}(p.data) for a number ``step``) and ``_scaled_prox(p, steps)`` (the prox
    in the diagonal metric of per-coordinate ``steps``, an array like p: for a separable R,
    coordinate i gets prox_{steps_i R_i}); gradient, accumulate_grad_ and prox_ are built on them.
    """
    has_prox = True

    def _add_grad(self, g, p):
        raise NotImplementedError

    def _prox(self, p, step):
        raise NotImplementedError

    def _scaled_prox(self, p, steps):
        raise NotImplementedError

    def gradient(self, w):
        return self._add_grad(w.backend.xp.zeros_like(w.data), w)

    def accumulate_grad_(self, p):
        self._add_grad(grad_buffer(p), p)

    def prox_(self, param, step):
        if is_scalar_step(step):
            self._prox(param, check_strength(f"{type(self).__name__}: step", step))
        else:
            self._scaled_prox(param, step)
        param._bump_version()


class ElasticNetForm(KernelPenalty):
    """R(w) = l1 * sum|w| + l2/2 * sum(w**2) for fixed (l1, l2) (``strengths``): L1, L2 and the
    elastic net. The prox in the metric of per-coordinate steps s is soft(w, s*l1) / (1 + s*l2)."""

    @property
    def strengths(self):
        """(l1, l2) with R(w) = l1 * sum|w| + l2/2 * sum(w**2)."""
        raise NotImplementedError

    def _scaled_prox(self, p, steps):
        p.backend.kernels.prox_elastic_net_scaled_(p.data, steps, *self.strengths)


class L2(ElasticNetForm):
    """R(w) = alpha * sum(w**2); gradient 2 * alpha * w; prox: w / (1 + 2 * step * alpha).

    Keras scaling: ``keras.regularizers.L2(l2)`` is ``L2(alpha=l2)``. PyTorch's coupled
    ``weight_decay=lam`` (g += lam * w, as Chainer's WeightDecay) is ``L2(alpha=lam / 2)``.
    Decoupled decay (AdamW) is an optimizer option, not this penalty. Tikhonov (1963); Krogh &
    Hertz, "A simple weight decay can improve generalization" (1992).
    """

    def __init__(self, alpha, select=None):
        alpha = check_strength(f"{type(self).__name__}: alpha", alpha)
        super().__init__(select)
        self.alpha = alpha

    strengths = property(lambda self: (0.0, 2 * self.alpha))

    def penalty(self, w):
        return self.alpha * (w * w).sum()

    def _add_grad(self, g, p):
        return p.backend.kernels.l2_grad_(g, p.data, 2 * self.alpha)

    def _prox(self, p, step):
        p.backend.kernels.prox_l2_(p.data, 2 * step * self.alpha)


class L1(ElasticNetForm):
    """R(w) = alpha * sum|w|; subgradient alpha * sign(w) with sign(0) = 0 (minimum norm);
    prox: soft threshold sign(w) * max(|w| - step * alpha, 0), which gives exact zeros.

    Keras scaling: ``keras.regularizers.L1(l1)`` is ``L1(alpha=l1)``; Chainer's ``Lasso(rate)``
    adds the same subgradient. Tibshirani, "Regression shrinkage and selection via the lasso" (1996).
    """

    def __init__(self, alpha, select=None):
        alpha = check_strength(f"{type(self).__name__}: alpha", alpha)
        super().__init__(select)
        self.alpha = alpha

    strengths = property(lambda self: (self.alpha, 0.0))

    def penalty(self, w):
        return self.alpha * w.abs().sum()

    def _add_grad(self, g, p):
        return p.backend.kernels.l1_grad_(g, p.data, self.alpha)

    def _prox(self, p, step):
        p.backend.kernels.prox_l1_(p.data, step * self.alpha)


class ElasticNet(ElasticNetForm):
    """R(w) = alpha * l1_ratio * sum|w| + 0.5 * alpha * (1 - l1_ratio) * sum(w**2).

    scikit-learn's parametrization (``ElasticNet(alpha=1.0, l1_ratio=0.5)``: the same penalty term
    of its objective). Subgradient alpha*r*sign(w) + alpha*(1-r)*w (sign(0) = 0); prox
    soft(w, step*alpha*r) / (1 + step*alpha*(1-r)). Keras ``L1L2(l1, l2)`` is
    ``ElasticNet(alpha=l1 + 2*l2, l1_ratio=l1 / (l1 + 2*l2))``. Zou & Hastie, "Regularization and
    variable selection via the elastic net" (2005).
    """

    def __init__(self, alpha=1.0, l1_ratio=0.5, select=None):
        alpha = check_strength(f"{type(self).__name__}: alpha", alpha)
        l1_ratio = check.probability("l1_ratio", l1_ratio, allow_one=True)
        super().__init__(select)
        self.alpha, self.l1_ratio = alpha, float(l1_ratio)

    strengths = property(lambda self: (self.alpha * self.l1_ratio, self.alpha * (1 - self.l1_ratio)))

    def penalty(self, w):
        l1, l2 = self.strengths
        return l1 * w.abs().sum() + 0.5 * l2 * (w * w).sum()

    def _add_grad(self, g, p):
        return p.backend.kernels.elastic_net_grad_(g, p.data, *self.strengths)

    def _prox(self, p, step):
        l1, l2 = self.strengths
        p.backend.kernels.prox_elastic_net_(p.data, step * l1, step * l2)


# Group lasso groupings: the axis whose slices are the groups, and whether it is for 2-D (dense)
# weights or for conv weights (out, in, *kernel).
_GROUPINGS = {"rows": (0, True), "columns": (1, True), "filters": (0, False), "channels": (1, False)}


class GroupLasso(Penalty):
    """R(w) = alpha * sum_g ||w_g||_2 over groups of a weight (Yuan & Lin 2006; structured
    sparsity in deep nets: Wen et al., "Learning structured sparsity in deep neural networks", 2016).

    ``groups``: "rows" (output units of a Linear weight (out, in)), "columns" (its input features),
    "filters" (each output filter of a conv weight (out, in, kh, kw)) or "channels" (each input
    channel of a conv weight, across all filters). Group sizes are not reweighted (some papers
    use alpha * sqrt(|g|)). The gradient at an all-zero group is 0 (minimum-norm subgradient); the
    prox is the block soft threshold w_g * max(0, 1 - step*alpha / ||w_g||), which removes whole
    groups. Neither Keras nor PyTorch has it.
    """
    has_prox = True

    def __init__(self, alpha, groups="rows", select=None):
        alpha = check_strength(f"{type(self).__name__}: alpha", alpha)
        check.choice("groups", groups, tuple(_GROUPINGS))
        super().__init__(select)
        self.alpha, self.groups = alpha, groups

    def _axis(self, shape):
        axis, dense = _GROUPINGS[self.groups]
        if len(shape) == 2 if dense else len(shape) >= 3:
            return axis
        expected = "a 2-D Linear weight (out, in)" if dense else "a conv weight (out, in, *kernel) with >= 3 dims"
        raise ShapeError(f"GroupLasso(groups={self.groups!r}) needs {expected}; got a weight of shape {tuple(shape)}")

    def penalty(self, w):
        axis = self._axis(w.shape)
        squares = (w * w).sum(axis=tuple(i for i in range(w.ndim) if i != axis))
        nonzero = squares > 0
        # sqrt only where the group is nonzero, so an all-zero group gets gradient 0, not NaN.
        norms = F.where(nonzero, F.sqrt(F.where(nonzero, squares, 1.0)), 0.0)
        return self.alpha * norms.sum()

    def _grouped(self, param, array):
        """``array`` (shaped like ``param``) as a contiguous (groups, group size) array, and the
        function writing such an array back into param.data."""
        backend, xp = param.backend, param.backend.xp
        # groups on axis 1: swap axes 0 and 1 (a permutation that is its own inverse)
        swap = None if self._axis(param.shape) == 0 else (1, 0) + tuple(range(2, param.ndim))
        w = array if swap is None else xp.permute_dims(array, swap)
        grouped = xp.reshape(w, (w.shape[0], -1))
        if swap is not None:
            grouped = backend.copy(grouped)   # contiguous, so the compiled kernel applies

        def write_back(result):
            # even without a swap, the array API does not promise that reshape is a view
            result = xp.reshape(result, w.shape)
            param.data[...] = result if swap is None else xp.permute_dims(result, swap)
        return grouped, write_back

    def prox_(self, param, step):
        """Block soft threshold w_g * max(0, 1 - step*alpha / ||w_g||) for a number ``step``.

        With per-coordinate steps s (an adaptive optimizer's metric D = diag(1/s)) the prox of
        alpha*||x_g|| in that metric, argmin_x 1/2 sum_i (x_i - v_i)^2 / s_i + alpha*||x||, is exact:
        x = 0 when ||v / s|| <= alpha, else x_i = v_i * r / (r + alpha*s_i) where r = ||x|| > 0 solves
        sum_i v_i^2 / (r + alpha*s_i)^2 = 1 (one root in (0, ||v||); ``_metric_radius``). Equal steps
        give back the block soft threshold.
        """
        grouped, write_back = self._grouped(param, param.data)
        if is_scalar_step(step):
            step = check_strength(f"{type(self).__name__}: step", step)
            param.backend.kernels.prox_group_lasso_(grouped, step * self.alpha)
        else:
            xp = param.backend.xp
            steps, _ = self._grouped(param, step)
            t = self.alpha * steps
            zero = xp.sum((grouped / steps) ** 2, axis=1, keepdims=True) <= self.alpha ** 2
            r = _metric_radius(xp, grouped, t)
            grouped = xp.where(zero, 0.0, grouped * (r / (r + t)))
        write_back(grouped)
        param._bump_version()


_NEWTON_STEPS = 8    # from the start below: ~1e-16 relative after 5 steps, steps spread over 5 decades


def _metric_radius(xp, v, t):
    """Per row, the r in [0, ||v||] with sum_i v_i^2 / (r + t_i)^2 = 1 (r = 0 where no root is positive).

    Newton's method on h(r) = phi(r)^(-1/2), phi(r) = sum_i v_i^2 / (r + t_i)^2, which is linear
    when the t_i are equal; it starts at that case's root with the mean t, ||v|| - mean(t) (clipped
    to the bracket), and an iterate leaving the bracket, kept by the sign of h - 1, is replaced by
    the bracket's midpoint (safeguarded Newton). A fixed number of steps: no device synchronisation.
    """
    lo = xp.zeros_like(v[:, :1])
    hi = xp.sqrt(xp.sum(v * v, axis=1, keepdims=True))
    r = xp.clip(hi - xp.mean(t, axis=1, keepdims=True), 0.0, hi)
    tiny = xp.finfo(v.dtype).tiny
    for _ in range(_NEWTON_STEPS):
        inverse = 1 / (r + t)
        squares = v * inverse
        squares *= squares                     # v_i^2 / (r + t_i)^2, in place (no pow)
        phi = xp.sum(squares, axis=1, keepdims=True)
        squares *= inverse
        dphi = xp.minimum(-2 * xp.sum(squares, axis=1, keepdims=True), -tiny)
        lo = xp.where(phi > 1, r, lo)      # h < 1: the root lies above r
        hi = xp.where(phi <= 1, r, hi)
        # (h - 1) / h' written with phi only, so nothing overflows when phi is tiny
        newton = r + 2 * phi * (1 - xp.sqrt(phi)) / dphi
        r = xp.where((newton >= lo) & (newton <= hi), newton, (lo + hi) / 2)
    return r


class Orthogonal(Penalty):
    """Soft orthogonality of the rows of W = w.reshape(out, -1), M = W W^T:

    - mode="off_diagonal" (BigGAN, Brock et al. 2019): R = beta * ||M * (1 - I)||_F^2, gradient
      4 * beta * (M * (1 - I)) W; rows may have any norm.
    - mode="full" (Brock et al. 2017, "Neural photo editing"): R = beta * ||M - I||_F^2, gradient
      4 * beta * (M - I) W; rows are pushed to be orthonormal.

    BigGAN-PyTorch's ``utils.ortho(model, strength)`` adds ``2 * strength * (M * (1 - I)) W`` to the
    gradient, which is ``Orthogonal(beta=strength / 2)``. Keras's ``OrthogonalRegularizer(factor,
    mode="rows")`` is a different penalty: it L2-normalizes the rows first and averages |n_i^T n_j|
    over the pairs i < j (not squared, scale-free); it only accepts 2-D weights.
    """

    def __init__(self, beta=1e-4, mode="off_diagonal", select=None):
        beta = check_strength(f"{type(self).__name__}: beta", beta)
        check.choice("mode", mode, ("off_diagonal", "full"))
        super().__init__(select)
        self.beta, self.mode = beta, mode

    def _residual(self, gram, eye):
        """M * (1 - I) or M - I; works on Tensors and on raw arrays alike."""
        return gram * (1 - eye) if self.mode == "off_diagonal" else gram - eye

    @staticmethod
    def _eye(w):
        return w.backend.xp.eye(w.shape[0], dtype=w.dtype, device=w.backend.device)

    def penalty(self, w):
        rows = w.reshape(w.shape[0], -1)
        residual = self._residual(rows @ rows.T, self._eye(w))
        return self.beta * (residual * residual).sum()

    def gradient(self, w):
        xp = w.backend.xp
        rows = xp.reshape(w.data, (w.shape[0], -1))
        residual = self._residual(xp.matmul(rows, xp.matrix_transpose(rows)), self._eye(w))
        return xp.reshape((4 * self.beta) * xp.matmul(residual, rows), w.shape)


_WARMUP_ITERATIONS = 15   # extra power iterations the first time a parameter is seen (as PyTorch)


def _unit(xp, x, eps):
    return x / (xp.sqrt(xp.sum(x * x)) + eps)


class SpectralNormPenalty(Penalty):
    """R(w) = beta * sigma_max(W)^2, W = w.reshape(out, -1) (Yoshida & Miyato, "Spectral norm
    regularization for improving the generalizability of deep learning", 2017).

    The squared norm, as Yoshida & Miyato, so the gradient 2 * beta * sigma * u v^T is smooth in
    sigma. sigma is estimated by power iteration (Miyato et al. 2018) with one persistent left vector
    u per parameter (kept in a dict keyed by the parameter's id, dropped with it): every call to
    ``penalty`` or ``gradient`` runs ``n_power_iterations`` steps v = W^T u / ||W^T u||,
    u = W v / ||W v|| (15 more the first time, as PyTorch's spectral_norm), then sigma = u^T W v.
    In ``penalty`` u and v are constants, so d sigma / dW = u v^T. Conv kernels are reshaped to
    (out, in*kh*kw): that matrix's norm is not the operator norm of the convolution. This is a
    soft penalty; for hard spectral normalization (W / sigma) see the constraints.
    """

    def __init__(self, beta, n_power_iterations=1, eps=1e-12, select=None):
        beta = check_strength(f"{type(self).__name__}: beta", beta)
        n_power_iterations = check.positive_int("n_power_iterations", n_power_iterations)
        eps = check_strength(f"{type(self).__name__}: eps", eps, allow_zero=False)
        super().__init__(select)
        self.beta, self.n_power_iterations, self.eps = beta, n_power_iterations, eps
        self._left = {}   # id(parameter) -> u; not a WeakKeyDictionary, whose lookups use == (elementwise)

    def singular_vectors(self, w):
        """(u, v, sigma) after this call's power iterations; raw arrays, W = w.reshape(out, -1)."""
        xp = w.backend.xp
        matrix = xp.reshape(w.data, (w.shape[0], -1))
        u = self._left.get(id(w))
        steps = self.n_power_iterations
        if u is None or not w.backend.owns(u) or u.shape[0] != w.shape[0] or u.dtype != w.dtype:
            u = _unit(xp, w.backend.random_normal(default_generator(), (w.shape[0],), w.dtype), self.eps)
            steps += _WARMUP_ITERATIONS
        for _ in range(steps):
            v = _unit(xp, xp.matmul(u, matrix), self.eps)
            u = _unit(xp, xp.matmul(matrix, v), self.eps)
        if id(w) not in self._left:
            weakref.finalize(w, self._left.pop, id(w), None)
        self._left[id(w)] = u
        return u, v, xp.sum(u * xp.matmul(matrix, v))

    def penalty(self, w):
        u, v, _ = self.singular_vectors(w)
        outer = Tensor._make(w.backend.xp.reshape(u[:, None] * v[None, :], w.shape), w.backend)
        sigma = (w * outer).sum()
        return self.beta * sigma * sigma

    def gradient(self, w):
        u, v, sigma = self.singular_vectors(w)
        return w.backend.xp.reshape((2 * self.beta) * sigma * (u[:, None] * v[None, :]), w.shape)


__all__ = ["L2", "L1", "ElasticNet", "GroupLasso", "Orthogonal", "SpectralNormPenalty"]
