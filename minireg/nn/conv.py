"""Convolution, pooling and upsampling layers on NCHW inputs (PyTorch's names, layouts and init)."""
from minireg import check
from minireg import functional_conv as FC
from minireg.errors import ArgumentError
from minireg.nn import init
from minireg.nn.layers import check_input, empty_parameter, layer_input, record_activity, set_regularizers
from minireg.nn.module import Module

__all__ = ["Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "Upsample"]


class _ConvNd(Module):
    """Shared by Conv2d and ConvTranspose2d: geometry as (H, W) pairs, ``weight`` of shape
    ``weight_shape``, ``bias`` (out_channels,), PyTorch's default init (kaiming-uniform a=sqrt(5)),
    and the Keras-style regularizer options of ``Linear`` (``minireg.nn.layers.set_regularizers``)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, dtype,
                 output_padding=0, regularizers=None):
        name = type(self).__name__
        in_channels = check.positive_int(f"{name}: in_channels", in_channels)
        out_channels = check.positive_int(f"{name}: out_channels", out_channels)
        groups = check.positive_int(f"{name}: groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ArgumentError(f"{name}: groups={groups} must divide in_channels={in_channels} "
                                f"and out_channels={out_channels}")
        window = FC.Window.of(kernel_size, stride, padding, dilation)
        bias = check.flag(f"{name}: bias", bias)
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding, self.dilation = window
        self.output_padding = FC.pair(output_padding, "output_padding", 0)
        self.weight = empty_parameter(self.weight_shape(), dtype)
        self.bias = empty_parameter((out_channels,), dtype) if bias else None
        init.default_weight_init_(self.weight, self.bias)
        set_regularizers(self, regularizers or {})

    def _input(self, x):
        x = layer_input(self, x, self.weight)
        check_input(self, x, (4,), f"(N, {self.in_channels}, H, W)", x.ndim == 4 and x.shape[1] == self.in_channels)
        return x

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        for name, default in (("padding", 0), ("dilation", 1), ("output_padding", 0)):
            if getattr(self, name) != (default, default):
                s += f", {name}={getattr(self, name)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + (", bias=False" if self.bias is None else "")


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation): weight (out_channels, in_channels/groups, kH, kW)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 dtype=None, **regularizers):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, dtype,
                         regularizers=regularizers)

    def weight_shape(self):
        return (self.out_channels, self.in_channels // self.groups) + self.kernel_size

    def forward(self, x):
        x = self._input(x)
        return record_activity(self, FC.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                               self.groups))


class ConvTranspose2d(_ConvNd):
    """Transposed convolution (the input-gradient of Conv2d): weight (in_channels, out_channels/groups, kH, kW).

    Output size (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1; kernel 4, stride 2,
    padding 1 doubles H and W (the DCGAN generator block).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, dtype=None, **regularizers):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, dtype,
                         output_padding, regularizers)

    def weight_shape(self):
        return (self.in_channels, self.out_channels // self.groups) + self.kernel_size

    def forward(self, x):
        x = self._input(x)
        return record_activity(self, FC.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                                         self.output_padding, self.dilation, self.groups))


class _Pool2d(Module):
    pool = None   # the functional op, a staticmethod

    def __init__(self, kernel_size, stride=None, padding=0):
        stride = kernel_size if stride is None else stride
        FC.Window.of(kernel_size, stride, padding)   # checks the geometry now, not at the first call
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        check_input(self, x, (4,), "(N, C, H, W)", True)
        return self.pool(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over windows; stride defaults to kernel_size, padding is -inf."""
    pool = staticmethod(FC.max_pool2d)


class AvgPool2d(_Pool2d):
    """Mean over windows; stride defaults to kernel_size, zero padding counted in the mean."""
    pool = staticmethod(FC.avg_pool2d)


class Upsample(Module):
    """Nearest-neighbour upsampling by an integer ``scale_factor`` (or an (H, W) pair)."""

    def __init__(self, scale_factor=2, mode="nearest"):
        FC.pair(scale_factor, "Upsample: scale_factor", 1)
        check.choice("Upsample: mode (only nearest-neighbour is implemented)", mode, ("nearest",))
        super().__init__()
        self.scale_factor, self.mode = scale_factor, mode

    def forward(self, x):
        check_input(self, x, (4,), "(N, C, H, W)", True)
        return FC.upsample_nearest2d(x, self.scale_factor)

    def extra_repr(self):
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"
