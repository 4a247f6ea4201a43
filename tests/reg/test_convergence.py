"""Correctness that needs no finite differences: proximal gradient methods reach the exact optimum of
the lasso and the elastic net, with exact zeros, also when the proximal step is taken in an adaptive
optimizer's metric (Adam, RMSprop, Adagrad: the strength means the same objective in every mode),
and L1 by prox (not by subgradient) sparsifies an MLP at the loss term's objective.

The objective is scikit-learn's: 1/(2n) ||y - X w||^2 + alpha*r*||w||_1 + alpha*(1-r)/2*||w||^2, i.e.
``L1(alpha)`` (r = 1) or ``ElasticNet(alpha, l1_ratio=r)``. The reference optimum comes from a
coordinate-descent solver written here in plain NumPy (the update of sklearn's ``_cd_fast``) and is
checked against its optimality conditions and against sklearn itself.
"""
import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.data import DataLoader, TensorDataset
from minireg.datasets import load_diabetes, load_digits
from minireg.losses import cross_entropy, mse_loss
from minireg.metrics import accuracy
from minireg.nn import Parameter
from minireg.optim import SGD, Adagrad, Adam, RMSprop
from minireg.optim.proximal import FISTA, ProximalSGD
from minireg.reg.attach import attach
from minireg.reg.penalties import L1, ElasticNet


def coordinate_descent(x, y, l1, l2, tol=1e-13, max_sweeps=100_000):
    """argmin_w 1/(2n)||y - x w||^2 + l1*||w||_1 + l2/2*||w||^2 by cyclic coordinate descent.

    Scaled by n, coordinate j solves 1/2||r_j - x_j w_j||^2 + n*l1*|w_j| + n*l2/2*w_j^2 with r_j the
    residual without feature j: w_j = soft(x_j^T r_j, n*l1) / (||x_j||^2 + n*l2). Stops when a
    sweep changes no coordinate by more than tol * max|w| (rounding of the running residual).
    """
    n, d = x.shape
    w, residual = np.zeros(d), y.copy()
    squared_norms = (x * x).sum(axis=0)
    for _ in range(max_sweeps):
        largest_change = 0.0
        for j in range(d):
            rho = x[:, j] @ residual + squared_norms[j] * w[j]
            new = np.sign(rho) * max(abs(rho) - n * l1, 0.0) / (squared_norms[j] + n * l2)
            if new != w[j]:
                residual -= (new - w[j]) * x[:, j]
                largest_change = max(largest_change, abs(new - w[j]))
                w[j] = new
        if largest_change <= tol * np.abs(w).max():
            return w
    raise AssertionError("coordinate descent did not converge")


def assert_optimal(x, y, w, l1, l2, tol=1e-9):
    """KKT conditions: grad f(w) + l1*sign(w_j) = 0 where w_j != 0, |grad f(w)_j| <= l1 where w_j = 0."""
    grad = -x.T @ (y - x @ w) / len(y) + l2 * w
    nonzero = w != 0
    np.testing.assert_allclose(grad[nonzero] + l1 * np.sign(w[nonzero]), 0, atol=tol)
    assert np.all(np.abs(grad[~nonzero]) <= l1 + tol)


def diabetes():
    (x, y), _ = load_diabetes()       # features standardized on the training split
    return x.astype(np.float64), (y - y.mean()).astype(np.float64)


def sparse_regression(with_coef=False):
    """200 x 40 Gaussian features, 5 of them informative (sklearn's make_regression, noise 5)."""
    from sklearn.datasets import make_regression
    x, y, coef = make_regression(n_samples=200, n_features=40, n_informative=5, noise=5.0, coef=True, random_state=0)
    return (x, y - y.mean(), coef) if with_coef else (x, y - y.mean())


# name -> (data, alpha, l1_ratio, ISTA steps, FISTA steps); the steps are 4-8x what it takes to get
# within 1e-8 with the exact support. Both problems are strongly convex, where ISTA converges
# linearly and FISTA (no restarts) is no faster at this precision.
PROBLEMS = {
    "diabetes-lasso": (diabetes, 4.0, 1.0, 1_500, 1_000),
    "diabetes-elastic-net": (diabetes, 4.0, 0.7, 1_500, 1_000),
    "sparse-regression-lasso": (sparse_regression, 1.0, 1.0, 400, 400),
    "sparse-regression-elastic-net": (sparse_regression, 5.0, 0.9, 400, 400),
}


def minimize(method, x, y, penalty, steps):
    """Full-batch proximal gradient with lr = 1/L, L the largest eigenvalue of x^T x / n."""
    lr = 1 / np.linalg.eigvalsh(x.T @ x / len(y)).max()
    w = Parameter(np.zeros((1, x.shape[1])))      # a (out, in) weight: selected by the penalty
    opt = method([w], lr=lr, penalty=penalty)
    xt, yt = mr.tensor(x), mr.tensor(y[:, None])
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * mse_loss(xt @ w.T, yt)).backward()
        opt.step()
    return w.numpy()[0], opt.state.get(w, {})


@pytest.mark.parametrize("method", [ProximalSGD, FISTA], ids=["ISTA", "FISTA"])
@pytest.mark.parametrize("problem", PROBLEMS)
def test_proximal_gradient_reaches_the_exact_optimum_with_exact_zeros(problem, method):
    data, alpha, ratio, ista_steps, fista_steps = PROBLEMS[problem]
    x, y = data()
    l1, l2 = alpha * ratio, alpha * (1 - ratio)
    optimum = coordinate_descent(x, y, l1, l2)
    assert_optimal(x, y, optimum, l1, l2)
    assert 0 < np.count_nonzero(optimum) < len(optimum)

    penalty = L1(alpha) if ratio == 1 else ElasticNet(alpha, l1_ratio=ratio)
    w, state = minimize(method, x, y, penalty, ista_steps if method is ProximalSGD else fista_steps)
    np.testing.assert_allclose(w, optimum, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(w == 0.0, optimum == 0.0)        # exact zeros, on the same support
    if method is FISTA:                                            # the prox-gradient point x_k, too
        np.testing.assert_allclose(state["iterate"][0], optimum, rtol=0, atol=1e-8)
        np.testing.assert_array_equal(state["iterate"][0] == 0.0, optimum == 0.0)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_the_coordinate_descent_reference_agrees_with_scikit_learn(problem):
    from sklearn.linear_model import ElasticNet as SklearnElasticNet
    data, alpha, ratio, _, _ = PROBLEMS[problem]
    x, y = data()
    # sklearn minimizes the same objective: 1/(2n)||y - Xw||^2 + alpha*r*||w||_1 + alpha*(1-r)/2*||w||^2
    sklearn = SklearnElasticNet(alpha=alpha, l1_ratio=ratio, fit_intercept=False, tol=1e-14, max_iter=1_000_000)
    coef = sklearn.fit(x, y).coef_
    optimum = coordinate_descent(x, y, alpha * ratio, alpha * (1 - ratio))
    np.testing.assert_allclose(optimum, coef, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(optimum == 0.0, coef == 0.0)


def test_the_lasso_recovers_the_known_sparse_support():
    x, y, coef = sparse_regression(with_coef=True)
    w, _ = minimize(FISTA, x, y, L1(1.0), steps=400)
    np.testing.assert_array_equal(np.flatnonzero(w), np.flatnonzero(coef))


def test_l1_by_prox_gives_exact_zeros_in_an_mlp_where_the_subgradient_gives_none():
    (x_train, y_train), (x_val, y_val) = load_digits()
    x_val, y_val = mr.tensor(x_val), mr.tensor(y_val)

    def train(mode):
        mr.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        attach(opt, L1(3e-3), mode=mode)
        loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True,
                            generator=np.random.default_rng(0))
        for _ in range(20):
            for xb, yb in loader:
                loss = cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with mr.no_grad():
            return model[0].weight.numpy(), accuracy(model(x_val), y_val)

    prox_weights, prox_accuracy = train("prox")
    grad_weights, grad_accuracy = train("grad")
    assert (prox_weights == 0).mean() > 0.3
    # the subgradient drives weights near zero, then makes them oscillate around it: small, not zero
    assert (grad_weights == 0).mean() < 1e-3 and (np.abs(grad_weights) < 1e-3).mean() > 0.5
    assert min(prox_accuracy, grad_accuracy) > 0.9 and abs(prox_accuracy - grad_accuracy) < 0.05


# -- the proximal step in an adaptive optimizer's metric minimizes the same objective ---------------
def minimize_adaptive(make, x, y, penalty, lr, decay, steps, mode="prox"):
    """Full batch, lr_k = lr * decay^k, the penalty attached as a proximal step."""
    w = Parameter(np.zeros((1, x.shape[1])))
    opt = make([w], lr=lr)
    attach(w, penalty, mode=mode)
    xt, yt = mr.tensor(x), mr.tensor(y[:, None])
    for k in range(steps):
        opt.param_groups[0]["lr"] = lr * decay ** k
        opt.zero_grad()
        (0.5 * mse_loss(xt @ w.T, yt)).backward()
        opt.step()
    return w.numpy()[0]


def sklearn_optimum(x, y, alpha, ratio):
    from sklearn.linear_model import ElasticNet as SklearnElasticNet, Lasso
    model = (Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=1_000_000) if ratio == 1 else
             SklearnElasticNet(alpha=alpha, l1_ratio=ratio, fit_intercept=False, tol=1e-14, max_iter=1_000_000))
    return model.fit(x, y).coef_


def objective(x, y, w, alpha, ratio):
    """scikit-learn's: 1/(2n)||y - Xw||^2 + alpha*r*||w||_1 + alpha*(1-r)/2*||w||^2."""
    return 0.5 * np.mean((y - x @ w) ** 2) + alpha * ratio * np.abs(w).sum() + alpha * (1 - ratio) / 2 * (w @ w)


@pytest.mark.parametrize("make, lr, ratio", [(Adam, 2.0, 1.0), (Adam, 2.0, 0.7), (RMSprop, 0.5, 1.0),
                                             (Adagrad, 20.0, 1.0)],
                         ids=["Adam-lasso", "Adam-elastic-net", "RMSprop-lasso", "Adagrad-lasso"])
def test_adaptive_proximal_steps_reach_scikit_learns_optimum(make, lr, ratio):
    x, y = diabetes()        # standardized diabetes features, centered target
    alpha = 4.0
    optimum = sklearn_optimum(x, y, alpha, ratio)
    assert 0 < np.count_nonzero(optimum) < len(optimum)
    penalty = L1(alpha) if ratio == 1 else ElasticNet(alpha, l1_ratio=ratio)
    w = minimize_adaptive(make, x, y, penalty, lr, decay=0.995, steps=1200)
    assert np.linalg.norm(w - optimum) <= 1e-3 * np.linalg.norm(optimum)
    np.testing.assert_array_equal(w == 0.0, optimum == 0.0)           # exact zeros, on the same support
    assert objective(x, y, w, alpha, ratio) <= objective(x, y, optimum, alpha, ratio) * (1 + 1e-6)


def test_the_lr_alpha_threshold_under_adam_is_another_objective():
    """mode="prox_lr" thresholds by lr*alpha while Adam moves each weight by about lr: every weight
    is held at zero, far from the lasso's optimum (the reason "prox" takes Adam's metric)."""
    x, y = diabetes()
    w = minimize_adaptive(Adam, x, y, L1(4.0), 2.0, decay=0.995, steps=300, mode="prox_lr")
    assert np.all(w == 0)
    assert objective(x, y, w, 4.0, 1.0) > 1.3 * objective(x, y, sklearn_optimum(x, y, 4.0, 1.0), 4.0, 1.0)


def test_in_an_mlp_l1_in_the_loss_and_as_adams_prox_reach_the_same_objective():
    (x_train, y_train), _ = load_digits()
    alpha, epochs = 1e-3, 15

    def train(mode):
        mr.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        opt, penalty = Adam(model.parameters(), lr=3e-3), L1(alpha)
        if mode == "prox":
            attach(model, penalty)
        loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True,
                            generator=np.random.default_rng(0))
        total, k = epochs * len(loader), 0
        for _ in range(epochs):
            for xb, yb in loader:
                opt.param_groups[0]["lr"] = 3e-3 * 0.5 * (1 + np.cos(np.pi * k / total))    # cosine decay
                k += 1
                loss = cross_entropy(model(xb), yb)
                if mode == "loss":
                    loss = loss + penalty.value(model.parameters())
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with mr.no_grad():
            data = cross_entropy(model(mr.tensor(x_train)), mr.tensor(y_train)).item()
        weights = [p.numpy() for p in model.parameters() if p.ndim >= 2]
        zeros = sum((w == 0).sum() for w in weights) / sum(w.size for w in weights)
        return data + alpha * sum(np.abs(w).sum() for w in weights), zeros

    loss_objective, loss_zeros = train("loss")
    prox_objective, prox_zeros = train("prox")
    # across seeds the objective varies by ~2%; the two modes agree within that noise
    assert abs(prox_objective - loss_objective) < 0.05 * loss_objective
    assert loss_zeros == 0 and prox_zeros > 0.2
