"""GAN generators and discriminators: MLPs for flat data, DCGAN-style conv nets for NCHW images.

Conventions shared by every builder:

- Generators map noise z (N, noise_dim) to samples in [-1, 1] (tanh output): flat (N, out_dim)
  for the MLP, images (N, channels, H, W) for DCGAN. Call ``G(z)`` or ``G(z, condition)``.
- Discriminators map samples to one logit / critic value per sample, shape (N,). Call ``D(x)`` or
  ``D(x, condition)``; ``D.features(x[, condition])`` gives the penultimate features (N, F), the
  f of feature matching and the phi of the projection discriminator.
- Conditional models (``condition_dim > 0``) take a condition of shape (N, condition_dim): a class
  one-hot or any attribute/feature vector, cast to the input's dtype. The generator concatenates
  it to the noise; the discriminator either concatenates it to its input (``"concat"``: to the
  flat vector, or as ``condition_dim`` constant channel maps of a conv input) or projects it
  (``"projection"``, Miyato & Koyama 2018): D(x, y) = psi(phi(x)) + <V y, phi(x)>, with
  psi = the head Linear(F, 1) and V = Linear(condition_dim, F, bias=False), the embedding
  matrix of a one-hot y (a continuous y is projected linearly).
- Inputs are checked before anything is computed: a wrong noise, condition or image shape raises
  ``minireg.ShapeError`` naming the expected and the actual shape.
- ``spectral_norm=True`` wraps every Linear and Conv2d of a discriminator (head and projection
  embedding included, as Miyato et al.) in ``minireg.nn.spectral_norm.SpectralNorm`` (one power
  iteration per training-mode call).
- ``dtype`` (e.g. "float64") sets the dtype of every parameter.

DCGAN layer plans (Radford et al. 2016). An ``image_size`` must be s * 2^n with s = 4 or 7 and
n >= 1: 8 = 4*2, 16 = 4*4, 32 = 4*8, 64 = 4*16, 14 = 7*2, 28 = 7*4. With b = ``base_width``:

    size  generator                                           discriminator (features)
    8     z -> 4x4 (b) -> 8x8 (C)                              8x8 -> 4x4 (b)                  F = 16 b
    28    z -> 7x7 (2b) -> 14x14 (b) -> 28x28 (C)              28 -> 14 (b) -> 7x7 (2b)         F = 98 b
    32    z -> 4x4 (4b) -> 8x8 (2b) -> 16x16 (b) -> 32x32 (C)  32 -> 16 (b) -> 8 (2b) -> 4 (4b) F = 64 b

The generator's first layer is ConvTranspose2d(kernel s, stride 1) on z seen as a 1x1 image,
every later one ConvTranspose2d(4, stride 2, padding 1), each followed by BatchNorm2d + ReLU,
the last by tanh. The discriminator mirrors it with Conv2d(4, stride 2, padding 1) +
LeakyReLU(0.2), the first conv without normalization; the head Linear(F, 1) on the flattened s x s
maps is DCGAN's final s x s convolution. The discriminator has no batch norm by default: a
gradient penalty treats samples independently, which batch statistics break (Gulrajani et al.
2017 use layer norm instead, ``layer_norm=True``).
"""
from itertools import pairwise

from minireg import functional as F
from minireg import nn
from minireg.errors import ArgumentError, ShapeError
from minireg.nn.spectral_norm import SpectralNorm
from minireg.tensor import Tensor, tensor

CONDITIONINGS = ("concat", "projection")


def _as_tensor(x):
    return x if isinstance(x, Tensor) else tensor(x)


def _check_batch(model, what, x, shape):
    """ShapeError unless ``x`` has shape (N,) + ``shape``."""
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        expected = ", ".join(["N"] + [str(s) for s in shape])
        raise ShapeError(f"{type(model).__name__}: expected {what} of shape ({expected}), got {tuple(x.shape)}")


def _condition(model, x, condition):
    """The condition checked against the model and the batch of ``x`` (None for unconditional models)."""
    name, dim = type(model).__name__, model.condition_dim
    if dim == 0:
        if condition is not None:
            raise ShapeError(f"{name} is unconditional (condition_dim=0) but got a condition of shape "
                             f"{tuple(_as_tensor(condition).shape)}")
        return None
    if condition is None:
        raise ShapeError(f"{name}: expected a condition of shape (N, {dim}), got None")
    condition = _as_tensor(condition)
    _check_batch(model, "condition", condition, (dim,))
    if condition.shape[0] != x.shape[0]:
        raise ShapeError(f"{name}: the condition has {condition.shape[0]} rows but the batch has {x.shape[0]}")
    return F.cast(condition, x.dtype)


def _concat_condition(x, condition):
    """Append the condition to the features of flat x, or as constant channel maps of an NCHW x."""
    if x.ndim == 4:
        n, k = condition.shape
        condition = F.broadcast_to(F.reshape(condition, (n, k, 1, 1)), (n, k) + tuple(x.shape[2:]))
    return F.concatenate([x, condition], axis=1)


def _check_conditioning(conditioning):
    if conditioning not in CONDITIONINGS:
        raise ArgumentError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")


def _spectral(layer, enabled):
    return SpectralNorm(layer) if enabled else layer


class _NoiseToImage(nn.Module):
    """(N, k) -> (N, k, 1, 1): the noise as a 1x1 image for the first transposed convolution."""

    def forward(self, z):
        return F.reshape(z, tuple(z.shape) + (1, 1))


class Generator(nn.Module):
    """G(z[, condition]) = ``net``(concat(z, condition)), samples of shape (N,) + ``output_shape``."""

    def __init__(self, net, noise_dim, output_shape, condition_dim=0):
        super().__init__()
        self.net = net
        self.noise_dim, self.condition_dim, self.output_shape = noise_dim, condition_dim, tuple(output_shape)

    def forward(self, z, condition=None):
        z = _as_tensor(z)
        _check_batch(self, f"noise (noise_dim={self.noise_dim})", z, (self.noise_dim,))
        condition = _condition(self, z, condition)
        return self.net(z if condition is None else F.concatenate([z, condition], axis=1))

    def extra_repr(self):
        return f"noise_dim={self.noise_dim}, condition_dim={self.condition_dim}, output_shape={self.output_shape}"


class Discriminator(nn.Module):
    """D(x[, condition]) = head(phi(x)) (+ <embed(condition), phi(x)> for projection), shape (N,).

    ``body`` computes the features phi (N, F) from x (with the condition concatenated when
    ``conditioning="concat"``); ``head`` is Linear(F, 1); ``embed`` is the projection's
    Linear(condition_dim, F, bias=False), None otherwise.
    """

    def __init__(self, body, head, input_shape, condition_dim=0, conditioning="concat", embed=None):
        super().__init__()
        _check_conditioning(conditioning)
        if (embed is not None) != (condition_dim > 0 and conditioning == "projection"):
            raise ArgumentError("a projection discriminator needs an embedding, and only it takes one")
        self.body, self.head, self.embed = body, head, embed
        self.input_shape, self.condition_dim, self.conditioning = tuple(input_shape), condition_dim, conditioning

    def _features(self, x, condition):
        x = _as_tensor(x)
        _check_batch(self, "input", x, self.input_shape)
        condition = _condition(self, x, condition)
        if condition is not None and self.conditioning == "concat":
            x = _concat_condition(x, condition)
        return self.body(x), condition

    def features(self, x, condition=None):
        """The penultimate features phi(x), shape (N, F)."""
        return self._features(x, condition)[0]

    def forward(self, x, condition=None):
        h, condition = self._features(x, condition)
        out = F.reshape(self.head(h), (h.shape[0],))
        if self.embed is not None:
            out = out + F.sum(self.embed(condition) * h, axis=1)
        return out

    def extra_repr(self):
        conditioning = f", conditioning={self.conditioning!r}" if self.condition_dim else ""
        return f"input_shape={self.input_shape}, condition_dim={self.condition_dim}{conditioning}"


def _discriminator(body, features, input_shape, condition_dim, conditioning, spectral_norm, dtype):
    """A Discriminator on ``body`` (which outputs ``features`` values per sample) with its head and embedding."""
    head = _spectral(nn.Linear(features, 1, dtype=dtype), spectral_norm)
    embed = None
    if condition_dim and conditioning == "projection":
        embed = _spectral(nn.Linear(condition_dim, features, bias=False, dtype=dtype), spectral_norm)
    return Discriminator(body, head, input_shape, condition_dim, conditioning, embed)


def mlp_generator(noise_dim=100, hidden=(256, 256), out_dim=784, condition_dim=0, negative_slope=0.2, dtype=None):
    """Linear + LeakyReLU(``negative_slope``) per hidden width, then Linear(out_dim) + tanh."""
    widths = [noise_dim + condition_dim, *hidden]
    layers = []
    for fan_in, fan_out in pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out, dtype=dtype), nn.LeakyReLU(negative_slope=negative_slope)]
    layers += [nn.Linear(widths[-1], out_dim, dtype=dtype), nn.Tanh()]
    return Generator(nn.Sequential(*layers), noise_dim, (out_dim,), condition_dim)


def mlp_discriminator(in_dim=784, hidden=(256, 256), condition_dim=0, conditioning="concat", spectral_norm=False,
                      negative_slope=0.2, dtype=None):
    """Linear + LeakyReLU(``negative_slope``) per hidden width (the features), then the Linear head.

    With ``hidden=()`` the features are the input itself (a linear discriminator).
    """
    _check_conditioning(conditioning)
    widths = [in_dim + (condition_dim if conditioning == "concat" else 0), *hidden]
    layers = []
    for fan_in, fan_out in pairwise(widths):
        layers += [_spectral(nn.Linear(fan_in, fan_out, dtype=dtype), spectral_norm),
                   nn.LeakyReLU(negative_slope=negative_slope)]
    return _discriminator(nn.Sequential(*layers), widths[-1], (in_dim,), condition_dim, conditioning, spectral_norm,
                          dtype)


def _layer_plan(image_size):
    """(s, n) with ``image_size`` = s * 2**n, s in (4, 7), n >= 1 (see the module docstring)."""
    for start in (4, 7):
        ratio = image_size // start
        if image_size % start == 0 and ratio >= 2 and ratio & (ratio - 1) == 0:
            return start, ratio.bit_length() - 1
    raise ArgumentError(f"image_size must be 4 or 7 times a power of two >= 2 (8, 16, 28, 32, 64, ...), "
                        f"got {image_size!r}")


def dcgan_generator(noise_dim=100, image_size=32, channels=1, base_width=64, condition_dim=0, dtype=None):
    """DCGAN generator: transposed convolutions + BatchNorm2d + ReLU up to ``image_size``, tanh output."""
    start, doublings = _layer_plan(image_size)
    widths = [base_width * 2 ** (doublings - 1 - i) for i in range(doublings)]
    layers = [_NoiseToImage(), nn.ConvTranspose2d(noise_dim + condition_dim, widths[0], start, dtype=dtype)]
    for fan_in, fan_out in pairwise(widths):
        layers += [nn.BatchNorm2d(fan_in, dtype=dtype), nn.ReLU(),
                   nn.ConvTranspose2d(fan_in, fan_out, 4, stride=2, padding=1, dtype=dtype)]
    layers += [nn.BatchNorm2d(widths[-1], dtype=dtype), nn.ReLU(),
               nn.ConvTranspose2d(widths[-1], channels, 4, stride=2, padding=1, dtype=dtype), nn.Tanh()]
    return Generator(nn.Sequential(*layers), noise_dim, (channels, image_size, image_size), condition_dim)


def dcgan_discriminator(image_size=32, channels=1, base_width=64, batch_norm=False, spectral_norm=False,
                        condition_dim=0, conditioning="concat", layer_norm=False, dtype=None):
    """DCGAN discriminator: Conv2d(4, stride 2) + LeakyReLU(0.2) down to s x s maps, then the head.

    ``batch_norm`` or ``layer_norm`` (not both) normalizes every conv output but the first; neither
    by default (keep it so for gradient penalties).
    """
    _check_conditioning(conditioning)
    if batch_norm and layer_norm:
        raise ArgumentError("dcgan_discriminator: choose at most one of batch_norm and layer_norm")
    start, doublings = _layer_plan(image_size)
    widths = [base_width * 2 ** i for i in range(doublings)]
    fan_in = channels + (condition_dim if conditioning == "concat" else 0)
    layers, size = [], image_size
    for i, fan_out in enumerate(widths):
        size //= 2
        layers.append(_spectral(nn.Conv2d(fan_in, fan_out, 4, stride=2, padding=1, dtype=dtype), spectral_norm))
        if i and batch_norm:
            layers.append(nn.BatchNorm2d(fan_out, dtype=dtype))
        if i and layer_norm:
            layers.append(nn.LayerNorm((fan_out, size, size), dtype=dtype))
        layers.append(nn.LeakyReLU(negative_slope=0.2))
        fan_in = fan_out
    layers.append(nn.Flatten())
    return _discriminator(nn.Sequential(*layers), widths[-1] * start * start, (channels, image_size, image_size),
                          condition_dim, conditioning, spectral_norm, dtype)
