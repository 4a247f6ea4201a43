"""Regularization paths of linear least squares: lasso, ridge and elastic net by coordinate descent.

``regularization_path(X, y, penalty, alphas, l1_ratio=0.5)`` minimizes, at every alpha,

    1/(2n) ||y - X w||^2 + alpha * R(w),
    R(w) = ||w||_1                                        penalty="l1"   (lasso)
    R(w) = 1/2 ||w||^2                                    penalty="l2"   (ridge)
    R(w) = l1_ratio ||w||_1 + (1 - l1_ratio)/2 ||w||^2    penalty="elastic_net"

in scikit-learn's scaling (``Lasso``, ``ElasticNet``, ``lasso_path``, ``enet_path``; there is no
intercept: centre X and y first). Coordinate descent on the Gram matrix G = X^T X / n and
c = X^T y / n updates one weight at a time with the exact minimizer along it,

    w_j <- S(c_j - sum_{k != j} G_jk w_k, alpha * l1_ratio) / (G_jj + alpha * (1 - l1_ratio)),
    S(z, t) = sign(z) max(|z| - t, 0),

the soft threshold that makes a weight exactly 0 as soon as its correlation with the residual is
below the L1 strength. This is why L1 gives zeros: |w| has a corner at 0 whose subgradient
[-1, 1] absorbs any small pull of the data, while the quadratic 1/2 w^2 has slope 0 there and only
shrinks.

Alphas are solved from the largest to the smallest, each starting from the previous solution
(warm start). Coordinate descent converges slowly when features are correlated (diabetes' s1..s4),
so once a sweep leaves the support and the signs unchanged, the optimality conditions are solved
exactly on that support: (G_AA + alpha (1 - l1_ratio) I) w_A = c_A - alpha l1_ratio sign(w_A). The
result is kept when it satisfies every optimality condition (same signs; |c_j - G_j w| <= alpha
l1_ratio off the support), which makes each solution exact to rounding; otherwise descent goes on,
until no weight moves by more than ``tol`` times the largest. The rows come back in the order of
``alphas``.
"""
import numpy as np

from minireg import check
from minireg.errors import ArgumentError, ShapeError

PENALTIES = ("l1", "l2", "elastic_net")


def _l1_share(penalty, l1_ratio):
    return {"l1": 1.0, "l2": 0.0, "elastic_net": l1_ratio}[penalty]


def _checked(X, y, penalty, alphas, l1_ratio):
    check.choice("regularization_path: penalty", penalty, PENALTIES)
    l1_ratio = check.probability("regularization_path: l1_ratio", l1_ratio, allow_one=True)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ShapeError(f"regularization_path: X must be a non-empty 2-d array (samples, features), got shape "
                         f"{X.shape}")
    if y.shape != (X.shape[0],):
        raise ShapeError(f"regularization_path: y must have shape ({X.shape[0]},) to match X {X.shape}, got {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ArgumentError("regularization_path: X and y must be finite (found NaN or infinity)")
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0:
        raise ShapeError(f"regularization_path: alphas must be a non-empty 1-d sequence, got shape {alphas.shape}")
    for a in alphas:
        check.positive("regularization_path: each alpha", a)
    return X, y, alphas, l1_ratio


def regularization_path(X, y, penalty, alphas, l1_ratio=0.5, tol=1e-12, max_sweeps=100_000):
    """The minimizers ``w(alpha)`` (see the module docstring), an array of shape ``(len(alphas), n_features)``.

    ``penalty`` is "l1", "l2" or "elastic_net" (with ``l1_ratio`` in [0, 1]); ``alphas`` > 0.
    Raises ``ArithmeticError`` if an alpha has not converged after ``max_sweeps`` sweeps.
    """
    X, y, alphas, l1_ratio = _checked(X, y, penalty, alphas, l1_ratio)
    check.positive("regularization_path: tol", tol)
    max_sweeps = check.positive_int("regularization_path: max_sweeps", max_sweeps)
    gram = X.T @ X / X.shape[0]
    corr = X.T @ y / X.shape[0]
    l1_share = _l1_share(penalty, l1_ratio)
    path = np.zeros((alphas.size, X.shape[1]))
    w = np.zeros(X.shape[1])
    for index in np.argsort(-alphas, kind="stable"):
        w = _solve(gram, corr, w, alphas[index] * l1_share, alphas[index] * (1.0 - l1_share), tol, max_sweeps)
        path[index] = w
    return path


def _sweep(gram, corr, w, l1, l2):
    """One pass of coordinate descent over every weight (in place); returns the largest change."""
    largest_step = 0.0
    for j in range(w.size):
        if gram[j, j] + l2 == 0.0:      # a zero column without L2: w_j = 0 minimizes
            continue
        z = corr[j] - gram[j] @ w + gram[j, j] * w[j]       # the residual correlation without w_j
        new = np.sign(z) * max(abs(z) - l1, 0.0) / (gram[j, j] + l2)
        largest_step = max(largest_step, abs(new - w[j]))
        w[j] = new
    return largest_step


def _exact_on_support(gram, corr, w, l1, l2):
    """The solution of the optimality conditions on the support and signs of ``w``, or None when it
    violates one of them (a sign flips, or a weight off the support would move)."""
    support = np.flatnonzero(w)
    signs = np.sign(w[support])
    exact = np.zeros_like(w)
    if support.size:
        try:
            exact[support] = np.linalg.solve(gram[np.ix_(support, support)] + l2 * np.eye(support.size),
                                             corr[support] - l1 * signs)
        except np.linalg.LinAlgError:
            return None
        if np.any(np.sign(exact[support]) != signs):
            return None
    off = np.setdiff1d(np.arange(w.size), support)
    slack = 1e-12 * max(1.0, float(np.abs(corr).max()))
    if off.size and np.any(np.abs(corr[off] - gram[off] @ exact) > l1 + slack):
        return None
    return exact


def _solve(gram, corr, w, l1, l2, tol, max_sweeps):
    w = w.copy()
    support = None
    for _ in range(max_sweeps):
        largest_step = _sweep(gram, corr, w, l1, l2)
        new_support = tuple(np.sign(w))
        if new_support == support:
            exact = _exact_on_support(gram, corr, w, l1, l2)
            if exact is not None:
                return exact
        support = new_support
        if largest_step <= tol * max(1.0, np.abs(w).max()):
            return w
    raise ArithmeticError(f"regularization_path: coordinate descent did not converge in {max_sweeps} sweeps at "
                          f"l1={l1:g}, l2={l2:g}; raise max_sweeps or tol")


def fit_least_squares(X, y):
    """Ordinary least squares without intercept (the unregularized baseline), by ``lstsq``."""
    return np.linalg.lstsq(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), rcond=None)[0]


def r2_score(y, prediction):
    """The coefficient of determination 1 - SS_res / SS_tot."""
    y, prediction = np.asarray(y, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    return float(1.0 - np.sum((y - prediction) ** 2) / np.sum((y - y.mean()) ** 2))


# -- the linear-diabetes task ----------------------------------------------------------------------
# penalty of each family ("none": ordinary least squares)
PENALTY_OF = {"none": None, "lasso": "l1", "ridge": "l2", "elastic_net": "elastic_net"}


def _scores(w, x, y):
    prediction = x @ w
    return {"r2": r2_score(y, prediction), "mse": float(np.mean((y - prediction) ** 2))}


def run(config):
    """One run of the linear-diabetes task: the family's coefficients at every alpha of
    ``config["strengths"]`` on one seed's split (one warm-started path), with training, validation
    and (``score_test``) test R^2 and MSE, the exact-zero fraction and the L2 norm of each."""
    from minireg.study.data import regression_split
    split = regression_split(config["seed"], config["val_fraction"], config.get("folds"), config.get("fold"))
    penalty = PENALTY_OF[config["family"]]
    alphas = config["strengths"]
    if penalty is None:
        coefficients = [fit_least_squares(split.x_train, split.y_train)] * len(alphas)
    else:
        coefficients = regularization_path(split.x_train, split.y_train, penalty, alphas, config["l1_ratio"])
    path = []
    for w in coefficients:
        point = {"train": _scores(w, split.x_train, split.y_train),
                 "validation": None if split.x_val is None else _scores(w, split.x_val, split.y_val),
                 "test": _scores(w, split.x_test, split.y_test) if config["score_test"] else None,
                 "coefficients": [float(v) for v in w], "zero_fraction": float(np.mean(w == 0)),
                 "weight_l2_norm": float(np.linalg.norm(w))}
        path.append(point)
    return {"path": path, "sizes": {"train": len(split.y_train),
                                    "validation": 0 if split.y_val is None else len(split.y_val),
                                    "test": len(split.y_test)}}
