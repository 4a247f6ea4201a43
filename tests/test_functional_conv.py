"""Convolution, pooling and upsampling ops (minireg.functional_conv).

Forward passes are compared with plain NumPy loops written here (one loop nest per output element),
on a fixed grid of stride/padding/dilation/groups and through OpSpecs drawn by Hypothesis; the
OpSpecs also go through the generic registry checks of tests/test_ops.py (gradcheck,
gradgradcheck, float32 vs float64 gradients, non-contiguous and empty inputs) on every backend.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minireg as mr
import test_ops as generic
from minireg import functional_conv as FC
from minireg.backend.base import Backend
from minireg.testing import gradcheck, gradgradcheck
from minireg.testing import strategies as mst
from minireg.testing.opspec import OpSpec

rng = np.random.default_rng(0)


# ==== NumPy references =============================================================================
def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def pad_hw(x, padding, value=0.0):
    (ph, pw) = pair(padding)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def grid_ref(size, kernel, stride, padding, dilation):
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip(size, pair(kernel), pair(stride), pair(padding), pair(dilation)))


def conv2d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    n_, _, h, wd = x.shape
    out, cg, kh, kw = w.shape
    gh, gw = grid_ref((h, wd), (kh, kw), stride, padding, dilation)
    xp = pad_hw(x, padding)
    y = np.zeros((n_, out, gh, gw), x.dtype)
    for n, o, i, j in np.ndindex(n_, out, gh, gw):
        g = o // (out // groups)
        patch = xp[n, g * cg:(g + 1) * cg, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
        y[n, o, i, j] = np.sum(patch * w[o]) + (0 if b is None else b[o])
    return y


def conv_transpose2d_ref(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = pair(stride), pair(padding), pair(output_padding), pair(dilation)
    n_, cin, h, wd = x.shape
    _, og, kh, kw = w.shape
    out_h, out_w = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1, (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    y = np.zeros((n_, og * groups, out_h, out_w), x.dtype)
    for n, c, i, j, o, p, q in np.ndindex(n_, cin, h, wd, og, kh, kw):
        r, s = i * sh + p * dh - ph, j * sw + q * dw - pw
        if 0 <= r < out_h and 0 <= s < out_w:
            y[n, c // (cin // groups) * og + o, r, s] += x[n, c, i, j] * w[c, o, p, q]
    return y if b is None else y + b.reshape(-1, 1, 1)


def pool_ref(x, kernel_size, stride=None, padding=0, reduce=np.max, pad_value=0.0):
    (kh, kw) = pair(kernel_size)
    (sh, sw) = pair(kernel_size if stride is None else stride)
    gh, gw = grid_ref(x.shape[2:], kernel_size, (sh, sw), padding, 1)
    xp = pad_hw(x, padding, pad_value)
    y = np.zeros(x.shape[:2] + (gh, gw), x.dtype)
    for n, c, i, j in np.ndindex(*y.shape):
        y[n, c, i, j] = reduce(xp[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw])
    return y


def max_pool2d_ref(x, kernel_size, stride=None, padding=0):
    return pool_ref(x, kernel_size, stride, padding, np.max, -np.inf)


def avg_pool2d_ref(x, kernel_size, stride=None, padding=0):
    return pool_ref(x, kernel_size, stride, padding, np.mean, 0.0)


def upsample_ref(x, scale_factor):
    sh, sw = pair(scale_factor)
    return np.repeat(np.repeat(x, sh, axis=2), sw, axis=3)


def _column_entries(shape, kernel_size, stride, padding, dilation, grid):
    """(row, column, n, c, padded y, padded x) of every entry of the documented column layout."""
    n_, c_ = shape[:2]
    (kh, kw), (sh, sw), (dh, dw) = pair(kernel_size), pair(stride), pair(dilation)
    gh, gw = grid
    for n, c, i, j, y, x in np.ndindex(n_, c_, kh, kw, gh, gw):
        yield (c * kh + i) * kw + j, (n * gh + y) * gw + x, n, c, y * sh + i * dh, x * sw + j * dw


def im2col_ref(x, kernel_size, stride=1, padding=0, dilation=1):
    grid = grid_ref(x.shape[2:], kernel_size, stride, padding, dilation)
    xp = pad_hw(x, padding)
    cols = np.zeros((x.shape[1] * np.prod(pair(kernel_size)), x.shape[0] * np.prod(grid)), x.dtype)
    for row, col, n, c, y, x_ in _column_entries(x.shape, kernel_size, stride, padding, dilation, grid):
        cols[row, col] = xp[n, c, y, x_]
    return cols


def col2im_ref(cols, kernel_size, image_size, stride=1, padding=0, dilation=1):
    (kh, kw), (ph, pw), (h, w) = pair(kernel_size), pair(padding), image_size
    grid = grid_ref(image_size, kernel_size, stride, padding, dilation)
    shape = (cols.shape[1] // int(np.prod(grid)), cols.shape[0] // (kh * kw))
    image = np.zeros(shape + (h + 2 * ph, w + 2 * pw), cols.dtype)
    for row, col, n, c, y, x in _column_entries(shape, kernel_size, stride, padding, dilation, grid):
        image[n, c, y, x] += cols[row, col]
    return image[:, :, ph:ph + h, pw:pw + w]


# ==== Hypothesis cases: (arrays, kwargs), small shapes (N <= 2, C <= 3, H, W <= 5) ===============
CHANNELS = [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]   # (groups, channels per group): C <= 3


def _per_axis(draw, strategy):
    return (draw(strategy), draw(strategy))


@st.composite
def window_args(draw, max_padding=2, max_stride=2):
    kernel = _per_axis(draw, st.integers(1, 3))
    dilation = _per_axis(draw, st.integers(1, 2))
    return kernel, _per_axis(draw, st.integers(1, max_stride)), _per_axis(draw, st.integers(0, max_padding)), dilation


@st.composite
def image_for(draw, kernel, padding, dilation, channels, max_batch=2):
    """An (N, C, H, W) shape whose padded size fits the dilated kernel."""
    hw = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 5)) for k, p, d in zip(kernel, padding, dilation))
    return (draw(st.integers(1, max_batch)), channels) + hw


@st.composite
def conv2d_cases(draw):
    groups, cg = draw(st.sampled_from(CHANNELS))
    out = groups * draw(st.integers(1, 2 if groups < 3 else 1))
    kernel, stride, padding, dilation = draw(window_args())
    x = draw(mst.float_arrays(draw(image_for(kernel, padding, dilation, groups * cg))))
    arrays = (x, draw(mst.float_arrays((out, cg) + kernel)))
    if draw(st.booleans()):
        arrays += (draw(mst.float_arrays((out,))),)
    return arrays, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


@st.composite
def conv_transpose2d_cases(draw):
    groups, cg = draw(st.sampled_from(CHANNELS))
    og = draw(st.integers(1, 2 if groups < 3 else 1))
    kernel, stride, _, dilation = draw(window_args())
    shape = (draw(st.integers(1, 2)), groups * cg) + _per_axis(draw, st.integers(1, 4))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    # padding up to 2, but leaving a non-empty output
    padding = tuple(draw(st.integers(0, min(2, ((n - 1) * s + d * (k - 1) + o) // 2)))
                    for n, s, d, k, o in zip(shape[2:], stride, dilation, kernel, output_padding))
    arrays = (draw(mst.float_arrays(shape)), draw(mst.float_arrays((groups * cg, og) + kernel)))
    if draw(st.booleans()):
        arrays += (draw(mst.float_arrays((og * groups,))),)
    return arrays, {"stride": stride, "padding": padding, "output_padding": output_padding,
                    "dilation": dilation, "groups": groups}


def pool_cases(unique=False):
    @st.composite
    def draw_case(draw):
        kernel = _per_axis(draw, st.integers(1, 3))
        stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
        padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
        shape = draw(image_for(kernel, padding, (1, 1), draw(st.integers(1, 3))))
        x = draw(mst.float_arrays(shape, unique=unique, min_gap=1e-2))
        return (x,), {"kernel_size": kernel, "stride": stride, "padding": padding}
    return draw_case()


@st.composite
def upsample_cases(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + _per_axis(draw, st.integers(1, 3))
    factor = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    return (draw(mst.float_arrays(shape)),), {"scale_factor": factor}


@st.composite
def im2col_cases(draw):
    kernel, stride, padding, dilation = draw(window_args())
    x = draw(mst.float_arrays(draw(image_for(kernel, padding, dilation, draw(st.integers(1, 2))))))
    return (x,), {"kernel_size": kernel, "stride": stride, "padding": padding, "dilation": dilation}


@st.composite
def col2im_cases(draw):
    kernel, stride, padding, dilation = draw(window_args())
    n, c, h, w = draw(image_for(kernel, padding, dilation, draw(st.integers(1, 2))))
    grid = grid_ref((h, w), kernel, stride, padding, dilation)
    cols = draw(mst.float_arrays((c * kernel[0] * kernel[1], n * grid[0] * grid[1])))
    return (cols,), {"kernel_size": kernel, "image_size": (h, w), "stride": stride, "padding": padding,
                     "dilation": dilation}


def _conv(x, w, b=None, **kwargs): return FC.conv2d(x, w, b, **kwargs)
def _conv_t(x, w, b=None, **kwargs): return FC.conv_transpose2d(x, w, b, **kwargs)
def _im2col(x, **kwargs): return FC.Im2Col(**kwargs)(x)
def _col2im(cols, **kwargs): return FC.Col2Im(**kwargs)(cols)


OPS = [
    OpSpec("conv2d", _conv, conv2d_ref, conv2d_cases()),
    OpSpec("conv_transpose2d", _conv_t, conv_transpose2d_ref, conv_transpose2d_cases()),
    OpSpec("max_pool2d", FC.max_pool2d, max_pool2d_ref, pool_cases(unique=True), empty=False),
    OpSpec("avg_pool2d", FC.avg_pool2d, avg_pool2d_ref, pool_cases()),
    OpSpec("upsample_nearest2d", FC.upsample_nearest2d, upsample_ref, upsample_cases()),
    OpSpec("im2col", _im2col, im2col_ref, im2col_cases(), empty=False),
    OpSpec("col2im", _col2im, col2im_ref, col2im_cases(), empty=False),
]
ids = [spec.name for spec in OPS]


# ==== the registry's generic checks, on these specs ================================================
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", OPS, ids=ids)
def test_forward_matches_numpy_loops(spec, dtype, backend):
    generic.test_forward_matches_numpy(spec, dtype, backend)


@pytest.mark.parametrize("spec", OPS, ids=ids)
def test_gradcheck(spec, backend):
    generic.test_gradcheck(spec, backend)


@pytest.mark.parametrize("spec", OPS, ids=ids)
def test_gradgradcheck(spec, backend):
    generic.test_gradgradcheck(spec, backend)


@pytest.mark.parametrize("spec", OPS, ids=ids)
def test_float32_gradients_match_float64(spec):
    generic.test_float32_gradients_match_float64(spec)


@pytest.mark.parametrize("spec", OPS, ids=ids)
def test_non_contiguous_inputs(spec):
    generic.test_non_contiguous_inputs(spec)


@pytest.mark.parametrize("spec", [s for s in OPS if s.empty], ids=[s.name for s in OPS if s.empty])
def test_empty_batch_gives_empty_gradients(spec):
    generic.test_empty_inputs_give_empty_gradients(spec)


# ==== a fixed grid of the main parameter combinations ==============================================
def on(backend, *arrays):
    return [mr.tensor(backend.asarray(a)) for a in arrays]


CONV_GRID = [  # stride, padding, dilation, groups
    (1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), ((2, 1), (1, 0), (1, 2), 1), (1, 1, 1, 3), (2, 1, 1, 3),
]


@pytest.mark.parametrize("stride, padding, dilation, groups", CONV_GRID)
def test_conv2d_grid(stride, padding, dilation, groups, backend):
    x, w, b = rng.normal(size=(2, 3, 5, 5)), rng.normal(size=(3, 3 // groups, 3, 2)), rng.normal(size=3)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = FC.conv2d(*on(backend, x, w, b), **kwargs)
    np.testing.assert_allclose(y.numpy(), conv2d_ref(x, w, b, **kwargs), rtol=1e-12, atol=1e-12)
    fn = lambda x, w, b: FC.conv2d(x, w, b, **kwargs)
    gradcheck(fn, on(backend, x, w, b))
    gradgradcheck(fn, on(backend, x, w, b))


TRANSPOSE_GRID = [  # stride, padding, output_padding, dilation, groups
    (1, 0, 0, 1, 1), (2, 1, 1, 1, 1), (2, 0, 1, 2, 1), (1, 1, 1, 2, 1), ((2, 1), (1, 0), (1, 0), 1, 1),
    (2, 1, 0, 1, 3),
]


@pytest.mark.parametrize("stride, padding, output_padding, dilation, groups", TRANSPOSE_GRID)
def test_conv_transpose2d_grid(stride, padding, output_padding, dilation, groups, backend):
    x, w, b = rng.normal(size=(2, 3, 3, 4)), rng.normal(size=(3, 2, 3, 2)), rng.normal(size=2 * groups)
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    y = FC.conv_transpose2d(*on(backend, x, w, b), **kwargs)
    np.testing.assert_allclose(y.numpy(), conv_transpose2d_ref(x, w, b, **kwargs), rtol=1e-12, atol=1e-12)
    fn = lambda x, w, b: FC.conv_transpose2d(x, w, b, **kwargs)
    gradcheck(fn, on(backend, x, w, b))
    gradgradcheck(fn, on(backend, x, w, b))


@pytest.mark.parametrize("kernel_size, stride, padding", [(2, None, 0), (3, 2, 1), ((3, 2), 1, (1, 0)), (3, 1, 1)])
@pytest.mark.parametrize("op, ref", [(FC.max_pool2d, max_pool2d_ref), (FC.avg_pool2d, avg_pool2d_ref)],
                         ids=["max", "avg"])
def test_pool_grid(op, ref, kernel_size, stride, padding, backend):
    x = rng.permutation(2 * 2 * 5 * 5).reshape(2, 2, 5, 5) / 7.0   # distinct values: no ties for max
    kwargs = dict(kernel_size=kernel_size, stride=stride, padding=padding)
    np.testing.assert_allclose(op(*on(backend, x), **kwargs).numpy(), ref(x, **kwargs), rtol=1e-12)
    gradcheck(lambda x: op(x, **kwargs), on(backend, x))
    gradgradcheck(lambda x: op(x, **kwargs), on(backend, x))


@pytest.mark.parametrize("scale_factor", [1, 2, (3, 2)])
def test_upsample_grid(scale_factor, backend):
    x = rng.normal(size=(2, 3, 2, 3))
    y = FC.upsample_nearest2d(*on(backend, x), scale_factor)
    np.testing.assert_array_equal(y.numpy(), upsample_ref(x, scale_factor))
    gradcheck(lambda x: FC.upsample_nearest2d(x, scale_factor), on(backend, x))
    gradgradcheck(lambda x: FC.upsample_nearest2d(x, scale_factor), on(backend, x))


# ==== structure ====================================================================================
@settings(max_examples=25)
@given(window_args(), st.data())
def test_im2col_and_col2im_are_adjoint(window, data):
    """<im2col(x), c> == <x, col2im(c)>, also over a restricted grid of leading windows."""
    kernel, stride, padding, dilation = window
    shape = data.draw(image_for(kernel, padding, dilation, 2))
    full = grid_ref(shape[2:], kernel, stride, padding, dilation)
    grid = tuple(data.draw(st.integers(1, g)) for g in full)
    x = mr.tensor(rng.normal(size=shape))
    forward = FC.Im2Col(kernel, stride, padding, dilation, grid=grid)(x)
    c = mr.tensor(rng.normal(size=forward.shape))
    back = FC.Col2Im(kernel, stride, padding, dilation, image_size=shape[2:], grid=grid)(c)
    assert back.shape == shape
    np.testing.assert_allclose(np.vdot(forward.numpy(), c.numpy()), np.vdot(x.numpy(), back.numpy()), rtol=1e-10)


def test_conv2d_bias_and_weight_gradients_match_numpy_with_the_channel_major_layout():
    """The GEMM's (O, N*gH*gW) output is returned as a channel-major view; bias + ReLU + max pool
    on it give PyTorch's values, and the gradients (bias: the output gradient summed over N, H, W)
    match NumPy sums of the same chain."""
    x, w, b = rng.normal(size=(3, 2, 6, 6)), rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4)
    xt, wt, bt = mr.tensor(x), mr.tensor(w, requires_grad=True), mr.tensor(b, requires_grad=True)
    y = FC.conv2d(xt, wt, bt, padding=1)
    assert np.transpose(y.numpy(), (1, 0, 2, 3)).flags.c_contiguous
    np.testing.assert_allclose(y.numpy(), conv2d_ref(x, w, b, padding=1), rtol=1e-12)
    pooled = FC.max_pool2d(mr.F.relu(y), 2)
    u = rng.normal(size=pooled.shape)
    (pooled * mr.tensor(u)).sum().backward()
    gy = FC.MaxPoolScatter(FC.Window.of(2, 2), np.maximum(y.numpy(), 0), pooled.numpy())(mr.tensor(u)).numpy()
    gy = gy * (y.numpy() > 0)
    np.testing.assert_allclose(bt.grad.numpy(), gy.sum(axis=(0, 2, 3)), rtol=1e-10)
    cols = im2col_ref(x, 3, padding=1)
    np.testing.assert_allclose(wt.grad.numpy(), (gy.transpose(1, 0, 2, 3).reshape(4, -1) @ cols.T).reshape(w.shape),
                               rtol=1e-10)


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    x, w = rng.normal(size=(2, 4, 6, 5)), rng.normal(size=(6, 2, 3, 3))
    kwargs = dict(stride=2, padding=1, dilation=1, groups=2)
    y = FC.conv2d(mr.tensor(x), mr.tensor(w), **kwargs)
    v = rng.normal(size=y.shape)
    # output_padding recovers the rows that the strided conv skipped: 6 = (3 - 1) * 2 - 2 + 3 + 1
    back = FC.conv_transpose2d(mr.tensor(v), mr.tensor(w), output_padding=(1, 0), **kwargs)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(y.numpy(), v), np.vdot(x, back.numpy()), rtol=1e-10)


def test_max_pool_ties_share_the_gradient_evenly():
    x = mr.tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    FC.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((1, 1, 2, 2), 0.25))


def test_max_pool_padding_never_wins():
    x = mr.tensor(-np.arange(1.0, 10.0).reshape(1, 1, 3, 3), requires_grad=True)
    y = FC.max_pool2d(x, 3, stride=1, padding=1)
    assert np.all(np.isfinite(y.numpy()))
    y.sum().backward()
    assert x.grad.numpy().sum() == 9


def test_double_backward_through_a_conv_discriminator(backend):
    """A WGAN-GP style penalty: d/dw of |d D(x) / dx|^2, with D = conv -> leaky_relu -> pool -> conv."""
    def penalty(x, w1, w2):
        h = FC.avg_pool2d(mr.F.leaky_relu(FC.conv2d(x, w1, stride=2, padding=1), 0.2), 2)
        score = FC.conv2d(h, w2).sum()
        (gx,) = mr.grad(score, x, create_graph=True)
        return (gx * gx).sum()
    x, w1, w2 = rng.normal(size=(2, 2, 8, 8)), rng.normal(size=(3, 2, 3, 3)), rng.normal(size=(1, 3, 2, 2))
    gradcheck(penalty, on(backend, x, w1, w2))


def test_ops_stay_on_the_fake_device():
    from minireg.testing.devices import fake_device
    device = fake_device()
    x, w = on(device, rng.normal(size=(1, 2, 4, 4)), rng.normal(size=(2, 2, 2, 2)))
    x.requires_grad_()
    y = FC.max_pool2d(FC.upsample_nearest2d(FC.conv_transpose2d(FC.conv2d(x, w, padding=1), w, stride=2), 2), 2)
    y.sum().backward()
    assert y.backend is device and x.grad.backend is device


# ==== bad input ====================================================================================
def t(*shape):
    return mr.tensor(np.zeros(shape))


@pytest.mark.parametrize("call, message", [
    (lambda: FC.conv2d(t(3, 5, 5), t(2, 3, 3, 3)), r"conv2d: expected input of shape \(N, C, H, W\), got \(3, 5, 5\)"),
    (lambda: FC.conv2d(t(1, 4, 5, 5), t(2, 3, 3, 3)),
     r"conv2d: expected input of shape \(N, 3, H, W\) for weight \(2, 3, 3, 3\) and groups=1, got \(1, 4, 5, 5\)"),
    (lambda: FC.conv2d(t(1, 3, 5, 5), t(2, 3, 3)), r"conv2d: expected weight of shape \(out_channels, "),
    (lambda: FC.conv2d(t(1, 3, 2, 2), t(2, 3, 3, 3), padding=0), r"conv2d: kernel \(3, 3\).*larger than the padded"),
    (lambda: FC.conv2d(t(1, 3, 4, 4), t(2, 3, 3, 3), dilation=2, padding=0), r"dilated span \(5, 5\)"),
    (lambda: FC.conv2d(t(1, 4, 5, 5), t(3, 2, 3, 3), groups=2), r"conv2d: groups=2 must be a positive int dividing"),
    (lambda: FC.conv2d(t(1, 3, 5, 5), t(2, 3, 3, 3), t(3)), r"conv2d: expected bias of shape \(2,\), got \(3,\)"),
    (lambda: FC.conv_transpose2d(t(1, 2, 5, 5), t(3, 2, 3, 3)),
     r"conv_transpose2d: expected input of shape \(N, 3, H, W\) for weight \(3, 2, 3, 3\), got \(1, 2, 5, 5\)"),
    (lambda: FC.conv_transpose2d(t(1, 1, 1, 1), t(1, 1, 1, 1), padding=1), r"conv_transpose2d: .* empty output"),
    (lambda: FC.max_pool2d(t(2, 5, 5), 2), r"max_pool2d: expected input of shape \(N, C, H, W\), got \(2, 5, 5\)"),
    (lambda: FC.avg_pool2d(t(1, 1, 2, 2), 3), r"avg_pool2d: kernel \(3, 3\)"),
    (lambda: FC.upsample_nearest2d(t(4, 4), 2), r"upsample_nearest2d: expected input of shape \(N, C, H, W\)"),
    (lambda: FC.Col2Im(2, image_size=(3, 3))(t(5, 4)), r"Col2Im: expected columns of shape \(C\*2\*2, N\*2\*2\)"),
])
def test_bad_shapes_raise_shape_errors_naming_op_layout_and_shape(call, message):
    with pytest.raises(mr.ShapeError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: FC.conv_transpose2d(t(1, 1, 3, 3), t(1, 1, 3, 3), stride=2, output_padding=2),
     r"output_padding \(2, 2\) must be smaller than stride \(2, 2\) or dilation \(1, 1\)"),
    (lambda: FC.conv2d(t(1, 1, 3, 3), t(1, 1, 1, 1), stride=0), r"stride must be an int or a pair of ints >= 1"),
    (lambda: FC.conv2d(t(1, 1, 3, 3), t(1, 1, 1, 1), padding=(1, 2, 3)), r"padding must be"),
    (lambda: FC.max_pool2d(t(1, 1, 5, 5), 2, padding=2), r"max_pool2d: padding \(2, 2\) must be at most half"),
    (lambda: FC.upsample_nearest2d(t(1, 1, 2, 2), 1.5), r"scale_factor must be an int"),
])
def test_bad_arguments_raise_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
