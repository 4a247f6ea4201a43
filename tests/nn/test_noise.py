"""Noise layers: unbiased in expectation (Monte Carlo with a fixed seed), exactly the identity in
eval mode, correct gradients for a fixed mask or noise draw, drawn on the data's device and reproduced by the
seed, input-rank validation (argument validation: test_bad_arguments.py).

Monte Carlo tolerances: the mean of n independent draws has standard deviation sigma / sqrt(n),
with sigma the per-draw standard deviation given by each layer's formula; we allow 5 of them per
element (a correct layer fails with probability < 1e-6 per element, and the seed is fixed)."""
import re

import numpy as np
import pytest

import minireg as mr
from minireg import F, nn
from minireg.errors import ShapeError
from minireg.nn.noise import DropConnect, GaussianDropout, GaussianNoise, SpatialDropout2d
from minireg.testing import gradcheck, gradgradcheck

X0 = np.array([[[1.0, -2.0], [0.5, 3.0]], [[-1.5, 0.25], [2.0, -0.75]], [[4.0, 1.0], [-3.0, 0.1]]])  # (C, H, W)
N = 20_000


def batch_of_copies(x0, n=N):
    return mr.tensor(np.broadcast_to(x0, (n,) + x0.shape).copy())


def assert_unbiased(samples, expected, per_draw_std):
    mean = samples.mean(axis=0)
    assert np.all(np.abs(mean - expected) <= 5 * per_draw_std / np.sqrt(samples.shape[0])), (mean, expected)


def test_spatial_dropout_drops_whole_channels_and_is_unbiased():
    p = 0.3
    mr.manual_seed(0)
    y = SpatialDropout2d(p)(batch_of_copies(X0)).numpy()
    kept = np.all(y == (X0 / (1 - p)), axis=(2, 3))
    dropped = np.all(y == 0, axis=(2, 3))
    assert np.all(kept | dropped)
    assert abs(dropped.mean() - p) <= 5 * np.sqrt(p * (1 - p) / dropped.size)
    assert_unbiased(y, X0, np.abs(X0) * np.sqrt(p / (1 - p)))


def test_gaussian_noise_is_unbiased_with_the_given_stddev():
    mr.manual_seed(1)
    y = GaussianNoise(0.5)(batch_of_copies(X0)).numpy()
    assert_unbiased(y, X0, 0.5)
    np.testing.assert_allclose((y - X0).std(), 0.5, rtol=0.01)


def test_gaussian_dropout_is_unbiased_with_dropouts_variance():
    rate = 0.2
    mr.manual_seed(2)
    y = GaussianDropout(rate)(batch_of_copies(X0)).numpy()
    std = np.sqrt(rate / (1 - rate))
    assert_unbiased(y, X0, np.abs(X0) * std)
    np.testing.assert_allclose((y / X0).std(), std, rtol=0.01)


def test_dropconnect_masks_weights_once_per_call_and_is_unbiased():
    p, draws = 0.4, 4000
    mr.manual_seed(3)
    layer = DropConnect(nn.Linear(3, 2, dtype="float64"), p)
    x = np.array([[1.0, -0.5, 2.0]])
    rows = layer(mr.tensor(np.repeat(x, 3, axis=0))).numpy()
    np.testing.assert_array_equal(rows, rows[:1].repeat(3, axis=0))       # one mask for the whole batch
    samples = np.concatenate([layer(mr.tensor(x)).numpy() for _ in range(draws)])
    w = layer.module.weight.numpy()
    std = np.sqrt((x**2 * w**2).sum(axis=1) * p / (1 - p))             # sum_i x_i^2 W_ji^2 p / (1 - p)
    assert_unbiased(samples, layer.eval()(mr.tensor(x)).numpy()[0], std)
    w_before = layer.module.weight.numpy().copy()
    assert "weight" not in layer.module.__dict__
    np.testing.assert_array_equal(layer.module.weight.numpy(), w_before)


LAYERS = {
    "DropConnect": lambda: DropConnect(nn.Linear(4, 3, dtype="float64"), 0.5),
    "SpatialDropout2d": lambda: SpatialDropout2d(0.5),
    "GaussianNoise": lambda: GaussianNoise(0.3),
    "GaussianDropout": lambda: GaussianDropout(0.3),
}
INPUT_SHAPES = {"DropConnect": (5, 4), "SpatialDropout2d": (3, 4, 2, 2), "GaussianNoise": (2, 3, 2),
                "GaussianDropout": (2, 3, 2)}


def sample_input(kind, seed=4):
    return np.random.default_rng(seed).normal(size=INPUT_SHAPES[kind])


@pytest.mark.parametrize("kind", LAYERS)
def test_eval_mode_is_exactly_the_identity(kind):
    layer = LAYERS[kind]().eval()
    x = mr.tensor(sample_input(kind))
    y = layer(x)
    if kind == "DropConnect":
        np.testing.assert_array_equal(y.numpy(), layer.module(x).numpy())
    else:
        assert y is x


@pytest.mark.parametrize("layer", [SpatialDropout2d(0.0), GaussianNoise(0.0), GaussianDropout(0.0)], ids=repr)
def test_zero_noise_is_the_identity_in_training(layer):
    x = mr.tensor(sample_input("SpatialDropout2d"))
    assert layer.train()(x) is x


def test_certain_drop_zeroes_everything():
    x = mr.tensor(sample_input("SpatialDropout2d"))
    np.testing.assert_array_equal(SpatialDropout2d(1.0)(x).numpy(), 0.0)
    layer = DropConnect(nn.Linear(4, 3, dtype="float64"), 1.0)
    np.testing.assert_array_equal(layer(mr.tensor(sample_input("DropConnect"))).numpy(),
                                  np.broadcast_to(layer.module.bias.numpy(), (5, 3)))


def seeded(fn, seed=5):
    """fn with the global generator reseeded before every call: the same mask in every evaluation."""
    def call(*args):
        mr.manual_seed(seed)
        return fn(*args)
    return call


@pytest.mark.parametrize("kind", LAYERS)
def test_gradients_with_a_fixed_draw(kind):
    layer = LAYERS[kind]()
    x = mr.tensor(sample_input(kind))
    if kind == "DropConnect":
        original = layer.module.weight

        def fn(x, w):
            # gradcheck hands fn fresh leaves, which Module.__setattr__ would not register as parameters.
            layer.module._parameters["weight"] = w
            return F.tanh(layer(x))

        try:
            gradcheck(seeded(fn), [x, original])
            gradgradcheck(seeded(fn), [x, original])
        finally:
            layer.module._parameters["weight"] = original
    else:
        gradcheck(seeded(layer), [x])
        gradgradcheck(seeded(lambda x: F.tanh(layer(x))), [x])


@pytest.mark.parametrize("kind", LAYERS)
def test_noise_is_drawn_on_the_datas_device_and_reproduced_by_the_seed(kind, backend):
    def run():
        mr.manual_seed(6)
        layer = LAYERS[kind]().to(backend)
        x = mr.tensor(backend.asarray(sample_input(kind)))
        outputs = [layer(x) for _ in range(2)]
        assert all(y.backend is backend for y in outputs)
        return [y.numpy() for y in outputs]

    first, second = run(), run()
    assert not np.array_equal(first[0], first[1])          # a fresh draw per call
    for got, want in zip(first, second):
        np.testing.assert_array_equal(got, want)            # the same seed, the same noise on this device


@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 2, 2, 2, 2)])
def test_spatial_dropout_needs_four_dimensional_input_in_both_modes(shape):
    layer = SpatialDropout2d(0.5)
    for mode in (True, False):
        with pytest.raises(ShapeError, match=re.escape(f"expected input of shape (N, C, H, W), got {shape}")):
            layer.train(mode)(mr.tensor(np.zeros(shape)))
