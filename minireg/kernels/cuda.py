"""CuPy kernel table: one fused CUDA pass per kernel for float32/float64 arrays.

Imported lazily by the CuPy backend only (it imports cupy). ``CupyKernels(xp)`` takes
``array_api_compat.cupy``, whose arrays are plain ``cupy.ndarray``. Elementwise kernels are
``cupy.ElementwiseKernel`` objects (any strides; the type placeholder ``T`` is fixed by the
arrays, and Python-float scalars are cast to it, like NumPy's Python scalars). Row kernels are a
``cupy.ReductionKernel`` for the row norms plus an elementwise rescale. Other dtypes, and
``project_l1_ball_`` (sort + cumulative_sum already run on the device), use the reference.
Kernels are built on first use and cached for the process; CuPy compiles them per dtype and
device on their first call.
"""

import functools

import cupy

from minireg.kernels.reference import Kernels

_FLOAT_DTYPES = (cupy.dtype(cupy.float32), cupy.dtype(cupy.float64))

_PREAMBLE = r"""
template <typename T> __device__ T minireg_clip(T x, T lo, T hi) {
    return x < lo ? lo : (x > hi ? hi : x);  // NaN passes through, as numpy.clip
}
template <typename T> __device__ T minireg_soft(T x, T t) {
    return x - minireg_clip(x, -t, t);  // = sign(x) * max(|x| - t, 0), NaN-propagating
}
template <typename T> __device__ T minireg_sign(T x) {
    return x > 0 ? T(1) : (x < 0 ? T(-1) : x);  // sign(0) = 0, NaN stays NaN
}
"""

# name: (input params, output params written in place, loop body)
_ELEMENTWISE = {
    "l1_grad": ("T w, T alpha", "T g", "g += alpha * minireg_sign(w)"),
    "l2_grad": ("T w, T alpha", "T g", "g += alpha * w"),
    "elastic_net_grad": ("T w, T l1, T l2", "T g", "g += l1 * minireg_sign(w) + l2 * w"),
    "prox_l1": ("T t", "T w", "w = minireg_soft(w, t)"),
    "scale": ("T factor", "T w", "w *= factor"),
    "prox_elastic_net": ("T t, T factor", "T w", "w = minireg_soft(w, t) * factor"),
    "clip": ("T lo, T hi", "T w", "w = minireg_clip(w, lo, hi)"),
    # norm has shape (rows, 1) and broadcasts along each row.
    "group_lasso_scale": ("T norm, T t", "T w", "w *= norm > t ? T(1) - t / norm : T(0)"),
    "max_norm_scale": ("T norm, T c", "T w", "if (norm > c) w *= c / norm"),
    "sgd_prox_step": (
        "T g, T lr, T t, T factor", "T w", "w = minireg_soft(w - lr * g, t) * factor"
    ),
    "adamw_prox_step": (
        "T g, T beta1, T beta2, T decay, T step_size, T inv_sqrt_bc2, T eps, T t",
        "T w, T m, T v",
        """
        m = beta1 * m + (T(1) - beta1) * g;
        v = beta2 * v + (T(1) - beta2) * (g * g);
        w = minireg_soft(w * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps), t);
        """,
    ),
}


# Out-of-place kernels behind the CuPy backend's array namespace (minireg.backend.cupy_backend):
# array_api_compat's CuPy clip and sign use masked assignment, whose mask count CuPy reads back to
# the host (a sync per bound); these are one pass each with no sync.
# name: (input params, output param, body)
_OUT_OF_PLACE = {
    "clip": ("T x, T lo, T hi", "T y", "y = minireg_clip(x, lo, hi)"),
    "clip_min": ("T x, T lo", "T y", "y = x < lo ? lo : x"),     # NaN passes through
    "clip_max": ("T x, T hi", "T y", "y = x > hi ? hi : x"),
    "sign": ("T x", "T y", "y = minireg_sign(x)"),
}


@functools.cache
def _out_of_place_kernel(name):
    in_params, out_params, body = _OUT_OF_PLACE[name]
    return cupy.ElementwiseKernel(in_params, out_params, body, name=f"minireg_{name}", preamble=_PREAMBLE)


def is_float_array(x):
    """Whether ``x`` is a float32/float64 CuPy array (what the kernels here are compiled for)."""
    return type(x) is cupy.ndarray and x.dtype in _FLOAT_DTYPES


def clip(x, lo, hi):
    """``clip(x, lo, hi)`` for a float32/float64 CuPy array and Python-number bounds (either may be
    None); a new array of x's dtype, NaN passing through as in numpy.clip."""
    if lo is None and hi is None:
        return x.copy()
    if hi is None:
        return _out_of_place_kernel("clip_min")(x, float(lo))
    if lo is None:
        return _out_of_place_kernel("clip_max")(x, float(hi))
    return _out_of_place_kernel("clip")(x, float(lo), float(hi))


def sign(x):
    """sign(x) for a float32/float64 CuPy array: -1, 0 or 1, and NaN for NaN (the array API's rule)."""
    return _out_of_place_kernel("sign")(x)


@functools.cache
def _kernel(name):
    in_params, out_params, body = _ELEMENTWISE[name]
    return cupy.ElementwiseKernel(
        in_params, out_params, body, name=f"minireg_{name}", preamble=_PREAMBLE, no_return=True
    )


@functools.cache
def _row_norm_kernel():
    return cupy.ReductionKernel(
        "T x", "T norm", "x * x", "a + b", "norm = sqrt(a)", "0", name="minireg_row_norm"
    )


def _native(*arrays):
    """True when the CUDA kernels apply (dtypes are already known to be equal)."""
    return all(type(a) is cupy.ndarray for a in arrays) and arrays[0].dtype in _FLOAT_DTYPES


class CupyKernels(Kernels):
    """``Kernels`` with fused CUDA kernels for float32/float64 CuPy arrays."""

    name = "cupy"

    def _l1_grad(self, g, w, alpha):
        if not _native(g, w):
            return super()._l1_grad(g, w, alpha)
        _kernel("l1_grad")(w, alpha, g)
        return g

    def _l2_grad(self, g, w, alpha):
        if not _native(g, w):
            return super()._l2_grad(g, w, alpha)
        _kernel("l2_grad")(w, alpha, g)
        return g

    def _elastic_net_grad(self, g, w, l1, l2):
        if not _native(g, w):
            return super()._elastic_net_grad(g, w, l1, l2)
        _kernel("elastic_net_grad")(w, l1, l2, g)
        return g

    def _prox_l1(self, w, t):
        if not _native(w):
            return super()._prox_l1(w, t)
        _kernel("prox_l1")(t, w)
        return w

    def _prox_l2(self, w, t):
        if not _native(w):
            return super()._prox_l2(w, t)
        _kernel("scale")(1 / (1 + t), w)
        return w

    def _prox_elastic_net(self, w, t1, t2):
        if not _native(w):
            return super()._prox_elastic_net(w, t1, t2)
        _kernel("prox_elastic_net")(t1, 1 / (1 + t2), w)
        return w

    def _prox_group_lasso(self, w, t):
        if not _native(w):
            return super()._prox_group_lasso(w, t)
        norms = _row_norm_kernel()(w, axis=1, keepdims=True)
        _kernel("group_lasso_scale")(norms, t, w)
        return w

    def _clip(self, w, lo, hi):
        if not _native(w):
            return super()._clip(w, lo, hi)
        _kernel("clip")(lo, hi, w)
        return w

    def _max_norm(self, w, max_value):
        if not _native(w):
            return super()._max_norm(w, max_value)
        norms = _row_norm_kernel()(w, axis=1, keepdims=True)
        _kernel("max_norm_scale")(norms, max_value, w)
        return w

    def _sgd_prox_step(self, w, g, lr, l1, l2):
        if not _native(w, g):
            return super()._sgd_prox_step(w, g, lr, l1, l2)
        _kernel("sgd_prox_step")(g, lr, lr * l1, 1 / (1 + lr * l2), w)
        return w

    def _adamw_prox_step(self, w, g, m, v, beta1, beta2, eps, coef):
        if not _native(w, g, m, v):
            return super()._adamw_prox_step(w, g, m, v, beta1, beta2, eps, coef)
        _kernel("adamw_prox_step")(
            g, beta1, beta2, coef.decay, coef.step_size, coef.inv_sqrt_bc2, eps, coef.threshold,
            w, m, v,
        )
        return w
