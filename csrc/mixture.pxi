# The mixture-of-Gaussians prior's fused kernel (included by _ckernels.pyx)

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport fma, fmaf
from libc.stdint cimport int64_t

# -- mixture-of-Gaussians prior (soft weight-sharing) ---------------------------------------------

cdef enum:
    MIXTURE_MAX_COMPONENTS = 64    # the components' scalars and work arrays live on the stack
    MIXTURE_BLOCK = 128            # weights per block (64: 6% slower, 256: 4%, on a Zen 3)
    MIXTURE_LANES = 64             # per-component sums kept per lane: a block's two halves share them
    MIXTURE_CHUNK_BLOCKS = 16      # blocks per chunk: one unit of a thread's work, with its own sums
    MIXTURE_PARALLEL_MIN_PAIRS = 1 << 18   # (weights x components) below which one thread does it all
    MIXTURE_FLUSH_FLOAT = -100     # 2^t below 2^this is taken as 0 (see _mixture_exp2)
    MIXTURE_FLUSH_DOUBLE = -1000

cdef double LOG_2PI = 1.8378770664093453
cdef double LN2 = 0.6931471805599453
# A block's sums s_b = sum_j 2^t_bj (t_bj <= 0, see _mixture_range) are used as they are while every
# s_b >= MIXTURE_TINY: the terms flushed to 0 (below 2^-100 in float, 2^-1000 in double) then sum
# to less than 2^-34 of s_b, and a product of 8 sums (times a number in [1, 2)) stays a normal
# double. Otherwise the block is redone shifted by each weight's maximum, where s_b >= 1.
cdef double MIXTURE_TINY = 8.673617379884035e-19     # 2^-60
MAX_MIXTURE_COMPONENTS = MIXTURE_MAX_COMPONENTS   # for minireg.kernels.compiled

cdef extern from *:
    """
    /* 2^t for t <= 0 in float, as plain arithmetic so that loops calling it vectorize: t = n + f,
       n = round(t), |f| <= 1/2, 2^f by a degree-5 minimax polynomial (relative error 7.5e-8, 2.3e-7
       with float rounding), 2^n from the bits of the rounding sum. For -100 <= t <= 0 (below, see
       _mixture_exp2). */
    static inline float minireg_mixture_exp2_f(float t) {
        /* 1.5 * 2^23 + 127: k's low mantissa bits hold round(t) + 127, the exponent bits of 2^n */
        float k = t + 12583039.0f;
        float f = t - (k - 12583039.0f);
        float f2 = f * f;           /* Estrin's scheme: a shorter dependency chain than Horner's, 10% faster */
        float p = fmaf(f2, fmaf(f2, fmaf(f, 0.00132764725f, 0.00967554096f), fmaf(f, 0.0555071309f, 0.240221202f)),
                       fmaf(f, 0.693146944f, 1.00000012f));
        int32_t bits; float scale;
        memcpy(&bits, &k, 4);
        bits = (int32_t)((uint32_t)bits << 23);
        memcpy(&scale, &bits, 4);
        return p * scale;
    }
    """
    float minireg_mixture_exp2_f(float t) noexcept nogil


cdef extern from *:
    """
    /* a[k] = m 2^e (a[k] > 0 and normal) -> a[k] = m in [1, 2), e added to exponents[k], with bit
       operations that vectorize; NaN and infinity stay as they are (the final log passes them on). */
    static inline void minireg_renormalize8(double* a, int64_t* exponents) {
        for (int k = 0; k < 8; k++) {
            uint64_t bits;
            memcpy(&bits, &a[k], 8);
            int64_t biased = (int64_t)((bits >> 52) & 0x7ff);
            int finite = biased != 0x7ff;
            exponents[k] += finite ? biased - 1023 : 0;
            bits = finite ? (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL : bits;
            memcpy(&a[k], &bits, 8);
        }
    }
    """
    void minireg_renormalize8(double* a, int64_t* exponents) noexcept nogil


cdef inline floating _fma(floating a, floating b, floating c) noexcept nogil:
    """a b + c rounded once: explicit, so that both builds give the same bits (the AVX2 build emits
    vfmadd, the baseline calls libm's correctly rounded fma); fewer operations per pair."""
    if floating is float:
        return fmaf(a, b, c)
    else:
        return fma(a, b, c)


cdef inline floating _exponent(floating x, floating muj, floating hj, floating cj) noexcept nogil:
    """t = c_j - h_j (x - mu_j)^2, as _block_exps and _block_max both form it."""
    cdef floating d = x - muj
    return _fma(-(hj * d), d, cj)


cdef inline floating _mixture_exp2(floating t, bint flush) noexcept nogil:
    """2^t for t <= 0, flushed to 0 below MIXTURE_FLUSH_FLOAT (MIXTURE_FLUSH_DOUBLE) so that no
    product formed from it is subnormal (about 100 cycles an operation on some CPUs; see
    MIXTURE_TINY for why that changes no sum). ``flush`` is a constant where inlined: off only
    where no t can be that small, which gives the same bits without the compare and select."""
    if floating is float:
        return 0 if flush and t < MIXTURE_FLUSH_FLOAT else minireg_mixture_exp2_f(t)
    else:
        return 0 if flush and t < MIXTURE_FLUSH_DOUBLE else minireg_exp_nonpositive_d(t * LN2)


cdef inline bint _may_flush(floating x_min, floating x_max, floating muj, floating hj, floating cj) noexcept nogil:
    """Whether some t_bj of a block whose weights lie in [x_min, x_max] may be flushed (see _mixture_exp2).
    The rounded t = _exponent(x) never increases as |x - mu_j| grows (every rounding is monotone), so
    its smallest value over the block is at x_min or x_max; a NaN weight changes nothing (it gives a
    NaN either way), and an infinite one gives t = -inf: flushed."""
    cdef floating limit = MIXTURE_FLUSH_FLOAT if floating is float else MIXTURE_FLUSH_DOUBLE
    return not (_exponent(x_min, muj, hj, cj) >= limit and _exponent(x_max, muj, hj, cj) >= limit)


cdef inline void _component_exps(const floating* x, floating muj, floating hj, floating cj, const floating* shift,
                                 bint shifted, bint flush, bint first, floating* ej, floating* s) noexcept nogil:
    """One component's row of _block_exps: ej[b] = 2^(t_bj - shift_b), added to s_b (``first``: s_b set
    to it, as 0 + it, which spares a zeroing pass). Inlined with the flags constants."""
    cdef Py_ssize_t b
    cdef floating t
    for b in range(MIXTURE_BLOCK):
        t = _exponent(x[b], muj, hj, cj)
        if shifted:
            t = t - shift[b]
        ej[b] = _mixture_exp2(t, flush)
        s[b] = ej[b] if first else s[b] + ej[b]


cdef inline void _block_exps(const floating* x, floating x_min, floating x_max, const floating* mu,
                             const floating* h, const floating* c, Py_ssize_t J, const floating* shift,
                             bint shifted, floating* e, floating* s) noexcept nogil:
    """e[j, b] = 2^(t_bj - shift_b) (shift_b only when ``shifted``) with t_bj = c_j - h_j (x_b - mu_j)^2,
    and s_b = sum_j e[j, b] (J >= 1); x_min and x_max bound the block's weights. Inlined with
    ``shifted`` a constant: the unshifted loop has no subtraction, and a component none of whose
    t_bj can be flushed (_may_flush) goes through a loop without the flush's compare and select."""
    cdef Py_ssize_t j
    for j in range(J):
        if shifted or _may_flush(x_min, x_max, mu[j], h[j], c[j]):
            if j == 0:
                _component_exps(x, mu[j], h[j], c[j], shift, shifted, True, True, e, s)
            else:
                _component_exps(x, mu[j], h[j], c[j], shift, shifted, True, False, &e[j * MIXTURE_BLOCK], s)
        elif j == 0:
            _component_exps(x, mu[j], h[j], c[j], shift, False, False, True, e, s)
        else:
            _component_exps(x, mu[j], h[j], c[j], shift, False, False, False, &e[j * MIXTURE_BLOCK], s)


cdef inline void _block_max(const floating* x, const floating* mu, const floating* h, const floating* c,
                            Py_ssize_t J, floating* m) noexcept nogil:
    """m_b = max_j t_bj (see _block_exps)."""
    cdef Py_ssize_t j, b
    cdef floating t, muj, hj, cj
    for b in range(MIXTURE_BLOCK):
        m[b] = -INFINITY
    for j in range(J):
        muj, hj, cj = mu[j], h[j], c[j]
        for b in range(MIXTURE_BLOCK):
            t = _exponent(x[b], muj, hj, cj)
            m[b] = t if t > m[b] else m[b]


cdef inline void _block_range(const floating* x, floating* x_min, floating* x_max) noexcept nogil:
    """The smallest and largest of a block's weights (for _may_flush), by halving: elementwise loops
    over contiguous arrays, which vectorize."""
    cdef floating lo[MIXTURE_LANES]    # MIXTURE_LANES: half a block
    cdef floating hi[MIXTURE_LANES]
    cdef Py_ssize_t b, half = MIXTURE_LANES
    for b in range(MIXTURE_LANES):
        lo[b] = x[b] if x[b] < x[b + half] else x[b + half]
        hi[b] = x[b] if x[b] > x[b + half] else x[b + half]
    half //= 2
    while half > 0:
        for b in range(half):
            lo[b] = lo[b] if lo[b] < lo[b + half] else lo[b + half]
            hi[b] = hi[b] if hi[b] > hi[b + half] else hi[b + half]
        half //= 2
    x_min[0], x_max[0] = lo[0], hi[0]


cdef inline double _lane_sum(const floating* lane) noexcept nogil:
    """sum of MIXTURE_LANES values in double: eight partial sums in a fixed order (vectorizes)."""
    cdef double acc[8]
    cdef Py_ssize_t b, k
    for k in range(8):
        acc[k] = 0
    for b in range(0, MIXTURE_LANES, 8):
        for k in range(8):
            acc[k] += lane[b + k]
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef double _mixture_range(const floating* w, Py_ssize_t n, const floating* mu, const floating* lam,
                           const floating* h, const floating* c, double bound, Py_ssize_t J,
                           floating* grad_w, double* stats) noexcept nogil:
    """mixture_nll's pass over w[0:n] (see there); adds to stats (3 x J) and returns -sum of logsumexp.

    In base 2: a_ij = bound + ln2 t_ij with t_ij = c_j - h_j (w_i - mu_j)^2, where c_j = (c~_j - bound)
    / ln2 <= 0 and h_j = lambda_j / (2 ln2), c~_j being the constant term of a_ij and bound = max_j c~_j:
    an upper bound of every a_ij, so the sums s_i = sum_j 2^t_ij need no pass for the maximum. A
    block where some s_i is too small (a weight far from every component) is redone shifted by
    each weight's own maximum (MIXTURE_TINY). Weights go in blocks of MIXTURE_BLOCK (the last one
    padded with copies of its first weight, given zero responsibilities), with the components in
    the outer loop, so every inner loop runs over contiguous weights with a constant trip count and
    vectorizes (2^t is a polynomial); the per-component sums are kept per lane (in the weights'
    precision) and added up in double at the end.
    """
    cdef Py_ssize_t blk, i0, b, j, k, nb
    cdef floating e[MIXTURE_MAX_COMPONENTS * MIXTURE_BLOCK]
    cdef floating lanes[3 * MIXTURE_MAX_COMPONENTS * MIXTURE_LANES]
    cdef floating x[MIXTURE_BLOCK]     # a last, partial block, padded
    cdef floating g[MIXTURE_BLOCK]
    cdef const floating* xs            # the block's weights: in place, or x
    cdef floating shift[MIXTURE_BLOCK]
    cdef floating s[MIXTURE_BLOCK]
    cdef floating inv[MIXTURE_BLOCK]
    cdef double products[8]
    cdef int64_t exponents[8]
    cdef floating *ej
    cdef floating *l0
    cdef floating *l1
    cdef floating *l2
    cdef floating d, r, rd, d_hi, r_hi, rd_hi, muj, lamj, x_min, x_max
    cdef double total = 0
    cdef floating tiny = <floating>MIXTURE_TINY
    cdef int too_small
    for b in range(3 * J * MIXTURE_LANES):
        lanes[b] = 0
    for k in range(8):
        products[k] = 1
        exponents[k] = 0
    for blk in range((n + MIXTURE_BLOCK - 1) // MIXTURE_BLOCK):
        i0 = blk * MIXTURE_BLOCK
        nb = min(<Py_ssize_t>MIXTURE_BLOCK, n - i0)
        if nb == MIXTURE_BLOCK:
            xs = &w[i0]
        else:
            for b in range(MIXTURE_BLOCK):
                x[b] = w[i0 + b] if b < nb else w[i0]     # padding: a real weight, so s_b is never too small
            xs = x
        _block_range(xs, &x_min, &x_max)
        _block_exps(xs, x_min, x_max, mu, h, c, J, shift, False, e, s)
        too_small = 0
        for b in range(MIXTURE_BLOCK):
            too_small = too_small | (s[b] < tiny)
        total += nb * bound
        if too_small:
            _block_max(xs, mu, h, c, J, shift)
            _block_exps(xs, x_min, x_max, mu, h, c, J, shift, True, e, s)
            for b in range(nb):
                total += LN2 * shift[b]
        for b in range(nb, MIXTURE_BLOCK):     # padding: a sum of 1 (log 0), responsibilities 0
            s[b] = 1
        for b in range(MIXTURE_BLOCK):
            inv[b] = 1 / s[b]
        for b in range(nb, MIXTURE_BLOCK):
            inv[b] = 0
        # sum_b log s_b as the log of a product: eight running products, brought back to [1, 2)
        # after each block (their exponents counted apart), logs taken once at the end
        for b in range(0, MIXTURE_BLOCK, 8):
            for k in range(8):
                products[k] *= s[b + k]
        minireg_renormalize8(products, exponents)
        # r_j = e_j / s; per-lane sums of r, r d, r d^2, weights b and b + MIXTURE_LANES in one lane:
        # half the stores of one lane per weight (this loop is bound by its stores)
        for j in range(J):
            muj, lamj, ej = mu[j], lam[j], &e[j * MIXTURE_BLOCK]
            l0 = &lanes[3 * j * MIXTURE_LANES]
            l1, l2 = l0 + MIXTURE_LANES, l0 + 2 * MIXTURE_LANES
            for b in range(MIXTURE_LANES):
                d, d_hi = xs[b] - muj, xs[b + MIXTURE_LANES] - muj
                r, r_hi = ej[b] * inv[b], ej[b + MIXTURE_LANES] * inv[b + MIXTURE_LANES]
                rd, rd_hi = r * d, r_hi * d_hi
                g[b] = _fma(rd, lamj, 0 if j == 0 else g[b])      # no zeroing pass (J >= 1)
                g[b + MIXTURE_LANES] = _fma(rd_hi, lamj, 0 if j == 0 else g[b + MIXTURE_LANES])
                l0[b] = l0[b] + (r + r_hi)
                l1[b] = l1[b] + (rd + rd_hi)
                l2[b] = _fma(rd_hi, d_hi, _fma(rd, d, l2[b]))
        if nb == MIXTURE_BLOCK:    # a constant count: vector moves, not a string copy's slow start
            for b in range(MIXTURE_BLOCK):
                grad_w[i0 + b] = g[b]
        else:
            for b in range(nb):
                grad_w[i0 + b] = g[b]
    for j in range(J):
        for k in range(3):
            stats[k * J + j] += _lane_sum(&lanes[(3 * j + k) * MIXTURE_LANES])
    for k in range(8):
        total += log(products[k]) + LN2 * exponents[k]
    return -total


cdef struct MixtureChunk:
    const void* w          # MIXTURE_CHUNK_BLOCKS blocks of weights (or fewer: an array's last chunk)
    void* grad_w
    Py_ssize_t n


def mixture_nll(list ws, const floating[::1] means, const floating[::1] log_precisions, const floating[::1] log_mix):
    """Negative log-likelihood of the weights under a 1-D Gaussian mixture, and its gradients, in one pass.

    ``ws``: 1-D C-contiguous arrays of the components' dtype, taken together. With
    a_ij = log_mix_j + (gamma_j - log 2pi)/2 - lambda_j (w_i - mu_j)^2 / 2, lambda_j = exp(gamma_j),
    r_ij = softmax_j a_ij and d_ij = w_i - mu_j, returns (nll, grads_w, d_means, d_log_precisions,
    d_log_mix): nll = -sum_i logsumexp_j a_ij (a float), grads_w a list with one array per array of
    ws, holding d nll/dw_i = sum_j r_ij lambda_j d_ij, and d_means = -lambda_j sum_i r_ij d_ij,
    d_log_precisions = sum_i r_ij (lambda_j d_ij^2 - 1) / 2, d_log_mix = -sum_i r_ij (all sums end in
    double). At most MIXTURE_MAX_COMPONENTS components. Each array goes in fixed chunks of
    MIXTURE_CHUNK_BLOCKS blocks, each chunk with its own sums, added up in chunk order: with
    OpenMP, threads take chunks as they come free (a thread slowed by another process holds up
    only its last chunk), and the result depends neither on the scheduling nor on the number of threads.
    """
    cdef Py_ssize_t t, j, k, start, n, chunks = 0, pairs = 0, J = means.shape[0]
    cdef Py_ssize_t chunk = MIXTURE_CHUNK_BLOCKS * MIXTURE_BLOCK
    cdef const floating[::1] wk
    cdef floating[::1] gk
    cdef floating mu[MIXTURE_MAX_COMPONENTS]
    cdef floating lam[MIXTURE_MAX_COMPONENTS]
    cdef floating h[MIXTURE_MAX_COMPONENTS]
    cdef floating c[MIXTURE_MAX_COMPONENTS]
    cdef double constant[MIXTURE_MAX_COMPONENTS]
    cdef double bound = -INFINITY
    cdef MixtureChunk* table
    cdef double[:, ::1] parts
    grads_w = [numpy.empty_like(w) for w in ws]
    for w in ws:
        chunks += (w.shape[0] + chunk - 1) // chunk
    table = <MixtureChunk*>PyMem_Malloc(chunks * sizeof(MixtureChunk) + 1)
    if table == NULL:
        raise MemoryError()
    try:
        t = 0
        for k in range(len(ws)):
            wk, gk = ws[k], grads_w[k]
            n = wk.shape[0]
            pairs += n * J
            for start in range(0, n, chunk):
                table[t].w, table[t].grad_w, table[t].n = &wk[start], &gk[start], min(chunk, n - start)
                t += 1
        for j in range(J):
            mu[j] = means[j]
            lam[j] = <floating>exp(log_precisions[j])
            h[j] = <floating>(0.5 / LN2 * exp(log_precisions[j]))
            constant[j] = log_mix[j] + 0.5 * (log_precisions[j] - LOG_2PI)
            bound = constant[j] if constant[j] > bound else bound
        for j in range(J):
            c[j] = <floating>((constant[j] - bound) / LN2)
        partial = numpy.zeros((chunks, 3 * J + 1))
        parts = partial
        _mixture_chunks(table, chunks, mu, lam, h, c, bound, J, parts,
                        omp_get_max_threads() if pairs >= MIXTURE_PARALLEL_MIN_PAIRS else 1)
    finally:
        PyMem_Free(table)
    s0, s1, s2, nll = numpy.split(partial.sum(axis=0), [J, 2 * J, 3 * J])
    lam_double = numpy.exp(numpy.asarray(log_precisions, dtype=numpy.float64))
    dtype = numpy.float32 if floating is float else numpy.float64
    return (nll[0], grads_w, (-lam_double * s1).astype(dtype), (0.5 * (lam_double * s2 - s0)).astype(dtype),
            (-s0).astype(dtype))


cdef void _mixture_chunks(MixtureChunk* table, Py_ssize_t chunks, const floating* mu, const floating* lam,
                          const floating* h, const floating* c, double bound, Py_ssize_t J,
                          double[:, ::1] parts, int threads) noexcept:
    """Every chunk of the table through _mixture_range, its sums into its own row of parts."""
    cdef Py_ssize_t t
    for t in prange(chunks, nogil=True, schedule="dynamic", num_threads=threads, use_threads_if=threads > 1):
        parts[t, 3 * J] = _mixture_range(<const floating*>table[t].w, table[t].n, mu, lam, h, c, bound, J,
                                         <floating*>table[t].grad_w, &parts[t, 0])
