"""Offline GAN evaluation: FID, Inception Score and k-NN precision/recall on a domain classifier.

No Inception network can be downloaded here, so the feature network is a small CNN trained with
minireg itself on the real training split of the data set the GAN models (the practice the FID
authors recommend for MNIST-like data). Its numbers are comparable only with numbers computed with
the same classifier (same data set and ``CLASSIFIER_VERSION``), never with published
Inception-based scores.

    clf = feature_classifier("digits")                 # trained once (seconds), then loaded from the cache
    real, _ = load_real_images("digits", "test")       # (360, 1, 8, 8) in [-1, 1]
    scores = evaluate_generator(generator(z).data, real, clf)   # fid, inception_score, precision, recall

Conventions
- Images are in [-1, 1], the range of a tanh generator. ``load_real_images`` maps the real data
  there (x -> 2x - 1 from [0, 1]); do the same with your own real data. Images may be flat
  (N, H*W) or (N, 1, H, W), as NumPy arrays, device arrays or Tensors (used without history).
- ``features(x)`` is the penultimate layer (after its ReLU), ``probabilities(x)`` the softmax.
  Both return arrays on the input's backend (NumPy on the CPU, CuPy on the GPU).
- The metric functions work in float64 with the array namespace of their inputs, so features on
  the GPU are scored on the GPU; no SciPy is needed.
- FID is biased and its bias depends on the number of samples N (and needs N well above the
  feature dimension): compare FIDs only at equal N. ``evaluate_generator`` uses the same N for
  real and generated images and reports it.

The classifier cache: ``feature_classifier(data, cache_dir)`` looks for
``<cache_dir>/feature-classifier-<data>-v<CLASSIFIER_VERSION>.npz`` (a ``minireg.save``
checkpoint whose metadata holds the test accuracy and training time), with ``cache_dir``
defaulting to ``$MINIREG_CACHE`` or ``~/.cache/minireg``. Training is deterministic: fixed seed,
fixed epochs, fixed batch order, minireg's global random generator left as it was. It runs on the
current backend. Measured on 2 CPU cores: digits 98.1% test accuracy after ~3 s (32-d features);
Fashion-MNIST 89.6% after ~10 min (64-d features).

k-NN precision is sensitive to real outliers, whose large balls can swallow bad samples: uniform
noise gets precision ~0.45 on the Fashion-MNIST features (0.01 on digits) but recall 0. Read it
together with recall and FID.
"""
import contextlib
import math
import os
import time
import warnings
from collections import namedtuple

import numpy as np

from minireg import functional as F
from minireg import nn
from minireg._config import no_grad
from minireg.backend import backend_of
from minireg.checkpoint import load, save
from minireg.data import DataLoader, TensorDataset
from minireg.datasets import load_digits, load_fashion_mnist
from minireg.errors import ArgumentError, CheckpointError, DeviceError, ShapeError
from minireg.losses import cross_entropy
from minireg.metrics import accuracy
from minireg.optim import Adam
from minireg.random import default_generator
from minireg.tensor import Tensor, tensor
from minireg.training import Trainer

CLASSIFIER_VERSION = "1"
_SEED = 0
_BATCH = 1000

_Config = namedtuple("_Config", "loader size channels feature_dim epochs batch_size lr")
_CONFIGS = {
    "digits": _Config(load_digits, 8, (8, 16), 32, 20, 32, 3e-3),
    "fashion-mnist": _Config(load_fashion_mnist, 28, (16, 32), 64, 3, 128, 2e-3),
}


def _config(data):
    if data not in _CONFIGS:
        raise ArgumentError(f"unknown data set {data!r}; expected one of {sorted(_CONFIGS)}")
    return _CONFIGS[data]


def load_real_images(data="digits", split="test"):
    """The real images of ``data`` ("digits" or "fashion-mnist") and their labels, as
    ``(x, y)`` with x float32 (N, 1, H, W) in [-1, 1] and y int64; ``split`` is "train" or "test"."""
    if split not in ("train", "test"):
        raise ArgumentError(f"split must be 'train' or 'test', got {split!r}")
    train, test = _config(data).loader(flatten=False)
    x, y = train if split == "train" else test
    return x * 2 - 1, y


@contextlib.contextmanager
def _seeded_global_generator(seed):
    """minireg's global generator seeded with ``seed`` inside the block, restored after it."""
    generator = default_generator()
    saved = generator.bit_generator.state
    generator.bit_generator.state = type(generator.bit_generator)(seed).state
    try:
        yield
    finally:
        generator.bit_generator.state = saved


class FeatureClassifier(nn.Module):
    """conv 3x3 - ReLU - max pool 2 - conv 3x3 - ReLU - max pool 2 - dense ``feature_dim`` - ReLU
    (the features) - dense 10 (the logits). See the module docstring for the input convention.

    Construction is seeded (``_SEED``) and does not advance minireg's global generator. Usually
    obtained from ``feature_classifier``; ``fit_real_data`` trains a fresh one.

    Attributes: ``data``, ``image_size``, ``feature_dim``; after training or loading
    ``test_accuracy`` and ``train_seconds``; ``from_cache`` (whether the weights were loaded).
    """

    def __init__(self, data="digits"):
        super().__init__()
        config = _config(data)
        c1, c2 = config.channels
        self.data, self.image_size, self.feature_dim = data, config.size, config.feature_dim
        self.test_accuracy = self.train_seconds = None
        self.from_cache = False
        with _seeded_global_generator(_SEED):
            self.body = nn.Sequential(
                nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(c2 * (config.size // 4) ** 2, config.feature_dim), nn.ReLU())
            self.head = nn.Linear(config.feature_dim, 10)

    def extra_repr(self):
        return f"data={self.data!r}"

    def forward(self, x):
        """Logits (N, 10) of images (N, 1, H, W)."""
        return self.head(self.body(x))

    def fit_real_data(self):
        """Train on the real training split with Adam, a fixed number of epochs and a seeded batch
        order; sets ``test_accuracy`` (on the real test split) and ``train_seconds``."""
        config = _config(self.data)
        x_train, y_train = load_real_images(self.data, "train")
        x_test, y_test = load_real_images(self.data, "test")
        trainer = Trainer(self, Adam(self.parameters(), lr=config.lr), cross_entropy,
                          metrics={"accuracy": accuracy}, verbose=0)
        start = time.perf_counter()
        trainer.fit(DataLoader(TensorDataset(x_train, y_train), batch_size=config.batch_size, shuffle=True,
                               generator=np.random.default_rng(_SEED)), config.epochs)
        self.train_seconds = time.perf_counter() - start
        self.test_accuracy = trainer.evaluate(DataLoader(TensorDataset(x_test, y_test), batch_size=_BATCH))["accuracy"]
        return self.eval()

    def _images(self, x):
        """Images as a float32 array (N, 1, H, W) of their backend (host data goes to the current
        one, as with ``minireg.tensor``), with the model moved to that backend."""
        t = x if isinstance(x, Tensor) else tensor(x)
        x, backend = t.data, t.backend
        xp, s = backend.xp, self.image_size
        if x.ndim == 2 and x.shape[1] == s * s:
            x = xp.reshape(x, (x.shape[0], 1, s, s))
        elif x.ndim != 4 or tuple(x.shape[1:]) != (1, s, s):
            raise ShapeError(f"FeatureClassifier({self.data!r}): expected images of shape (N, {s * s}) or "
                             f"(N, 1, {s}, {s}), got {tuple(x.shape)}")
        x = xp.astype(x, xp.float32)
        largest = float(backend.to_numpy(xp.max(xp.abs(x)))) if x.shape[0] else 0.0
        if largest > 1.01:
            warnings.warn(f"FeatureClassifier({self.data!r}) expects images in [-1, 1] (the tanh range), got values "
                          f"up to {largest:.3g} in magnitude; map real images with 2x - 1 from [0, 1]", stacklevel=4)
        self.to(backend)
        return x, backend

    def _outputs(self, images):
        """(features, probabilities) of ``images``, computed in batches without recording a graph."""
        x, backend = self._images(images)
        self.eval()
        features, probabilities = [], []
        with no_grad():
            for start in range(0, x.shape[0], _BATCH):
                h = self.body(tensor(x[start:min(start + _BATCH, x.shape[0]), ...]))
                features.append(h.data)
                probabilities.append(F.softmax(self.head(h), axis=1).data)
        if not features:
            raise ArgumentError(f"FeatureClassifier({self.data!r}): no images")
        return backend.xp.concat(features), backend.xp.concat(probabilities)

    def features(self, x):
        """Penultimate-layer activations (N, ``feature_dim``) of images in [-1, 1]."""
        return self._outputs(x)[0]

    def probabilities(self, x):
        """Class probabilities p(y|x), shape (N, 10), of images in [-1, 1]."""
        return self._outputs(x)[1]


def _cache_path(data, cache_dir):
    if cache_dir is None:
        cache_dir = os.environ.get("MINIREG_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "minireg")
    return os.path.join(cache_dir, f"feature-classifier-{data}-v{CLASSIFIER_VERSION}.npz")


def feature_classifier(data="digits", cache_dir=None):
    """The ``FeatureClassifier`` for ``data``: loaded from the cache, or trained (``fit_real_data``)
    and cached on first use. Nothing is downloaded; see the module docstring for the cache."""
    path = _cache_path(data, cache_dir)
    model = FeatureClassifier(data)
    if os.path.exists(path):
        try:
            metadata = load(path, model)
        except (ValueError, OSError, KeyError) as exc:
            raise CheckpointError(f"cannot load the cached feature classifier {path} ({exc}); "
                                  f"delete it to retrain") from exc
        model.test_accuracy, model.train_seconds = metadata["test_accuracy"], metadata["train_seconds"]
        model.from_cache = True
        return model.eval()
    model.fit_real_data()
    save(path, model, data=data, version=CLASSIFIER_VERSION, test_accuracy=model.test_accuracy,
         train_seconds=model.train_seconds, epochs=_config(data).epochs, seed=_SEED)
    return model


def _float64(*arrays):
    """The backend owning the arrays (NumPy for host data such as lists) and the arrays in float64 on it."""
    host = [a.data if isinstance(a, Tensor) else a for a in arrays]
    try:
        backends = [backend_of(a) for a in host]
    except DeviceError:
        host = [np.asarray(a) for a in host]
        backends = [backend_of(a) for a in host]
    if any(b is not backends[0] for b in backends):
        raise DeviceError(f"arrays on different devices: {[b.device_name for b in backends]}")
    xp = backends[0].xp
    return backends[0], [xp.astype(a, xp.float64) for a in host]


def _check_features(name, *features):
    dims = {f.shape[1] if f.ndim == 2 else None for f in features}
    if None in dims or len(dims) != 1:
        raise ShapeError(f"{name}: expected feature matrices (N, d) with the same d, "
                         f"got shapes {[tuple(f.shape) for f in features]}")


def feature_statistics(features):
    """Mean ``mu`` (d,) and covariance ``sigma`` (d, d) of features (N, d) in float64:
    sigma = (F - mu)^T (F - mu) / (N - 1), as ``np.cov(features, rowvar=False)``. Returns arrays
    of the features' namespace (cache the real data's pair to score many generators)."""
    backend, (f,) = _float64(features)
    _check_features("feature_statistics", f)
    if f.shape[0] < 2:
        raise ArgumentError(f"feature_statistics needs at least 2 samples, got {f.shape[0]}")
    mu = backend.xp.mean(f, axis=0)
    centered = f - mu
    return mu, centered.T @ centered / (f.shape[0] - 1)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Squared Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2):

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2}).

    The trace of the square root is computed without a non-symmetric matrix square root:
    (sigma1 sigma2)^{1/2} is similar to (R sigma2 R)^{1/2} with R = sigma1^{1/2}, so
    Tr((sigma1 sigma2)^{1/2}) = sum_i sqrt(lambda_i(R sigma2 R)). R comes from ``eigh(sigma1)``;
    negative eigenvalues (rounding in a positive semi-definite estimate) are clipped at 0. Float64,
    in the inputs' array namespace (NumPy, CuPy, any array-API library with ``linalg``); the result
    is a Python float, at least 0.
    """
    backend, (mu1, sigma1, mu2, sigma2) = _float64(mu1, sigma1, mu2, sigma2)
    d = mu1.shape[0] if mu1.ndim == 1 else None
    if d is None or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ShapeError(f"frechet_distance: expected mu1, mu2 of shape (d,) and sigma1, sigma2 of shape (d, d), got "
                         f"{tuple(mu1.shape)}, {tuple(sigma1.shape)}, {tuple(mu2.shape)}, {tuple(sigma2.shape)}")
    xp = backend.xp
    eigenvalues, eigenvectors = xp.linalg.eigh((sigma1 + sigma1.T) / 2)
    root = (eigenvectors * xp.sqrt(xp.clip(eigenvalues, min=0.0))) @ eigenvectors.T
    middle = root @ sigma2 @ root
    trace_sqrt = xp.sum(xp.sqrt(xp.clip(xp.linalg.eigvalsh((middle + middle.T) / 2), min=0.0)))
    diff = mu1 - mu2
    d2 = xp.sum(diff * diff) + xp.linalg.trace(sigma1) + xp.linalg.trace(sigma2) - 2 * trace_sqrt
    return max(float(backend.to_numpy(d2)), 0.0)


def fid(features_real, features_fake):
    """Fréchet Inception Distance with this module's features: ``frechet_distance`` of the
    Gaussians fitted by ``feature_statistics`` to real and generated features (N, d). Symmetric;
    0 for identical sets. Depends on N: compare only at equal N."""
    _, (real, fake) = _float64(features_real, features_fake)
    _check_features("fid", real, fake)
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def inception_score(probabilities, splits=10):
    """Inception Score (mean, std) of class probabilities p(y|x), shape (N, C):

        IS = exp( E_x KL(p(y|x) || p(y)) ) = exp( E_x sum_y p(y|x) (log p(y|x) - log p(y)) ),

    with p(y) = E_x p(y|x), computed on each of ``splits`` consecutive parts of the samples (sizes
    differing by at most one); returns the mean and the (population) standard deviation over the
    parts. Lies in [1, C]: C for confident predictions spread evenly over the classes, 1 when every
    sample gets the same distribution.
    """
    backend, (p,) = _float64(probabilities)
    if p.ndim != 2:
        raise ShapeError(f"inception_score: expected probabilities of shape (N, C), got {tuple(p.shape)}")
    n = p.shape[0]
    if not isinstance(splits, int) or not 1 <= splits <= n:
        raise ArgumentError(f"inception_score: splits must be an integer in [1, N={n}], got {splits!r}")
    xp = backend.xp
    scores = []
    for i in range(splits):
        part = p[n * i // splits:n * (i + 1) // splits, ...]
        marginal = xp.mean(part, axis=0, keepdims=True)
        positive = part > 0
        log_ratio = xp.log(xp.where(positive, part, 1.0)) - xp.log(xp.where(positive, marginal, 1.0))
        kl = xp.sum(xp.where(positive, part * log_ratio, 0.0), axis=1)
        scores.append(math.exp(float(backend.to_numpy(xp.mean(kl)))))
    return float(np.mean(scores)), float(np.std(scores))


def _pairwise_chunks(a, b, xp):
    """Squared Euclidean distances ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j (clipped at 0) from row chunks
    of ``a`` to all of ``b``, in blocks of about 1M entries: 5k x 5k samples need tens of MB at a
    time instead of 200 MB for the whole matrix."""
    rows = max(1, 2 ** 20 // b.shape[0])
    b_norms = xp.sum(b * b, axis=1)
    for start in range(0, a.shape[0], rows):
        chunk = a[start:min(start + rows, a.shape[0]), ...]
        d2 = xp.sum(chunk * chunk, axis=1)[:, None] + b_norms[None, :] - 2 * (chunk @ b.T)
        yield xp.clip(d2, min=0.0)


def _knn_radii2(points, k, xp):
    """Squared distance from each point to its k-th nearest other point (column 0 of a sorted row
    is the point itself)."""
    # copies, because a view of the k-th column would keep each whole sorted block alive
    return xp.concat([xp.asarray(xp.sort(d2, axis=1)[:, k], copy=True)
                      for d2 in _pairwise_chunks(points, points, xp)])


def _share_inside(points, centers, radii2, xp, backend):
    """Share of ``points`` inside at least one ball (center, squared radius) of ``centers``."""
    inside = sum(xp.sum(xp.astype(xp.any(d2 <= radii2[None, :], axis=1), xp.int64))
                 for d2 in _pairwise_chunks(points, centers, xp))
    return int(backend.to_numpy(inside)) / points.shape[0]


def precision_recall(features_real, features_fake, k=3):
    """Improved precision and recall (Kynkäänniemi et al. 2019, arXiv 1904.06991) as (precision, recall).

    Each set's manifold is the union of balls around its points with radius the distance to the
    point's k-th nearest neighbour in the same set:

        precision = share of fakes inside the real manifold (fidelity),
        recall    = share of reals inside the fake manifold (diversity).

    Distances come in row chunks (see ``_pairwise_chunks``), so N = 5k stays within memory.
    """
    backend, (real, fake) = _float64(features_real, features_fake)
    _check_features("precision_recall", real, fake)
    if not isinstance(k, int) or not 1 <= k < min(real.shape[0], fake.shape[0]):
        raise ArgumentError(f"precision_recall: k must be an integer in [1, N - 1] for both sets "
                            f"(N = {real.shape[0]} real, {fake.shape[0]} fake), got {k!r}")
    xp = backend.xp
    precision = _share_inside(fake, real, _knn_radii2(real, k, xp), xp, backend)
    recall = _share_inside(real, fake, _knn_radii2(fake, k, xp), xp, backend)
    return precision, recall


def _image_array(images):
    return images.data if isinstance(images, Tensor) else images if hasattr(images, "shape") else np.asarray(images)


def _take_first(images, n, what):
    if images.shape[0] < n:
        raise ArgumentError(f"evaluate_generator: {what} has {images.shape[0]} images, fewer than num_samples={n}")
    return images[:n, ...]


def evaluate_generator(generator_samples, real_images, classifier, num_samples=None, k=3, splits=10):
    """FID, Inception Score and precision/recall of generated images against real ones.

    ``generator_samples`` and ``real_images`` are images in [-1, 1] (see the module docstring);
    the first ``num_samples`` of each are used (default: as many as the smaller set has), so both
    sides have the same N. Shuffle the real images beforehand if their order is not random.
    Returns ``{"fid", "inception_score", "inception_score_std", "precision", "recall",
    "num_samples"}``. FID depends on N: compare results only at equal ``num_samples`` and with the
    same classifier.
    """
    generator_samples, real_images = _image_array(generator_samples), _image_array(real_images)
    if num_samples is None:
        num_samples = min(generator_samples.shape[0], real_images.shape[0])
    fake = _take_first(generator_samples, num_samples, "generator_samples")
    real = _take_first(real_images, num_samples, "real_images")
    fake_features, fake_probabilities = classifier._outputs(fake)
    real_features = classifier.features(real)
    is_mean, is_std = inception_score(fake_probabilities, splits)
    precision, recall = precision_recall(real_features, fake_features, k)
    return {"fid": fid(real_features, fake_features), "inception_score": is_mean, "inception_score_std": is_std,
            "precision": precision, "recall": recall, "num_samples": num_samples}
