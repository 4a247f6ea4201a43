# The mixture-of-Gaussians prior's fused kernel (included by _ckernels.pyx)

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
