# Activations in one pass each (included by _ckernels.pyx, after elementwise.pxi)
#
# NumPy's maximum and clip against a scalar zero take a slow broadcasting loop (about 3x a
# multiply: 0.75 ms against 0.26 ms for x * x on a 1.6M-element conv output), and the ReLU
# gradient's mask costs a compare, a cast and a multiply. These loops write the same values.

cdef inline void _relu_range(const floating* x, floating* y, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        y[i] = 0 if x[i] <= 0 else x[i]     # clip(x, 0, None): NaN passes, -0.0 becomes 0


cdef inline void _relu_grad_range(const floating* gy, const floating* x, floating* gx,
                                  Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        gx[i] = gy[i] * <floating>(x[i] > 0)    # gy * (x > 0): a NaN gy stays NaN, as the product


def relu(const floating[::1] x, floating[::1] y):
    """y = 0 if x <= 0 else x"""
    cdef Py_ssize_t c, n = x.shape[0], chunks = (n + PARALLEL_CHUNK - 1) // PARALLEL_CHUNK
    with nogil:
        if n < PARALLEL_MIN_SIZE:        # small arrays stay outside OpenMP (a region costs ~0.7 us)
            _relu_range(&x[0], &y[0], 0, n)
        else:
            for c in prange(chunks, schedule="static"):
                _relu_range(&x[0], &y[0], c * PARALLEL_CHUNK, min(n, (c + 1) * PARALLEL_CHUNK))


def relu_grad(const floating[::1] gy, const floating[::1] x, floating[::1] gx):
    """gx = gy * (x > 0)"""
    cdef Py_ssize_t c, n = x.shape[0], chunks = (n + PARALLEL_CHUNK - 1) // PARALLEL_CHUNK
    with nogil:
        if n < PARALLEL_MIN_SIZE:
            _relu_grad_range(&gy[0], &x[0], &gx[0], 0, n)
        else:
            for c in prange(chunks, schedule="static"):
                _relu_grad_range(&gy[0], &x[0], &gx[0], c * PARALLEL_CHUNK, min(n, (c + 1) * PARALLEL_CHUNK))


cdef inline void _tanh_grad_range(const floating* gy, const floating* y, floating* gx,
                                  Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        gx[i] = gy[i] * (<floating>1 - y[i] * y[i])   # NumPy's order and roundings: y*y, 1 - it, gy * that


cdef inline void _leaky_relu_range(const floating* x, floating* y, floating slope,
                                   Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        y[i] = x[i] if x[i] > 0 else x[i] * slope    # NaN: NaN * slope; -0.0 * slope keeps its product's sign


cdef inline void _leaky_relu_grad_range(const floating* gy, const floating* x, floating* gx, floating slope,
                                        Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        gx[i] = gy[i] * (1 if x[i] > 0 else slope)


cdef inline void _leaky_relu_slopes_range(const floating* x, floating* slopes, floating slope,
                                          Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        slopes[i] = 1 if x[i] > 0 else slope


def tanh_grad(const floating[::1] gy, const floating[::1] y, floating[::1] gx):
    """gx = gy * (1 - y * y)"""
    cdef Py_ssize_t c, n = y.shape[0], chunks = (n + PARALLEL_CHUNK - 1) // PARALLEL_CHUNK
    with nogil:
        if n < PARALLEL_MIN_SIZE:
            _tanh_grad_range(&gy[0], &y[0], &gx[0], 0, n)
        else:
            for c in prange(chunks, schedule="static"):
                _tanh_grad_range(&gy[0], &y[0], &gx[0], c * PARALLEL_CHUNK, min(n, (c + 1) * PARALLEL_CHUNK))


def leaky_relu(const floating[::1] x, floating[::1] y, double negative_slope):
    """y = x if x > 0 else negative_slope * x"""
    cdef floating slope = <floating>negative_slope
    cdef Py_ssize_t c, n = x.shape[0], chunks = (n + PARALLEL_CHUNK - 1) // PARALLEL_CHUNK
    with nogil:
        if n < PARALLEL_MIN_SIZE:
            _leaky_relu_range(&x[0], &y[0], slope, 0, n)
        else:
            for c in prange(chunks, schedule="static"):
                _leaky_relu_range(&x[0], &y[0], slope, c * PARALLEL_CHUNK, min(n, (c + 1) * PARALLEL_CHUNK))


def leaky_relu_grad(const floating[::1] gy, const floating[::1] x, floating[::1] gx, double negative_slope):
    """gx = gy * (1 if x > 0 else negative_slope)"""
    cdef floating slope = <floating>negative_slope
    cdef Py_ssize_t c, n = x.shape[0], chunks = (n + PARALLEL_CHUNK - 1) // PARALLEL_CHUNK
    with nogil:
        if n < PARALLEL_MIN_SIZE:
            _leaky_relu_grad_range(&gy[0], &x[0], &gx[0], slope, 0, n)
        else:
            for c in prange(chunks, schedule="static"):
                _leaky_relu_grad_range(&gy[0], &x[0], &gx[0], slope, c * PARALLEL_CHUNK,
                                       min(n, (c + 1) * PARALLEL_CHUNK))


def leaky_relu_slopes(const floating[::1] x, floating[::1] slopes, double negative_slope):
    """slopes = 1 if x > 0 else negative_slope"""
    cdef floating slope = <floating>negative_slope
    cdef Py_ssize_t c, n = x.shape[0], chunks = (n + PARALLEL_CHUNK - 1) // PARALLEL_CHUNK
    with nogil:
        if n < PARALLEL_MIN_SIZE:
            _leaky_relu_slopes_range(&x[0], &slopes[0], slope, 0, n)
        else:
            for c in prange(chunks, schedule="static"):
                _leaky_relu_slopes_range(&x[0], &slopes[0], slope, c * PARALLEL_CHUNK, min(n, (c + 1) * PARALLEL_CHUNK))
