"""Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d and Upsample layers: forward vs the functional ops,
gradients, PyTorch's default init, DCGAN-style shapes, reprs and input errors."""
import math

import numpy as np
import pytest

import minireg as mr
from minireg import functional_conv as FC
from minireg import nn
from minireg.nn.conv import AvgPool2d, Conv2d, ConvTranspose2d, MaxPool2d, Upsample
from minireg.testing import gradcheck, numerical_grad
from minireg.testing.devices import fake_device

rng = np.random.default_rng(0)


def t64(*shape):
    return mr.tensor(rng.normal(size=shape))


def test_conv2d_forward_equals_functional_with_the_layer_weights():
    layer = Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2, dtype="float64")
    x = t64(2, 4, 7, 6)
    expected = FC.conv2d(x, layer.weight, layer.bias, stride=2, padding=1, dilation=(1, 2), groups=2)
    np.testing.assert_array_equal(layer(x).numpy(), expected.numpy())
    assert layer.weight.shape == (6, 2, 3, 2) and layer.bias.shape == (6,)


def test_conv_transpose2d_forward_equals_functional_with_the_layer_weights():
    layer = ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dtype="float64")
    x = t64(2, 4, 3, 5)
    expected = FC.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1, output_padding=1, groups=2)
    np.testing.assert_array_equal(layer(x).numpy(), expected.numpy())
    assert layer.weight.shape == (4, 3, 3, 3) and layer(x).shape == (2, 6, 6, 10)


@pytest.mark.parametrize("make, fan_in", [
    (lambda: Conv2d(3, 8, 3, groups=1), 3 * 9),
    (lambda: Conv2d(4, 8, (3, 2), groups=2), 2 * 6),
    (lambda: ConvTranspose2d(6, 4, 4, groups=2), 2 * 16),   # PyTorch's fan_in: weight.shape[1] * kH * kW
])
def test_default_init_is_pytorchs_kaiming_uniform(make, fan_in):
    mr.manual_seed(3)
    layer = make()
    again = (mr.manual_seed(3), make())[1]
    bound = 1 / math.sqrt(fan_in)    # kaiming-uniform with a=sqrt(5): gain*sqrt(3/fan_in) = 1/sqrt(fan_in)
    for p, q in zip(layer.parameters(), again.parameters()):
        assert p.dtype == np.float32 and p.requires_grad
        assert np.abs(p.numpy()).max() <= bound
        assert np.abs(p.numpy()).max() > 0.5 * bound     # spread over the whole interval, not a tiny one
        np.testing.assert_array_equal(p.numpy(), q.numpy())


@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2d(2, 3, 3, stride=2, padding=1, dtype="float64"), (2, 2, 5, 4)),
    (lambda: ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, dtype="float64"), (2, 2, 3, 2)),
])
def test_layer_gradients_match_finite_differences(make, shape):
    layer = make()
    x = t64(*shape)
    gradcheck(layer, [x])
    v = rng.normal(size=layer(x).shape)
    (layer(x) * mr.tensor(v)).sum().backward()
    functional = FC.conv2d if isinstance(layer, Conv2d) else FC.conv_transpose2d
    extra = {"output_padding": layer.output_padding} if isinstance(layer, ConvTranspose2d) else {}
    numeric = numerical_grad(lambda w, b: functional(x, w, b, stride=layer.stride, padding=layer.padding, **extra),
                             [layer.weight, layer.bias], v)
    np.testing.assert_allclose(layer.weight.grad.numpy(), numeric[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(layer.bias.grad.numpy(), numeric[1], rtol=1e-6, atol=1e-8)


def dcgan(z_dim=8, width=4):
    generator = nn.Sequential(
        ConvTranspose2d(z_dim, 2 * width, 4, 1, 0), nn.ReLU(),        # 1x1 -> 4x4
        ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),        # -> 8x8
        ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())                # -> 16x16
    discriminator = nn.Sequential(
        Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(negative_slope=0.2),  # 16x16 -> 8x8
        Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(negative_slope=0.2),   # -> 4x4
        Conv2d(2 * width, 1, 4, 1, 0))                                # -> 1x1
    return generator, discriminator


def test_dcgan_stack_shapes_and_gradients():
    generator, discriminator = dcgan()
    z = mr.tensor(rng.normal(size=(3, 8, 1, 1)).astype(np.float32))
    shapes, h = [], z
    for layer in generator:
        h = layer(h)
        shapes.append(h.shape)
    assert [s for s, layer in zip(shapes, generator) if isinstance(layer, ConvTranspose2d)] == [
        (3, 8, 4, 4), (3, 4, 8, 8), (3, 1, 16, 16)]
    score = discriminator(h)
    assert score.shape == (3, 1, 1, 1)
    score.sum().backward()
    for p in list(generator.parameters()) + list(discriminator.parameters()):
        assert p.grad is not None and p.grad.shape == p.shape and p.grad.dtype == np.float32


def test_conv_transpose_k4_s2_p1_doubles_height_and_width():
    layer = ConvTranspose2d(2, 2, 4, stride=2, padding=1)
    for h, w in [(1, 1), (3, 5), (7, 2)]:
        assert layer(mr.tensor(np.zeros((1, 2, h, w), np.float32))).shape == (1, 2, 2 * h, 2 * w)


@pytest.mark.parametrize("layer, op, kwargs", [
    (MaxPool2d(2), FC.max_pool2d, dict(kernel_size=2, stride=2, padding=0)),
    (MaxPool2d(3, stride=1, padding=1), FC.max_pool2d, dict(kernel_size=3, stride=1, padding=1)),
    (AvgPool2d((2, 3), stride=(1, 2)), FC.avg_pool2d, dict(kernel_size=(2, 3), stride=(1, 2), padding=0)),
])
def test_pool_layers_equal_the_functional_ops(layer, op, kwargs):
    x = t64(2, 3, 6, 5)
    np.testing.assert_array_equal(layer(x).numpy(), op(x, **kwargs).numpy())
    gradcheck(layer, [t64(1, 2, 4, 4)])


def test_upsample_repeats_pixels():
    x = t64(1, 2, 2, 3)
    y = Upsample(scale_factor=2)(x)
    np.testing.assert_array_equal(y.numpy(), np.repeat(np.repeat(x.numpy(), 2, 2), 2, 3))
    gradcheck(Upsample(scale_factor=(1, 3)), [x])


def test_layers_run_on_the_device_of_their_parameters():
    device = fake_device()
    model = nn.Sequential(Conv2d(1, 2, 3, padding=1, dtype="float64"), MaxPool2d(2), Upsample(2),
                          ConvTranspose2d(2, 1, 4, 2, 1, dtype="float64"), AvgPool2d(2)).to(device)
    x = mr.tensor(device.asarray(rng.normal(size=(2, 1, 4, 4))))
    y = model(x)
    assert y.backend is device and y.shape == (2, 1, 4, 4)
    y.sum().backward()
    assert all(p.grad.backend is device for p in model.parameters())


def test_parameters_state_dict_and_dtype():
    layer = Conv2d(2, 4, 3, bias=False, dtype="float64")
    assert layer.bias is None and list(layer.state_dict()) == ["weight"]
    assert layer.weight.dtype == np.float64 and isinstance(layer.weight, nn.Parameter)
    assert [name for name, _ in ConvTranspose2d(2, 4, 3).named_parameters()] == ["weight", "bias"]


@pytest.mark.parametrize("layer, text", [
    (Conv2d(3, 8, 3), "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1))"),
    (Conv2d(4, 8, (3, 1), stride=2, padding=1, dilation=2, groups=2, bias=False),
     "Conv2d(4, 8, kernel_size=(3, 1), stride=(2, 2), padding=(1, 1), dilation=(2, 2), groups=2, bias=False)"),
    (ConvTranspose2d(8, 4, 4, 2, 1, output_padding=1),
     "ConvTranspose2d(8, 4, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), output_padding=(1, 1))"),
    (MaxPool2d(2), "MaxPool2d(kernel_size=2, stride=2, padding=0)"),
    (AvgPool2d(3, 1, 1), "AvgPool2d(kernel_size=3, stride=1, padding=1)"),
    (Upsample(), "Upsample(scale_factor=2, mode='nearest')"),
])
def test_repr_like_pytorch(layer, text):
    assert repr(layer).split("  #")[0] == text


@pytest.mark.parametrize("layer, shape, message", [
    (Conv2d(3, 8, 3), (2, 4, 5, 5),
     r"Conv2d\(3, 8, kernel_size=\(3, 3\), stride=\(1, 1\)\): expected input of shape \(N, 3, H, W\), got \(2, 4, 5, 5\)"),
    (Conv2d(3, 8, 3), (3, 5, 5), r"Conv2d\(3, 8.*expected input of shape \(N, 3, H, W\), got \(3, 5, 5\)"),
    (ConvTranspose2d(2, 4, 4), (1, 4, 3, 3), r"ConvTranspose2d\(2, 4.*expected input of shape \(N, 2, H, W\)"),
    (MaxPool2d(2), (4, 4), r"MaxPool2d\(kernel_size=2.*expected input of shape \(N, C, H, W\), got \(4, 4\)"),
    (AvgPool2d(2), (1, 4, 4), r"AvgPool2d\(kernel_size=2.*got \(1, 4, 4\)"),
    (Upsample(), (1, 4, 4), r"Upsample\(scale_factor=2.*got \(1, 4, 4\)"),
])
def test_bad_input_shapes_name_the_layer(layer, shape, message):
    with pytest.raises(mr.ShapeError, match=message):
        layer(mr.tensor(np.zeros(shape, np.float32)))
