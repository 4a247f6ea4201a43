"""Convolution and pooling on NCHW tensors, with PyTorch's semantics and argument names.

Everything is built on one pair of linear Functions that are each other's adjoint, ``Im2Col`` and
``Col2Im``, plus the core ops (matmul, reshape, mean, ...) and ``ConvProduct`` (the GEMM with the bias
added in place), and max pooling on one pair of linear
Functions of the same kind (``MaxPoolScatter``, ``MaxPoolGather``), so every gradient is itself made of
differentiable ops and double backward (gradient penalties through a conv net) works.

Column layout: for a window of size (kH, kW), stride s, padding p and dilation d, window offset
(i, j) at grid position (y, x) reads the padded pixel (y*sH + i*dH, x*sW + j*dW), and

    cols[(c*kH + i)*kW + j, (n*gH + y)*gW + x] = x_padded[n, c, y*sH + i*dH, x*sW + j*dW]

of shape (C*kH*kW, N*gH*gW). Batch and grid share the column axis so that a whole-batch conv is
a single GEMM ``W (O, C*kH*kW) @ cols``; channels lead the row axis so that groups are a reshape
to (groups, C/groups*kH*kW, N*gH*gW). The GEMM's (O, N*gH*gW) output is returned as a channel-major
view (N, O, gH, gW); elementwise ops and the compiled max-pool gradient keep that layout, so the
weight gradient reads the output gradient back as (O, N*gH*gW) without a copy. The pair's array work is the backend's kernel table
(``kernels.im2col``/``col2im``: strided slices in the reference, Cython loops for NumPy float arrays).
"""
import builtins
import math
import operator
from typing import NamedTuple

from minireg.errors import ArgumentError, ShapeError
from minireg.function import Function
from minireg.functional import MatMul, _t, broadcast_to, matmul, mean, reshape, swapaxes, transpose

__all__ = ["Im2Col", "Col2Im", "ConvProduct", "MaxPool2d", "MaxPoolScatter", "MaxPoolGather", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "upsample_nearest2d"]


def pair(value, name, minimum):
    """``value`` (an int or a pair of ints, each >= ``minimum``) as an (H, W) pair."""
    try:
        values = tuple(map(operator.index, value)) if isinstance(value, (tuple, list)) else (operator.index(value),) * 2
    except TypeError:
        values = ()
    if len(values) != 2 or any(v < minimum for v in values):
        raise ArgumentError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return values


class Window(NamedTuple):
    """Kernel geometry along (H, W), each a pair of ints."""
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple

    @classmethod
    def of(cls, kernel_size, stride=1, padding=0, dilation=1):
        return cls(pair(kernel_size, "kernel_size", 1), pair(stride, "stride", 1), pair(padding, "padding", 0),
                   pair(dilation, "dilation", 1))

    @property
    def span(self):
        """The dilated kernel's extent d*(k-1) + 1."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    def grid(self, size):
        """How many windows fit in an image of ``size`` (H, W) once padded: (H + 2p - span) // s + 1."""
        return tuple((n + 2 * p - e) // s + 1 for n, p, e, s in zip(size, self.padding, self.span, self.stride))

    def fits(self, size, grid):
        return all(g >= 1 and (g - 1) * s + e <= n + 2 * p
                   for n, g, p, e, s in zip(size, grid, self.padding, self.span, self.stride))


def expect_nchw(op, x, channels=None, context=""):
    """Raise a ShapeError unless ``x`` is (N, C, H, W), with C == ``channels`` when given."""
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        layout = f"(N, {'C' if channels is None else channels}, H, W)"
        raise ShapeError(f"{op}: expected input of shape {layout}{context}, got {tuple(x.shape)}")


def _expect_weight(op, weight, layout):
    if weight.ndim != 4:
        raise ShapeError(f"{op}: expected weight of shape {layout}, got {tuple(weight.shape)}")


def _expect_groups(op, groups, *channels):
    if not isinstance(groups, int) or groups < 1 or any(c % groups for c in channels):
        raise ShapeError(f"{op}: groups={groups!r} must be a positive int dividing the channel counts {channels}")


def _expect_bias(op, bias, channels):
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ShapeError(f"{op}: expected bias of shape ({channels},), got {tuple(bias.shape)}")


def _expect_fits(op, window, x):
    size = x.shape[2:]
    if not window.fits(size, window.grid(size)):
        raise ShapeError(f"{op}: kernel {window.kernel} (dilated span {window.span}) is larger than the padded "
                         f"input {tuple(n + 2 * p for n, p in zip(size, window.padding))} (input of shape "
                         f"{tuple(x.shape)}, padding {window.padding})")


# ==== the im2col pair ==============================================================================
class Im2Col(Function):
    """Image (N, C, H, W) -> columns (C*kH*kW, N*gH*gW) in the layout of the module docstring.

    The padding holds ``pad_value`` (0; max pooling uses -inf). ``grid`` keeps only the leading
    (gH, gW) window positions (default: every position that fits). Affine in x; backward is Col2Im.
    """

    def __init__(self, kernel_size, stride=1, padding=0, dilation=1, *, grid=None, pad_value=0.0):
        self.window = Window.of(kernel_size, stride, padding, dilation)
        self.grid, self.pad_value = (tuple(grid) if grid is not None else None), pad_value

    def forward(self, x):
        w = self.window
        if x.ndim != 4:
            raise ShapeError(f"Im2Col: expected an image of shape (N, C, H, W), got {tuple(x.shape)}")
        n, c, h, wd = x.shape
        self.grid = self.grid or w.grid((h, wd))
        if not w.fits((h, wd), self.grid):
            raise ShapeError(f"Im2Col: a {self.grid} grid of windows {w.kernel} (dilated span {w.span}, stride "
                             f"{w.stride}) does not fit the input {tuple(x.shape)} with padding {w.padding}")
        return self.backend.kernels.im2col(x, w.kernel, w.stride, w.padding, w.dilation, self.grid, self.pad_value)

    def backward(self, gy):
        return (Col2Im(*self.window, image_size=self.inputs[0].shape[2:], grid=self.grid)(gy),)


class Col2Im(Function):
    """Columns (C*kH*kW, N*gH*gW) -> image (N, C, H, W): the adjoint of Im2Col.

    Every column entry is added back to the pixel it was read from (overlapping windows sum;
    entries read from the padding are dropped). Backward is Im2Col.
    """

    def __init__(self, kernel_size, stride=1, padding=0, dilation=1, *, image_size, grid=None):
        self.window = Window.of(kernel_size, stride, padding, dilation)
        self.image_size = tuple(image_size)
        self.grid = tuple(grid) if grid is not None else self.window.grid(self.image_size)

    def forward(self, cols):
        w = self.window
        (kh, kw), (gh, gw) = w.kernel, self.grid
        if (cols.ndim != 2 or cols.shape[0] % (kh * kw) or cols.shape[1] % (gh * gw)
                or not w.fits(self.image_size, self.grid)):
            raise ShapeError(f"Col2Im: expected columns of shape (C*{kh}*{kw}, N*{gh}*{gw}) from windows that fit "
                             f"an image of size {self.image_size} with padding {w.padding}, got {tuple(cols.shape)}")
        return self.backend.kernels.col2im(cols, self.image_size, w.kernel, w.stride, w.padding, w.dilation, self.grid)

    def backward(self, gy):
        return (Im2Col(*self.window, grid=self.grid)(gy),)


class ConvProduct(Function):
    """Per group g: y_g = W_g (O/groups, K) @ cols_g (K, M) + b_g, with the bias (groups, O/groups, 1)
    added in place to the fresh product (one pass fewer over the conv's output than a separate add,
    whose gradient would also reduce a 4-D broadcast). Backward is made of matmuls, so it
    differentiates again."""
    saves = (0, 1)

    def forward(self, w, cols, b):
        y = self.xp.matmul(w, cols)
        y += b
        return y

    def backward(self, gy):
        need_w, need_cols, need_b = self.needs_input_grad
        gw = MatMul(transpose_b=True)(gy, self.inputs[1]) if need_w else None
        gcols = MatMul(transpose_a=True)(self.inputs[0], gy) if need_cols else None
        gb = None
        if need_b:   # the row sums as a GEMV with ones: 3-5x faster than sum's pairwise reduction
            gb = matmul(gy, self.const(self.backend.ones((gy.shape[-1], 1), gy.data.dtype)))
        return gw, gcols, gb


def _to_nchw(y, n, grid):
    """(C, N*gH*gW) -> (N, C, gH, gW)."""
    return transpose(reshape(y, (y.shape[0], n) + tuple(grid)), (1, 0, 2, 3))


# ==== convolutions =================================================================================
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation, as torch.nn.functional.conv2d.

    x (N, C, H, W), weight (O, C/groups, kH, kW), bias (O,) -> (N, O, gH, gW) with
    gH = (H + 2p - d*(kH-1) - 1) // s + 1. Per group g: y_g = W_g (O/groups, C/groups*kH*kW) @ cols_g + b_g.
    The output is a channel-major (O, N, gH, gW) array seen as NCHW: the GEMM's own layout, kept
    by the elementwise ops that follow (no transposing copy).
    """
    x, weight = _t(x), _t(weight)
    expect_nchw("conv2d", x)
    _expect_weight("conv2d", weight, "(out_channels, in_channels/groups, kH, kW)")
    out_channels, group_channels = weight.shape[:2]
    _expect_groups("conv2d", groups, x.shape[1], out_channels)
    expect_nchw("conv2d", x, group_channels * groups, f" for weight {weight.shape} and groups={groups}")
    _expect_bias("conv2d", bias, out_channels)
    window = Window.of(weight.shape[2:], stride, padding, dilation)
    _expect_fits("conv2d", window, x)
    n, grid = x.shape[0], window.grid(x.shape[2:])
    columns = n * math.prod(grid)
    cols = reshape(Im2Col(*window)(x), (groups, group_channels * math.prod(window.kernel), columns))
    w = reshape(weight, (groups, out_channels // groups, -1))
    y = matmul(w, cols) if bias is None else ConvProduct()(w, cols, reshape(bias, (groups, out_channels // groups, 1)))
    return _to_nchw(reshape(y, (out_channels, columns)), n, grid)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """The adjoint of conv2d with respect to its input, as torch.nn.functional.conv_transpose2d.

    x (N, C, H, W), weight (C, O/groups, kH, kW), bias (O,) -> (N, O, H', W') with
    H' = (H - 1)*s - 2p + d*(kH-1) + output_padding + 1. Per group: cols_g = W_g^T @ x_g, then
    Col2Im onto the H' x W' image over the H x W grid of input pixels.
    """
    x, weight = _t(x), _t(weight)
    expect_nchw("conv_transpose2d", x)
    _expect_weight("conv_transpose2d", weight, "(in_channels, out_channels/groups, kH, kW)")
    in_channels, group_out = weight.shape[:2]
    expect_nchw("conv_transpose2d", x, in_channels, f" for weight {weight.shape}")
    _expect_groups("conv_transpose2d", groups, in_channels)
    out_channels = group_out * groups
    _expect_bias("conv_transpose2d", bias, out_channels)
    window = Window.of(weight.shape[2:], stride, padding, dilation)
    extra = pair(output_padding, "output_padding", 0)
    if any(e >= builtins.max(s, d) for e, s, d in zip(extra, window.stride, window.dilation)):
        raise ArgumentError(f"conv_transpose2d: output_padding {extra} must be smaller than stride "
                            f"{window.stride} or dilation {window.dilation}")
    grid = x.shape[2:]
    size = tuple((g - 1) * s - 2 * p + e + o for g, s, p, e, o in zip(grid, window.stride, window.padding,
                                                                        window.span, extra))
    if any(v < 1 for v in size):
        raise ShapeError(f"conv_transpose2d: input of shape {x.shape} with kernel {window.kernel}, stride "
                         f"{window.stride}, padding {window.padding} gives an empty output of size {size}")
    columns = x.shape[0] * math.prod(grid)
    xs = reshape(transpose(x, (1, 0, 2, 3)), (groups, in_channels // groups, columns))
    cols = matmul(swapaxes(reshape(weight, (groups, in_channels // groups, -1)), 1, 2), xs)
    cols = reshape(cols, (out_channels * math.prod(window.kernel), columns))
    y = Col2Im(*window, image_size=size, grid=grid)(cols)
    return y if bias is None else y + reshape(bias, (out_channels, 1, 1))


# ==== pooling and upsampling =======================================================================
def _pool_window(op, x, kernel_size, stride, padding):
    """(x as a Tensor, its pooling Window) after the checks every pooling op shares."""
    x = _t(x)
    window = Window.of(kernel_size, kernel_size if stride is None else stride, padding)
    expect_nchw(op, x)
    if any(2 * p > k for p, k in zip(window.padding, window.kernel)):
        raise ArgumentError(f"{op}: padding {window.padding} must be at most half the kernel size {window.kernel}")
    _expect_fits(op, window, x)
    return x, window


def _pool(op, reduce, x, kernel_size, stride, padding, pad_value):
    x, window = _pool_window(op, x, kernel_size, stride, padding)
    n, c = x.shape[:2]
    grid = window.grid(x.shape[2:])
    cols = reshape(Im2Col(*window, pad_value=pad_value)(x), (c, math.prod(window.kernel), n * math.prod(grid)))
    return _to_nchw(reduce(cols, axis=1), n, grid)


class MaxPool2d(Function):
    """Max over each window of an (N, C, H, W) image, the padding counting as -inf. Backward is
    MaxPoolScatter: tied maxima share a window's gradient evenly."""

    def __init__(self, window, grid):
        self.window, self.grid = window, grid

    def forward(self, x):
        w = self.window
        return self.backend.kernels.max_pool(x, w.kernel, w.stride, w.padding, w.dilation, self.grid)

    def backward(self, gy):
        return (MaxPoolScatter(self.window, self.inputs[0].data, self.output.data)(gy),)


class MaxPoolScatter(Function):
    """Window gradients (N, C, gH, gW) -> image gradient (N, C, H, W): each window's value is shared by
    the entries of x equal to the window's max y. Linear, with the shares fixed by (x, y) (their own
    derivative is zero almost everywhere); backward is MaxPoolGather, its adjoint."""

    def __init__(self, window, x, y):
        self.window, self.x, self.y = window, x, y

    def forward(self, g):
        w = self.window
        return self.backend.kernels.max_pool_scatter(g, self.x, self.y, w.kernel, w.stride, w.padding, w.dilation)

    def backward(self, gx):
        return (MaxPoolGather(self.window, self.x, self.y)(gx),)


class MaxPoolGather(Function):
    """Image (N, C, H, W) -> windows (N, C, gH, gW): each window's mean over its maxima (the shares of
    MaxPoolScatter, whose adjoint it is; backward is MaxPoolScatter)."""

    def __init__(self, window, x, y):
        self.window, self.x, self.y = window, x, y

    def forward(self, g):
        w = self.window
        return self.backend.kernels.max_pool_gather(g, self.x, self.y, w.kernel, w.stride, w.padding, w.dilation)

    def backward(self, gy):
        return (MaxPoolScatter(self.window, self.x, self.y)(gy),)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each window (padding is -inf); tied maxima share the gradient evenly."""
    x, window = _pool_window("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d(window, window.grid(x.shape[2:]))(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window, zero padding counted (PyTorch's count_include_pad=True)."""
    return _pool("avg_pool2d", mean, x, kernel_size, stride, padding, 0.0)


def upsample_nearest2d(x, scale_factor):
    """Repeat every pixel ``scale_factor`` (int or pair) times along H and W: (N, C, H*sH, W*sW)."""
    x = _t(x)
    sh, sw = pair(scale_factor, "scale_factor", 1)
    expect_nchw("upsample_nearest2d", x)
    n, c, h, w = x.shape
    y = broadcast_to(reshape(x, (n, c, h, 1, w, 1)), (n, c, h, sh, w, sw))
    return reshape(y, (n, c, h * sh, w * sw))
