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
    /* Whether the CPU (and the OS) support AVX2 and FMA: then minireg.kernels.compiled uses the
       AVX2 build (built with -mavx2 -mfma; AVX2 alone would not do, the build runs vfmadd). */
    static int minireg_cpu_has_avx2_fma(void) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
    #else
        return 0;
    #endif
    }
    """
    int minireg_cpu_has_avx2_fma() noexcept nogil


def cpu_has_avx2_fma():
    """True when this CPU runs AVX2 and FMA code (then the ``_ckernels_avx2`` build applies)."""
    return bool(minireg_cpu_has_avx2_fma())


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


# One include file per kernel family.
include "elementwise.pxi"
include "activations.pxi"
include "mixture.pxi"
include "conv.pxi"
