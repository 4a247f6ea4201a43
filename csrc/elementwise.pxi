# Elementwise and row kernels: penalty gradients, proximal and optimizer steps (included by _ckernels.pyx)

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
