"""Offline GAN metrics: the digits feature classifier and its cache, FID, Inception Score and k-NN
precision/recall, checked against plain NumPy formulas, SciPy's sqrtm (when installed) and exact
properties of the metrics."""
import time

import numpy as np
import pytest

from minireg.checkpoint import read
from minireg.errors import ShapeError
from minireg.gan.metrics import (FeatureClassifier, evaluate_generator, feature_classifier, feature_statistics, fid,
                                 frechet_distance, inception_score, load_real_images, precision_recall)
from minireg.random import default_generator


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("minireg-cache")


@pytest.fixture(scope="module")
def classifier(cache_dir):
    start = time.perf_counter()
    clf = feature_classifier("digits", cache_dir=cache_dir)
    clf.seconds_to_get = time.perf_counter() - start
    return clf


@pytest.fixture(scope="module")
def digits():
    return load_real_images("digits", "test")[0], load_real_images("digits", "train")[0]


def _covariance(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


# -- the feature classifier ----------------------------------------------------------------------

def test_classifier_is_trained_accurate_and_its_accuracy_is_in_the_cache(classifier, cache_dir):
    assert not classifier.from_cache
    assert classifier.test_accuracy >= 0.95
    files = list(cache_dir.iterdir())
    assert [f.name for f in files] == ["feature-classifier-digits-v1.npz"]
    metadata = read(files[0])["metadata"]
    assert metadata["test_accuracy"] == classifier.test_accuracy
    assert metadata["data"] == "digits" and metadata["version"] == "1"


def test_second_call_loads_the_cache_without_training(classifier, cache_dir, digits, monkeypatch):
    def no_training(self):
        raise AssertionError("the cached classifier was retrained")

    monkeypatch.setattr(FeatureClassifier, "fit_real_data", no_training)
    start = time.perf_counter()
    cached = feature_classifier("digits", cache_dir=cache_dir)
    assert cached.from_cache and time.perf_counter() - start < classifier.seconds_to_get
    assert cached.test_accuracy == classifier.test_accuracy
    x = digits[0]
    np.testing.assert_array_equal(cached.features(x), classifier.features(x))
    np.testing.assert_array_equal(cached.probabilities(x), classifier.probabilities(x))


def test_cache_dir_defaults_to_the_environment_variable(classifier, cache_dir, monkeypatch):
    monkeypatch.setenv("MINIREG_CACHE", str(cache_dir))
    assert feature_classifier("digits").from_cache


def test_construction_is_seeded_and_leaves_the_global_generator_alone(classifier, cache_dir):
    state = default_generator().bit_generator.state
    first, second = FeatureClassifier("digits").state_dict(), FeatureClassifier("digits").state_dict()
    feature_classifier("digits", cache_dir=cache_dir)
    assert default_generator().bit_generator.state == state
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_features_and_probabilities_accept_flat_or_image_input(classifier, digits):
    x = digits[0]
    features, probabilities = classifier.features(x), classifier.probabilities(x)
    assert features.shape == (len(x), classifier.feature_dim) and features.shape[1] == 32
    assert probabilities.shape == (len(x), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(classifier.features(x.reshape(len(x), 64)), features)


def test_bad_shapes_raise_and_out_of_range_images_warn(classifier, digits):
    with pytest.raises(ShapeError, match=r"\(N, 64\) or \(N, 1, 8, 8\)"):
        classifier.features(np.zeros((5, 1, 28, 28), np.float32))
    with pytest.warns(UserWarning, match=r"\[-1, 1\]"):
        classifier.features((digits[0] + 1) * 8)     # raw 0..16 pixel values
    with pytest.raises(ValueError, match="unknown data set"):
        FeatureClassifier("cifar10")


def test_fashion_mnist_classifier_shapes_without_training():
    clf = FeatureClassifier("fashion-mnist")
    x = np.random.default_rng(0).uniform(-1, 1, size=(3, 784)).astype(np.float32)
    assert clf.features(x).shape == (3, 64) and clf.probabilities(x).shape == (3, 10)


# -- FID -------------------------------------------------------------------------------------------

def test_real_vs_real_fid_is_small_next_to_noise(classifier, digits):
    test, train = digits
    n = len(test)
    real = classifier.features(test)
    other_real = classifier.features(train[:n])
    noise = classifier.features(np.random.default_rng(0).uniform(-1, 1, size=(n, 64)))
    assert fid(real, real) == pytest.approx(0.0, abs=1e-6)
    assert fid(real, noise) > 50 * fid(real, other_real)


def test_fid_of_identical_sets_is_zero_and_fid_is_symmetric():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(500, 16)), rng.normal(1.0, 2.0, size=(400, 16))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-10)


def test_feature_statistics_match_numpy():
    f = np.random.default_rng(2).normal(size=(200, 5)).astype(np.float32)
    mu, sigma = feature_statistics(f)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, f.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12)


def _frechet_reference(mu1, sigma1, mu2, sigma2):
    """The textbook formula, with Tr((sigma1 sigma2)^{1/2}) from the eigenvalues of the
    non-symmetric product (real and non-negative, since it is similar to a PSD matrix)."""
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvals(sigma1 @ sigma2).real, 0, None)))
    return np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt


@pytest.mark.parametrize("d", [1, 4, 32])
def test_frechet_distance_matches_the_numpy_formula(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    sigma1, sigma2 = _covariance(rng, d), _covariance(rng, d)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(_frechet_reference(mu1, sigma1, mu2, sigma2),
                                                                       rel=1e-9)


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=24), rng.normal(size=24)
    sigma1, sigma2 = _covariance(rng, 24), _covariance(rng, 24)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)


def test_shifting_the_mean_adds_its_squared_norm():
    rng = np.random.default_rng(4)
    d = 10
    mu, sigma, delta = rng.normal(size=d), _covariance(rng, d), rng.normal(size=d)
    assert frechet_distance(mu, sigma, mu + delta, sigma) == pytest.approx(delta @ delta, rel=1e-9)
    f = rng.normal(size=(300, d))
    assert fid(f, f + delta) == pytest.approx(delta @ delta, rel=1e-9)


def test_rank_deficient_covariances_give_a_finite_distance():
    rng = np.random.default_rng(5)
    sigma1, sigma2 = _covariance(rng, 16, rank=3), _covariance(rng, 16, rank=5)
    mu = np.zeros(16)
    value = frechet_distance(mu, sigma1, mu, sigma2)
    assert np.isfinite(value) and value == pytest.approx(_frechet_reference(mu, sigma1, mu, sigma2), rel=1e-6)
    few = rng.normal(size=(8, 32))                   # N < d: a singular covariance
    assert fid(few, few) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ShapeError, match="frechet_distance"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ShapeError, match="fid"):
        fid(np.zeros((10, 3)), np.zeros((10, 4)))


# -- Inception Score -------------------------------------------------------------------------------

def test_inception_score_extremes():
    confident_and_even = np.eye(10)[np.arange(1000) % 10]
    mean, std = inception_score(confident_and_even)
    assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    identical = np.tile(np.random.default_rng(6).dirichlet(np.ones(10)), (1000, 1))
    assert inception_score(identical)[0] == pytest.approx(1.0, rel=1e-12)
    one_class = np.eye(10)[np.zeros(1000, dtype=int)]
    assert inception_score(one_class)[0] == pytest.approx(1.0, rel=1e-12)


def test_inception_score_matches_a_direct_formula():
    p = np.random.default_rng(7).dirichlet(0.3 * np.ones(10), size=500)
    parts = [p[100 * i:100 * (i + 1)] for i in range(5)]
    scores = [np.exp(np.mean(np.sum(q * (np.log(q) - np.log(q.mean(axis=0))), axis=1))) for q in parts]
    mean, std = inception_score(p, splits=5)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10) and std == pytest.approx(np.std(scores), rel=1e-8)


def test_inception_score_of_real_digits_is_high(classifier, digits):
    real = inception_score(classifier.probabilities(digits[0]))[0]
    noise = inception_score(classifier.probabilities(np.random.default_rng(0).uniform(-1, 1, (360, 64))))[0]
    assert real > 8 and noise < real


# -- precision / recall ----------------------------------------------------------------------------

def _precision_recall_reference(real, fake, k):
    def radii(x):
        return np.sort(np.linalg.norm(x[:, None] - x[None], axis=2), axis=1)[:, k]

    def share_inside(points, centers, r):
        return np.mean(np.any(np.linalg.norm(points[:, None] - centers[None], axis=2) <= r[None], axis=1))

    return share_inside(fake, real, radii(real)), share_inside(real, fake, radii(fake))


def test_precision_recall_of_identical_and_of_far_apart_sets():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(300, 8))
    assert precision_recall(a, a) == (1.0, 1.0)
    assert precision_recall(a, rng.normal(size=(300, 8)) + 100.0) == (0.0, 0.0)


def test_mode_collapse_keeps_precision_and_halves_recall():
    rng = np.random.default_rng(9)
    mode_a, mode_b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 50.0
    assert precision_recall(np.concatenate([mode_a, mode_b]), mode_a) == (1.0, 0.5)


def test_precision_recall_over_several_chunks_matches_brute_force():
    rng = np.random.default_rng(10)
    real, fake = rng.normal(size=(1500, 6)), rng.normal(0.3, 1.2, size=(1200, 6))   # > 1 chunk of rows
    expected = _precision_recall_reference(real, fake, k=3)
    assert precision_recall(real, fake, k=3) == pytest.approx(expected, abs=1e-12)


def test_precision_recall_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(np.zeros((3, 2)), np.zeros((5, 2)), k=3)


# -- other devices ---------------------------------------------------------------------------------

def test_metrics_run_in_the_inputs_namespace(backend):
    """On the fake device any host round-trip in the metrics would raise."""
    rng = np.random.default_rng(11)
    real, fake = rng.normal(size=(200, 6)), rng.normal(0.5, 1.0, size=(150, 6))
    p = rng.dirichlet(np.ones(10), size=100)
    assert fid(backend.asarray(real), backend.asarray(fake)) == pytest.approx(fid(real, fake), rel=1e-10)
    assert precision_recall(backend.asarray(real), backend.asarray(fake)) == precision_recall(real, fake)
    assert inception_score(backend.asarray(p)) == pytest.approx(inception_score(p), rel=1e-10)


def test_classifier_features_on_the_inputs_backend(classifier, digits, backend):
    x = digits[0][:50]
    expected = classifier.features(x)
    try:
        features = classifier.features(backend.asarray(x))
        assert backend.owns(features)
        np.testing.assert_allclose(backend.to_numpy(features), expected, rtol=1e-5, atol=1e-6)
    finally:
        classifier.to("numpy")


# -- evaluate_generator -----------------------------------------------------------------------------

def test_evaluate_generator_tells_real_from_noise(classifier, digits):
    test, train = digits
    noise = np.random.default_rng(12).uniform(-1, 1, size=(500, 1, 8, 8)).astype(np.float32)
    good = evaluate_generator(train, test, classifier)
    bad = evaluate_generator(noise, test, classifier)
    assert set(good) == {"fid", "inception_score", "inception_score_std", "precision", "recall", "num_samples"}
    assert good["num_samples"] == bad["num_samples"] == len(test)
    assert good["fid"] * 50 < bad["fid"]
    assert good["inception_score"] > bad["inception_score"]
    assert good["precision"] > 0.8 and good["recall"] > 0.8
    assert bad["precision"] < 0.1 and bad["recall"] < 0.1


def test_evaluate_generator_uses_a_fixed_sample_count(classifier, digits):
    test, train = digits
    assert evaluate_generator(train, test, classifier, num_samples=100)["num_samples"] == 100
    with pytest.raises(ValueError, match="fewer than num_samples"):
        evaluate_generator(train, test, classifier, num_samples=400)
