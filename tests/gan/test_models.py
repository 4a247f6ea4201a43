"""GAN model builders: output and feature shapes (MLP and DCGAN at 8x8, 28x28, 32x32), conditional
variants (concat and projection), spectral norm and normalization options, generator range, and
ShapeErrors for wrong noise, condition and image shapes."""
import re

import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.errors import ShapeError
from minireg.gan import dcgan_discriminator, dcgan_generator, mlp_discriminator, mlp_generator
from minireg.nn.spectral_norm import SpectralNorm

rng = np.random.default_rng(0)


def normal(*shape):
    return mr.tensor(rng.normal(size=shape).astype(np.float32))


def one_hot(labels, classes):
    return np.eye(classes, dtype=np.float32)[labels]


def layer_types(model):
    return [type(m).__name__ for m in model.modules()]


def test_mlp_generator_and_discriminator_shapes():
    mr.manual_seed(0)
    G = mlp_generator(noise_dim=12, hidden=(16, 8), out_dim=20)
    D = mlp_discriminator(in_dim=20, hidden=(16, 8))
    x = G(normal(5, 12))
    assert x.shape == (5, 20) and G.output_shape == (20,)
    assert D(x).shape == (5,)
    assert D.features(x).shape == (5, 8)


@pytest.mark.parametrize("image_size, features_per_width", [(8, 16), (28, 98), (32, 64)])
def test_dcgan_shapes_follow_the_layer_plan(image_size, features_per_width):
    mr.manual_seed(1)
    G = dcgan_generator(noise_dim=10, image_size=image_size, channels=3, base_width=4)
    D = dcgan_discriminator(image_size=image_size, channels=3, base_width=4)
    x = G(normal(2, 10))
    assert x.shape == (2, 3, image_size, image_size)
    assert D(x).shape == (2,)
    assert D.features(x).shape == (2, 4 * features_per_width)


@pytest.mark.parametrize("make", [
    lambda: mlp_generator(noise_dim=8, hidden=(32,), out_dim=10),
    lambda: dcgan_generator(noise_dim=8, image_size=8, base_width=4),
])
def test_generators_produce_values_in_the_open_unit_interval(make):
    mr.manual_seed(2)
    samples = make()(normal(64, 8)).numpy()
    assert np.all(np.abs(samples) < 1) and samples.std() > 0.01


def test_dcgan_generator_layers_end_in_tanh_after_batch_norm_and_relu():
    types = layer_types(dcgan_generator(noise_dim=4, image_size=28, base_width=2))
    assert types.count("ConvTranspose2d") == 3 and types.count("BatchNorm2d") == 2 and types[-1] == "Tanh"


def test_dcgan_discriminator_has_no_batch_norm_unless_asked():
    assert "BatchNorm2d" not in layer_types(dcgan_discriminator(image_size=32, base_width=2))
    with_bn = layer_types(dcgan_discriminator(image_size=32, base_width=2, batch_norm=True))
    with_ln = layer_types(dcgan_discriminator(image_size=32, base_width=2, layer_norm=True))
    assert with_bn.count("BatchNorm2d") == 2 and with_ln.count("LayerNorm") == 2   # none after the first conv
    with pytest.raises(ValueError, match="at most one of batch_norm and layer_norm"):
        dcgan_discriminator(image_size=8, batch_norm=True, layer_norm=True)


@pytest.mark.parametrize("image_size", [6, 12, 24, 0])
def test_unsupported_image_sizes_are_refused(image_size):
    with pytest.raises(ValueError, match="4 or 7 times a power of two"):
        dcgan_generator(image_size=image_size)


def test_conditional_generator_concatenates_the_condition_to_the_noise():
    mr.manual_seed(3)
    G = mlp_generator(noise_dim=6, hidden=(8,), out_dim=4, condition_dim=3, dtype="float64")
    z, c = rng.normal(size=(5, 6)), one_hot([0, 1, 2, 0, 1], 3)
    assert G.net[0].in_features == 9
    expected = G.net(mr.tensor(np.concatenate([z, c], axis=1))).numpy()
    np.testing.assert_allclose(G(mr.tensor(z), c).numpy(), expected, rtol=1e-12)
    # the condition changes the samples
    assert not np.allclose(G(mr.tensor(z), one_hot([1, 2, 0, 1, 2], 3)).numpy(), expected)


@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_conditional_mlp_discriminator(conditioning):
    mr.manual_seed(4)
    D = mlp_discriminator(in_dim=5, hidden=(7,), condition_dim=3, conditioning=conditioning, dtype="float64")
    x, c = mr.tensor(rng.normal(size=(4, 5))), mr.tensor(one_hot([0, 2, 1, 2], 3).astype(np.float64))
    assert D(x, c).shape == (4,) and D.features(x, c).shape == (4, 7)
    assert D.body[0].in_features == (8 if conditioning == "concat" else 5)


def test_projection_discriminator_adds_the_inner_product_of_embedding_and_features():
    mr.manual_seed(5)
    D = mlp_discriminator(in_dim=5, hidden=(7,), condition_dim=3, conditioning="projection", dtype="float64")
    x, labels = mr.tensor(rng.normal(size=(4, 5))), [0, 2, 1, 2]
    c = one_hot(labels, 3).astype(np.float64)
    phi = D.features(x, c).numpy()
    psi = phi @ D.head.weight.numpy().T[:, 0] + D.head.bias.numpy()[0]
    class_embeddings = D.embed.weight.numpy().T          # V: one row per class
    expected = psi + np.sum(class_embeddings[labels] * phi, axis=1)
    np.testing.assert_allclose(D(x, c).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_conditional_dcgan_pair(conditioning):
    mr.manual_seed(6)
    G = dcgan_generator(noise_dim=5, image_size=8, base_width=4, condition_dim=10)
    D = dcgan_discriminator(image_size=8, base_width=4, condition_dim=10, conditioning=conditioning)
    c = one_hot(np.arange(3), 10)
    x = G(normal(3, 5), c)
    assert x.shape == (3, 1, 8, 8) and D(x, c).shape == (3,) and D.features(x, c).shape == (3, 64)
    first_conv = next(m for m in D.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == (11 if conditioning == "concat" else 1)


def test_concat_conditioning_of_a_conv_discriminator_appends_constant_channel_maps():
    mr.manual_seed(7)
    D = dcgan_discriminator(image_size=8, base_width=2, condition_dim=2, dtype="float64")
    x, c = rng.normal(size=(3, 1, 8, 8)), rng.normal(size=(3, 2))
    maps = np.broadcast_to(c[:, :, None, None], (3, 2, 8, 8))
    expected = D.body(mr.tensor(np.concatenate([x, maps], axis=1))).numpy()
    np.testing.assert_allclose(D.features(mr.tensor(x), c).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: mlp_discriminator(in_dim=6, hidden=(5, 4), spectral_norm=True),
    lambda: mlp_discriminator(in_dim=6, hidden=(5,), condition_dim=2, conditioning="projection", spectral_norm=True),
    lambda: dcgan_discriminator(image_size=8, base_width=2, spectral_norm=True),
])
def test_spectral_norm_wraps_every_linear_and_conv(make):
    mr.manual_seed(8)
    D = make()
    wrapped = [m for m in D.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    wrappers = [m for m in D.modules() if isinstance(m, SpectralNorm)]
    assert wrapped and len(wrappers) == len(wrapped)
    assert {id(w.module) for w in wrappers} == {id(m) for m in wrapped}


def test_wrong_noise_dimension_names_expected_and_actual():
    G = mlp_generator(noise_dim=8, hidden=(4,), out_dim=3)
    with pytest.raises(ShapeError, match=r"noise \(noise_dim=8\) of shape \(N, 8\), got \(2, 7\)"):
        G(normal(2, 7))
    with pytest.raises(ShapeError, match=r"of shape \(N, 8\), got \(8,\)"):
        G(normal(8))
    with pytest.raises(ShapeError, match=r"noise_dim=4.*got \(2, 4, 1, 1\)"):
        dcgan_generator(noise_dim=4, image_size=8, base_width=2)(normal(2, 4, 1, 1))


def test_wrong_condition_is_refused_before_computing():
    G = mlp_generator(noise_dim=4, hidden=(4,), out_dim=3, condition_dim=2)
    D = mlp_discriminator(in_dim=3, hidden=(4,), condition_dim=2, conditioning="projection")
    with pytest.raises(ShapeError, match=r"condition of shape \(N, 2\), got \(3, 3\)"):
        G(normal(3, 4), normal(3, 3))
    with pytest.raises(ShapeError, match=r"expected a condition of shape \(N, 2\), got None"):
        D(normal(3, 3))
    with pytest.raises(ShapeError, match="the condition has 2 rows but the batch has 3"):
        D.features(normal(3, 3), normal(2, 2))
    with pytest.raises(ShapeError, match=r"unconditional \(condition_dim=0\) but got a condition of shape \(3, 2\)"):
        mlp_discriminator(in_dim=3, hidden=(4,))(normal(3, 3), normal(3, 2))


@pytest.mark.parametrize("shape", [(2, 1, 8, 7), (2, 3, 8, 8), (2, 64), (1, 8, 8)])
def test_image_shape_not_matching_the_discriminator(shape):
    D = dcgan_discriminator(image_size=8, channels=1, base_width=2)
    with pytest.raises(ShapeError, match=r"expected input of shape \(N, 1, 8, 8\), got " + re.escape(str(shape))):
        D(normal(*shape))
    with pytest.raises(ShapeError, match=r"expected input of shape \(N, 1, 8, 8\)"):
        D.features(normal(*shape))


def test_invalid_conditioning_is_refused():
    with pytest.raises(ValueError, match=r"conditioning must be one of \('concat', 'projection'\), got 'add'"):
        mlp_discriminator(condition_dim=2, conditioning="add")
    with pytest.raises(ValueError, match="conditioning must be one of"):
        dcgan_discriminator(image_size=8, conditioning="add")


def test_float64_models_and_integer_one_hot_conditions():
    mr.manual_seed(9)
    G = dcgan_generator(noise_dim=3, image_size=8, base_width=2, condition_dim=4, dtype="float64")
    D = dcgan_discriminator(image_size=8, base_width=2, condition_dim=4, dtype="float64")
    c = np.eye(4, dtype=np.int64)[[1, 3]]                # cast to the input's dtype
    out = D(G(mr.tensor(rng.normal(size=(2, 3))), c), c)
    assert out.dtype == np.float64 and np.all(np.isfinite(out.numpy()))
    assert all(p.dtype == np.float64 for p in list(G.parameters()) + list(D.parameters()))
