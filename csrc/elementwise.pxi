# Elementwise and row kernels: penalty gradients, proximal and optimizer steps (included by _ckernels.pyx)

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint32_t, uint64_t

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


cdef inline void _adamw_prox_range(floating* w, const floating* g, floating* m, floating* v,
                                   Py_ssize_t start, Py_ssize_t stop, floating b1, floating c1,
                                   floating b2, floating c2, floating d, floating a, floating r,
                                   floating e, floating tt) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        m[i] = b1 * m[i] + c1 * g[i]
        v[i] = b2 * v[i] + c2 * (g[i] * g[i])
        w[i] = _soft(w[i] * d - a * m[i] / (_sqrt(v[i]) * r + e), tt)


# Bulk arrays are split into chunks of this many elements for the threads (static schedule).
cdef enum:
    PARALLEL_CHUNK = 1 << 16


cdef void _adamw_prox_loop(floating* w, const floating* g, floating* m, floating* v, Py_ssize_t n,
                           double beta1, double beta2, double decay, double step_size,
                           double inv_sqrt_bc2, double eps, double t1) noexcept nogil:
    # The loop of adamw_prox_step and adamw_prox_steps (one body, so both give the same bits).
    # Small arrays stay outside OpenMP: even a serial parallel region costs ~0.7 us per call.
    cdef Py_ssize_t c, chunks = (n + PARALLEL_CHUNK - 1) // PARALLEL_CHUNK
    cdef floating b1 = <floating>beta1, c1 = <floating>(1 - beta1)
    cdef floating b2 = <floating>beta2, c2 = <floating>(1 - beta2)
    cdef floating d = <floating>decay, a = <floating>step_size, r = <floating>inv_sqrt_bc2
    cdef floating e = <floating>eps, tt = <floating>t1
    if n < PARALLEL_MIN_SIZE:
        _adamw_prox_range(w, g, m, v, 0, n, b1, c1, b2, c2, d, a, r, e, tt)
        return
    for c in prange(chunks, schedule="static"):
        _adamw_prox_range(w, g, m, v, c * PARALLEL_CHUNK, min(n, (c + 1) * PARALLEL_CHUNK),
                          b1, c1, b2, c2, d, a, r, e, tt)


def adamw_prox_step(floating[::1] w, const floating[::1] g, floating[::1] m, floating[::1] v,
                    double beta1, double beta2, double decay, double step_size,
                    double inv_sqrt_bc2, double eps, double t1):
    """One AdamW step then soft-thresholding (coefficients from reference.adamw_coefficients):

    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
    w = soft(w*decay - step_size*m / (sqrt(v)*inv_sqrt_bc2 + eps), t1)
    """
    with nogil:
        _adamw_prox_loop(&w[0], &g[0], &m[0], &v[0], w.shape[0],
                         beta1, beta2, decay, step_size, inv_sqrt_bc2, eps, t1)


# -- multi-tensor entry points: one call for all the parameters of an optimizer's param group -------
# They take lists of arrays of any shape and check each array themselves (cheaper than a Python
# check per array); an array they cannot take makes them return False before anything is written.

cdef struct FloatData:
    void* data
    Py_ssize_t size
    char kind           # b'f' (float32) or b'd' (float64)


cdef object _ndarray = numpy.ndarray


cdef bint _float_data(object a, bint writable, FloatData* out):
    """Fill ``out`` when ``a`` is a C-contiguous float32/float64 numpy.ndarray (writeable if asked)
    in native byte order; False for anything else. The buffer is released at once: the caller's
    reference keeps the array, and so its data, alive for the call."""
    cdef Py_buffer buffer
    if type(a) is not _ndarray:      # subclasses (masked arrays...) take the reference path
        return False
    try:
        PyObject_GetBuffer(a, &buffer, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if writable else 0))
    except (BufferError, ValueError):
        return False
    out.data, out.size = buffer.buf, buffer.len // buffer.itemsize
    out.kind = buffer.format[0] if buffer.format[1] == 0 else 0      # "f" / "d": native byte order
    PyBuffer_Release(&buffer)
    return out.kind == b'f' or out.kind == b'd'


cdef bint _same(FloatData* a, FloatData* b) noexcept:
    return a.kind == b.kind and a.size == b.size


def adamw_prox_steps(list ws, list gs, list ms, list vs, double beta1, double beta2, double decay,
                     double step_size, double inv_sqrt_bc2, double eps, double t1):
    """adamw_prox_step on every (ws[k], gs[k], ms[k], vs[k]) in turn, with the same scalars; arrays
    of any shape. False, nothing written, unless every array is a C-contiguous float32/float64
    numpy.ndarray (w, m, v writeable) and each quadruple has one dtype and size."""
    cdef Py_ssize_t k, count = len(ws)
    cdef FloatData* views
    if not len(gs) == len(ms) == len(vs) == count:
        return False
    views = <FloatData*>PyMem_Malloc(4 * count * sizeof(FloatData) + 1)
    if views == NULL:
        raise MemoryError()
    try:
        for k in range(count):      # every array checked before the first is written
            if not (_float_data(ws[k], True, &views[4 * k]) and _float_data(gs[k], False, &views[4 * k + 1])
                    and _float_data(ms[k], True, &views[4 * k + 2]) and _float_data(vs[k], True, &views[4 * k + 3])
                    and _same(&views[4 * k], &views[4 * k + 1]) and _same(&views[4 * k], &views[4 * k + 2])
                    and _same(&views[4 * k], &views[4 * k + 3])):
                return False
        with nogil:
            for k in range(count):
                if views[4 * k].kind == b'f':
                    _adamw_prox_loop(<float*>views[4 * k].data, <const float*>views[4 * k + 1].data,
                                     <float*>views[4 * k + 2].data, <float*>views[4 * k + 3].data,
                                     views[4 * k].size, beta1, beta2, decay, step_size, inv_sqrt_bc2, eps, t1)
                else:
                    _adamw_prox_loop(<double*>views[4 * k].data, <const double*>views[4 * k + 1].data,
                                     <double*>views[4 * k + 2].data, <double*>views[4 * k + 3].data,
                                     views[4 * k].size, beta1, beta2, decay, step_size, inv_sqrt_bc2, eps, t1)
    finally:
        PyMem_Free(views)
    return True


cdef inline void _sgd_range(floating* w, const floating* g, floating* b, Py_ssize_t start, Py_ssize_t stop,
                            floating lr, floating mom, floating c, floating wd, bint decay, bint momentum,
                            bint nesterov, bint first) noexcept nogil:
    # torch.optim.SGD's operations, in the order and roundings of minireg's NumPy reference; the
    # flags are loop invariants (the compiler unswitches the loop).
    cdef Py_ssize_t i
    cdef floating d
    for i in range(start, stop):
        d = g[i]
        if decay:
            d = d + wd * w[i]
        if momentum:
            if first:
                b[i] = d
            else:
                b[i] = b[i] * mom + c * d
            d = d + mom * b[i] if nesterov else b[i]
        w[i] = w[i] - lr * d


cdef inline void _sgd_chunk(floating* w, const floating* g, floating* b, Py_ssize_t start, Py_ssize_t stop,
                            floating lr, floating mom, floating c, floating wd, bint decay, bint momentum,
                            bint nesterov, bint first) noexcept nogil:
    # The steady cases with literal flags: inlined, each loop has no branch and vectorizes (the
    # compiler did not unswitch four flags). The first momentum step takes the generic loop.
    if not momentum:
        if decay:
            _sgd_range(w, g, b, start, stop, lr, mom, c, wd, True, False, False, False)
        else:
            _sgd_range(w, g, b, start, stop, lr, mom, c, wd, False, False, False, False)
    elif first:
        _sgd_range(w, g, b, start, stop, lr, mom, c, wd, decay, True, nesterov, True)
    elif nesterov:
        if decay:
            _sgd_range(w, g, b, start, stop, lr, mom, c, wd, True, True, True, False)
        else:
            _sgd_range(w, g, b, start, stop, lr, mom, c, wd, False, True, True, False)
    elif decay:
        _sgd_range(w, g, b, start, stop, lr, mom, c, wd, True, True, False, False)
    else:
        _sgd_range(w, g, b, start, stop, lr, mom, c, wd, False, True, False, False)


cdef void _sgd_loop(floating* w, const floating* g, floating* b, Py_ssize_t n, double lr, double momentum,
                    double dampening, double weight_decay, bint nesterov, bint first) noexcept nogil:
    cdef Py_ssize_t c, chunks = (n + PARALLEL_CHUNK - 1) // PARALLEL_CHUNK
    cdef floating step = <floating>lr, mom = <floating>momentum, keep = <floating>(1 - dampening)
    cdef floating wd = <floating>weight_decay
    cdef bint decay = weight_decay != 0, with_momentum = momentum != 0
    if n < PARALLEL_MIN_SIZE:
        _sgd_chunk(w, g, b, 0, n, step, mom, keep, wd, decay, with_momentum, nesterov, first)
        return
    for c in prange(chunks, schedule="static"):
        _sgd_chunk(w, g, b, c * PARALLEL_CHUNK, min(n, (c + 1) * PARALLEL_CHUNK), step, mom, keep, wd,
                   decay, with_momentum, nesterov, first)


def sgd_steps(list ws, list gs, list bufs, double lr, double momentum, double dampening,
              double weight_decay, bint nesterov, bint first):
    """The SGD step of reference.Kernels.sgd_steps_ on every (ws[k], gs[k], bufs[k]) in turn
    (bufs: momentum buffers, read only when momentum != 0; with ``first`` they are written, not
    read). False, nothing written, unless every array is a C-contiguous float32/float64
    numpy.ndarray (w, buffers writeable) and each triple has one dtype and size."""
    cdef Py_ssize_t k, count = len(ws)
    cdef bint with_momentum = momentum != 0
    cdef FloatData* views
    if len(gs) != count or (with_momentum and len(bufs) != count):
        return False
    views = <FloatData*>PyMem_Malloc(3 * count * sizeof(FloatData) + 1)
    if views == NULL:
        raise MemoryError()
    try:
        for k in range(count):      # every array checked before the first is written
            if not (_float_data(ws[k], True, &views[3 * k]) and _float_data(gs[k], False, &views[3 * k + 1])
                    and _same(&views[3 * k], &views[3 * k + 1])):
                return False
            if with_momentum:
                if not (_float_data(bufs[k], True, &views[3 * k + 2]) and _same(&views[3 * k], &views[3 * k + 2])):
                    return False
            else:
                views[3 * k + 2].data = NULL
        with nogil:
            for k in range(count):
                if views[3 * k].kind == b'f':
                    _sgd_loop(<float*>views[3 * k].data, <const float*>views[3 * k + 1].data,
                              <float*>views[3 * k + 2].data, views[3 * k].size, lr, momentum, dampening,
                              weight_decay, nesterov, first)
                else:
                    _sgd_loop(<double*>views[3 * k].data, <const double*>views[3 * k + 1].data,
                              <double*>views[3 * k + 2].data, views[3 * k].size, lr, momentum, dampening,
                              weight_decay, nesterov, first)
    finally:
        PyMem_Free(views)
    return True


ctypedef fused float_bits:      # the bits of a float32 / float64
    uint32_t
    uint64_t


cdef inline float_bits _nonfinite_marks(const float_bits* bits, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # x is NaN or infinite iff its exponent bits are all ones; adding the exponent's lowest bit then
    # carries into the sign bit exactly for those. Integer OR: vectorizes, no rounding, any order.
    # Returns the OR of the sums: its sign bit is set iff an element is not finite.
    cdef Py_ssize_t i
    cdef float_bits exponent, lowest, seen = 0
    if float_bits is uint32_t:
        exponent, lowest = 0x7f800000u, 0x00800000u
    else:
        exponent, lowest = 0x7ff0000000000000u, 0x0010000000000000u
    for i in range(start, stop):
        seen |= (bits[i] & exponent) + lowest
    return seen


cdef bint _all_finite(const float_bits* bits, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t c, chunks = (n + PARALLEL_CHUNK - 1) // PARALLEL_CHUNK
    cdef float_bits seen = 0, sign = (<float_bits>1) << (8 * sizeof(float_bits) - 1)
    if n < PARALLEL_MIN_SIZE:
        seen = _nonfinite_marks(bits, 0, n)
    else:
        for c in prange(chunks, schedule="static"):
            seen |= _nonfinite_marks(bits, c * PARALLEL_CHUNK, min(n, (c + 1) * PARALLEL_CHUNK))
    return (seen & sign) == 0


def all_finite(list arrays):
    """1 when every element of every array is finite, 0 when one is NaN or infinite, -1 when an
    array is not a C-contiguous float32/float64 numpy.ndarray (then the others may be unread)."""
    cdef FloatData a
    cdef bint finite
    for x in arrays:
        if not _float_data(x, False, &a):
            return -1
        with nogil:
            if a.kind == b'f':
                finite = _all_finite(<const uint32_t*>a.data, a.size)
            else:
                finite = _all_finite(<const uint64_t*>a.data, a.size)
        if not finite:
            return 0
    return 1


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
