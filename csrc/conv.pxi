# Convolution columns and max pooling (included by _ckernels.pyx)

# The helpers take a pointer to one (H, W) plane and its strides in elements: passing memoryviews
# to a cdef function costs a reference count update per call.

cdef struct Plane:
    Py_ssize_t H, W, row, col      # size and strides (elements) of one image plane


cdef inline Plane _plane(const floating[:, :, :, :] x) noexcept nogil:
    cdef Plane p
    p.H, p.W = x.shape[2], x.shape[3]
    p.row, p.col = x.strides[2] // <Py_ssize_t>sizeof(floating), x.strides[3] // <Py_ssize_t>sizeof(floating)
    return p


cdef struct Window:
    Py_ssize_t kh, kw, sh, sw, ph, pw, dh, dw


cdef inline Window _window(Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                           Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    cdef Window w
    w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.dh, w.dw = kh, kw, sh, sw, ph, pw, dh, dw
    return w


# -- convolution columns (the layout of minireg.functional_conv) ----------------------------------

cdef inline void _window_range(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size, Py_ssize_t grid,
                               Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """The grid positions g in [lo, hi) whose pixel g * stride + offset lies inside [0, size)."""
    lo[0] = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi[0] = 0 if offset > size - 1 else (size - 1 - offset) // stride + 1
    hi[0] = min(hi[0], grid)
    lo[0] = min(lo[0], hi[0])


cdef void _im2col_block(const floating* plane, Plane p, floating* out, Py_ssize_t gh, Py_ssize_t gw, Py_ssize_t sh,
                        Py_ssize_t sw, Py_ssize_t oy, Py_ssize_t ox, floating pad) noexcept nogil:
    """out[y*gw + g] = plane[y*sh + oy, g*sw + ox] (pad outside the plane): one image's windows at one
    kernel offset. Pointers and sizes are locals the compiler keeps in registers, and unit steps
    get a loop of their own that compiles to vector copies."""
    cdef Py_ssize_t y, g, iy, lo, hi, step = sw * p.col
    cdef const floating* src
    cdef floating* dst
    _window_range(ox, sw, p.W, gw, &lo, &hi)
    for y in range(gh):
        iy = y * sh + oy
        dst = out + y * gw
        if iy < 0 or iy >= p.H:
            for g in range(gw):
                dst[g] = pad
            continue
        for g in range(lo):
            dst[g] = pad
        src = plane + iy * p.row + (lo * sw + ox) * p.col if lo < hi else plane   # the first pixel read
        if step == 1:
            for g in range(hi - lo):
                dst[lo + g] = src[g]
        else:
            for g in range(hi - lo):
                dst[lo + g] = src[g * step]
        for g in range(hi, gw):
            dst[g] = pad


def im2col(const floating[:, :, :, :] x, floating[:, ::1] cols, Py_ssize_t kh, Py_ssize_t kw,
           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t gh, Py_ssize_t gw, double pad_value):
    """cols[(c*kh + i)*kw + j, (n*gh + y)*gw + g] = x[n, c, y*sh + i*dh - ph, g*sw + j*dw - pw], or
    pad_value where that pixel is outside x. x may have any strides (e.g. a transposed view).
    One (row, image) block per iteration: rows alone are too few to share out (9 for a 3x3 conv
    on one channel)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], q, r, c, i, j, n
    cdef Plane p = _plane(x)
    for q in prange(C * kh * kw * N, nogil=True, schedule="static",
                    use_threads_if=cols.shape[0] * cols.shape[1] >= PARALLEL_MIN_SIZE):
        r, n = q // N, q % N
        c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
        _im2col_block(&x[n, c, 0, 0], p, &cols[r, n * gh * gw], gh, gw, sh, sw,
                      i * dh - ph, j * dw - pw, <floating>pad_value)


cdef void _col2im_plane(const floating* cols, Py_ssize_t cols_row, floating* plane, Py_ssize_t H, Py_ssize_t W,
                        Window w, Py_ssize_t gh, Py_ssize_t gw) noexcept nogil:
    """One C-contiguous (H, W) image plane from the columns of its channel and image (row r of cols
    at cols + r*cols_row for the r-th kernel offset): zeroed, then every window added in the order
    (i, j), so a pixel's sum does not depend on how planes are shared among threads."""
    cdef Py_ssize_t i, j, y, g, iy, ox, lo, hi
    cdef const floating* src
    cdef floating* dst
    for g in range(H * W):
        plane[g] = 0
    for i in range(w.kh):
        for j in range(w.kw):
            ox = j * w.dw - w.pw
            _window_range(ox, w.sw, W, gw, &lo, &hi)
            for y in range(gh):
                iy = y * w.sh + i * w.dh - w.ph
                if iy < 0 or iy >= H or lo == hi:
                    continue
                src = cols + (i * w.kw + j) * cols_row + y * gw + lo
                dst = plane + iy * W + lo * w.sw + ox
                if w.sw == 1:
                    for g in range(hi - lo):
                        dst[g] += src[g]
                else:
                    for g in range(hi - lo):
                        dst[g * w.sw] += src[g]


def col2im(const floating[:, ::1] cols, floating[:, :, :, ::1] image, Py_ssize_t kh, Py_ssize_t kw,
           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t gh, Py_ssize_t gw):
    """The adjoint of im2col: image[n, c, y*sh + i*dh - ph, g*sw + j*dw - pw] = the sum of
    cols[(c*kh + i)*kw + j, (n*gh + y)*gw + g] over the windows reading that pixel (0 if none;
    image may hold anything on entry). One (channel, image) plane per iteration, so no two threads
    write the same pixel."""
    cdef Py_ssize_t N = image.shape[0], C = image.shape[1], H = image.shape[2], W = image.shape[3]
    cdef Py_ssize_t q, c, n
    cdef Window w = _window(kh, kw, sh, sw, ph, pw, dh, dw)
    for q in prange(C * N, nogil=True, schedule="static",
                    use_threads_if=cols.shape[0] * cols.shape[1] >= PARALLEL_MIN_SIZE):
        c, n = q // N, q % N
        _col2im_plane(&cols[c * kh * kw, n * gh * gw], cols.shape[1], &image[n, c, 0, 0], H, W, w, gh, gw)


# -- max pooling (windows padded with -inf; tied maxima share the gradient evenly) -----------------

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


cdef inline void _zero_plane(floating* out, Plane po, Py_ssize_t y0, Py_ssize_t y1, Py_ssize_t x0,
                             Py_ssize_t x1) noexcept nogil:
    """Zero rows [y0, y1) x columns [x0, x1) of one output plane."""
    cdef Py_ssize_t iy, ix
    for iy in range(y0, y1):
        for ix in range(x0, x1):
            out[iy * po.row + ix * po.col] = 0


cdef inline void _max_row_2x2(const floating* x0, const floating* x1, Py_ssize_t xs, floating* out, Py_ssize_t os,
                              Py_ssize_t n) noexcept nogil:
    """out[ox * os] = the max of the 2x2 window at columns 2*ox, 2*ox + 1 of rows x0, x1 (column
    stride xs), for ox < n. Branch-free, so the loop vectorizes (called with literal unit strides)."""
    cdef Py_ssize_t ox, a, b
    cdef floating m, v00, v01, v10, v11
    for ox in range(n):
        a, b = 2 * ox * xs, (2 * ox + 1) * xs
        v00, v01, v10, v11 = x0[a], x0[b], x1[a], x1[b]
        m = v00 if v00 > v01 else v01
        m = v10 if v10 > m else m
        m = v11 if v11 > m else m
        out[ox * os] = NAN if (v00 != v00) | (v01 != v01) | (v10 != v10) | (v11 != v11) else m


cdef void _max_pool_plane_2x2(const floating* x, Plane px, floating* out, Plane po) noexcept nogil:
    """max_pool's plane for 2x2 windows with stride 2 (MaxPool2d(2)), one row of windows at a time;
    unit column strides get a vectorized copy of the row loop of their own (0.71 -> 0.35 ms on the
    bench CNN's first pool, 64x32x28x28 float32, at 1 thread)."""
    cdef Py_ssize_t oy
    for oy in range(po.H):
        if px.col == 1 and po.col == 1:
            _max_row_2x2(x + 2 * oy * px.row, x + (2 * oy + 1) * px.row, 1, out + oy * po.row, 1, po.W)
        else:
            _max_row_2x2(x + 2 * oy * px.row, x + (2 * oy + 1) * px.row, px.col, out + oy * po.row, po.col, po.W)


cdef void _pool_plane_2x2(int mode, const floating* g, Plane pg, const floating* x, Plane px, const floating* y,
                          Plane py, floating* out, Plane po) noexcept nogil:
    """The gradient passes of _pool_plane (modes 1 and 2) for 2x2 windows with stride 2: constant
    trip counts let the compiler unroll the window loops, which makes this case several times faster
    than the general loops. Rows of x, g and out are read through row pointers (the column stride is
    kept general). The windows do not overlap, so the scatter (mode 1) assigns every pixel of a
    window once and zeroes only the last row and column that no window covers (odd H or W)."""
    cdef Py_ssize_t oy, ox, a, b
    cdef const floating* x0
    cdef const floating* x1
    cdef floating m, v00, v01, v10, v11, share, hits, h00, h01, h10, h11
    if mode == 1:
        _zero_plane(out, po, 2 * py.H, px.H, 0, px.W)
        _zero_plane(out, po, 0, 2 * py.H, 2 * py.W, px.W)
    for oy in range(py.H):
        x0, x1 = x + 2 * oy * px.row, x + (2 * oy + 1) * px.row
        for ox in range(py.W):
            a, b = 2 * ox * px.col, (2 * ox + 1) * px.col
            v00, v01, v10, v11 = x0[a], x0[b], x1[a], x1[b]
            m = y[oy * py.row + ox * py.col]
            h00, h01, h10, h11 = v00 == m, v01 == m, v10 == m, v11 == m
            hits = h00 + h01 + h10 + h11
            if mode == 1:
                share = g[oy * pg.row + ox * pg.col] / hits
                out[2 * oy * po.row + 2 * ox * po.col] = share * h00
                out[2 * oy * po.row + (2 * ox + 1) * po.col] = share * h01
                out[(2 * oy + 1) * po.row + 2 * ox * po.col] = share * h10
                out[(2 * oy + 1) * po.row + (2 * ox + 1) * po.col] = share * h11
            else:
                out[oy * po.row + ox * po.col] = (
                    g[2 * oy * pg.row + 2 * ox * pg.col] * h00 + g[2 * oy * pg.row + (2 * ox + 1) * pg.col] * h01
                    + g[(2 * oy + 1) * pg.row + 2 * ox * pg.col] * h10
                    + g[(2 * oy + 1) * pg.row + (2 * ox + 1) * pg.col] * h11) / hits


cdef void _pool_plane(int mode, const floating* g, Plane pg, const floating* x, Plane px, const floating* y,
                      Plane py, floating* out, Plane po, Window w) noexcept nogil:
    """One (n, c) plane of max_pool (mode 0: out = y), max_pool_scatter (1) or max_pool_gather (2).
    Every output pixel is written (the scatter zeroes its plane first, while it is in cache).
    A function of its own so that every pointer and size is a local the compiler keeps in registers
    (in the parallel loop's body they are shared variables, reloaded after every store)."""
    cdef Py_ssize_t oy, ox, i, j, iy, ix, y0, x0, hits
    cdef floating m, share, total
    if (w.kh == 2 and w.kw == 2 and w.sh == 2 and w.sw == 2 and w.ph == 0 and w.pw == 0
            and w.dh == 1 and w.dw == 1):
        if mode == 0:
            _max_pool_plane_2x2(x, px, out, po)
        else:
            _pool_plane_2x2(mode, g, pg, x, px, y, py, out, po)
        return
    if mode == 1:
        _zero_plane(out, po, 0, px.H, 0, px.W)
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
                const floating[:, :, :, :] y, floating[:, :, :, :] out, Window w) noexcept nogil:
    cdef Py_ssize_t q, n, c, C = x.shape[1]
    cdef Plane px = _plane(x), py = _plane(y), pg = _plane(g), po = _plane(out)
    cdef bint parallel = x.shape[0] * C * px.H * px.W >= PARALLEL_MIN_SIZE // 8
    for q in prange(x.shape[0] * C, schedule="static", use_threads_if=parallel):
        n, c = q // C, q % C
        _pool_plane(mode, &g[n, c, 0, 0], pg, &x[n, c, 0, 0], px, &y[n, c, 0, 0], py, &out[n, c, 0, 0], po, w)


def max_pool(const floating[:, :, :, :] x, floating[:, :, :, :] y, Py_ssize_t kh, Py_ssize_t kw,
             Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw):
    """y[n, c, oy, ox] = max over the window at (oy*sh - ph, ox*sw - pw); the grid is y's (gH, gW)."""
    cdef const floating[:, :, :, :] grid = y     # only its shape is read
    with nogil:
        _pool(0, x, x, grid, y, _window(kh, kw, sh, sw, ph, pw, dh, dw))


def max_pool_scatter(const floating[:, :, :, :] g, const floating[:, :, :, :] x, const floating[:, :, :, :] y,
                     floating[:, :, :, :] out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw):
    """out (shape of x, any strides) = the sum of g[window] / hits over the windows whose max y[window]
    this entry equals (0 elsewhere): the gradient of max pooling. One (n, c) plane per thread."""
    with nogil:
        _pool(1, g, x, y, out, _window(kh, kw, sh, sw, ph, pw, dh, dw))


def max_pool_gather(const floating[:, :, :, :] g, const floating[:, :, :, :] x, const floating[:, :, :, :] y,
                    floating[:, :, :, :] out, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw):
    """The adjoint of max_pool_scatter: out[window] (shape of y, any strides) = sum of g over the window's
    maxima / hits."""
    with nogil:
        _pool(2, g, x, y, out, _window(kh, kw, sh, sw, ph, pw, dh, dw))
