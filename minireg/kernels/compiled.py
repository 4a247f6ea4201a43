"""NumPy kernel table that runs the Cython loops of ``minireg._ckernels`` where they apply.

A kernel takes the compiled path when every array is a plain ``numpy.ndarray`` of float32 or
float64, C-contiguous and non-empty, and the arrays it writes are writeable; anything else
(strided views, other dtypes, subclasses, empty arrays) goes to the reference implementation.
Arguments are already validated by the public methods of ``Kernels``.
"""

import numpy

from minireg.kernels.reference import Kernels

_FLOAT_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def _native(written, read=()):
    """True when the Cython loops accept these arrays (dtypes are already known to be equal)."""
    arrays = (*written, *read)
    for a in arrays:      # plain loops: this runs for every parameter of every optimizer step
        if type(a) is not numpy.ndarray or not a.flags.c_contiguous:
            return False
    for a in written:
        if not a.flags.writeable:
            return False
    return arrays[0].dtype in _FLOAT_DTYPES and arrays[0].size > 0


def compiled_module():
    """The build of ``minireg._ckernels`` for this CPU: ``_ckernels_avx2`` (the same loops with 256-bit
    vectors and hardware fused multiply-adds where the kernels call fma, the same results) where the
    CPU has AVX2 and FMA and that build exists (x86 only), else the baseline ``_ckernels``."""
    from minireg import _ckernels

    if _ckernels.cpu_has_avx2_fma():
        try:
            from minireg import _ckernels_avx2
        except ImportError:     # built before the AVX2 variant existed, or not on x86
            return _ckernels
        return _ckernels_avx2
    return _ckernels


def _dense_flat(a):
    """A 1-D view of a float32/float64 NumPy array in memory order when its elements fill one
    block in some axis order (C order, F order, a transposed conv output), else None. Arrays with
    the same strides get views that match element for element."""
    if type(a) is not numpy.ndarray or a.dtype not in _FLOAT_DTYPES or not a.size:
        return None
    if a.flags.c_contiguous:
        return a.reshape(-1)
    order = sorted(range(a.ndim), key=lambda i: -a.strides[i])
    view = a.transpose(order)
    return view.reshape(-1) if view.flags.c_contiguous else None


def _flat(a):
    # A C-contiguous array reshapes to 1-D without copying.
    return a.reshape(-1)


class CompiledKernels(Kernels):
    """``Kernels`` with Cython fast paths for contiguous float32/float64 NumPy arrays."""

    name = "compiled"

    def __init__(self, xp):
        super().__init__(xp)
        self._ck = compiled_module()

    def _l1_grad(self, g, w, alpha):
        if not _native((g,), (w,)):
            return super()._l1_grad(g, w, alpha)
        self._ck.l1_grad(_flat(g), _flat(w), alpha)
        return g

    def _l2_grad(self, g, w, alpha):
        if not _native((g,), (w,)):
            return super()._l2_grad(g, w, alpha)
        self._ck.l2_grad(_flat(g), _flat(w), alpha)
        return g

    def _elastic_net_grad(self, g, w, l1, l2):
        if not _native((g,), (w,)):
            return super()._elastic_net_grad(g, w, l1, l2)
        self._ck.elastic_net_grad(_flat(g), _flat(w), l1, l2)
        return g

    def _prox_l1(self, w, t):
        if not _native((w,)):
            return super()._prox_l1(w, t)
        self._ck.prox_l1(_flat(w), t)
        return w

    def _prox_l2(self, w, t):
        if not _native((w,)):
            return super()._prox_l2(w, t)
        self._ck.scale(_flat(w), 1 / (1 + t))
        return w

    def _prox_elastic_net(self, w, t1, t2):
        if not _native((w,)):
            return super()._prox_elastic_net(w, t1, t2)
        self._ck.prox_elastic_net(_flat(w), t1, 1 / (1 + t2))
        return w

    def _prox_group_lasso(self, w, t):
        if not _native((w,)):
            return super()._prox_group_lasso(w, t)
        self._ck.group_lasso_rows(w, t)
        return w

    def _clip(self, w, lo, hi):
        if not _native((w,)):
            return super()._clip(w, lo, hi)
        self._ck.clip(_flat(w), lo, hi)
        return w

    def _max_norm(self, w, max_value):
        if not _native((w,)):
            return super()._max_norm(w, max_value)
        self._ck.max_norm_rows(w, max_value)
        return w

    def _project_l1_ball(self, w, radius):
        if not _native((w,)):
            return super()._project_l1_ball(w, radius)
        # The sort is NumPy's (O(n log n), done only when w is outside the ball); the threshold
        # scan and the soft-threshold pass are compiled.
        u = numpy.abs(_flat(w))
        if u.sum() <= radius:
            return w
        u.sort()
        self._ck.prox_l1(_flat(w), self._ck.l1_ball_threshold(u, radius))
        return w

    def _sgd_prox_step(self, w, g, lr, l1, l2):
        if not _native((w,), (g,)):
            return super()._sgd_prox_step(w, g, lr, l1, l2)
        self._ck.sgd_prox_step(_flat(w), _flat(g), lr, lr * l1, 1 / (1 + lr * l2))
        return w

    def _adamw_prox_step(self, w, g, m, v, beta1, beta2, eps, coef):
        if not _native((w, m, v), (g,)):
            return super()._adamw_prox_step(w, g, m, v, beta1, beta2, eps, coef)
        self._ck.adamw_prox_step(
            _flat(w), _flat(g), _flat(m), _flat(v), beta1, beta2,
            coef.decay, coef.step_size, coef.inv_sqrt_bc2, eps, coef.threshold,
        )
        return w

    def _sgd_steps(self, ws, gs, bufs, lr, momentum, dampening, weight_decay, nesterov, first):
        # As _adamw_prox_steps: one Cython call, or (it wrote nothing) one dispatch per triple.
        if not self._ck.sgd_steps(ws, gs, bufs, lr, momentum, dampening, weight_decay, nesterov, first):
            for k, (w, g) in enumerate(zip(ws, gs)):
                triple = [w], [g], bufs[k:k + 1]
                if not self._ck.sgd_steps(*triple, lr, momentum, dampening, weight_decay, nesterov, first):
                    super()._sgd_steps(*triple, lr, momentum, dampening, weight_decay, nesterov, first)
        return ws

    def _adamw_prox_steps(self, ws, gs, ms, vs, beta1, beta2, eps, coef):
        # One Cython call for the whole list; it checks every array itself and, when one is not
        # for the loops, writes nothing and returns False: then each quadruple is dispatched alone.
        if not self._ck.adamw_prox_steps(ws, gs, ms, vs, beta1, beta2, coef.decay, coef.step_size,
                                         coef.inv_sqrt_bc2, eps, coef.threshold):
            return super()._adamw_prox_steps(ws, gs, ms, vs, beta1, beta2, eps, coef)
        return ws

    def surely_finite(self, arrays):
        # Exact: a bit test of every element in one Cython call (-1: an array it does not take).
        finite = self._ck.all_finite(arrays)
        return super().surely_finite(arrays) if finite < 0 else numpy.bool_(finite)

    def _mixture_nll(self, ws, means, log_precisions, log_mix):
        if not (_native((), (means, log_precisions, log_mix)) and 0 < means.shape[0] <= self._ck.MAX_MIXTURE_COMPONENTS
                and all(type(w) is numpy.ndarray for w in ws)):
            return super()._mixture_nll(ws, means, log_precisions, log_mix)
        # the weights as they are (1-D views; a copy only for a non-contiguous array), no concatenation
        nll, grads_w, d_means, d_log_precisions, d_log_mix = self._ck.mixture_nll(
            [numpy.ascontiguousarray(w).reshape(-1) for w in ws], means, log_precisions, log_mix)
        return (numpy.asarray(nll, dtype=means.dtype), tuple(g.reshape(w.shape) for g, w in zip(grads_w, ws)),
                d_means, d_log_precisions, d_log_mix)

    @staticmethod
    def _one_pass(kernel, x, *read, scalars=()):
        """``kernel(*read, x, out, *scalars)`` on 1-D views in memory order, into a new array ``out``
        with x's layout (a conv output is channel-major); None (then the caller takes the reference)
        unless x is dense and the other arrays are NumPy arrays with its strides."""
        flat = _dense_flat(x)
        if flat is None or any(type(a) is not numpy.ndarray or a.strides != x.strides for a in read):
            return None
        out = numpy.empty_like(x)
        kernel(*[_dense_flat(a) for a in read], flat, _dense_flat(out), *scalars)
        return out

    def _relu(self, x):
        y = self._one_pass(self._ck.relu, x)
        return super()._relu(x) if y is None else y

    def _relu_grad(self, gy, x):
        gx = self._one_pass(self._ck.relu_grad, x, gy)
        return super()._relu_grad(gy, x) if gx is None else gx

    def _tanh_grad(self, gy, y):
        gx = self._one_pass(self._ck.tanh_grad, y, gy)
        return super()._tanh_grad(gy, y) if gx is None else gx

    def _leaky_relu(self, x, slope):
        y = self._one_pass(self._ck.leaky_relu, x, scalars=(slope,))
        return super()._leaky_relu(x, slope) if y is None else y

    def _leaky_relu_slopes(self, x, slope):
        slopes = self._one_pass(self._ck.leaky_relu_slopes, x, scalars=(slope,))
        return super()._leaky_relu_slopes(x, slope) if slopes is None else slopes

    def _leaky_relu_grad(self, gy, x, slope):
        gx = self._one_pass(self._ck.leaky_relu_grad, x, gy, scalars=(slope,))
        return super()._leaky_relu_grad(gy, x, slope) if gx is None else gx

    def _im2col(self, x, kernel, stride, padding, dilation, grid, pad_value):
        if not (type(x) is numpy.ndarray and x.dtype in _FLOAT_DTYPES and x.size):
            return super()._im2col(x, kernel, stride, padding, dilation, grid, pad_value)
        n, c = x.shape[:2]
        cols = numpy.empty((c * kernel[0] * kernel[1], n * grid[0] * grid[1]), x.dtype)
        self._ck.im2col(x, cols, *kernel, *stride, *padding, *dilation, *grid, pad_value)
        return cols

    def _col2im(self, cols, image_size, kernel, stride, padding, dilation, grid):
        if not _native((), (cols,)):
            return super()._col2im(cols, image_size, kernel, stride, padding, dilation, grid)
        c, n = cols.shape[0] // (kernel[0] * kernel[1]), cols.shape[1] // (grid[0] * grid[1])
        image = numpy.empty((n, c, *image_size), cols.dtype)   # the kernel zeroes each plane
        self._ck.col2im(cols, image, *kernel, *stride, *padding, *dilation, *grid)
        return image

    def _max_pool(self, x, kernel, stride, padding, dilation, grid):
        if not (type(x) is numpy.ndarray and x.dtype in _FLOAT_DTYPES and x.size):
            return super()._max_pool(x, kernel, stride, padding, dilation, grid)
        y = numpy.empty((*x.shape[:2], *grid), x.dtype)
        self._ck.max_pool(x, y, *kernel, *stride, *padding, *dilation)
        return y

    def _max_pool_scatter(self, g, x, y, kernel, stride, padding, dilation):
        return self._pool_pass("max_pool_scatter", x, g, x, y, kernel, stride, padding, dilation)

    def _max_pool_gather(self, g, x, y, kernel, stride, padding, dilation):
        return self._pool_pass("max_pool_gather", y, g, x, y, kernel, stride, padding, dilation)

    def _pool_pass(self, name, like, g, x, y, kernel, stride, padding, dilation):
        """One of the two linear passes of max pooling's gradient, into a new array with the shape and
        memory layout of ``like`` (the kernel writes every entry). The scatter's output takes x's layout
        (channel-major after a conv): the ReLU gradient and the conv's weight gradient that read it
        next then run on matching, contiguous layouts instead of copying."""
        arrays = (g, x, y)
        if not (all(type(a) is numpy.ndarray for a in arrays) and x.dtype in _FLOAT_DTYPES and x.size
                and g.dtype == x.dtype == y.dtype):
            return getattr(super(), f"_{name}")(g, x, y, kernel, stride, padding, dilation)
        out = numpy.empty_like(like)
        getattr(self._ck, name)(g, x, y, out, *kernel, *stride, *padding, *dilation)
        return out
