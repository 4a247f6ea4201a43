"""regularization_path against scikit-learn's lasso_path / enet_path and the ridge closed form."""
import numpy as np
import pytest

from minireg.errors import ArgumentError, ShapeError
from minireg.study import regularization_path
from minireg.study.data import regression_split

sklearn_linear = pytest.importorskip("sklearn.linear_model", reason="scikit-learn is the oracle")

ALPHAS = np.logspace(-3, 2, 26)


@pytest.fixture(scope="module")
def diabetes():
    split = regression_split(0, folds=2, fold=None)          # the 353 training rows, standardized, y centred
    return split.x_train, split.y_train


def _kkt_violation(X, y, w, alpha, l1_ratio):
    """The largest violation of the optimality conditions of the elastic-net objective."""
    n = len(y)
    gradient = -X.T @ (y - X @ w) / n + alpha * (1 - l1_ratio) * w
    l1 = alpha * l1_ratio
    on = w != 0
    return max(np.max(np.abs(gradient[on] + l1 * np.sign(w[on])), initial=0.0),
               np.max(np.abs(gradient[~on]) - l1, initial=0.0))


@pytest.mark.parametrize("penalty, l1_ratio", [("l1", 1.0), ("elastic_net", 0.5), ("elastic_net", 0.2)])
def test_matches_scikit_learn_paths(diabetes, penalty, l1_ratio):
    X, y = diabetes
    path = regularization_path(X, y, penalty, ALPHAS, l1_ratio=l1_ratio)
    if penalty == "l1":
        alphas, coefs, _ = sklearn_linear.lasso_path(X, y, alphas=ALPHAS, tol=1e-14, max_iter=10 ** 6)
    else:
        alphas, coefs, _ = sklearn_linear.enet_path(X, y, alphas=ALPHAS, l1_ratio=l1_ratio, tol=1e-14,
                                                    max_iter=10 ** 6)
    order = np.argsort(-ALPHAS)        # scikit-learn returns the alphas from the largest
    np.testing.assert_allclose(alphas, ALPHAS[order])
    np.testing.assert_allclose(path[order], coefs.T, atol=1e-6)
    for w, alpha in zip(path, ALPHAS):
        assert _kkt_violation(X, y, w, alpha, 1.0 if penalty == "l1" else l1_ratio) < 1e-9
    # exact zeros, the same ones as scikit-learn's
    np.testing.assert_array_equal(path[order] == 0, coefs.T == 0)
    assert (path == 0).sum() > 10
    if l1_ratio >= 0.5:       # alpha 100 is beyond alpha_max: every coefficient is exactly 0
        assert np.all(path[np.argmax(ALPHAS)] == 0)


def test_ridge_is_the_closed_form_and_has_no_zeros(diabetes):
    X, y = diabetes
    path = regularization_path(X, y, "l2", ALPHAS)
    n = len(y)
    for w, alpha in zip(path, ALPHAS):
        np.testing.assert_allclose(w, np.linalg.solve(X.T @ X / n + alpha * np.eye(X.shape[1]), X.T @ y / n),
                                   atol=1e-9)
    assert np.all(path != 0)


def test_order_of_alphas_does_not_matter(diabetes):
    X, y = diabetes
    shuffled = np.random.default_rng(0).permutation(ALPHAS)
    by_alpha = dict(zip(ALPHAS, regularization_path(X, y, "l1", ALPHAS)))
    for alpha, w in zip(shuffled, regularization_path(X, y, "l1", shuffled)):
        np.testing.assert_allclose(w, by_alpha[alpha], atol=1e-10)


def test_bad_input_is_refused(diabetes):
    X, y = diabetes
    with pytest.raises(ArgumentError, match="penalty must be one of 'l1', 'l2', 'elastic_net'"):
        regularization_path(X, y, "l3", ALPHAS)
    with pytest.raises(ArgumentError, match="each alpha must be > 0"):
        regularization_path(X, y, "l1", [0.1, -1.0])
    with pytest.raises(ShapeError, match="y must have shape"):
        regularization_path(X, y[:-1], "l1", ALPHAS)
    with pytest.raises(ArgumentError, match="l1_ratio"):
        regularization_path(X, y, "elastic_net", ALPHAS, l1_ratio=1.5)
    with pytest.raises(ShapeError, match="alphas must be a non-empty 1-d"):
        regularization_path(X, y, "l1", [])
