"""Reference regularization kernels written only with the array API standard.

``Kernels(xp)`` works for any array-API namespace (NumPy 2, array_api_strict, array_api_compat.cupy):
every temporary is derived from the input arrays, so the data never leaves the arrays' device and
never passes through NumPy. Faster tables (``CompiledKernels``, ``CupyKernels``) subclass it.

Every kernel validates its arguments before touching any array, then works in place on its first
array argument(s) and returns the array it modified. ``w`` is a parameter, ``g`` its gradient,
scalars are Python floats, and ``soft(x, t) = sign(x) * max(|x| - t, 0)``.

Each public kernel ``name_`` validates and then calls ``_name``; subclasses override only the
``_name`` implementations (falling back to ``super()``), so validation lives in one place.
"""

import functools
import math
from typing import NamedTuple

from minireg import check
from minireg.errors import ArgumentError, DTypeError, ShapeError

_LOG_2PI = math.log(2 * math.pi)


@functools.lru_cache(maxsize=None)
def _real_floating(xp, dtype):
    return bool(xp.isdtype(dtype, "real floating"))


def _check_arrays(xp, ndim=None, **arrays):
    """All arrays real floating, with the dtype and shape of the first; `ndim` if given."""
    (first_name, first), *others = arrays.items()
    # The first array's dtype is checked (isdtype, cached: it is slow next to a kernel on a small
    # array); the others must have it, and one that does not is checked itself, for the message.
    if not _real_floating(xp, first.dtype):
        raise DTypeError(f"{first_name} must have a real floating dtype, got {first.dtype}")
    for name, a in others:
        if a.dtype != first.dtype:
            if not _real_floating(xp, a.dtype):
                raise DTypeError(f"{name} must have a real floating dtype, got {a.dtype}")
            raise DTypeError(
                f"{name} has dtype {a.dtype} but {first_name} has {first.dtype}; expected the same dtype"
            )
        if a.shape != first.shape:
            raise ShapeError(
                f"{name} has shape {a.shape} but {first_name} has {first.shape}; expected the same shape"
            )
    if ndim is not None and first.ndim != ndim:
        raise ShapeError(f"{first_name} must be {ndim}-D (one group per row), got shape {first.shape}")


def _check_array_lists(xp, kernel, **lists):
    """``_check_arrays`` on the k-th arrays of the lists (named by their singular: ``w=ws``), for
    every k, before a multi-tensor kernel writes anything. What it accepts (one real floating dtype
    and one shape) is tested inline first: it costs ~1.5 us a call, once per parameter per step."""
    names = tuple(lists)
    for k, arrays in enumerate(zip(*lists.values())):
        first = arrays[0]
        for a in arrays[1:]:
            if a.dtype != first.dtype or a.shape != first.shape:
                break
        else:
            if _real_floating(xp, first.dtype):
                continue
        try:
            _check_arrays(xp, **dict(zip(names, arrays)))
        except (DTypeError, ShapeError) as exc:
            where = ", ".join(f"{name}s[{k}]" for name in names)
            raise type(exc)(f"{kernel}: arrays {k} ({where}): {exc}") from None


class AdamWCoefficients(NamedTuple):
    """Scalars of one AdamW step, shared by every kernel table so they round identically."""

    decay: float  # 1 - lr * weight_decay
    step_size: float  # lr / (1 - beta1**step)
    inv_sqrt_bc2: float  # 1 / sqrt(1 - beta2**step)
    threshold: float  # lr * l1


def adamw_coefficients(step, lr, beta1, beta2, weight_decay, l1):
    return AdamWCoefficients(
        decay=1 - lr * weight_decay,
        step_size=lr / (1 - beta1**step),
        inv_sqrt_bc2=1 / math.sqrt(1 - beta2**step),
        threshold=lr * l1,
    )


def _adamw_scalars(step, lr, beta1, beta2, eps, weight_decay, l1):
    """(coefficients, beta1, beta2, eps) of one AdamW step, each argument checked."""
    step = check.integer("step (1-based step count)", step, low=1)
    lr, eps = check.nonnegative("lr", lr), check.nonnegative("eps", eps)
    beta1, beta2 = check.probability("beta1", beta1), check.probability("beta2", beta2)
    weight_decay, l1 = check.nonnegative("weight_decay", weight_decay), check.nonnegative("l1", l1)
    return adamw_coefficients(int(step), lr, beta1, beta2, weight_decay, l1), beta1, beta2, eps


def _soft_(xp, w, t):
    # x - clip(x, -t, t) equals sign(x) * max(|x| - t, 0) with one temporary instead of three.
    w -= xp.clip(w, -t, t)
    return w


def _window_slices(offset, grid, stride, dilation):
    """The strided slices of a padded image that kernel offset (i, j) reads over the grid."""
    return tuple(slice(o * d, o * d + (g - 1) * s + 1, s) for o, g, s, d in zip(offset, grid, stride, dilation))


def _row_norms(xp, w):
    return xp.sqrt(xp.sum(w * w, axis=1, keepdims=True))


class Kernels:
    """Generic in-place regularization kernels over the array namespace ``xp``."""

    name = "reference"

    def __init__(self, xp):
        self.xp = xp

    def __repr__(self):
        return f"{type(self).__name__}({self.xp.__name__})"

    # -- penalty gradients ---------------------------------------------------------------------

    def l1_grad_(self, g, w, alpha):
        """g += alpha * sign(w)  (sign(0) = 0: the minimum-norm subgradient)"""
        alpha = check.nonnegative("alpha", alpha)
        _check_arrays(self.xp, g=g, w=w)
        return self._l1_grad(g, w, alpha)

    def _l1_grad(self, g, w, alpha):
        g += alpha * self.xp.sign(w)
        return g

    def l2_grad_(self, g, w, alpha):
        """g += alpha * w"""
        alpha = check.nonnegative("alpha", alpha)
        _check_arrays(self.xp, g=g, w=w)
        return self._l2_grad(g, w, alpha)

    def _l2_grad(self, g, w, alpha):
        g += alpha * w
        return g

    def elastic_net_grad_(self, g, w, l1, l2):
        """g += l1 * sign(w) + l2 * w"""
        l1, l2 = check.nonnegative("l1", l1), check.nonnegative("l2", l2)
        _check_arrays(self.xp, g=g, w=w)
        return self._elastic_net_grad(g, w, l1, l2)

    def _elastic_net_grad(self, g, w, l1, l2):
        g += l1 * self.xp.sign(w) + l2 * w
        return g

    # -- proximal operators --------------------------------------------------------------------

    def prox_l1_(self, w, t):
        """w = sign(w) * max(|w| - t, 0)  (soft threshold: prox of t*||w||_1)"""
        t = check.nonnegative("t", t)
        _check_arrays(self.xp, w=w)
        return self._prox_l1(w, t)

    def _prox_l1(self, w, t):
        return _soft_(self.xp, w, t)

    def prox_l2_(self, w, t):
        """w = w / (1 + t)  (prox of t/2 * ||w||^2)"""
        t = check.nonnegative("t", t)
        _check_arrays(self.xp, w=w)
        return self._prox_l2(w, t)

    def _prox_l2(self, w, t):
        w *= 1 / (1 + t)
        return w

    def prox_elastic_net_(self, w, t1, t2):
        """w = soft(w, t1) / (1 + t2)  (prox of t1*||w||_1 + t2/2 * ||w||^2)"""
        t1, t2 = check.nonnegative("t1", t1), check.nonnegative("t2", t2)
        _check_arrays(self.xp, w=w)
        return self._prox_elastic_net(w, t1, t2)

    def _prox_elastic_net(self, w, t1, t2):
        _soft_(self.xp, w, t1)
        w *= 1 / (1 + t2)
        return w

    def prox_elastic_net_scaled_(self, w, steps, l1, l2):
        """w = soft(w, steps*l1) / (1 + steps*l2) elementwise, ``steps`` an array like w (> 0): the prox
        of l1*||w||_1 + l2/2 * ||w||^2 in the diagonal metric diag(1/steps) of an adaptive optimizer
        (Adam: steps = lr / (sqrt(vhat) + eps)). No compiled version yet: every table uses this one."""
        l1, l2 = check.nonnegative("l1", l1), check.nonnegative("l2", l2)
        _check_arrays(self.xp, w=w, steps=steps)
        return self._prox_elastic_net_scaled(w, steps, l1, l2)

    def _prox_elastic_net_scaled(self, w, steps, l1, l2):
        if l1:
            _soft_(self.xp, w, steps * l1)
        if l2:
            w /= 1 + steps * l2
        return w

    def prox_group_lasso_(self, w, t):
        """Each row of 2-D w: row *= max(0, 1 - t / ||row||_2)  (prox of t * sum of row norms).

        Rows with norm <= t (including zero rows) become 0. For column or filter groups, pass a
        transposed/reshaped view.
        """
        t = check.nonnegative("t", t)
        _check_arrays(self.xp, ndim=2, w=w)
        if t == 0:  # identity, also for tiny rows whose squared norm underflows to 0
            return w
        return self._prox_group_lasso(w, t)

    def _prox_group_lasso(self, w, t):
        xp = self.xp
        norms = _row_norms(xp, w)
        keep = norms > t
        # The inner where keeps zero norms out of the division.
        w *= xp.where(keep, 1 - t / xp.where(keep, norms, xp.ones_like(norms)), xp.zeros_like(norms))
        return w

    # -- projections ---------------------------------------------------------------------------

    def clip_(self, w, lo, hi):
        """w = min(max(w, lo), hi)  (projection onto the box [lo, hi]; lo/hi may be infinite)"""
        lo, hi = check.real("clip: lo", lo, finite=False), check.real("clip: hi", hi, finite=False)
        if not lo <= hi:
            raise ArgumentError(f"clip needs lo <= hi (neither NaN), got lo={lo!r}, hi={hi!r}")
        _check_arrays(self.xp, w=w)
        return self._clip(w, lo, hi)

    def _clip(self, w, lo, hi):
        w[...] = self.xp.clip(w, lo, hi)
        return w

    def max_norm_(self, w, max_value):
        """Each row of 2-D w with ||row||_2 > max_value: row *= max_value / ||row||_2."""
        max_value = check.nonnegative("max_value", max_value)
        _check_arrays(self.xp, ndim=2, w=w)
        return self._max_norm(w, max_value)

    def _max_norm(self, w, max_value):
        xp = self.xp
        norms = _row_norms(xp, w)
        over = norms > max_value
        w *= xp.where(over, max_value / xp.where(over, norms, xp.ones_like(norms)), xp.ones_like(norms))
        return w

    def project_l1_ball_(self, w, radius):
        """w = argmin_{||x||_1 <= radius} ||x - w||_2 over the whole (flattened) array.

        Sort-based (Duchi et al. 2008): w = soft(w, theta) with theta from the sorted |w|;
        identity when ||w||_1 <= radius.
        """
        radius = check.positive("radius", radius)
        _check_arrays(self.xp, w=w)
        return self._project_l1_ball(w, radius)

    def _project_l1_ball(self, w, radius):
        xp = self.xp
        if w.size == 0:
            return w
        # Largest first; flip rather than sort(descending=True), which numpy.sort lacks.
        u = xp.flip(xp.sort(xp.abs(xp.reshape(w, (-1,)))))
        k = xp.arange(1, u.shape[0] + 1, dtype=xp.float64, device=w.device)
        # (cumsum_k - radius) / k rises up to the support size and falls after it, so its maximum
        # is Duchi's threshold; it is <= 0 exactly when w is inside the ball (theta = 0: identity).
        # Staying with arrays avoids a device-to-host sync for the data-dependent index. The sum
        # runs in float64: a float32 running sum drifts by ~1e-4 relative over large arrays.
        theta = xp.clip(xp.max((xp.cumulative_sum(u, dtype=xp.float64) - radius) / k), 0.0, None)
        theta = xp.astype(theta, w.dtype)
        w -= xp.clip(w, -theta, theta)
        return w

    # -- fused optimizer steps -----------------------------------------------------------------

    def sgd_prox_step_(self, w, g, lr, l1, l2):
        """w = soft(w - lr*g, lr*l1) / (1 + lr*l2)  (proximal SGD step with elastic net)"""
        lr, l1, l2 = check.nonnegative("lr", lr), check.nonnegative("l1", l1), check.nonnegative("l2", l2)
        _check_arrays(self.xp, w=w, g=g)
        return self._sgd_prox_step(w, g, lr, l1, l2)

    def _sgd_prox_step(self, w, g, lr, l1, l2):
        w -= lr * g
        _soft_(self.xp, w, lr * l1)
        w *= 1 / (1 + lr * l2)
        return w

    def sgd_steps_(self, ws, gs, bufs, lr, momentum, dampening, weight_decay, nesterov, first):
        """torch.optim.SGD's step on every ``(ws[k], gs[k], bufs[k])`` of equally long lists, with one
        set of scalars (the multi-tensor form an optimizer calls once per param group)::

            d = g + weight_decay * w                       (when weight_decay != 0)
            b = d if first else momentum * b + (1 - dampening) * d;   d = d + momentum * b if nesterov else b
            w = w - lr * d                                 (the middle line only when momentum != 0)

        ``bufs`` are the momentum buffers (arrays like w), written but not read when ``first``; they
        are not touched, and may be anything, when momentum == 0. Every array is checked before the
        first is written; returns ``ws``."""
        lr, momentum = check.nonnegative("lr", lr), check.nonnegative("momentum", momentum)
        dampening, weight_decay = check.nonnegative("dampening", dampening), check.nonnegative("weight_decay", weight_decay)
        nesterov, first = check.flag("nesterov", nesterov), check.flag("first", first)
        if len(ws) != len(gs) or (momentum and len(bufs) != len(ws)):
            raise ArgumentError(f"sgd_steps_ needs lists of equal length, got {len(ws)} ws, {len(gs)} gs and "
                                f"{len(bufs)} bufs")
        _check_array_lists(self.xp, "sgd_steps_", **(dict(w=ws, g=gs, buf=bufs) if momentum else dict(w=ws, g=gs)))
        return self._sgd_steps(ws, gs, bufs, lr, momentum, dampening, weight_decay, nesterov, first)

    def _sgd_steps(self, ws, gs, bufs, lr, momentum, dampening, weight_decay, nesterov, first):
        for k, (w, g) in enumerate(zip(ws, gs)):
            if weight_decay:
                g = g + weight_decay * w
            if momentum:
                buf = bufs[k]
                if first:
                    buf[...] = g
                else:
                    buf *= momentum
                    buf += (1 - dampening) * g
                g = g + momentum * buf if nesterov else buf
            w -= lr * g
        return ws

    def adamw_prox_step_(self, w, g, m, v, step, lr, beta1, beta2, eps, weight_decay, l1):
        """AdamW step (PyTorch order) followed by soft-thresholding; m, v, w updated in place.

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
        mhat = m / (1 - b1^step);  vhat = v / (1 - b2^step)   (step: 1-based count)
        w -= lr*weight_decay*w;  w -= lr*mhat / (sqrt(vhat) + eps);  w = soft(w, lr*l1)
        """
        coef, beta1, beta2, eps = _adamw_scalars(step, lr, beta1, beta2, eps, weight_decay, l1)
        _check_arrays(self.xp, w=w, g=g, m=m, v=v)
        return self._adamw_prox_step(w, g, m, v, beta1, beta2, eps, coef)

    def _adamw_prox_step(self, w, g, m, v, beta1, beta2, eps, coef):
        xp = self.xp
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        # sqrt(vhat) = sqrt(v) / sqrt(1 - b2^step): the same arithmetic as the compiled kernels.
        w *= coef.decay
        w -= coef.step_size * m / (xp.sqrt(v) * coef.inv_sqrt_bc2 + eps)
        return _soft_(xp, w, coef.threshold)

    def adamw_prox_steps_(self, ws, gs, ms, vs, step, lr, beta1, beta2, eps, weight_decay, l1):
        """``adamw_prox_step_`` on every ``(ws[k], gs[k], ms[k], vs[k])`` of four equally long lists,
        with one step count and one set of scalars: the multi-tensor form (PyTorch's foreach/fused
        Adam) an optimizer calls once per param group. The scalars are checked and the coefficients
        computed once; every array is checked before the first is written. Returns ``ws``; the
        results are bitwise those of ``adamw_prox_step_`` called on each quadruple in turn."""
        coef, beta1, beta2, eps = _adamw_scalars(step, lr, beta1, beta2, eps, weight_decay, l1)
        if not len(ws) == len(gs) == len(ms) == len(vs):
            raise ArgumentError(f"adamw_prox_steps_ needs lists of equal length, got {len(ws)} ws, {len(gs)} gs, "
                                f"{len(ms)} ms and {len(vs)} vs")
        _check_array_lists(self.xp, "adamw_prox_steps_", w=ws, g=gs, m=ms, v=vs)
        return self._adamw_prox_steps(ws, gs, ms, vs, beta1, beta2, eps, coef)

    def _adamw_prox_steps(self, ws, gs, ms, vs, beta1, beta2, eps, coef):
        for w, g, m, v in zip(ws, gs, ms, vs):
            self._adamw_prox_step(w, g, m, v, beta1, beta2, eps, coef)
        return ws

    def surely_finite(self, arrays):
        """A 0-d boolean array on the device of ``arrays`` (a non-empty list of floating arrays on
        one device): True proves that every element of every array is finite; False means that one
        may not be, and the caller checks elementwise. Here: whether the sum of the arrays' sums is
        finite (a NaN or an infinity makes it non-finite, but so can an overflow of finite values):
        one reduction per array, no host round trip."""
        xp = self.xp
        return xp.isfinite(xp.sum(xp.stack([xp.sum(a) for a in arrays])))

    # -- mixture prior ---------------------------------------------------------------------------

    def mixture_nll(self, ws, means, log_precisions, log_mix):
        """Negative log-likelihood of every entry of the arrays ``ws`` (a sequence, e.g. all the weight
        tensors of a model) under a 1-D Gaussian mixture, and its gradients.

        a_ij = log_mix_j + (gamma_j - log 2pi) / 2 - lambda_j (w_i - mu_j)^2 / 2, lambda_j = exp(gamma_j),
        nll = -sum_i logsumexp_j a_ij over the entries w_i of all the arrays, r_ij = softmax_j a_ij,
        d_ij = w_i - mu_j. Returns (nll as a 0-d array, a tuple with d nll/dw = sum_j r_ij lambda_j d_ij
        for each array of ws (its shape), d nll/dmu_j = -lambda_j sum_i r_ij d_ij,
        d nll/dgamma_j = sum_i r_ij (lambda_j d_ij^2 - 1) / 2, d nll/dlog_mix_j = -sum_i r_ij).
        Nothing is written in place.
        """
        xp = self.xp
        ws = tuple(ws)
        if not ws:
            raise ArgumentError("mixture_nll: ws must hold at least one array, got none")
        _check_arrays(xp, ndim=1, means=means, log_precisions=log_precisions, log_mix=log_mix)
        for w in ws:
            _check_arrays(xp, w=w)
            if w.dtype != means.dtype:
                raise DTypeError(f"means has dtype {means.dtype} but an array of ws has {w.dtype}; expected the same dtype")
        return self._mixture_nll(ws, means, log_precisions, log_mix)

    def _mixture_nll(self, ws, means, log_precisions, log_mix):
        xp = self.xp
        lam = xp.exp(log_precisions)
        flat = xp.concat([xp.reshape(w, (-1,)) for w in ws])
        d = xp.reshape(flat, (-1, 1)) - means
        a = log_mix + 0.5 * (log_precisions - _LOG_2PI) - 0.5 * lam * d * d
        m = xp.max(a, axis=1, keepdims=True)
        e = xp.exp(a - m)
        s = xp.sum(e, axis=1, keepdims=True)
        r = e / s
        rd = r * d
        s0, s1, s2 = xp.sum(r, axis=0), xp.sum(rd, axis=0), xp.sum(rd * d, axis=0)
        nll = -xp.sum(m + xp.log(s))
        grad_flat = xp.sum(rd * lam, axis=1)
        grads_w, start = [], 0
        for w in ws:
            size = math.prod(w.shape)
            grads_w.append(xp.reshape(grad_flat[start:start + size], w.shape))
            start += size
        return nll, tuple(grads_w), -lam * s1, 0.5 * (lam * s2 - s0), -s0

    # -- activations ---------------------------------------------------------------------------

    def relu(self, x):
        """clip(x, 0, None) elementwise, as a new array (NaN passes, -0.0 becomes 0)"""
        return self._relu(x)

    def _relu(self, x):
        return self.xp.clip(x, 0, None)

    def relu_grad(self, gy, x):
        """gy * (x > 0), as a new array; gy and x of one shape and dtype"""
        _check_arrays(self.xp, gy=gy, x=x)
        return self._relu_grad(gy, x)

    def _relu_grad(self, gy, x):
        return gy * self.xp.astype(x > 0, x.dtype)

    def tanh_grad(self, gy, y):
        """gy * (1 - y * y) for y = tanh(x) (each step rounded), as a new array; gy and y of one shape and dtype"""
        _check_arrays(self.xp, gy=gy, y=y)
        return self._tanh_grad(gy, y)

    def _tanh_grad(self, gy, y):
        return gy * (1 - y * y)

    def leaky_relu(self, x, negative_slope):
        """where(x > 0, x, negative_slope * x) elementwise (those bits: NaN, infinities and signed zeros
        included), as a new array"""
        return self._leaky_relu(x, check.real("leaky_relu: negative_slope", negative_slope))

    def _leaky_relu(self, x, slope):
        # max(x, slope x) (min for slope > 1): the same bits in one NumPy pass (its where is several
        # times slower than maximum). Not for slope 0, where -inf * 0 gives NaN, as where does.
        xp = self.xp
        if slope == 0:
            return xp.where(x > 0, x, x * slope)
        return xp.maximum(x, x * slope) if slope <= 1 else xp.minimum(x, x * slope)

    def leaky_relu_slopes(self, x, negative_slope):
        """where(x > 0, 1, negative_slope): leaky_relu's derivative (negative_slope at 0), as a new array"""
        return self._leaky_relu_slopes(x, check.real("leaky_relu: negative_slope", negative_slope))

    def _leaky_relu_slopes(self, x, slope):
        xp = self.xp
        return xp.where(x > 0, xp.ones_like(x), xp.full_like(x, slope))

    def leaky_relu_grad(self, gy, x, negative_slope):
        """gy * leaky_relu_slopes(x, negative_slope), as a new array; gy and x of one shape and dtype"""
        _check_arrays(self.xp, gy=gy, x=x)
        return self._leaky_relu_grad(gy, x, check.real("leaky_relu: negative_slope", negative_slope))

    def _leaky_relu_grad(self, gy, x, slope):
        return gy * self._leaky_relu_slopes(x, slope)

    # -- convolution columns -------------------------------------------------------------------

    def im2col(self, x, kernel, stride, padding, dilation, grid, pad_value):
        """Image x (N, C, H, W) -> columns (C*kH*kW, N*gH*gW), one kernel offset (i, j) per row block:

            cols[(c*kH + i)*kW + j, (n*gH + y)*gW + g] = x_padded[n, c, y*sH + i*dH, g*sW + j*dW]

        with ``pad_value`` in the padding (the layout of ``minireg.functional_conv``). Each
        geometry argument is an (H, W) pair; the caller has checked that the grid fits.
        """
        return self._im2col(x, kernel, stride, padding, dilation, grid, pad_value)

    def _im2col(self, x, kernel, stride, padding, dilation, grid, pad_value):
        xp = self.xp
        n, c, h, w = x.shape
        (kh, kw), (ph, pw), (gh, gw) = kernel, padding, grid
        if ph or pw:
            padded = xp.full((n, c, h + 2 * ph, w + 2 * pw), pad_value, dtype=x.dtype, device=x.device)
            padded[:, :, ph:ph + h, pw:pw + w] = x
        else:
            padded = x
        cols = xp.empty((c, kh, kw, n, gh, gw), dtype=x.dtype, device=x.device)
        for i in range(kh):
            for j in range(kw):
                rows, columns = _window_slices((i, j), grid, stride, dilation)
                cols[:, i, j, ...] = xp.permute_dims(padded[:, :, rows, columns], (1, 0, 2, 3))
        return xp.reshape(cols, (c * kh * kw, n * gh * gw))

    def col2im(self, cols, image_size, kernel, stride, padding, dilation, grid):
        """The adjoint of ``im2col``: columns (C*kH*kW, N*gH*gW) -> image (N, C, H, W) with
        ``image_size`` (H, W); every column entry is added to the pixel it was read from
        (overlapping windows sum) and entries in the padding are dropped."""
        return self._col2im(cols, image_size, kernel, stride, padding, dilation, grid)

    def _col2im(self, cols, image_size, kernel, stride, padding, dilation, grid):
        xp = self.xp
        (kh, kw), (ph, pw), (h, w), (gh, gw) = kernel, padding, image_size, grid
        c, n = cols.shape[0] // (kh * kw), cols.shape[1] // (gh * gw)
        blocks = xp.reshape(cols, (c, kh, kw, n, gh, gw))
        # accumulate channel-major so each added block is contiguous; the final permute is a view
        image = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype, device=cols.device)
        for i in range(kh):
            for j in range(kw):
                rows, columns = _window_slices((i, j), grid, stride, dilation)
                image[:, :, rows, columns] += blocks[:, i, j, ...]
        return xp.permute_dims(image[:, :, ph:ph + h, pw:pw + w], (1, 0, 2, 3))

    # -- max pooling (the window geometry of im2col, padding -inf) -------------------------------

    def max_pool(self, x, kernel, stride, padding, dilation, grid):
        """y (N, C, gH, gW): the max over each window of x (N, C, H, W), the padding counting as -inf."""
        return self._max_pool(x, kernel, stride, padding, dilation, grid)

    def _max_pool(self, x, kernel, stride, padding, dilation, grid):
        xp = self.xp
        cols = self._windows(x, kernel, stride, padding, dilation, grid, -math.inf)
        return self._to_image(xp.max(cols, axis=1), x.shape[0], grid)

    def max_pool_scatter(self, g, x, y, kernel, stride, padding, dilation):
        """The gradient of max pooling for the output gradient g (shape of y): every window's g is
        shared evenly by the window's entries equal to its max y, and added back to x's shape."""
        return self._max_pool_scatter(g, x, y, kernel, stride, padding, dilation)

    def _max_pool_scatter(self, g, x, y, kernel, stride, padding, dilation):
        xp = self.xp
        grid = tuple(y.shape[2:])
        shares = self._pool_shares(x, y, kernel, stride, padding, dilation) * self._as_rows(g)
        cols = xp.reshape(shares, (shares.shape[0] * shares.shape[1], shares.shape[2]))
        return self._col2im(cols, tuple(x.shape[2:]), kernel, stride, padding, dilation, grid)

    def max_pool_gather(self, g, x, y, kernel, stride, padding, dilation):
        """The adjoint of ``max_pool_scatter``: each window's mean of g (shape of x) over its maxima."""
        return self._max_pool_gather(g, x, y, kernel, stride, padding, dilation)

    def _max_pool_gather(self, g, x, y, kernel, stride, padding, dilation):
        xp = self.xp
        grid = tuple(y.shape[2:])
        cols = self._windows(g, kernel, stride, padding, dilation, grid, 0.0)
        shares = self._pool_shares(x, y, kernel, stride, padding, dilation)
        return self._to_image(xp.sum(cols * shares, axis=1), x.shape[0], grid)

    def _windows(self, x, kernel, stride, padding, dilation, grid, pad_value):
        """im2col of x as (C, kH*kW, N*gH*gW)."""
        cols = self._im2col(x, kernel, stride, padding, dilation, grid, pad_value)
        return self.xp.reshape(cols, (x.shape[1], kernel[0] * kernel[1], cols.shape[1]))

    def _as_rows(self, y):
        """(N, C, gH, gW) -> (C, 1, N*gH*gW), the layout of _windows' reductions."""
        n, c, gh, gw = y.shape
        return self.xp.reshape(self.xp.permute_dims(y, (1, 0, 2, 3)), (c, 1, n * gh * gw))

    def _to_image(self, rows, n, grid):
        """(C, N*gH*gW) -> (N, C, gH, gW)."""
        xp = self.xp
        return xp.permute_dims(xp.reshape(rows, (rows.shape[0], n, *grid)), (1, 0, 2, 3))

    def _pool_shares(self, x, y, kernel, stride, padding, dilation):
        """hits / number of hits per window, (C, kH*kW, N*gH*gW): hits are the entries equal to the max."""
        xp = self.xp
        cols = self._windows(x, kernel, stride, padding, dilation, tuple(y.shape[2:]), -math.inf)
        hits = xp.astype(cols == self._as_rows(y), x.dtype)
        return hits / xp.sum(hits, axis=1, keepdims=True)
