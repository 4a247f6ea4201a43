"""Kernel tables against plain-NumPy formulas, and against the mathematics of each operator.

Every implementation runs the same tests: the reference ``Kernels(numpy)``, ``CompiledKernels``
(Cython), ``Kernels(array_api_strict)`` on the fake accelerator "device1" (which refuses any
conversion to NumPy, so a reference kernel that round-trips through the host fails there), and
``CupyKernels`` where a GPU is available. Data is drawn on the host in float64, rounded to the
tested dtype, then placed contiguous, strided, transposed or (for inputs that are only read)
read-only. Expected values come from formulas written here in float64, not from the reference class.
"""

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minireg.kernels as mk
from minireg.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError
from minireg.kernels import CompiledKernels, Kernels

# ---------------------------------------------------------------------------------------------
# Implementations


class Impl:
    """One kernel table plus how to move host data to its arrays and back."""

    def __init__(self, kernels, device=None, to_host=np.asarray, read_only=False):
        self.kernels = kernels
        self.xp = kernels.xp
        self.device = device
        self._to_host = to_host
        self.read_only = read_only  # whether the namespace has read-only arrays

    def put(self, host, dtype, layout="contiguous"):
        """`host` (float64) rounded to `dtype`, as an array of this implementation in `layout`."""
        xp = self.xp
        x = xp.asarray(host.astype(dtype), device=self.device, copy=True)
        if layout == "strided" and x.ndim > 0:
            buf = xp.zeros((2 * x.shape[0], *x.shape[1:]), dtype=x.dtype, device=self.device)
            buf[::2, ...] = x
            return buf[::2, ...]
        if layout == "transposed" and x.ndim > 1:
            xt = xp.asarray(np.ascontiguousarray(host.astype(dtype).T), device=self.device)
            return xp.permute_dims(xt, tuple(reversed(range(x.ndim))))
        if layout == "readonly" and self.read_only:
            x.flags.writeable = False
        return x

    def host(self, x):
        return np.asarray(self._to_host(x), dtype=np.float64)


def _numpy_impl(kernels):
    return Impl(kernels, read_only=True)


def _strict_impl():
    import array_api_strict as xp

    cpu = xp.Device("CPU_DEVICE")
    return Impl(Kernels(xp), device=xp.Device("device1"), to_host=lambda x: np.asarray(x.to_device(cpu)))


def _cupy_impl():
    try:
        import cupy
    except ImportError as exc:
        pytest.skip(f"CuPy is not installed: {exc}")
    if not cupy.is_available():
        pytest.skip("CuPy sees no CUDA GPU")
    import array_api_compat.cupy as xp

    from minireg.kernels.cuda import CupyKernels

    return Impl(CupyKernels(xp), to_host=cupy.asnumpy)


def _compiled_impl():
    if not mk.HAVE_COMPILED and not os.environ.get("CI"):
        pytest.skip(f"minireg._ckernels is not built: {mk.COMPILED_IMPORT_ERROR}")
    return _numpy_impl(CompiledKernels(np))


IMPLS = {
    "reference": lambda: _numpy_impl(Kernels(np)),
    "compiled": _compiled_impl,
    "strict-device1": _strict_impl,
    "cupy": _cupy_impl,
}


@pytest.fixture(
    scope="session",
    params=[
        "reference",
        "compiled",
        "strict-device1",
        pytest.param("cupy", marks=pytest.mark.gpu),
    ],
)
def impl(request):
    return IMPLS[request.param]()


# ---------------------------------------------------------------------------------------------
# Data

ELEMENTS = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)
DTYPES = st.sampled_from([np.float32, np.float64])
LAYOUTS = st.sampled_from(["contiguous", "strided", "transposed"])
READ_LAYOUTS = st.sampled_from(["contiguous", "strided", "transposed", "readonly"])
STRENGTHS = st.floats(0, 5)


@st.composite
def same_shape(draw, n, ndim=None):
    """`n` float64 host arrays of one shape: 0-3 dims (or exactly `ndim`), sides 0-6."""
    dims = dict(min_dims=0, max_dims=3) if ndim is None else dict(min_dims=ndim, max_dims=ndim)
    shape = draw(hnp.array_shapes(**dims, min_side=0, max_side=6))
    return [draw(hnp.arrays(np.float64, shape, elements=ELEMENTS)) for _ in range(n)]


def rounded(arrays, dtype):
    """The float64 values an implementation sees after rounding to `dtype`."""
    return [a.astype(dtype).astype(np.float64) for a in arrays]


def assert_matches(impl, x, expected, dtype, scale=1.0):
    """`x` equals the float64 `expected` up to `dtype` rounding; -0.0 == 0.0."""
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    magnitude = scale + (np.max(np.abs(expected)) if expected.size else 0.0)
    np.testing.assert_allclose(impl.host(x), expected, rtol=rtol, atol=rtol * magnitude)


def soft(v, t):
    return np.sign(v) * np.maximum(np.abs(v) - t, 0)


def row_norms(w):
    return np.sqrt(np.sum(w * w, axis=1, keepdims=True))


# ---------------------------------------------------------------------------------------------
# Activations (the ReLU op's forward and backward): the bits of clip(x, 0, None) and gy * (x > 0)

SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, -1e-300, -1.0, 2.5])


def _with_specials(host):
    flat = host.reshape(-1).copy()
    flat[:min(flat.size, SPECIAL.size)] = SPECIAL[:flat.size]
    return flat.reshape(host.shape)


def _assert_same_bits(got, expected, signed_zeros=True):
    """Equal values, NaN included; with ``signed_zeros`` also the signs of zeros (NumPy's clip gives
    +0 for -0.0; the array API leaves that to the library, and array_api_strict keeps -0.0)."""
    assert got.shape == expected.shape
    assert np.array_equal(got, expected, equal_nan=True)
    if signed_zeros:
        assert np.array_equal(np.signbit(got), np.signbit(expected))


@given(arrays=same_shape(2), dtype=DTYPES, x_layout=LAYOUTS, gy_layout=READ_LAYOUTS)
def test_relu_and_relu_grad(impl, arrays, dtype, x_layout, gy_layout):
    x_host, gy_host = _with_specials(arrays[0]), arrays[1]
    x, gy = impl.put(x_host, dtype, x_layout), impl.put(gy_host, dtype, gy_layout)
    xd, gyd = x_host.astype(dtype), gy_host.astype(dtype)
    with np.errstate(invalid="ignore"):
        _assert_same_bits(np.asarray(impl.host(impl.kernels.relu(x)), dtype=dtype), np.clip(xd, 0, None),
                          signed_zeros=impl.xp is np)
        _assert_same_bits(np.asarray(impl.host(impl.kernels.relu_grad(gy, x)), dtype=dtype), gyd * (xd > 0).astype(dtype))


def test_compiled_relu_takes_channel_major_and_bulk_arrays():
    # A conv output is a transposed (channel-major) view: the compiled loops take it in memory order,
    # and arrays above the parallel threshold run in threaded chunks with the same bits.
    impl = _compiled_impl()
    rng = np.random.default_rng(0)
    for shape in [(3, 5, 4, 4), (16, 70, 32, 32)]:
        x = np.ascontiguousarray(rng.normal(size=shape).astype(np.float32).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
        gy = np.ascontiguousarray(rng.normal(size=shape).astype(np.float32).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
        y, gx = impl.kernels.relu(x), impl.kernels.relu_grad(gy, x)
        assert y.strides == x.strides and gx.strides == x.strides
        _assert_same_bits(y, np.clip(x, 0, None))
        _assert_same_bits(gx, gy * (x > 0).astype(np.float32))


def test_relu_grad_needs_one_shape_and_dtype(impl):
    x = impl.put(np.ones(4), np.float32)
    with pytest.raises(DTypeError, match=r"x has dtype \S*float32 but gy has \S*float64; expected the same dtype"):
        impl.kernels.relu_grad(impl.put(np.ones(4), np.float64), x)
    with pytest.raises(ShapeError, match="shape"):
        impl.kernels.relu_grad(impl.put(np.ones(5), np.float32), x)


@given(arrays=same_shape(2), dtype=DTYPES, x_layout=LAYOUTS, gy_layout=READ_LAYOUTS)
def test_tanh_grad(impl, arrays, dtype, x_layout, gy_layout):
    # The bits of gy * (1 - y * y) for y = tanh(x), specials included
    y_host = np.tanh(_with_specials(arrays[0]))
    y, gy = impl.put(y_host, dtype, x_layout), impl.put(arrays[1], dtype, gy_layout)
    yd, gyd = y_host.astype(dtype), arrays[1].astype(dtype)
    _assert_same_bits(np.asarray(impl.host(impl.kernels.tanh_grad(gy, y)), dtype=dtype), gyd * (1 - yd * yd))


def _activation_inputs(dtype):
    """Half a million values of both signs over [-20, 20] and the special ones (signed zeros,
    subnormals, infinities, NaN), in ``dtype``."""
    specials = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, -3e-39, np.inf, -np.inf, np.nan, 1e30, -1e30])
    return np.concatenate([np.linspace(-20, 20, 500_001), specials]).astype(dtype)


LEAKY_SLOPES = st.sampled_from([0.2, 0.01, 0.0, 1.0, 1.5, -0.3])


@given(arrays=same_shape(2), dtype=DTYPES, x_layout=LAYOUTS, gy_layout=READ_LAYOUTS, slope=LEAKY_SLOPES)
def test_leaky_relu_and_its_gradient(impl, arrays, dtype, x_layout, gy_layout, slope):
    # The bits of where(x > 0, x, slope x) and of gy * where(x > 0, 1, slope), specials included
    x_host, gy_host = _with_specials(arrays[0]), arrays[1]
    x, gy = impl.put(x_host, dtype, x_layout), impl.put(gy_host, dtype, gy_layout)
    xd, gyd = x_host.astype(dtype), gy_host.astype(dtype)
    kernels = impl.kernels
    with np.errstate(invalid="ignore"):
        y, slopes = np.where(xd > 0, xd, xd * dtype(slope)), np.where(xd > 0, 1, dtype(slope)).astype(dtype)
        _assert_same_bits(np.asarray(impl.host(kernels.leaky_relu(x, slope)), dtype=dtype), y)
        _assert_same_bits(np.asarray(impl.host(kernels.leaky_relu_slopes(x, slope)), dtype=dtype), slopes)
        _assert_same_bits(np.asarray(impl.host(kernels.leaky_relu_grad(gy, x, slope)), dtype=dtype), gyd * slopes)


def test_compiled_activations_take_channel_major_and_bulk_arrays():
    impl = _compiled_impl()
    rng = np.random.default_rng(0)
    for shape in [(3, 5, 4, 4), (16, 70, 32, 32)]:
        x, gy = (np.ascontiguousarray(rng.normal(size=shape).astype(np.float32).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
                 for _ in range(2))
        results = [impl.kernels.tanh_grad(gy, x), impl.kernels.leaky_relu(x, 0.2),
                   impl.kernels.leaky_relu_slopes(x, 0.2), impl.kernels.leaky_relu_grad(gy, x, 0.2)]
        assert all(r.strides == x.strides for r in results)
        tanh_grad, leaky, slopes, leaky_grad = results
        _assert_same_bits(tanh_grad, gy * (1 - x * x))
        _assert_same_bits(leaky, np.maximum(x, x * np.float32(0.2)))
        _assert_same_bits(slopes, np.where(x > 0, 1, np.float32(0.2)).astype(np.float32))
        _assert_same_bits(leaky_grad, gy * slopes)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_avx2_build_gives_the_activations_bits_of_the_baseline(dtype):
    from .test_build import _avx2_build

    modules = _avx2_build()
    x = _activation_inputs(dtype)
    gy = np.random.default_rng(0).normal(size=x.shape).astype(dtype)
    outputs = []
    for module in modules:
        out = [np.empty_like(x) for _ in range(3)]
        module.tanh_grad(gy, x, out[0])
        module.leaky_relu(x, out[1], 0.2)
        module.leaky_relu_grad(gy, x, out[2], 0.2)
        outputs.append(out)
    for a, b in zip(*outputs):
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))


def test_activation_kernels_check_their_arguments(impl):
    x = impl.put(np.ones(4), np.float32)
    for call in (lambda gy: impl.kernels.tanh_grad(gy, x), lambda gy: impl.kernels.leaky_relu_grad(gy, x, 0.2)):
        with pytest.raises(DTypeError, match=r"has dtype \S*float32 but gy has \S*float64; expected the same dtype"):
            call(impl.put(np.ones(4), np.float64))
        with pytest.raises(ShapeError, match="shape"):
            call(impl.put(np.ones(5), np.float32))
    for call in (impl.kernels.leaky_relu, impl.kernels.leaky_relu_slopes):
        with pytest.raises(ArgumentTypeError, match="leaky_relu: negative_slope must be a real number"):
            call(x, "0.2")
        with pytest.raises(ArgumentError, match="leaky_relu: negative_slope must be finite"):
            call(x, float("nan"))


# ---------------------------------------------------------------------------------------------
# Penalty gradients


@given(arrays=same_shape(2), dtype=DTYPES, g_layout=LAYOUTS, w_layout=READ_LAYOUTS, alpha=STRENGTHS)
def test_l1_grad(impl, arrays, dtype, g_layout, w_layout, alpha):
    g0, w0 = rounded(arrays, dtype)
    g, w = impl.put(g0, dtype, g_layout), impl.put(w0, dtype, w_layout)
    assert impl.kernels.l1_grad_(g, w, alpha) is g
    assert_matches(impl, g, g0 + alpha * np.sign(w0), dtype)
    np.testing.assert_array_equal(impl.host(w), w0)


@given(arrays=same_shape(2), dtype=DTYPES, g_layout=LAYOUTS, w_layout=READ_LAYOUTS, alpha=STRENGTHS)
def test_l2_grad(impl, arrays, dtype, g_layout, w_layout, alpha):
    g0, w0 = rounded(arrays, dtype)
    g, w = impl.put(g0, dtype, g_layout), impl.put(w0, dtype, w_layout)
    assert impl.kernels.l2_grad_(g, w, alpha) is g
    assert_matches(impl, g, g0 + alpha * w0, dtype)
    np.testing.assert_array_equal(impl.host(w), w0)


@given(arrays=same_shape(2), dtype=DTYPES, g_layout=LAYOUTS, w_layout=READ_LAYOUTS,
       l1=STRENGTHS, l2=STRENGTHS)
def test_elastic_net_grad(impl, arrays, dtype, g_layout, w_layout, l1, l2):
    g0, w0 = rounded(arrays, dtype)
    g, w = impl.put(g0, dtype, g_layout), impl.put(w0, dtype, w_layout)
    assert impl.kernels.elastic_net_grad_(g, w, l1, l2) is g
    assert_matches(impl, g, g0 + l1 * np.sign(w0) + l2 * w0, dtype)
    np.testing.assert_array_equal(impl.host(w), w0)


def test_l1_grad_is_zero_at_zero(impl):
    g = impl.put(np.array([1.0, 1.0, 1.0]), np.float64)
    w = impl.put(np.array([-2.0, 0.0, 3.0]), np.float64)
    impl.kernels.l1_grad_(g, w, 0.5)
    np.testing.assert_array_equal(impl.host(g), [0.5, 1.0, 1.5])


# ---------------------------------------------------------------------------------------------
# Proximal operators: formulas


@given(arrays=same_shape(1), dtype=DTYPES, layout=LAYOUTS, t=STRENGTHS)
def test_prox_l1(impl, arrays, dtype, layout, t):
    (v,) = rounded(arrays, dtype)
    w = impl.put(v, dtype, layout)
    assert impl.kernels.prox_l1_(w, t) is w
    assert_matches(impl, w, soft(v, t), dtype, scale=1 + t)


@given(arrays=same_shape(1), dtype=DTYPES, layout=LAYOUTS, t=STRENGTHS)
def test_prox_l2(impl, arrays, dtype, layout, t):
    (v,) = rounded(arrays, dtype)
    w = impl.put(v, dtype, layout)
    assert impl.kernels.prox_l2_(w, t) is w
    assert_matches(impl, w, v / (1 + t), dtype)


@given(arrays=same_shape(1), dtype=DTYPES, layout=LAYOUTS, t1=STRENGTHS, t2=STRENGTHS)
def test_prox_elastic_net(impl, arrays, dtype, layout, t1, t2):
    (v,) = rounded(arrays, dtype)
    w = impl.put(v, dtype, layout)
    assert impl.kernels.prox_elastic_net_(w, t1, t2) is w
    assert_matches(impl, w, soft(v, t1) / (1 + t2), dtype, scale=1 + t1)


@given(arrays=same_shape(1, ndim=2), dtype=DTYPES, layout=LAYOUTS, t=STRENGTHS)
def test_prox_group_lasso(impl, arrays, dtype, layout, t):
    (v,) = rounded(arrays, dtype)
    w = impl.put(v, dtype, layout)
    assert impl.kernels.prox_group_lasso_(w, t) is w
    norms = row_norms(v)
    safe = np.where(norms > 0, norms, 1.0)
    assert_matches(impl, w, v * np.maximum(0.0, 1 - t / safe), dtype, scale=1 + t)


@given(arrays=same_shape(1), dtype=DTYPES, layout=LAYOUTS,
       bounds=st.tuples(st.floats(-12, 12), st.floats(-12, 12)).map(sorted))
def test_clip(impl, arrays, dtype, layout, bounds):
    lo, hi = (float(np.asarray(b, dtype=dtype)) for b in bounds)  # representable bounds
    (v,) = rounded(arrays, dtype)
    w = impl.put(v, dtype, layout)
    assert impl.kernels.clip_(w, lo, hi) is w
    np.testing.assert_array_equal(impl.host(w), np.clip(v, lo, hi))


@given(arrays=same_shape(1, ndim=2), dtype=DTYPES, layout=LAYOUTS, c=st.floats(0, 20))
def test_max_norm(impl, arrays, dtype, layout, c):
    (v,) = rounded(arrays, dtype)
    w = impl.put(v, dtype, layout)
    assert impl.kernels.max_norm_(w, c) is w
    norms = row_norms(v)
    expected = np.where(norms > c, v * (c / np.where(norms > 0, norms, 1.0)), v)
    assert_matches(impl, w, expected, dtype, scale=1 + c)


def duchi_l1_ball(v, radius):
    """Duchi et al. (2008), Figure 1, with the explicit support size rho."""
    if np.abs(v).sum() <= radius:
        return v.copy()
    u = np.sort(np.abs(v).ravel())[::-1]
    css = np.cumsum(u)
    ks = np.arange(1, u.size + 1)
    rho = ks[u * ks > css - radius][-1]
    return soft(v, (css[rho - 1] - radius) / rho)


@given(arrays=same_shape(1), dtype=DTYPES, layout=LAYOUTS, radius=st.floats(0.01, 50))
def test_project_l1_ball(impl, arrays, dtype, layout, radius):
    (v,) = rounded(arrays, dtype)
    w = impl.put(v, dtype, layout)
    assert impl.kernels.project_l1_ball_(w, radius) is w
    # float32 partial sums lose precision with the l1 norm, hence its part in the tolerance.
    assert_matches(impl, w, duchi_l1_ball(v, radius), dtype, scale=1 + np.abs(v).sum())


@given(arrays=same_shape(2), dtype=DTYPES, w_layout=LAYOUTS, g_layout=READ_LAYOUTS,
       lr=st.floats(0, 1), l1=STRENGTHS, l2=STRENGTHS)
def test_sgd_prox_step(impl, arrays, dtype, w_layout, g_layout, lr, l1, l2):
    w0, g0 = rounded(arrays, dtype)
    w, g = impl.put(w0, dtype, w_layout), impl.put(g0, dtype, g_layout)
    assert impl.kernels.sgd_prox_step_(w, g, lr, l1, l2) is w
    expected = soft(w0 - lr * g0, lr * l1) / (1 + lr * l2)
    assert_matches(impl, w, expected, dtype, scale=1 + lr * (l1 + np.abs(g0).max(initial=0)))
    np.testing.assert_array_equal(impl.host(g), g0)


@given(arrays=same_shape(4), dtype=DTYPES, layout=LAYOUTS, g_layout=READ_LAYOUTS,
       lr=st.floats(0, 0.1), beta1=st.floats(0, 0.99), beta2=st.floats(0, 0.999),
       eps=st.floats(1e-8, 1e-3), weight_decay=st.floats(0, 0.1), l1=st.floats(0, 1))
def test_adamw_prox_step_three_steps(impl, arrays, dtype, layout, g_layout,
                                     lr, beta1, beta2, eps, weight_decay, l1):
    w0, *grads = rounded(arrays, dtype)
    w = impl.put(w0, dtype, layout)
    m = impl.put(np.zeros_like(w0), dtype, layout)
    v = impl.put(np.zeros_like(w0), dtype, layout)
    w_ref, m_ref, v_ref = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for step, g0 in enumerate(grads, start=1):
        g = impl.put(g0, dtype, g_layout)
        assert impl.kernels.adamw_prox_step_(w, g, m, v, step, lr, beta1, beta2, eps,
                                             weight_decay, l1) is w
        m_ref = beta1 * m_ref + (1 - beta1) * g0
        v_ref = beta2 * v_ref + (1 - beta2) * g0 * g0
        m_hat = m_ref / (1 - beta1**step)
        v_hat = v_ref / (1 - beta2**step)
        w_ref = w_ref - lr * weight_decay * w_ref
        w_ref = w_ref - lr * m_hat / (np.sqrt(v_hat) + eps)
        w_ref = soft(w_ref, lr * l1)
        np.testing.assert_array_equal(impl.host(g), g0)
    assert_matches(impl, m, m_ref, dtype)
    assert_matches(impl, v, v_ref, dtype)
    assert_matches(impl, w, w_ref, dtype, scale=1 + lr * l1)


# ---------------------------------------------------------------------------------------------
# The optimizer step's multi-tensor AdamW and finiteness screen


def native_bytes(impl, x):
    """The bytes of `x` on the host in its own dtype: equal bytes are equal bits, signed zeros too."""
    return np.ascontiguousarray(impl._to_host(x)).tobytes()


@st.composite
def adamw_lists(draw):
    """1-4 quadruples (w, g1, g2, m/v seeds) of their own shapes, dtypes and layouts."""
    count = draw(st.integers(1, 4))
    return [(draw(same_shape(3)), draw(DTYPES), draw(LAYOUTS)) for _ in range(count)]


@given(quadruples=adamw_lists(), lr=st.floats(0, 0.1), beta1=st.floats(0, 0.99),
       beta2=st.floats(0, 0.999), eps=st.floats(1e-8, 1e-3), weight_decay=st.floats(0, 0.1), l1=st.floats(0, 1))
def test_adamw_prox_steps_is_bitwise_adamw_prox_step_per_array(impl, quadruples, lr, beta1, beta2, eps,
                                                              weight_decay, l1):
    def fresh():
        ws = [impl.put(w0, dtype, layout) for (w0, _, _), dtype, layout in quadruples]
        ms = [impl.put(np.zeros_like(w0), dtype, layout) for (w0, _, _), dtype, layout in quadruples]
        vs = [impl.put(np.zeros_like(w0), dtype, layout) for (w0, _, _), dtype, layout in quadruples]
        return ws, ms, vs
    (multi_w, multi_m, multi_v), (one_w, one_m, one_v) = fresh(), fresh()
    for step in (1, 2):
        gs = [impl.put(arrays[step], dtype, "contiguous") for arrays, dtype, _ in quadruples]
        assert impl.kernels.adamw_prox_steps_(multi_w, gs, multi_m, multi_v, step, lr, beta1, beta2, eps,
                                              weight_decay, l1) is multi_w
        for w, g, m, v in zip(one_w, gs, one_m, one_v):
            impl.kernels.adamw_prox_step_(w, g, m, v, step, lr, beta1, beta2, eps, weight_decay, l1)
    for multi, one in ((multi_w, one_w), (multi_m, one_m), (multi_v, one_v)):
        assert [native_bytes(impl, x) for x in multi] == [native_bytes(impl, x) for x in one]


def sgd_numpy_step(w, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """torch.optim.SGD's step as minireg's SGD took it per parameter, in NumPy (in place on w, buf)."""
    if weight_decay:
        g = g + weight_decay * w
    if momentum:
        if first:
            buf[...] = g
        else:
            buf *= momentum
            buf += (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    w -= lr * g


SGD_OPTIONS = st.tuples(st.floats(0, 0.5), st.sampled_from([0.0, 0.9]), st.sampled_from([0.0, 0.3]),
                        st.sampled_from([0.0, 0.01]), st.booleans())


@given(triples=adamw_lists(), options=SGD_OPTIONS)
def test_sgd_steps_is_bitwise_the_per_parameter_numpy_step(impl, triples, options):
    lr, momentum, dampening, weight_decay, nesterov = options
    nesterov = nesterov and momentum > 0
    ws = [impl.put(w0, dtype, layout) for (w0, _, _), dtype, layout in triples]
    bufs = [impl.put(np.zeros_like(w0), dtype, layout) for (w0, _, _), dtype, layout in triples]
    host_ws = [w0.astype(dtype) for (w0, _, _), dtype, _ in triples]
    host_bufs = [np.zeros_like(w) for w in host_ws]
    for step in (1, 2):
        gs = [impl.put(arrays[step], dtype, "contiguous") for arrays, dtype, _ in triples]
        args = (lr, momentum, dampening, weight_decay, nesterov, step == 1)
        assert impl.kernels.sgd_steps_(ws, gs, bufs, *args) is ws
        for w, (arrays, dtype, _), buf in zip(host_ws, triples, host_bufs):
            sgd_numpy_step(w, arrays[step].astype(dtype), buf, *args)
    assert [native_bytes(impl, w) for w in ws] == [w.tobytes() for w in host_ws]
    if momentum:
        assert [native_bytes(impl, b) for b in bufs] == [b.tobytes() for b in host_bufs]


@pytest.mark.parametrize("second, error, match", [
    ((4, 3), ShapeError, r"sgd_steps_: arrays 1 \(ws\[1\], gs\[1\], bufs\[1\]\).*buf has shape"),
    ("float32", DTypeError, r"arrays 1 .*buf has dtype .*float32"),
    ("short", ArgumentError, "lists of equal length"),
])
def test_sgd_steps_checks_every_array_before_writing_any(impl, second, error, match):
    rng = np.random.default_rng(4)
    ws = [impl.put(rng.normal(size=(3, 4)), np.float64) for _ in range(2)]
    gs = [impl.put(rng.normal(size=(3, 4)), np.float64) for _ in range(2)]
    bufs = [impl.put(rng.normal(size=(3, 4)), np.float64)]
    if second != "short":
        bufs.append(impl.put(rng.normal(size=second), np.float64) if isinstance(second, tuple)
                    else impl.put(rng.normal(size=(3, 4)), np.float32))
    snapshot = [impl.host(a) for a in ws + bufs]
    with pytest.raises(error, match=match):
        impl.kernels.sgd_steps_(ws, gs, bufs, 0.1, 0.9, 0.0, 0.0, False, False)
    for a, before in zip(ws + bufs, snapshot):
        np.testing.assert_array_equal(impl.host(a), before)
    # without momentum the buffers are not read (nor checked)
    impl.kernels.sgd_steps_(ws, gs, [None, None], 0.1, 0.0, 0.0, 0.0, False, False)


def test_compiled_sgd_steps_takes_one_call_and_falls_back_per_array():
    impl = _compiled_impl()
    rng = np.random.default_rng(7)
    hosts = [[rng.normal(size=shape) for _ in range(3)] for shape in ((6, 4), (5,), (3, 2))]

    def run(layouts):
        kernels = CompiledKernels(np)
        kernels._ck = recorder = _Recorder(kernels._ck)
        ws, gs, bufs = ([impl.put(h[i], np.float32, layout) for h, layout in zip(hosts, layouts)] for i in range(3))
        kernels.sgd_steps_(ws, gs, bufs, 0.1, 0.9, 0.1, 0.01, False, False)
        return recorder.calls, [impl.host(w) for w in ws + bufs]
    calls, contiguous = run(["contiguous"] * 3)
    assert calls == ["sgd_steps"]
    calls, mixed = run(["contiguous", "strided", "contiguous"])
    assert calls == ["sgd_steps"] * 4       # the group call, then one per triple (the strided one: reference)
    for a, b in zip(contiguous, mixed):
        np.testing.assert_array_equal(a, b)


def _adamw_steps_bad_calls():
    good = dict(step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0)
    return [
        ("a short list", dict(lists=("w", "g", "m", "v"), drop=True), good, ArgumentError, "lists of equal length"),
        ("a transposed m", dict(lists=("w", "g", "m_t", "v")), good, ShapeError, r"arrays 1 \(ws\[1\].*m has shape"),
        ("a float32 v", dict(lists=("w", "g", "m", "v32")), good, DTypeError, r"arrays 1 .*v has dtype .*float32"),
        ("step 0", dict(lists=("w", "g", "m", "v")), {**good, "step": 0}, ValueError, "step"),
        ("beta1 1", dict(lists=("w", "g", "m", "v")), {**good, "beta1": 1.0}, ValueError, "beta1"),
    ]


@pytest.mark.parametrize(("case", "second", "scalars", "error", "match"), _adamw_steps_bad_calls(),
                         ids=[c[0] for c in _adamw_steps_bad_calls()])
def test_adamw_prox_steps_checks_every_array_before_writing_any(impl, case, second, scalars, error, match):
    rng = np.random.default_rng(0)
    hosts = {"w": rng.normal(size=(3, 4)), "g": rng.normal(size=(3, 4)), "m": rng.normal(size=(3, 4)),
             "v": rng.random(size=(3, 4)), "m_t": rng.normal(size=(4, 3))}
    first = [impl.put(hosts[name], np.float64) for name in ("w", "g", "m", "v")]   # a good quadruple first
    other = {name: impl.put(a, np.float64) for name, a in hosts.items()}
    other["v32"] = impl.put(hosts["v"], np.float32)
    lists = [[a, other[name]] for a, name in zip(first, second["lists"])]
    if second.get("drop"):
        lists[3] = lists[3][:1]
    snapshot = [impl.host(a) for column in lists for a in column]
    with pytest.raises(error, match=match):
        impl.kernels.adamw_prox_steps_(*lists, *scalars.values())
    for a, before in zip([a for column in lists for a in column], snapshot):
        np.testing.assert_array_equal(impl.host(a), before)


def test_compiled_adamw_prox_steps_takes_one_call_and_falls_back_per_array():
    impl = _compiled_impl()
    rng = np.random.default_rng(2)
    hosts = [[rng.normal(size=shape) for _ in range(4)] for shape in ((6, 4), (5,), (3, 2))]

    def run(layouts):
        kernels = CompiledKernels(np)
        kernels._ck = recorder = _Recorder(kernels._ck)
        lists = [[impl.put(h[i], np.float32, layout) for h, layout in zip(hosts, layouts)] for i in range(4)]
        lists[3] = [impl.xp.abs(v) for v in lists[3]]
        kernels.adamw_prox_steps_(*lists, 1, 0.1, 0.9, 0.99, 1e-8, 0.1, 0.1)
        return recorder.calls, [impl.host(w) for w in lists[0]]
    calls, contiguous = run(["contiguous"] * 3)
    assert calls == ["adamw_prox_steps"]
    # A strided array: the multi-tensor loop writes nothing; each quadruple is then dispatched alone
    # (the contiguous ones still compiled), with the same results.
    calls, mixed = run(["contiguous", "strided", "contiguous"])
    assert calls == ["adamw_prox_steps", "adamw_prox_step", "adamw_prox_step"]
    for a, b in zip(contiguous, mixed):
        np.testing.assert_array_equal(a, b)


@given(arrays=st.lists(same_shape(1), min_size=1, max_size=4), dtype=DTYPES, layout=LAYOUTS, data=st.data())
def test_surely_finite_is_true_for_finite_arrays_and_false_with_a_nan_or_infinity(impl, arrays, dtype, layout, data):
    hosts = [a for (a,) in arrays]
    assert bool(impl.host(impl.kernels.surely_finite([impl.put(h, dtype, layout) for h in hosts])))
    nonempty = [i for i, h in enumerate(hosts) if h.size]
    if nonempty:
        i = data.draw(st.sampled_from(nonempty))
        hosts[i].flat[data.draw(st.integers(0, hosts[i].size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        assert not bool(impl.host(impl.kernels.surely_finite([impl.put(h, dtype, layout) for h in hosts])))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")    # the reference's sum, on purpose
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_surely_finite_of_values_whose_sum_overflows(impl, dtype):
    # Finite values whose sum is infinite: the compiled bit test is exact (True); the summing
    # reference may only say False (then the optimizer checks elementwise), never True for a NaN.
    big = np.full((3, 2), np.finfo(dtype).max)
    flag = bool(impl.host(impl.kernels.surely_finite([impl.put(big, dtype), impl.put(big, dtype)])))
    assert flag if impl.kernels.name == "compiled" else not flag


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_optimizer_kernels_on_bulk_arrays_take_the_threaded_chunks(dtype):
    # 2**20 elements and more are split into chunks for OpenMP: same bits as the reference, and a
    # NaN in the last element of the last chunk is found.
    impl, reference = _compiled_impl(), Kernels(np)
    rng = np.random.default_rng(3)
    n = (1 << 20) + 12345
    w, g, m, v = (rng.normal(size=n).astype(dtype) for _ in range(4))
    v = np.abs(v)
    copies = [a.copy() for a in (w, g, m, v)]
    impl.kernels.adamw_prox_steps_([w], [g], [m], [v], 3, 0.01, 0.9, 0.99, 1e-8, 0.1, 0.01)
    reference.adamw_prox_step_(*copies, 3, 0.01, 0.9, 0.99, 1e-8, 0.1, 0.01)
    for a, b in zip((w, m, v), (copies[0], copies[2], copies[3])):
        assert a.tobytes() == b.tobytes()
    assert bool(impl.kernels.surely_finite([g]))
    g[-1] = np.nan
    assert not bool(impl.kernels.surely_finite([g]))
    g[-1] = 0.5
    host_w, host_b = w.copy(), m.copy()
    impl.kernels.sgd_steps_([w], [g], [m], 0.1, 0.9, 0.1, 0.01, True, False)
    sgd_numpy_step(host_w, g, host_b, 0.1, 0.9, 0.1, 0.01, True, False)
    assert w.tobytes() == host_w.tobytes() and m.tobytes() == host_b.tobytes()


# ---------------------------------------------------------------------------------------------
# Proximal operators: properties that need no formula (float64)


@given(arrays=same_shape(2), t=STRENGTHS)
def test_prox_l1_optimality_and_nonexpansive(impl, arrays, t):
    a, b = arrays
    pa = impl.host(impl.kernels.prox_l1_(impl.put(a, np.float64), t))
    pb = impl.host(impl.kernels.prox_l1_(impl.put(b, np.float64), t))
    # 0 in p - v + t * subgradient(|p|): v - p = t*sign(p) where p != 0, |v| <= t where p == 0.
    nonzero = pa != 0
    np.testing.assert_allclose((a - pa)[nonzero], t * np.sign(pa[nonzero]), atol=1e-12 * (1 + t))
    assert np.all(np.abs(a[~nonzero]) <= t)
    assert np.linalg.norm(pa - pb) <= np.linalg.norm(a - b) * (1 + 1e-12) + 1e-12


PROXES = {
    # name: (call, penalty R of the prox argmin_x 0.5*||x - v||^2 + R(x))
    "l1": (lambda k, w, t: k.prox_l1_(w, t), lambda x, t: t * np.abs(x).sum()),
    "l2": (lambda k, w, t: k.prox_l2_(w, t), lambda x, t: 0.5 * t * (x * x).sum()),
    "elastic_net": (lambda k, w, t: k.prox_elastic_net_(w, t, 2 * t),
                    lambda x, t: t * np.abs(x).sum() + t * (x * x).sum()),
    "group_lasso": (lambda k, w, t: k.prox_group_lasso_(w, t), lambda x, t: t * row_norms(x).sum()),
}


@pytest.mark.parametrize("prox", PROXES)
@given(arrays=same_shape(4, ndim=2), t=STRENGTHS, step=st.floats(1e-6, 1.0))
def test_prox_minimizes_its_objective(impl, prox, arrays, t, step):
    call, penalty = PROXES[prox]
    v, *directions = arrays
    p = impl.host(call(impl.kernels, impl.put(v, np.float64), t))

    def objective(x):
        return 0.5 * ((x - v) ** 2).sum() + penalty(x, t)

    best = objective(p)
    for d in directions:
        assert best <= objective(p + step * d) + 1e-9 * (1 + abs(best))


@pytest.mark.parametrize("prox", PROXES)
@given(arrays=same_shape(1, ndim=2))
def test_prox_with_zero_strength_is_identity(impl, prox, arrays):
    (v,) = arrays
    call, _ = PROXES[prox]
    np.testing.assert_array_equal(impl.host(call(impl.kernels, impl.put(v, np.float64), 0.0)), v)


@given(arrays=same_shape(1, ndim=2), t=STRENGTHS)
def test_group_lasso_zeroes_small_rows_and_shrinks_the_others(impl, arrays, t):
    (v,) = arrays
    p = impl.host(impl.kernels.prox_group_lasso_(impl.put(v, np.float64), t))
    norms, new_norms = row_norms(v)[:, 0], row_norms(p)[:, 0]
    # Rows whose norm ties with t up to rounding may land on either side.
    clear = np.abs(norms - t) > 1e-9 * (1 + t)
    small, large = clear & (norms <= t), clear & (norms > t)
    np.testing.assert_array_equal(p[small], 0.0)
    np.testing.assert_allclose(new_norms[large], norms[large] - t, rtol=1e-9, atol=1e-9)


@given(arrays=same_shape(2), dtype=DTYPES, lr=st.floats(0, 1), l1=STRENGTHS, l2=STRENGTHS)
def test_sgd_prox_step_is_gradient_step_then_l1_then_l2(impl, arrays, dtype, lr, l1, l2):
    w0, g0 = rounded(arrays, dtype)
    k = impl.kernels
    fused = k.sgd_prox_step_(impl.put(w0, dtype), impl.put(g0, dtype), lr, l1, l2)
    stepped = impl.put((w0 - lr * g0).astype(dtype).astype(np.float64), dtype)
    composed = k.prox_l2_(k.prox_l1_(stepped, lr * l1), lr * l2)
    assert_matches(impl, fused, impl.host(composed), dtype, scale=1 + lr * l1)


# ---------------------------------------------------------------------------------------------
# Projections: feasible, idempotent, identity on feasible points (float64)


@given(arrays=same_shape(1), bounds=st.tuples(st.floats(-12, 12), st.floats(-12, 12)).map(sorted))
def test_clip_is_a_projection(impl, arrays, bounds):
    (v,) = arrays
    lo, hi = bounds
    k = impl.kernels
    p = impl.host(k.clip_(impl.put(v, np.float64), lo, hi))
    assert np.all((lo <= p) & (p <= hi))
    np.testing.assert_array_equal(impl.host(k.clip_(impl.put(p, np.float64), lo, hi)), p)
    if v.size:
        inside = impl.put(v, np.float64)
        np.testing.assert_array_equal(impl.host(k.clip_(inside, v.min(), v.max())), v)


# c = 0 or >= 1e-6: below that the rescaled rows' squares underflow to subnormals and the norm
# check measures rounding, not the kernel (Hypothesis found c = 4e-159).
@given(arrays=same_shape(1, ndim=2), c=st.one_of(st.just(0.0), st.floats(1e-6, 20)))
def test_max_norm_is_a_projection(impl, arrays, c):
    (v,) = arrays
    k = impl.kernels
    p = impl.host(k.max_norm_(impl.put(v, np.float64), c))
    assert np.all(row_norms(p) <= c * (1 + 1e-12))
    np.testing.assert_allclose(impl.host(k.max_norm_(impl.put(p, np.float64), c)), p, rtol=1e-12)
    roomy = 2 * row_norms(v).max(initial=0) + 0.1
    np.testing.assert_array_equal(impl.host(k.max_norm_(impl.put(v, np.float64), roomy)), v)


@given(arrays=same_shape(1), radius=st.floats(0.01, 50))
def test_l1_ball_is_a_projection(impl, arrays, radius):
    (v,) = arrays
    k = impl.kernels
    p = impl.host(k.project_l1_ball_(impl.put(v, np.float64), radius))
    assert np.abs(p).sum() <= radius * (1 + 1e-9)
    again = impl.host(k.project_l1_ball_(impl.put(p, np.float64), radius))
    np.testing.assert_allclose(again, p, rtol=1e-9, atol=1e-9 * radius)
    roomy = 2 * np.abs(v).sum() + 0.1
    np.testing.assert_array_equal(impl.host(k.project_l1_ball_(impl.put(v, np.float64), roomy)), v)


# ---------------------------------------------------------------------------------------------
# Errors are raised before anything is modified


def _bad_calls():
    """(kernel, positional args by name, exception) with exactly one bad argument each."""
    return [
        ("l1_grad_", ("g", "w", -1.0), ValueError),
        ("l1_grad_", ("g", "w", float("nan")), ValueError),
        ("l2_grad_", ("g_t", "w", 1.0), ShapeError),
        ("elastic_net_grad_", ("g32", "w", 1.0, 1.0), DTypeError),
        ("prox_l1_", ("w", -0.1), ValueError),
        ("prox_l1_", ("ints", 0.1), DTypeError),
        ("prox_l2_", ("w", float("inf")), ValueError),
        ("prox_elastic_net_", ("w", 0.1, -1.0), ValueError),
        ("prox_group_lasso_", ("w1d", 0.1), ShapeError),
        ("clip_", ("w", 1.0, -1.0), ValueError),
        ("clip_", ("w", float("nan"), 1.0), ValueError),
        ("max_norm_", ("w3d", 1.0), ShapeError),
        ("max_norm_", ("w", -1.0), ValueError),
        ("project_l1_ball_", ("w", 0.0), ValueError),
        ("sgd_prox_step_", ("w", "g_t", 0.1, 0.1, 0.1), ShapeError),
        ("sgd_prox_step_", ("w", "g", -0.1, 0.1, 0.1), ValueError),
        ("adamw_prox_step_", ("w", "g", "m", "v", 0, 0.1, 0.9, 0.999, 1e-8, 0.0, 0.0), ValueError),
        ("adamw_prox_step_", ("w", "g", "m", "v", 1, 0.1, 1.0, 0.999, 1e-8, 0.0, 0.0), ValueError),
        ("adamw_prox_step_", ("w", "g", "m", "v32", 1, 0.1, 0.9, 0.999, 1e-8, 0.0, 0.0), DTypeError),
        ("adamw_prox_step_", ("w", "g", "m_t", "v", 1, 0.1, 0.9, 0.999, 1e-8, 0.0, 0.0), ShapeError),
    ]


@pytest.mark.parametrize(("kernel", "args", "error"), _bad_calls())
def test_bad_arguments_raise_before_modifying(impl, kernel, args, error):
    rng = np.random.default_rng(0)
    hosts = {
        "w": rng.normal(size=(3, 4)), "g": rng.normal(size=(3, 4)), "m": rng.normal(size=(3, 4)),
        "v": rng.random(size=(3, 4)), "g_t": rng.normal(size=(4, 3)), "m_t": rng.normal(size=(4, 3)),
        "w1d": rng.normal(size=12), "w3d": rng.normal(size=(2, 3, 2)),
    }
    arrays = {name: impl.put(a, np.float64) for name, a in hosts.items()}
    arrays["g32"] = impl.put(hosts["g"], np.float32)
    arrays["v32"] = impl.put(hosts["v"], np.float32)
    arrays["ints"] = impl.xp.asarray(np.arange(12).reshape(3, 4), device=impl.device)
    snapshot = {name: impl.host(a) for name, a in arrays.items()}
    call_args = [arrays[a] if isinstance(a, str) else a for a in args]
    with pytest.raises(error, match="expected|must|needs"):
        getattr(impl.kernels, kernel)(*call_args)
    for name, a in arrays.items():
        np.testing.assert_array_equal(impl.host(a), snapshot[name], err_msg=name)


# ---------------------------------------------------------------------------------------------
# Dispatch of the compiled table


class _Recorder:
    """Stands in for minireg._ckernels and records which loops were called."""

    def __init__(self, module):
        self.module, self.calls = module, []

    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(self.module, name)


ALL_KERNEL_CALLS = {
    "l1_grad_": lambda k, a, b, c, d: k.l1_grad_(a, b, 0.1),
    "l2_grad_": lambda k, a, b, c, d: k.l2_grad_(a, b, 0.1),
    "elastic_net_grad_": lambda k, a, b, c, d: k.elastic_net_grad_(a, b, 0.1, 0.1),
    "prox_l1_": lambda k, a, b, c, d: k.prox_l1_(a, 0.1),
    "prox_l2_": lambda k, a, b, c, d: k.prox_l2_(a, 0.1),
    "prox_elastic_net_": lambda k, a, b, c, d: k.prox_elastic_net_(a, 0.1, 0.1),
    "prox_group_lasso_": lambda k, a, b, c, d: k.prox_group_lasso_(a, 0.1),
    "clip_": lambda k, a, b, c, d: k.clip_(a, -0.1, 0.1),
    "max_norm_": lambda k, a, b, c, d: k.max_norm_(a, 0.1),
    "project_l1_ball_": lambda k, a, b, c, d: k.project_l1_ball_(a, 0.1),
    "sgd_prox_step_": lambda k, a, b, c, d: k.sgd_prox_step_(a, b, 0.1, 0.1, 0.1),
    "adamw_prox_step_": lambda k, a, b, c, d: k.adamw_prox_step_(a, b, c, d, 1, 0.1, 0.9, 0.99,
                                                                 1e-8, 0.1, 0.1),
}


@pytest.mark.parametrize("kernel", ALL_KERNEL_CALLS)
@pytest.mark.parametrize(
    ("dtype", "layout", "compiled"),
    [(np.float32, "contiguous", True), (np.float64, "contiguous", True),
     (np.float64, "readonly-input", True), (np.float64, "strided", False),
     (np.float16, "contiguous", False), (np.float64, "empty", False)],
)
def test_compiled_dispatch(kernel, dtype, layout, compiled):
    impl = _compiled_impl()
    kernels = CompiledKernels(np)
    kernels._ck = recorder = _Recorder(kernels._ck)
    rng = np.random.default_rng(1)
    shape = (0, 4) if layout == "empty" else (6, 4)
    host = [rng.normal(size=shape), rng.normal(size=shape), np.zeros(shape), np.zeros(shape)]
    arrays = [impl.put(h, dtype, "strided" if layout == "strided" else "contiguous") for h in host]
    if layout == "readonly-input":
        arrays[1].flags.writeable = False
    ALL_KERNEL_CALLS[kernel](kernels, *arrays)
    assert bool(recorder.calls) == compiled, recorder.calls


def test_compiled_grad_with_read_only_gradient_target_falls_back_and_numpy_raises():
    g = np.zeros(4)
    g.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _compiled_impl().kernels.l2_grad_(g, np.ones(4), 0.1)


# ---------------------------------------------------------------------------------------------
# Mixture prior (soft weight-sharing)


def mixture_expected(w, means, gammas, log_mix):
    """(nll, d/dw, d/dmeans, d/dgammas, d/dlog_mix) in float64, written out here."""
    lam = np.exp(gammas)
    d = w.reshape(-1, 1) - means
    a = log_mix + 0.5 * (gammas - np.log(2 * np.pi)) - 0.5 * lam * d * d
    m = a.max(axis=1, keepdims=True)
    e = np.exp(a - m)
    r = e / e.sum(axis=1, keepdims=True)
    nll = -(m[:, 0] + np.log(e.sum(axis=1))).sum()
    return (np.asarray(nll), (r * lam * d).sum(axis=1).reshape(w.shape), -lam * (r * d).sum(axis=0),
            0.5 * (lam * (r * d * d).sum(axis=0) - r.sum(axis=0)), -r.sum(axis=0))


COMPONENTS = st.integers(1, 20).flatmap(lambda j: st.tuples(
    hnp.arrays(np.float64, j, elements=st.floats(-2, 2)), hnp.arrays(np.float64, j, elements=st.floats(-2, 4)),
    hnp.arrays(np.float64, j, elements=st.floats(-5, 0))))


@given(arrays=same_shape(1), components=COMPONENTS, dtype=DTYPES, layout=READ_LAYOUTS)
def test_mixture_nll(impl, arrays, components, dtype, layout):
    w = 0.3 * arrays[0]
    host = rounded([w, *components], dtype)
    expected = mixture_expected(*host)
    nll, (grad_w,), *component_grads = impl.kernels.mixture_nll([impl.put(w, dtype, layout)],
                                                               *(impl.put(c, dtype) for c in components))
    # float32: the exponents a_ij carry rounding errors of ~1e-7 |a_ij| (|a_ij| up to ~1e3 here)
    rtol = 2e-3 if dtype == np.float32 else 1e-10
    for x, e in zip([nll, grad_w, *component_grads], expected):
        assert tuple(x.shape) == e.shape
        assert x.dtype == impl.put(np.zeros(1), dtype).dtype
        np.testing.assert_allclose(impl.host(x), e, rtol=rtol, atol=rtol * (1 + np.max(np.abs(e), initial=0)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixture_nll_on_a_large_array(impl, dtype):
    """Many blocks and chunks (of 2048 weights, each with its own sums) in the compiled kernel."""
    rng = np.random.default_rng(3)
    w = 0.2 * rng.standard_normal((200, 101))
    components = (np.linspace(-0.6, 0.6, 16), np.full(16, 3.0), np.log(np.full(16, 1 / 16)))
    expected = mixture_expected(*rounded([w, *components], dtype))
    nll, (grad_w,), *component_grads = impl.kernels.mixture_nll([impl.put(w, dtype)], *(impl.put(c, dtype) for c in components))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for x, e in zip([nll, grad_w, *component_grads], expected):
        np.testing.assert_allclose(impl.host(x), e, rtol=rtol, atol=rtol * np.max(np.abs(e)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixture_nll_over_several_arrays_is_the_nll_of_all_their_entries(impl, dtype):
    """Arrays of several shapes and layouts (one empty, one transposed, one spanning chunks) taken
    together: the same value and component gradients as their concatenation, and each array's own
    weight gradient in its shape."""
    rng = np.random.default_rng(7)
    arrays = [0.2 * rng.standard_normal(shape) for shape in [(3000,), (0, 4), (37, 21), (5, 6, 7)]]
    layouts = ["contiguous", "contiguous", "transposed", "readonly"]
    components = (np.linspace(-0.6, 0.6, 9), np.full(9, 3.0), np.log(np.full(9, 1 / 9)))
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    nll, grads_w, *component_grads = impl.kernels.mixture_nll(
        [impl.put(a, dtype, layout) for a, layout in zip(arrays, layouts)], *(impl.put(c, dtype) for c in components))
    expected_nll, expected_grad_w, *expected_components = mixture_expected(*rounded([flat, *components], dtype))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    assert [tuple(g.shape) for g in grads_w] == [a.shape for a in arrays]
    got_grad_w = np.concatenate([impl.host(g).reshape(-1) for g in grads_w])
    for x, e in zip([impl.host(nll), got_grad_w, *map(impl.host, component_grads)],
                    [expected_nll, expected_grad_w, *expected_components]):
        np.testing.assert_allclose(x, e, rtol=rtol, atol=rtol * np.max(np.abs(e)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixture_nll_is_exact_far_from_every_component(impl, dtype):
    """Weights whose every term underflows next to ordinary ones in the same block (the compiled
    kernel redoes such a block shifted by each weight's maximum), and a sharp component: the value
    and all gradients match the reference, and nothing is infinite or NaN."""
    rng = np.random.default_rng(4)
    w = 0.3 * rng.standard_normal(300)
    w[::7] = rng.choice([40.0, -35.0, 1e3, -2e4], size=w[::7].shape)
    components = (np.array([0.0, -0.5, 0.4, 2.0]), np.array([9.0, 4.0, 4.0, 12.0]), np.log([0.7, 0.1, 0.1, 0.1]))
    expected = mixture_expected(*rounded([w, *components], dtype))
    nll, (grad_w,), *component_grads = impl.kernels.mixture_nll([impl.put(w, dtype)], *(impl.put(c, dtype) for c in components))
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    for x, e in zip([nll, grad_w, *component_grads], expected):
        assert np.all(np.isfinite(impl.host(x)))
        np.testing.assert_allclose(impl.host(x), e, rtol=rtol, atol=rtol * np.max(np.abs(e)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixture_nll_weight_gradient_does_not_depend_on_the_other_weights(impl, dtype):
    """Each weight's gradient is its own, to the bit, whether the other weights of its block are
    near every component or some are far from the sharp ones (the compiled kernel then forms
    those components' terms with the flush of negligible terms to 0, elsewhere without it; the
    far weights stay near the broad component, so no block is redone shifted)."""
    w = np.random.default_rng(9).uniform(-0.1, 0.1, 1000)
    far = np.zeros(w.shape, bool)
    far[::50] = True
    w_far = np.where(far, 1.5, w)
    components = (np.array([0.0, 0.0, 0.05]), np.array([8.0, 0.0, 6.0]), np.log([0.5, 0.3, 0.2]))
    grads = [impl.host(impl.kernels.mixture_nll([impl.put(x, dtype)], *(impl.put(c, dtype) for c in components))[1][0])
             for x in (w, w_far)]
    np.testing.assert_array_equal(grads[0][~far], grads[1][~far])
    expected = mixture_expected(*rounded([w_far, *components], dtype))[1]
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(grads[1], expected, rtol=rtol, atol=rtol * np.max(np.abs(expected)))
    assert np.all(grads[1][far] != grads[0][far])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_mixture_nll_passes_nan_and_infinity_on(impl, bad):
    w = 0.3 * np.random.default_rng(8).standard_normal(300)
    w[123] = bad
    components = (np.linspace(-0.6, 0.6, 5), np.full(5, 3.0), np.full(5, -np.log(5)))
    with np.errstate(invalid="ignore"):       # the reference's exp(-inf - -inf)
        nll, (grad_w,), *_ = impl.kernels.mixture_nll([impl.put(w, np.float32)],
                                                      *(impl.put(c, np.float32) for c in components))
    assert np.isnan(impl.host(nll)) and np.isnan(impl.host(grad_w)[123])
    assert np.all(np.isfinite(np.delete(impl.host(grad_w), 123)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_mixture_nll_gives_the_same_bits_on_any_number_of_threads(dtype):
    """Threads take the fixed chunks as they come free; each chunk keeps its own sums, added in
    chunk order, so 1 and 3 threads (an uneven split) give identical results."""
    from threadpoolctl import threadpool_limits
    kernels = _compiled_impl().kernels
    rng = np.random.default_rng(6)
    w = (0.2 * rng.standard_normal(40_000)).astype(dtype)          # 640k pairs: above the threshold
    components = [np.linspace(-0.6, 0.6, 16).astype(dtype), np.full(16, 3.0, dtype), np.full(16, -np.log(16), dtype)]
    results = []
    for threads in (1, 3):
        with threadpool_limits(limits=threads, user_api="openmp"):
            nll, (grad_w,), *component_grads = kernels.mixture_nll([w], *components)
        results.append([nll, grad_w, *component_grads])
    for one, three in zip(*results):
        np.testing.assert_array_equal(one, three)


def test_mixture_nll_validation(impl):
    w = impl.put(np.zeros(3), np.float64)
    c = impl.put(np.zeros(2), np.float64)
    with pytest.raises(ShapeError):
        impl.kernels.mixture_nll([w], c, impl.put(np.zeros(3), np.float64), c)
    with pytest.raises(DTypeError):
        impl.kernels.mixture_nll([w], impl.put(np.zeros(2), np.float32), c, c)
    with pytest.raises(DTypeError, match="ws"):
        impl.kernels.mixture_nll([w, impl.put(np.zeros(3), np.float32)], c, c, c)
    with pytest.raises(ArgumentError, match="ws"):
        impl.kernels.mixture_nll([], c, c, c)


# ---------------------------------------------------------------------------------------------
# Convolution columns


@st.composite
def conv_geometry(draw):
    """(x shape, kernel, stride, padding, dilation, grid): windows that fit, grid possibly cropped."""
    pairs = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731
    kernel, stride, dilation = draw(pairs(1, 3)), draw(pairs(1, 3)), draw(pairs(1, 2))
    padding = draw(pairs(0, 2))
    size = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 7))
                 for k, d, p in zip(kernel, dilation, padding))
    full = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(size, padding, dilation, kernel, stride))
    grid = tuple(draw(st.integers(1, g)) for g in full)
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) + size
    return shape, kernel, stride, padding, dilation, grid


def reference_columns(x, kernel, stride, padding, dilation, grid, pad_value):
    """The module docstring's formula, one entry at a time."""
    n, c, h, w = x.shape
    (kh, kw), (gh, gw) = kernel, grid
    cols = np.full((c * kh * kw, n * gh * gw), pad_value)
    for ci, i, j, ni, y, g in np.ndindex(c, kh, kw, n, gh, gw):
        iy, ix = y * stride[0] + i * dilation[0] - padding[0], g * stride[1] + j * dilation[1] - padding[1]
        if 0 <= iy < h and 0 <= ix < w:
            cols[(ci * kh + i) * kw + j, (ni * gh + y) * gw + g] = x[ni, ci, iy, ix]
    return cols


@given(geometry=conv_geometry(), dtype=DTYPES, layout=st.sampled_from(["contiguous", "transposed"]),
       pad_value=st.sampled_from([0.0, -np.inf]), seed=st.integers(0, 2**16))
def test_im2col_and_its_adjoint_col2im(impl, geometry, dtype, layout, pad_value, seed):
    shape, *window = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    cols = impl.kernels.im2col(impl.put(x, dtype, layout), *window, pad_value)
    expected = reference_columns(x.astype(dtype).astype(np.float64), *window, pad_value)
    np.testing.assert_array_equal(impl.host(cols), expected)
    # col2im is the adjoint: <im2col(x), c> = <x, col2im(c)> for any columns c
    c = rng.standard_normal(expected.shape)
    image = impl.host(impl.kernels.col2im(impl.put(c, dtype), shape[2:], *window))
    assert image.shape == shape
    inside = np.where(np.isfinite(expected), expected, 0.0) if pad_value else expected
    rounded_c = c.astype(dtype).astype(np.float64)
    x_rounded = x.astype(dtype).astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert np.sum(inside * rounded_c) == pytest.approx(np.sum(x_rounded * image), rel=tol, abs=tol * c.size)


@given(geometry=conv_geometry(), dtype=DTYPES, layout=st.sampled_from(["contiguous", "transposed"]),
       seed=st.integers(0, 2**16), ties=st.booleans())
def test_max_pool_and_its_gradient_passes(impl, geometry, dtype, layout, seed, ties):
    shape, kernel, stride, padding, dilation, grid = geometry
    rng = np.random.default_rng(seed)
    # ties: few distinct values, so windows often hold several maxima
    x = rng.integers(-2, 2, shape).astype(np.float64) if ties else rng.standard_normal(shape)
    window = (kernel, stride, padding, dilation)
    cols = reference_columns(x.astype(dtype).astype(np.float64), *window, grid, -np.inf)
    cols = cols.reshape(shape[1], kernel[0] * kernel[1], -1)            # (C, k, N*gH*gW)
    maxima = cols.max(axis=1)
    y = impl.kernels.max_pool(impl.put(x, dtype, layout), *window, grid)
    to_image = lambda rows: rows.reshape(shape[1], shape[0], *grid).transpose(1, 0, 2, 3)  # noqa: E731
    np.testing.assert_array_equal(impl.host(y), to_image(maxima))
    shares = (cols == maxima[:, None, :]) / (cols == maxima[:, None, :]).sum(axis=1, keepdims=True)
    g = rng.standard_normal(tuple(y.shape))
    gx = impl.host(impl.kernels.max_pool_scatter(impl.put(g, dtype), impl.put(x, dtype, layout), y, *window))
    rows_g = g.astype(dtype).astype(np.float64).transpose(1, 0, 2, 3).reshape(shape[1], 1, -1)
    # the scatter puts share * g on each window entry; summed back per pixel (padding entries dropped)
    expected = np.zeros(shape)
    n, c, h, w = shape
    for ci, k, col in zip(*np.nonzero(shares)):
        i, j = divmod(k, kernel[1])
        ni, rest = divmod(col, grid[0] * grid[1])
        yy, gg = divmod(rest, grid[1])
        iy, ix = yy * stride[0] + i * dilation[0] - padding[0], gg * stride[1] + j * dilation[1] - padding[1]
        if 0 <= iy < h and 0 <= ix < w:
            expected[ni, ci, iy, ix] += shares[ci, k, col] * rows_g[ci, 0, col]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gx, expected, rtol=tol, atol=tol)
    # the gather is the scatter's adjoint: <scatter(g), u> = <g, gather(u)>
    u = rng.standard_normal(shape)
    gathered = impl.host(impl.kernels.max_pool_gather(impl.put(u, dtype), impl.put(x, dtype, layout), y, *window))
    u_rounded = u.astype(dtype).astype(np.float64)
    g_rounded = g.astype(dtype).astype(np.float64)
    assert np.sum(gx * u_rounded) == pytest.approx(np.sum(g_rounded * gathered), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_2x2_matches_the_reference(impl, dtype, layout):
    """MaxPool2d(2), which the compiled table runs in a loop of its own, with ties and a NaN."""
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 2, (3, 4, 6, 8)).astype(np.float64)
    x[0, 0, 0, 0] = np.nan
    window, grid = ((2, 2), (2, 2), (0, 0), (1, 1)), (3, 4)
    reference = Kernels(np)
    x_ref = x.astype(dtype)
    y_ref = reference.max_pool(x_ref, *window, grid)
    y = impl.kernels.max_pool(impl.put(x, dtype, layout), *window, grid)
    np.testing.assert_array_equal(impl.host(y), y_ref)
    g = rng.standard_normal(y_ref.shape).astype(dtype)
    u = rng.standard_normal(x.shape).astype(dtype)
    xs = impl.put(x, dtype, layout)
    np.testing.assert_allclose(impl.host(impl.kernels.max_pool_scatter(impl.put(g, dtype), xs, y, *window)),
                               reference.max_pool_scatter(g, x_ref, y_ref, *window), rtol=1e-6)
    np.testing.assert_allclose(impl.host(impl.kernels.max_pool_gather(impl.put(u, dtype), xs, y, *window)),
                               reference.max_pool_gather(u, x_ref, y_ref, *window), rtol=1e-6)


# The compiled conv and pool passes write every entry of their output (the table hands them
# numpy.empty arrays): called directly on outputs full of NaN, they must match the reference.
POOL_WINDOWS = {
    "2x2, odd size": (((2, 2), (2, 2), (0, 0), (1, 1)), (3, 5, 7, 9)),     # last row and column uncovered
    "3x3 stride 2 padding 1": (((3, 3), (2, 2), (1, 1), (1, 1)), (2, 3, 7, 6)),
    "2x3 stride 3 dilation 2": (((2, 3), (3, 3), (0, 0), (2, 2)), (2, 2, 9, 11)),   # gaps between windows
}


def _compiled_module():
    if not mk.HAVE_COMPILED:
        pytest.skip(f"minireg._ckernels is not built: {mk.COMPILED_IMPORT_ERROR}")
    from minireg.kernels.compiled import compiled_module
    return compiled_module()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_WINDOWS, ids=list(POOL_WINDOWS))
def test_compiled_conv_and_pool_passes_write_every_output_entry(case, dtype):
    ck = _compiled_module()
    window, shape = POOL_WINDOWS[case]
    rng = np.random.default_rng(11)
    reference = Kernels(np)
    x = rng.integers(-2, 3, shape).astype(dtype)       # ties
    grid = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, (k, s, p, d) in zip(shape[2:], zip(*window)))
    y = reference.max_pool(x, *window, grid)
    g = rng.standard_normal(y.shape).astype(dtype)
    u = rng.standard_normal(shape).astype(dtype)
    flat = [v for pair in window for v in pair]
    for name, out_shape, args, expected in [
            ("max_pool_scatter", shape, (g, x, y), reference.max_pool_scatter(g, x, y, *window)),
            ("max_pool_gather", y.shape, (u, x, y), reference.max_pool_gather(u, x, y, *window))]:
        out = np.full(out_shape, np.nan, dtype)
        getattr(ck, name)(*args, out, *flat)
        np.testing.assert_allclose(out, expected, rtol=1e-6, err_msg=name)
    cols = rng.standard_normal((shape[1] * window[0][0] * window[0][1], shape[0] * grid[0] * grid[1])).astype(dtype)
    image = np.full(shape, np.nan, dtype)
    ck.col2im(cols, image, *flat, *grid)
    np.testing.assert_allclose(image, reference.col2im(cols, shape[2:], *window, grid), rtol=1e-5, atol=1e-6)


def test_compiled_max_pool_scatter_keeps_the_layout_of_x():
    """After a conv, x is channel-major (C, N, H, W) memory seen as NCHW; the gradient comes out in the
    same layout, so the ReLU gradient and the conv's weight gradient read it without a copy."""
    _compiled_module()
    kernels = CompiledKernels(np)
    rng = np.random.default_rng(2)
    x = np.ascontiguousarray(rng.standard_normal((3, 2, 4, 6)).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    window = ((2, 2), (2, 2), (0, 0), (1, 1))
    y = kernels.max_pool(x, *window, (2, 3))
    g = rng.standard_normal(y.shape)
    gx = kernels.max_pool_scatter(g, x, y, *window)
    assert gx.strides == x.strides
    np.testing.assert_allclose(gx, Kernels(np).max_pool_scatter(g, x, y, *window), rtol=1e-12)


THREADS_SCRIPT = """
import hashlib, numpy as np
from minireg.kernels import CompiledKernels
k, rng = CompiledKernels(np), np.random.default_rng(0)
x = rng.standard_normal((16, 8, 31, 37)).astype(np.float32).transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)
win = ((3, 3), (1, 1), (1, 1), (1, 1))
cols = k.im2col(x, *win, (31, 37), 0.0)
image = k.col2im(cols * 1.5, (31, 37), *win, (31, 37))
pool = ((2, 2), (2, 2), (0, 0), (1, 1))
y = k.max_pool(x, *pool, (15, 18))
gx = k.max_pool_scatter(y * 0.5, x, y, *pool)
gy = k.max_pool_gather(x * 0.25, x, y, *pool)
print(hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in (cols, image, y, gx, gy))).hexdigest())
"""


def test_compiled_conv_and_pool_passes_give_the_same_bits_on_any_number_of_threads():
    """Above the parallel thresholds (1M column entries, 128k pooled pixels; the passes here are
    larger) the passes split their work across threads; no entry is summed across threads, so 1 and
    3 threads (an uneven split) give identical results."""
    import subprocess
    import sys
    _compiled_module()
    digests = set()
    for threads in (1, 3):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
        done = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], env=env, capture_output=True, text=True,
                              check=True)
        digests.add(done.stdout.strip())
    assert len(digests) == 1
