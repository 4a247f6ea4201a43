"""Compiled regularization kernels: fused float32/float64 loops, in place, OpenMP when available.

Elementwise kernels take 1-D C-contiguous memoryviews (callers pass ``a.reshape(-1)``); row
kernels take 2-D C-contiguous ones. Arrays that are only read are ``const`` so read-only NumPy
arrays are accepted. Scalars arrive as Python floats and are rounded once to the array's
precision, as NumPy does with Python scalars (NEP 50), so results match the reference kernels.
Arguments are validated in ``minireg.kernels``, which also sends empty arrays to the reference
(nothing to compute); these functions trust their arguments and expect non-empty arrays.
"""

import numpy

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY, NAN, exp, log, logf, sqrt, sqrtf

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define MINIREG_OPENMP 1
    #else
    #define MINIREG_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    const int MINIREG_OPENMP
    int omp_get_max_threads() noexcept nogil


cdef extern from *:
    """
    /* Whether the CPU (and the OS) support AVX2: then minireg.kernels.compiled uses the AVX2 build. */
    static int minireg_cpu_has_avx2(void) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    #else
        return 0;
    #endif
    }
    """
    int minireg_cpu_has_avx2() noexcept nogil


def cpu_has_avx2():
    """True when this CPU runs AVX2 code (then the ``_ckernels_avx2`` build applies)."""
    return bool(minireg_cpu_has_avx2())


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* exp(x) for x <= 0 as plain arithmetic, so loops calling it vectorize: x = n ln2 + r with
       |r| <= ln2/2, exp(r) by its Taylor polynomial (degree 7 in float: relative error < 1e-8;
       degree 13 in double: < 1e-17), 2^n from the bits of the rounding sum t = x log2(e) + 1.5*2^k.
       x is clamped at the smallest normal exponent, where exp(x) ~ 1e-38 (1e-308) is negligible. */
    static inline float minireg_exp_nonpositive_f(float x) {
        x = x < -87.0f ? -87.0f : x;
        float t = x * 1.44269504088896341f + 12582912.0f;
        float n = t - 12582912.0f;
        float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
        float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120
                  + r * (1.0f / 720 + r * (1.0f / 5040)))))));
        int32_t bits; float scale;
        memcpy(&bits, &t, 4);
        bits = (int32_t)((uint32_t)(bits + 127) << 23);
        memcpy(&scale, &bits, 4);
        return p * scale;
    }
    static inline double minireg_exp_nonpositive_d(double x) {
        x = x < -708.0 ? -708.0 : x;
        double t = x * 1.4426950408889634 + 6755399441055744.0;
        double n = t - 6755399441055744.0;
        double r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
        double p = 1.0 / 6227020800.0;
        static const double inverse_factorials[13] = {1.0 / 479001600, 1.0 / 39916800, 1.0 / 3628800,
            1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0};
        for (int k = 0; k < 13; k++) p = p * r + inverse_factorials[k];
        int64_t bits; double scale;
        memcpy(&bits, &t, 8);
        bits = (int64_t)((uint64_t)(bits + 1023) << 52);
        memcpy(&scale, &bits, 8);
        return p * scale;
    }
    """
    float minireg_exp_nonpositive_f(float x) noexcept nogil
    double minireg_exp_nonpositive_d(double x) noexcept nogil

# Below this many elements the loop stays serial. A serial pass over 1M float32 takes ~0.2 ms, so
# threads only pay for bulk arrays; for parameter-sized arrays (optimizer steps) a parallel region
# cost far more than it saved: on a busy 2-vCPU machine libgomp's spin-waiting made a 65k-element
# AdamW step take 8 ms instead of 40 us.
cdef enum:
    PARALLEL_MIN_SIZE = 1 << 20


def openmp_info():
    """``{"openmp": built with OpenMP, "max_threads": threads a parallel loop may use}``."""
    return {"openmp": bool(MINIREG_OPENMP), "max_threads": omp_get_max_threads()}


cdef inline floating _clip(floating x, floating lo, floating hi) noexcept nogil:
    # Two selects of this exact form compile to minps/maxps, whose operand order lets NaN
    # pass through as in numpy.clip (a nested select compiles to compare-and-blend sequences).
    x = hi if x > hi else x
    return lo if x < lo else x


cdef inline floating _soft(floating x, floating t) noexcept nogil:
    # sign(x) * max(|x| - t, 0) written as x - clip(x, -t, t): same values, compiles to
    # min/max without branches, and NaN propagates (fmax-style forms would turn NaN into 0).
    return x - _clip(x, -t, t)


cdef inline floating _sign(floating x) noexcept nogil:
    # sign(0) = 0 (minimum-norm subgradient); NaN stays NaN, as numpy.sign. No branch on the sign:
    # one mispredicted branch per element made l1_grad_ 5x slower on random weights.
    cdef floating s = <floating>(x > 0) - <floating>(x < 0)
    return x if x != x else s


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _exp_nonpositive(floating x) noexcept nogil:
    if floating is float:
        return minireg_exp_nonpositive_f(x)
    else:
        return minireg_exp_nonpositive_d(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline double _sum_squares(const floating* x, Py_ssize_t n) noexcept nogil:
    # Eight partial sums in a fixed order: short dependency chains keep the loop bandwidth-bound,
    # and the result does not depend on the number of threads. Accumulated in double.
    cdef double acc[8]
    cdef Py_ssize_t j, k, tail = n - n % 8
    for k in range(8):
        acc[k] = 0
    for j in range(0, tail, 8):
        for k in range(8):
            acc[k] += <double>x[j + k] * x[j + k]
    for j in range(tail, n):
        acc[0] += <double>x[j] * x[j]
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


def l1_grad(floating[::1] g, const floating[::1] w, double alpha):
    """g += alpha * sign(w)"""
    cdef Py_ssize_t i, n = g.shape[0]
    cdef floating a = <floating>alpha
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n >= PARALLEL_MIN_SIZE):
        g[i] += a * _sign(w[i])


def l2_grad(floating[::1] g, const floating[::1] w, double alpha):
    """g += alpha * w"""
    cdef Py_ssize_t i, n = g.shape[0]
    cdef floating a = <floating>alpha
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n >= PARALLEL_MIN_SIZE):
        g[i] += a * w[i]


def elastic_net_grad(floating[::1] g, const floating[::1] w, double l1, double l2):
    """g += l1 * sign(w) + l2 * w"""
    cdef Py_ssize_t i, n = g.shape[0]
    cdef floating a1 = <floating>l1, a2 = <floating>l2
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n >= PARALLEL_MIN_SIZE):
        g[i] += a1 * _sign(w[i]) + a2 * w[i]


def prox_l1(floating[::1] w, double t):
    """w = sign(w) * max(|w| - t, 0)"""
    cdef Py_ssize_t i, n = w.shape[0]
    cdef floating tt = <floating>t
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n >= PARALLEL_MIN_SIZE):
        w[i] = _soft(w[i], tt)


def scale(floating[::1] w, double factor):
    """w *= factor  (prox of t/2*||w||^2 with factor = 1/(1+t))"""
    cdef Py_ssize_t i, n = w.shape[0]
    cdef floating s = <floating>factor
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n >= PARALLEL_MIN_SIZE):
        w[i] *= s


def prox_elastic_net(floating[::1] w, double t1, double factor):
    """w = soft(w, t1) * factor  (factor = 1/(1+t2))"""
    cdef Py_ssize_t i, n = w.shape[0]
    cdef floating tt = <floating>t1, s = <floating>factor
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n >= PARALLEL_MIN_SIZE):
        w[i] = _soft(w[i], tt) * s


def clip(floating[::1] w, double lo, double hi):
    """w = min(max(w, lo), hi)"""
    cdef Py_ssize_t i, n = w.shape[0]
    cdef floating a = <floating>lo, b = <floating>hi
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n >= PARALLEL_MIN_SIZE):
        w[i] = _clip(w[i], a, b)


def sgd_prox_step(floating[::1] w, const floating[::1] g, double lr, double t1, double factor):
    """w = soft(w - lr * g, t1) * factor  (t1 = lr*l1, factor = 1/(1+lr*l2))"""
    cdef Py_ssize_t i, n = w.shape[0]
    cdef floating step = <floating>lr, tt = <floating>t1, s = <floating>factor
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n >= PARALLEL_MIN_SIZE):
        w[i] = _soft(w[i] - step * g[i], tt) * s


def adamw_prox_step(floating[::1] w, const floating[::1] g, floating[::1] m, floating[::1] v,
                    double beta1, double beta2, double decay, double step_size,
                    double inv_sqrt_bc2, double eps, double t1):
    """One AdamW step then soft-thresholding (coefficients from reference.adamw_coefficients):

    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
    w = soft(w*decay - step_size*m / (sqrt(v)*inv_sqrt_bc2 + eps), t1)
    """
    cdef Py_ssize_t i, n = w.shape[0]
    cdef floating b1 = <floating>beta1, c1 = <floating>(1 - beta1)
    cdef floating b2 = <floating>beta2, c2 = <floating>(1 - beta2)
    cdef floating d = <floating>decay, a = <floating>step_size, r = <floating>inv_sqrt_bc2
    cdef floating e = <floating>eps, tt = <floating>t1
    for i in prange(n, nogil=True, schedule="static", use_threads_if=n >= PARALLEL_MIN_SIZE):
        m[i] = b1 * m[i] + c1 * g[i]
        v[i] = b2 * v[i] + c2 * (g[i] * g[i])
        w[i] = _soft(w[i] * d - a * m[i] / (_sqrt(v[i]) * r + e), tt)


def group_lasso_rows(floating[:, ::1] w, double t):
    """Each row: row *= max(0, 1 - t / ||row||_2); a row with norm <= t becomes 0."""
    cdef Py_ssize_t r, j, rows = w.shape[0], cols = w.shape[1]
    cdef double norm, factor
    cdef floating s
    for r in prange(rows, nogil=True, schedule="static",
                    use_threads_if=rows * cols >= PARALLEL_MIN_SIZE):
        norm = sqrt(_sum_squares(&w[r, 0], cols))
        factor = 1 - t / norm if norm > t else 0
        if factor != 1:
            s = <floating>factor
            for j in range(cols):
                w[r, j] *= s


def max_norm_rows(floating[:, ::1] w, double max_value):
    """Each row with ||row||_2 > max_value: row *= max_value / ||row||_2; other rows are only read."""
    cdef Py_ssize_t r, j, rows = w.shape[0], cols = w.shape[1]
    cdef double norm
    cdef floating s
    for r in prange(rows, nogil=True, schedule="static",
                    use_threads_if=rows * cols >= PARALLEL_MIN_SIZE):
        norm = sqrt(_sum_squares(&w[r, 0], cols))
        if norm > max_value:
            s = <floating>(max_value / norm)
            for j in range(cols):
                w[r, j] *= s


def l1_ball_threshold(const floating[::1] u, double radius):
    """theta = max(0, max_k (sum of the k largest u - radius) / k) for u = |w| sorted ascending.

    The Duchi et al. (2008) threshold: the partial averages rise up to the support size rho and
    fall after it, so their maximum is the usual (cumsum[rho] - radius) / rho. Accumulated in double.
    """
    cdef Py_ssize_t k, n = u.shape[0]
    cdef double total = 0, theta = 0
    with nogil:
        for k in range(1, n + 1):
            total += u[n - k]
            theta = max(theta, (total - radius) / k)
    return theta


# -- mixture-of-Gaussians prior (soft weight-sharing) ---------------------------------------------

cdef enum:
    MIXTURE_MAX_COMPONENTS = 64    # the components' scalars and work arrays live on the stack
    MIXTURE_BLOCK = 64             # weights per block
    MIXTURE_PARALLEL_MIN_PAIRS = 1 << 18   # (weights x components) below which one thread does it all

cdef double LOG_2PI = 1.8378770664093453
MAX_MIXTURE_COMPONENTS = MIXTURE_MAX_COMPONENTS   # for minireg.kernels.compiled


cdef double _mixture_range(const floating* w, Py_ssize_t n, const floating* mu, const floating* lam,
                           const floating* c, Py_ssize_t J, floating* grad_w, double* stats) noexcept nogil:
    """mixture_nll's pass over w[0:n] (see there); adds to stats (3 x J) and returns -sum of logsumexp.

    Weights go in blocks of MIXTURE_BLOCK (the last one padded with zero responsibilities), with the
    components in the outer loop, so every inner loop runs over contiguous weights with a constant
    trip count and vectorizes (exp is a polynomial, _exp_nonpositive); the per-component sums are
    kept per lane (in the weights' precision) and added up in double at the end.
    """
    cdef Py_ssize_t blk, i0, b, j, k, nb
    cdef floating e[MIXTURE_MAX_COMPONENTS * MIXTURE_BLOCK]
    cdef floating lanes[3 * MIXTURE_MAX_COMPONENTS * MIXTURE_BLOCK]
    cdef floating x[MIXTURE_BLOCK]
    cdef floating m[MIXTURE_BLOCK]
    cdef floating s[MIXTURE_BLOCK]
    cdef floating g[MIXTURE_BLOCK]
    cdef floating *ej
    cdef floating *l0
    cdef floating *l1
    cdef floating *l2
    cdef floating d, a, r, rd, muj, lamj, cj
    cdef double total = 0, acc
    for b in range(3 * J * MIXTURE_BLOCK):
        lanes[b] = 0
    for blk in range((n + MIXTURE_BLOCK - 1) // MIXTURE_BLOCK):
        i0 = blk * MIXTURE_BLOCK
        nb = min(<Py_ssize_t>MIXTURE_BLOCK, n - i0)
        for b in range(MIXTURE_BLOCK):
            x[b] = w[i0 + b] if b < nb else 0
            m[b] = -INFINITY
            s[b] = 0
            g[b] = 0
        for j in range(J):     # m = max_j a_j
            muj, lamj, cj = mu[j], <floating>0.5 * lam[j], c[j]
            for b in range(MIXTURE_BLOCK):
                d = x[b] - muj
                a = cj - lamj * d * d
                m[b] = a if a > m[b] else m[b]
        for j in range(J):     # e_j = exp(a_j - m), s = sum_j e_j
            muj, lamj, cj, ej = mu[j], <floating>0.5 * lam[j], c[j], &e[j * MIXTURE_BLOCK]
            for b in range(MIXTURE_BLOCK):
                d = x[b] - muj
                ej[b] = _exp_nonpositive(cj - lamj * d * d - m[b])
                s[b] = s[b] + ej[b]
        for b in range(MIXTURE_BLOCK):
            s[b] = (1 / s[b]) if b < nb else 0      # padding: responsibilities 0
        for j in range(J):     # r_j = e_j / s; per-lane sums of r, r d, r d^2
            muj, lamj, ej = mu[j], lam[j], &e[j * MIXTURE_BLOCK]
            l0 = &lanes[3 * j * MIXTURE_BLOCK]
            l1, l2 = l0 + MIXTURE_BLOCK, l0 + 2 * MIXTURE_BLOCK
            for b in range(MIXTURE_BLOCK):
                d = x[b] - muj
                r = ej[b] * s[b]
                rd = r * d
                g[b] = g[b] + rd * lamj
                l0[b] = l0[b] + r
                l1[b] = l1[b] + rd
                l2[b] = l2[b] + rd * d
        for b in range(nb):
            grad_w[i0 + b] = g[b]
            total += m[b] - _log(s[b])      # s holds 1 / sum_j e_j here
    for j in range(J):
        for k in range(3):
            acc = 0
            for b in range(MIXTURE_BLOCK):
                acc += lanes[(3 * j + k) * MIXTURE_BLOCK + b]
            stats[k * J + j] += acc
    return -total


def mixture_nll(const floating[::1] w, const floating[::1] means, const floating[::1] log_precisions,
                const floating[::1] log_mix, floating[::1] grad_w):
    """Negative log-likelihood of the weights under a 1-D Gaussian mixture, and its gradients, in one pass.

    a_ij = log_mix_j + (gamma_j - log 2pi)/2 - lambda_j (w_i - mu_j)^2 / 2 with lambda_j = exp(gamma_j),
    r_ij = softmax_j a_ij. Writes grad_w[i] = sum_j r_ij lambda_j (w_i - mu_j), the gradient of the
    value, and returns (-sum_i logsumexp_j a_ij, stats) with the float64 array (3, J)
    stats[k, j] = sum_i r_ij (w_i - mu_j)^k for k = 0, 1, 2, from which the caller forms the
    gradients with respect to the components' parameters (all sums end in double). At most MIXTURE_MAX_COMPONENTS components.
    With OpenMP, large arrays are split into one contiguous chunk per thread (fixed chunks: the
    result does not depend on scheduling, only on the thread count).
    """
    cdef Py_ssize_t t, j, n = w.shape[0], J = means.shape[0]
    cdef int chunks = omp_get_max_threads() if n * J >= MIXTURE_PARALLEL_MIN_PAIRS else 1
    cdef Py_ssize_t size = (n + chunks - 1) // chunks
    cdef floating mu[MIXTURE_MAX_COMPONENTS]
    cdef floating lam[MIXTURE_MAX_COMPONENTS]
    cdef floating c[MIXTURE_MAX_COMPONENTS]
    partial = numpy.zeros((chunks, 3 * J + 1))
    cdef double[:, ::1] parts = partial
    for j in range(J):
        mu[j] = means[j]
        lam[j] = <floating>exp(log_precisions[j])
        c[j] = <floating>(log_mix[j] + 0.5 * (log_precisions[j] - LOG_2PI))
    for t in prange(chunks, nogil=True, schedule="static", num_threads=chunks, use_threads_if=chunks > 1):
        if t * size < n:
            parts[t, 3 * J] = _mixture_range(&w[t * size], min(size, n - t * size), mu, lam, c, J,
                                             &grad_w[t * size], &parts[t, 0])
    totals = partial.sum(axis=0)
    return totals[3 * J], totals[:3 * J].reshape(3, J)


# -- convolution columns (the layout of minireg.functional_conv) ----------------------------------

cdef inline void _window_range(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size, Py_ssize_t grid,
                               Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """The grid positions g in [lo, hi) whose pixel g * stride + offset lies inside [0, size)."""
    lo[0] = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi[0] = 0 if offset > size - 1 else (size - 1 - offset) // stride + 1
    hi[0] = min(hi[0], grid)
    lo[0] = min(lo[0], hi[0])


def im2col(const floating[:, :, :, :] x, floating[:, ::1] cols, Py_ssize_t kh, Py_ssize_t kw,
           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t gh, Py_ssize_t gw, double pad_value):
    """cols[(c*kh + i)*kw + j, (n*gh + y)*gw + g] = x[n, c, y*sh + i*dh - ph, g*sw + j*dw - pw], or
    pad_value where that pixel is outside x. x may have any strides (e.g. a transposed view)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t r, c, i, j, n, y, g, iy, ox, col, lo, hi
    cdef floating pad = <floating>pad_value
    for r in prange(C * kh * kw, nogil=True, schedule="static",
                    use_threads_if=cols.shape[0] * cols.shape[1] >= PARALLEL_MIN_SIZE):
        c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
        ox = j * dw - pw
        _window_range(ox, sw, W, gw, &lo, &hi)
        for n in range(N):
            for y in range(gh):
                iy = y * sh + i * dh - ph
                col = (n * gh + y) * gw
                if iy < 0 or iy >= H:
                    for g in range(gw):
                        cols[r, col + g] = pad
                    continue
                for g in range(lo):
                    cols[r, col + g] = pad
                for g in range(lo, hi):
                    cols[r, col + g] = x[n, c, iy, g * sw + ox]
                for g in range(hi, gw):
                    cols[r, col + g] = pad


def col2im(const floating[:, ::1] cols, floating[:, :, :, ::1] image, Py_ssize_t kh, Py_ssize_t kw,
           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t gh, Py_ssize_t gw):
    """The adjoint of im2col: image[n, c, y*sh + i*dh - ph, g*sw + j*dw - pw] += cols[(c*kh + i)*kw + j,
    (n*gh + y)*gw + g] for every pixel inside the image (the caller zeroes it). One channel per
    thread, so no two threads write the same pixel."""
    cdef Py_ssize_t N = image.shape[0], C = image.shape[1], H = image.shape[2], W = image.shape[3]
    cdef Py_ssize_t r, c, i, j, n, y, g, iy, ox, col, lo, hi
    for c in prange(C, nogil=True, schedule="static",
                    use_threads_if=cols.shape[0] * cols.shape[1] >= PARALLEL_MIN_SIZE):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                ox = j * dw - pw
                _window_range(ox, sw, W, gw, &lo, &hi)
                for n in range(N):
                    for y in range(gh):
                        iy = y * sh + i * dh - ph
                        if iy < 0 or iy >= H:
                            continue
                        col = (n * gh + y) * gw
                        for g in range(lo, hi):
                            image[n, c, iy, g * sw + ox] += cols[r, col + g]


# -- max pooling (windows padded with -inf; tied maxima share the gradient evenly) -----------------
# The helpers take a pointer to one (H, W) plane and its strides in elements: passing memoryviews
# to a cdef function costs a reference count update per call.

cdef struct Plane:
    Py_ssize_t H, W, row, col      # size and strides (elements) of one image plane


cdef inline floating _window_max(const floating* x, Plane p, Py_ssize_t y0, Py_ssize_t x0, Py_ssize_t kh,
                                 Py_ssize_t kw, Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    """Max over the window at (y0, x0) (pixels outside count as -inf; NaN wins, as numpy.max)."""
    cdef Py_ssize_t i, j, iy, ix
    cdef floating m = -INFINITY, v
    cdef bint nan = False
    for i in range(kh):
        iy = y0 + i * dh
        if iy < 0 or iy >= p.H:
            continue
        for j in range(kw):
            ix = x0 + j * dw
            if 0 <= ix < p.W:
                v = x[iy * p.row + ix * p.col]
                m = v if v > m else m      # no data-dependent branch: a max instruction
                nan = nan | (v != v)
    return NAN if nan else m


cdef inline Py_ssize_t _window_hits(const floating* x, Plane p, Py_ssize_t y0, Py_ssize_t x0, Py_ssize_t kh,
                                    Py_ssize_t kw, Py_ssize_t dh, Py_ssize_t dw, floating m) noexcept nogil:
    """How many window entries equal the max m; padding entries (-inf) count when m is -inf."""
    cdef Py_ssize_t i, j, iy, ix, hits = 0
    for i in range(kh):
        iy = y0 + i * dh
        for j in range(kw):
            ix = x0 + j * dw
            if 0 <= iy < p.H and 0 <= ix < p.W:
                hits += x[iy * p.row + ix * p.col] == m
            else:
                hits += m == -INFINITY
    return hits


cdef inline Plane _plane(const floating[:, :, :, :] x) noexcept nogil:
    cdef Plane p
    p.H, p.W = x.shape[2], x.shape[3]
    p.row, p.col = x.strides[2] // <Py_ssize_t>sizeof(floating), x.strides[3] // <Py_ssize_t>sizeof(floating)
    return p


cdef struct Window:
    Py_ssize_t kh, kw, sh, sw, ph, pw, dh, dw


cdef void _pool_plane_2x2(int mode, const floating* g, Plane pg, const floating* x, Plane px, const floating* y,
                          Plane py, floating* out, Plane po) noexcept nogil:
    """_pool_plane for 2x2 windows with stride 2 (MaxPool2d(2)): constant trip counts let the
    compiler unroll the window loops, which makes this case several times faster than the general
    loops. Rows of x, g and out are read through row pointers (the column stride is kept general)."""
    cdef Py_ssize_t oy, ox, a, b
    cdef const floating* x0
    cdef const floating* x1
    cdef floating m, v00, v01, v10, v11, share, hits, h00, h01, h10, h11
    for oy in range(py.H):
        x0, x1 = x + 2 * oy * px.row, x + (2 * oy + 1) * px.row
        for ox in range(py.W):
            a, b = 2 * ox * px.col, (2 * ox + 1) * px.col
            v00, v01, v10, v11 = x0[a], x0[b], x1[a], x1[b]
            if mode == 0:
                m = v00 if v00 > v01 else v01
                m = v10 if v10 > m else m
                m = v11 if v11 > m else m
                out[oy * po.row + ox * po.col] = NAN if (v00 != v00) | (v01 != v01) | (v10 != v10) | (v11 != v11) else m
                continue
            m = y[oy * py.row + ox * py.col]
            h00, h01, h10, h11 = v00 == m, v01 == m, v10 == m, v11 == m
            hits = h00 + h01 + h10 + h11
            if mode == 1:
                share = g[oy * pg.row + ox * pg.col] / hits
                out[2 * oy * po.row + 2 * ox * po.col] += share * h00
                out[2 * oy * po.row + (2 * ox + 1) * po.col] += share * h01
                out[(2 * oy + 1) * po.row + 2 * ox * po.col] += share * h10
                out[(2 * oy + 1) * po.row + (2 * ox + 1) * po.col] += share * h11
            else:
                out[oy * po.row + ox * po.col] = (
                    g[2 * oy * pg.row + 2 * ox * pg.col] * h00 + g[2 * oy * pg.row + (2 * ox + 1) * pg.col] * h01
                    + g[(2 * oy + 1) * pg.row + 2 * ox * pg.col] * h10
                    + g[(2 * oy + 1) * pg.row + (2 * ox + 1) * pg.col] * h11) / hits


cdef void _pool_plane(int mode, const floating* g, Plane pg, const floating* x, Plane px, const floating* y,
                      Plane py, floating* out, Plane po, Window w) noexcept nogil:
    """One (n, c) plane of max_pool (mode 0: out = y), max_pool_scatter (1) or max_pool_gather (2).
    A function of its own so that every pointer and size is a local the compiler keeps in registers
    (in the parallel loop's body they are shared variables, reloaded after every store)."""
    cdef Py_ssize_t oy, ox, i, j, iy, ix, y0, x0, hits
    cdef floating m, share, total
    if (w.kh == 2 and w.kw == 2 and w.sh == 2 and w.sw == 2 and w.ph == 0 and w.pw == 0
            and w.dh == 1 and w.dw == 1):
        _pool_plane_2x2(mode, g, pg, x, px, y, py, out, po)
        return
    for oy in range(py.H):
        for ox in range(py.W):
            y0, x0 = oy * w.sh - w.ph, ox * w.sw - w.pw
            if mode == 0:
                out[oy * po.row + ox * po.col] = _window_max(x, px, y0, x0, w.kh, w.kw, w.dh, w.dw)
                continue
            m = y[oy * py.row + ox * py.col]
            hits = _window_hits(x, px, y0, x0, w.kh, w.kw, w.dh, w.dw, m)
            share = g[oy * pg.row + ox * pg.col] / hits if mode == 1 else 0
            total = 0
            for i in range(w.kh):
                iy = y0 + i * w.dh
                if iy < 0 or iy >= px.H:
                    continue
                for j in range(w.kw):
                    ix = x0 + j * w.dw
                    if 0 <= ix < px.W:    # branch-free in the data (which entries are maxima)
                        if mode == 1:
                            out[iy * po.row + ix * po.col] += share * (x[iy * px.row + ix * px.col] == m)
                        else:
                            total = total + g[iy * pg.row + ix * pg.col] * (x[iy * px.row + ix * px.col] == m)
            if mode == 2:
                out[oy * po.row + ox * po.col] = total / hits


cdef void _pool(int mode, const floating[:, :, :, :] g, const floating[:, :, :, :] x,
                const floating[:, :, :, :] y, floating[:, :, :, ::1] out, Window w) noexcept nogil:
    cdef Py_ssize_t q, n, c, C = x.shape[1]
    cdef Plane px = _plane(x), py = _plane(y), pg = _plane(g), po
    po.H, po.W, po.row, po.col = out.shape[2], out.shape[3], out.shape[3], 1
    cdef bint parallel = x.shape[0] * C * px.H * px.W >= PARALLEL_MIN_SIZE // 8
    for q in prange(x.shape[0] * C, schedule="static", use_threads_if=parallel):
        n, c = q // C, q % C
        _pool_plane(mode, &g[n, c, 0, 0], pg, &x[n, c, 0, 0], px, &y[n, c, 0, 0], py, &out[n, c, 0, 0], po, w)


cdef inline Window _window(Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                           Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    cdef Window w
    w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.dh, w.dw = kh, kw, sh, sw, ph, pw, dh, dw
    return w


def max_pool(const floating[:, :, :, :] x, floating[:, :, :, ::1] y, Py_ssize_t kh, Py_ssize_t kw,
             Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw):
    """y[n, c, oy, ox] = max over the window at (oy*sh - ph, ox*sw - pw); the grid is y's (gH, gW)."""
    cdef const floating[:, :, :, :] grid = y     # only its shape is read
    with nogil:
        _pool(0, x, x, grid, y, _window(kh, kw, sh, sw, ph, pw, dh, dw))


def max_pool_scatter(const floating[:, :, :, :] g, const floating[:, :, :, :] x, const floating[:, :, :, :] y,
                     floating[:, :, :, ::1] out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw):
    """out (shape of x, zeroed by the caller) += g[window] / hits at every entry equal to the window's
    max y[window]: the gradient of max pooling. One (n, c) plane per thread."""
    with nogil:
        _pool(1, g, x, y, out, _window(kh, kw, sh, sw, ph, pw, dh, dw))


def max_pool_gather(const floating[:, :, :, :] g, const floating[:, :, :, :] x, const floating[:, :, :, :] y,
                    floating[:, :, :, ::1] out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw):
    """The adjoint of max_pool_scatter: out[window] = sum of g over the window's maxima / hits."""
    with nogil:
        _pool(2, g, x, y, out, _window(kh, kw, sh, sw, ph, pw, dh, dw))
