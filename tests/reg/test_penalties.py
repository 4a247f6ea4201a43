"""Weight penalties: scaling conventions, gradients (autograd, raw, optimizer hook), subgradients at
kinks, proximal operators (optimality, non-expansiveness, minimization), validation, fake device."""
import gc
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minireg as mr
from minireg.errors import ShapeError
from minireg.nn import Parameter
from minireg.optim import SGD
from minireg.reg.attach import attach
from minireg.reg.penalties import L1, L2, ElasticNet, GroupLasso, Orthogonal, SpectralNormPenalty
from minireg.testing import gradcheck, gradgradcheck
from minireg.testing import strategies as mst
from minireg.testing.devices import fake_device

MATRICES = mst.shapes(min_dims=2, max_dims=2, min_side=2, max_side=4)
KERNELS = mst.shapes(min_dims=4, max_dims=4, min_side=1, max_side=3).filter(lambda s: s[0] * s[1] > 1)
AWAY_FROM_ZERO = dict(kinks=(0.0,), margin=0.05)
GROUPINGS = [("rows", MATRICES), ("columns", MATRICES), ("filters", KERNELS), ("channels", KERNELS)]

# Penalties with a closed-form prox, as (id, factory): each test builds fresh ones.
PROX_PENALTIES = [
    ("l2", lambda: L2(0.7)),
    ("l1", lambda: L1(0.4)),
    ("elastic_net", lambda: ElasticNet(0.8, l1_ratio=0.3)),
    ("elastic_net_lasso", lambda: ElasticNet(0.5, l1_ratio=1.0)),
    ("group_rows", lambda: GroupLasso(0.6, "rows")),
    ("group_columns", lambda: GroupLasso(0.6, "columns")),
]
SMOOTH_PENALTIES = [
    ("l2", lambda: L2(0.7)),
    ("elastic_net", lambda: ElasticNet(0.8, l1_ratio=0.3)),
    ("group_rows", lambda: GroupLasso(0.6, "rows")),
    ("group_columns", lambda: GroupLasso(0.6, "columns")),
    ("orthogonal", lambda: Orthogonal(0.3)),
    ("orthogonal_full", lambda: Orthogonal(0.3, mode="full")),
]
ALL_PENALTIES = SMOOTH_PENALTIES + [("l1", lambda: L1(0.4)),
                                    ("spectral", lambda: SpectralNormPenalty(0.5, n_power_iterations=100))]


def param(array):
    return Parameter(np.array(array, dtype=np.float64))


def ids(cases):
    return [name for name, _ in cases]


def value_of(penalty, array):
    return penalty.value([param(array)]).item()


def autograd_of_value(penalty, array):
    p = param(array)
    penalty.value([p]).backward()
    return p.grad.numpy()


def prox_of(penalty, array, step):
    p = param(array)
    penalty.prox_(p, step)
    return p.numpy()


def group_rows(array, groups):
    """The groups of ``array`` as rows of a 2-D NumPy array."""
    axis = {"rows": 0, "columns": 1, "filters": 0, "channels": 1}[groups]
    return np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)


def with_spectrum(rng, singular_values, n_cols):
    """A matrix with the given (well separated) singular values and random singular vectors."""
    k = len(singular_values)
    u, _ = np.linalg.qr(rng.normal(size=(k, k)))
    v, _ = np.linalg.qr(rng.normal(size=(n_cols, k)))
    return u @ np.diag(singular_values) @ v.T


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, argument", [
    (lambda: L2(-0.1), "alpha"), (lambda: L2(float("nan")), "alpha"), (lambda: L1(float("inf")), "alpha"),
    (lambda: L1(True), "alpha"), (lambda: L1("0.1"), "alpha"),
    (lambda: ElasticNet(-1.0), "alpha"), (lambda: ElasticNet(1.0, l1_ratio=1.5), "l1_ratio"),
    (lambda: ElasticNet(1.0, l1_ratio=-0.1), "l1_ratio"), (lambda: ElasticNet(1.0, l1_ratio=float("nan")), "l1_ratio"),
    (lambda: GroupLasso(-1.0), "alpha"), (lambda: GroupLasso(1.0, groups="row"), "groups"),
    (lambda: Orthogonal(beta=-1.0), "beta"), (lambda: Orthogonal(mode="diagonal"), "mode"),
    (lambda: SpectralNormPenalty(-1.0), "beta"), (lambda: SpectralNormPenalty(1.0, n_power_iterations=0), "n_power_iterations"),
    (lambda: SpectralNormPenalty(1.0, n_power_iterations=1.5), "n_power_iterations"),
    (lambda: SpectralNormPenalty(1.0, eps=0.0), "eps"),
])
def test_bad_constructor_arguments_name_the_argument(make, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        make()


@pytest.mark.parametrize("name, make", PROX_PENALTIES, ids=ids(PROX_PENALTIES))
@pytest.mark.parametrize("step", [-0.1, float("nan"), float("inf")])
def test_bad_step_raises_before_the_parameter_changes(name, make, step):
    p = param(np.arange(6.0).reshape(2, 3) - 2.5)
    before = p.numpy().copy()
    with pytest.raises(ValueError, match="step"):
        make().prox_(p, step)
    np.testing.assert_array_equal(p.numpy(), before)


@pytest.mark.parametrize("groups, shape", [("rows", (2, 3, 3, 3)), ("columns", (4,)), ("filters", (3, 4)),
                                           ("channels", (3, 4))])
def test_group_lasso_rejects_weights_of_the_wrong_rank(groups, shape):
    p = param(np.ones(shape))
    with pytest.raises(ShapeError, match=re.escape(str(shape))):
        GroupLasso(0.1, groups).penalty(p)
    with pytest.raises(ShapeError, match=re.escape(str(shape))):
        GroupLasso(0.1, groups).prox_(p, 0.5)
    np.testing.assert_array_equal(p.numpy(), np.ones(shape))


# -- scaling conventions ---------------------------------------------------------------------------
W = np.array([[0.5, -1.5, 0.0], [2.0, 0.25, -0.75]])


def test_l1_and_l2_use_keras_scaling():
    assert value_of(L1(0.3), W) == pytest.approx(0.3 * np.abs(W).sum())
    assert value_of(L2(0.3), W) == pytest.approx(0.3 * (W ** 2).sum())
    np.testing.assert_allclose(L2(0.3).gradient(param(W)), 2 * 0.3 * W)


def test_pytorch_weight_decay_equals_l2_of_half_the_rate():
    wd = 0.01
    np.testing.assert_allclose(L2(wd / 2).gradient(param(W)), wd * W)
    np.testing.assert_allclose(autograd_of_value(L2(wd / 2), W), wd * W)


@pytest.mark.parametrize("alpha, l1_ratio", [(1.0, 0.5), (0.1, 0.15), (0.3, 0.0), (2.0, 1.0)])
def test_elastic_net_is_scikit_learns_penalty_term(alpha, l1_ratio):
    # sklearn.linear_model.ElasticNet: 1/(2n)||y - Xw||^2 + alpha*l1_ratio*||w||_1 + 0.5*alpha*(1-l1_ratio)*||w||^2
    expected = alpha * l1_ratio * np.abs(W).sum() + 0.5 * alpha * (1 - l1_ratio) * (W ** 2).sum()
    assert value_of(ElasticNet(alpha, l1_ratio), W) == pytest.approx(expected)


def test_keras_l1l2_translates_to_elastic_net():
    l1, l2 = 0.01, 0.02
    keras = l1 * np.abs(W).sum() + l2 * (W ** 2).sum()
    assert value_of(ElasticNet(alpha=l1 + 2 * l2, l1_ratio=l1 / (l1 + 2 * l2)), W) == pytest.approx(keras)


@pytest.mark.parametrize("groups, shape", [("rows", (3, 4)), ("columns", (3, 4)), ("filters", (3, 2, 2, 2)),
                                           ("channels", (3, 2, 2, 2))])
def test_group_lasso_sums_the_norms_of_the_named_groups(groups, shape):
    w = np.random.default_rng(1).normal(size=shape)
    norms = np.linalg.norm(group_rows(w, groups), axis=1)
    assert len(norms) == shape[{"rows": 0, "columns": 1, "filters": 0, "channels": 1}[groups]]
    assert value_of(GroupLasso(0.7, groups), w) == pytest.approx(0.7 * norms.sum())


@pytest.mark.parametrize("shape", [(3, 5), (4, 2, 3, 3)])
def test_orthogonal_matches_biggan_and_the_full_form(shape):
    w = np.random.default_rng(2).normal(size=shape)
    rows = w.reshape(shape[0], -1)
    gram, eye = rows @ rows.T, np.eye(shape[0])
    assert value_of(Orthogonal(0.1), w) == pytest.approx(0.1 * ((gram * (1 - eye)) ** 2).sum())
    assert value_of(Orthogonal(0.1, mode="full"), w) == pytest.approx(0.1 * ((gram - eye) ** 2).sum())
    # BigGAN-PyTorch utils.ortho(strength) adds 2*strength*(M*(1-I))W to the gradient
    strength = 1e-4
    biggan = 2 * strength * ((gram * (1 - eye)) @ rows)
    np.testing.assert_allclose(Orthogonal(beta=strength / 2).gradient(param(w)), biggan.reshape(shape), rtol=1e-12)


@pytest.mark.parametrize("shape", [(3, 5), (4, 2, 2, 2)])
def test_spectral_penalty_is_beta_times_the_squared_largest_singular_value(shape):
    rng = np.random.default_rng(3)
    w = with_spectrum(rng, [3.0, 1.5, 1.0, 0.5][:shape[0]], int(np.prod(shape[1:]))).reshape(shape)
    u, s, vt = np.linalg.svd(w.reshape(shape[0], -1))
    sigma = s[0]
    penalty = SpectralNormPenalty(0.2)
    p = param(w)
    for _ in range(3):   # the estimate improves with every call (persistent vector)
        value = penalty.value([p]).item()
    assert value == pytest.approx(0.2 * sigma ** 2, rel=1e-10)
    expected = 2 * 0.2 * sigma * np.outer(u[:, 0], vt[0]).reshape(shape)   # sign-invariant
    np.testing.assert_allclose(penalty.gradient(p), expected, atol=1e-7)   # vectors converge slower


def test_spectral_vectors_are_kept_per_parameter_and_released_with_it():
    rng = np.random.default_rng(4)
    penalty = SpectralNormPenalty(1.0)
    a, b = param(with_spectrum(rng, [2.0, 1.0], 3)), param(with_spectrum(rng, [5.0, 1.0], 4))
    penalty.value([a, b])
    assert len(penalty._left) == 2
    assert penalty.singular_vectors(a)[2] == pytest.approx(2.0)
    assert penalty.singular_vectors(b)[2] == pytest.approx(5.0)
    del a
    gc.collect()
    assert len(penalty._left) == 1


def test_default_selection_skips_biases_and_select_overrides_it():
    layer = mr.nn.Linear(3, 2, dtype="float64")
    expected = 0.5 * (layer.weight.numpy() ** 2).sum()
    assert L2(0.5).value(layer.parameters()).item() == pytest.approx(expected)
    everything = L2(0.5, select=lambda p: True).value(layer.parameters()).item()
    assert everything == pytest.approx(expected + 0.5 * (layer.bias.numpy() ** 2).sum())
    with pytest.raises(ValueError, match="select"):
        L2(0.5).value([layer.bias])


# -- gradients -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, make", SMOOTH_PENALTIES + [("l1", lambda: L1(0.4))],
                         ids=ids(SMOOTH_PENALTIES) + ["l1"])
@given(w=mst.float_arrays(MATRICES, **AWAY_FROM_ZERO))
def test_penalty_gradcheck_away_from_kinks(name, make, w):
    penalty = make()
    gradcheck(lambda x: penalty.penalty(x), [w])


@pytest.mark.parametrize("name, make", SMOOTH_PENALTIES, ids=ids(SMOOTH_PENALTIES))
@given(w=mst.float_arrays(MATRICES, **AWAY_FROM_ZERO))
def test_penalty_gradgradcheck_where_smooth(name, make, w):
    penalty = make()
    gradgradcheck(lambda x: penalty.penalty(x), [w])


@pytest.mark.parametrize("groups, shapes", GROUPINGS, ids=[g for g, _ in GROUPINGS])
@given(data=st.data())
def test_group_lasso_gradcheck_for_every_grouping(groups, shapes, data):
    w = data.draw(mst.float_arrays(shapes, **AWAY_FROM_ZERO))
    penalty = GroupLasso(0.6, groups)
    gradcheck(lambda x: penalty.penalty(x), [w])


def test_spectral_penalty_gradcheck_at_a_converged_estimate():
    w = with_spectrum(np.random.default_rng(5), [3.0, 1.0, 0.5], 4)
    penalty = SpectralNormPenalty(0.3, n_power_iterations=200)
    # gradcheck makes fresh tensors, so every call starts from a new random vector: converged, but
    # not bit-identical
    gradcheck(lambda x: penalty.penalty(x), [w], nondet_tol=1e-12)


@pytest.mark.parametrize("name, make", ALL_PENALTIES, ids=ids(ALL_PENALTIES))
@given(w=mst.float_arrays(MATRICES, **AWAY_FROM_ZERO))
def test_raw_gradient_and_add_grad_equal_the_autograd_of_value(name, make, w):
    mr.manual_seed(0)
    expected = autograd_of_value(make(), w)
    mr.manual_seed(0)
    np.testing.assert_allclose(make().gradient(param(w)), expected, rtol=1e-9, atol=1e-12)
    mr.manual_seed(0)
    p = param(w)
    make().add_grad_([p])                       # p.grad is None: created
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-9, atol=1e-12)
    mr.manual_seed(0)
    q = param(w)
    q.grad = mr.tensor(np.ones_like(w))
    make().add_grad_([q])                       # accumulated into the existing gradient
    np.testing.assert_allclose(q.grad.numpy(), 1 + expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, make", ALL_PENALTIES, ids=ids(ALL_PENALTIES))
def test_optimizer_hook_gives_the_same_step_as_adding_value_to_the_loss(name, make):
    rng = np.random.default_rng(6)
    w0, c = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    mr.manual_seed(0)
    a = param(w0)
    penalty = make()
    opt = SGD([a], lr=0.1)
    ((a * c).sum() + penalty.value([a])).backward()
    opt.step()

    mr.manual_seed(0)
    b = param(w0)
    opt = SGD([b], lr=0.1)
    attach(opt, make(), mode="grad")
    (b * c).sum().backward()
    opt.step()
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12, atol=1e-14)


def test_subgradients_at_kinks_are_minimum_norm():
    w = np.array([[0.0, 1.5, -2.0], [0.0, 0.0, 0.0]])
    for penalty, expected in [
        (L1(0.3), 0.3 * np.sign(w)),
        (ElasticNet(0.5, 0.4), 0.5 * 0.4 * np.sign(w) + 0.5 * 0.6 * w),
        (GroupLasso(0.2, "rows"), np.vstack([0.2 * w[0] / np.linalg.norm(w[0]), np.zeros(3)])),
        (GroupLasso(0.2, "columns"), np.hstack([np.zeros((2, 1)), 0.2 * np.sign(w[:, 1:])])),
    ]:
        np.testing.assert_allclose(penalty.gradient(param(w)), expected, atol=1e-15)
        np.testing.assert_allclose(autograd_of_value(penalty, w), expected, atol=1e-15)


def test_group_lasso_of_an_all_zero_weight_is_zero_with_zero_gradient():
    p = param(np.zeros((2, 3)))
    penalty = GroupLasso(1.0)
    value = penalty.value([p])
    value.backward()
    assert value.item() == 0.0
    np.testing.assert_array_equal(p.grad.numpy(), np.zeros((2, 3)))


# -- proximal operators ----------------------------------------------------------------------------
PROX_CASES = dict(v=mst.float_arrays(MATRICES), step=st.floats(0.01, 2.0))


def elementwise_strengths(penalty):
    """(l1, l2) with R(w) = l1 * sum|w| + l2 / 2 * sum(w**2)."""
    if isinstance(penalty, L2):
        return 0.0, 2 * penalty.alpha
    if isinstance(penalty, L1):
        return penalty.alpha, 0.0
    return penalty.alpha * penalty.l1_ratio, penalty.alpha * (1 - penalty.l1_ratio)


def prox_residual_ok(penalty, v, p, t):
    """The optimality condition 0 in p - v + t * dR(p), checked elementwise or groupwise."""
    tol = 1e-12 * (1 + np.abs(v).max())
    r = v - p                     # must lie in t * dR(p)
    if isinstance(penalty, GroupLasso):
        for vg, pg, rg in zip(*(group_rows(a, penalty.groups) for a in (v, p, r))):
            if np.any(pg != 0):
                np.testing.assert_allclose(rg, t * penalty.alpha * pg / np.linalg.norm(pg), atol=tol)
            else:
                assert np.linalg.norm(vg) <= t * penalty.alpha + tol
        return
    l1, l2 = elementwise_strengths(penalty)
    smooth = r - t * l2 * p       # what remains must lie in t * l1 * d|p|
    nonzero = p != 0
    np.testing.assert_allclose(smooth[nonzero], t * l1 * np.sign(p[nonzero]), atol=tol)
    assert np.all(np.abs(smooth[~nonzero]) <= t * l1 + tol)


@pytest.mark.parametrize("name, make", PROX_PENALTIES, ids=ids(PROX_PENALTIES))
@given(**PROX_CASES)
def test_prox_satisfies_the_optimality_condition(name, make, v, step):
    penalty = make()
    prox_residual_ok(penalty, v, prox_of(penalty, v, step), step)


@pytest.mark.parametrize("name, make", PROX_PENALTIES, ids=ids(PROX_PENALTIES))
@given(a=mst.float_arrays((3, 4)), b=mst.float_arrays((3, 4)), step=st.floats(0.01, 2.0))
def test_prox_is_non_expansive(name, make, a, b, step):
    penalty = make()
    gap = np.linalg.norm(prox_of(penalty, a, step) - prox_of(penalty, b, step))
    assert gap <= np.linalg.norm(a - b) * (1 + 1e-12) + 1e-12


@pytest.mark.parametrize("name, make", PROX_PENALTIES, ids=ids(PROX_PENALTIES))
@given(**PROX_CASES, seed=st.integers(0, 2 ** 16))
def test_prox_minimizes_the_proximal_objective(name, make, v, step, seed):
    penalty = make()

    def objective(x):
        return 0.5 * ((x - v) ** 2).sum() + step * penalty.penalty(mr.tensor(x)).item()

    p = prox_of(penalty, v, step)
    best = objective(p)
    rng = np.random.default_rng(seed)
    for scale in (1e-3, 1e-1, 1.0):
        for _ in range(4):
            assert best <= objective(p + scale * rng.normal(size=p.shape)) + 1e-12


@pytest.mark.parametrize("name, make", PROX_PENALTIES, ids=ids(PROX_PENALTIES))
@given(v=mst.float_arrays(MATRICES))
def test_prox_with_step_zero_is_the_identity(name, make, v):
    np.testing.assert_array_equal(prox_of(make(), v, 0.0), v)


@pytest.mark.parametrize("alpha, l1_ratio", [(0.3, 1.0), (0.5, 0.5), (1.2, 0.2), (0.4, 0.0)])
def test_elastic_net_and_l1_prox_equal_scikit_learns_solution(alpha, l1_ratio):
    from sklearn.linear_model import ElasticNet as SklearnElasticNet

    # With X = sqrt(n) * I, sklearn's objective 1/(2n)||y - Xw||^2 + R(w) is 0.5||y/sqrt(n) - w||^2 + R(w),
    # whose minimizer is prox_R(y / sqrt(n)).
    v, step = np.random.default_rng(7).normal(size=8), 0.7
    n = v.size
    x = math.sqrt(n) * np.eye(n)
    sk = SklearnElasticNet(alpha=alpha * step, l1_ratio=l1_ratio, fit_intercept=False, tol=1e-14, max_iter=100)
    expected = sk.fit(x, math.sqrt(n) * v).coef_
    mine = prox_of(ElasticNet(alpha, l1_ratio, select=lambda p: True), v, step)
    np.testing.assert_allclose(mine, expected, atol=1e-12)
    if l1_ratio == 1.0:
        np.testing.assert_allclose(prox_of(L1(alpha), v, step), expected, atol=1e-12)


def test_closed_form_proxes():
    t = 0.3
    np.testing.assert_allclose(prox_of(L2(0.5), W, t), W / (1 + 2 * t * 0.5))
    np.testing.assert_allclose(prox_of(L1(0.5), W, t), np.sign(W) * np.maximum(np.abs(W) - t * 0.5, 0))
    soft = np.sign(W) * np.maximum(np.abs(W) - t * 0.8 * 0.25, 0)
    np.testing.assert_allclose(prox_of(ElasticNet(0.8, 0.25), W, t), soft / (1 + t * 0.8 * 0.75))


@pytest.mark.parametrize("groups, shape", [("rows", (3, 4)), ("columns", (3, 4)), ("filters", (3, 2, 2, 2)),
                                           ("channels", (3, 2, 2, 2))])
@pytest.mark.parametrize("layout", ["contiguous", "fortran"])
def test_group_lasso_prox_is_the_block_soft_threshold_in_every_layout(groups, shape, layout):
    rng = np.random.default_rng(8)
    v = rng.normal(size=shape)
    threshold = np.median(np.linalg.norm(group_rows(v, groups), axis=1))   # some groups vanish, some shrink
    p = Parameter(np.asfortranarray(v) if layout == "fortran" else v.copy())
    data = p.data
    GroupLasso(1.0, groups).prox_(p, threshold)
    assert p.data is data                              # updated in place
    rows = group_rows(v, groups)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    expected = rows * np.maximum(0, 1 - threshold / norms)
    np.testing.assert_allclose(group_rows(p.numpy(), groups), expected, atol=1e-15)
    assert np.any(np.all(expected == 0, axis=1)) and np.any(np.all(expected != 0, axis=1))


def test_proximal_step_hook_gives_exact_zeros():
    p = param(W)
    opt = SGD([p], lr=0.5)
    attach(opt, L1(1.0), mode="prox")
    p.grad = mr.tensor(np.zeros_like(W))
    opt.step()
    np.testing.assert_array_equal(p.numpy(), np.sign(W) * np.maximum(np.abs(W) - 0.5, 0))
    assert np.count_nonzero(p.numpy()) == 3


def test_penalties_without_a_prox_say_so():
    for penalty in (Orthogonal(), SpectralNormPenalty(1.0)):
        assert not penalty.has_prox
        with pytest.raises(NotImplementedError):
            penalty.prox_(param(W), 0.1)


# -- float32 and the fake device -------------------------------------------------------------------
@pytest.mark.parametrize("name, make", ALL_PENALTIES, ids=ids(ALL_PENALTIES))
def test_float32_matches_float64(name, make):
    w = np.random.default_rng(9).normal(size=(3, 4))
    mr.manual_seed(0)
    expected = make().gradient(param(w))
    mr.manual_seed(0)
    p = Parameter(w.astype(np.float32))
    g = make().gradient(p)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, expected, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("name, make", ALL_PENALTIES + [("group_filters", lambda: GroupLasso(0.6, "filters")),
                                                        ("group_channels", lambda: GroupLasso(0.6, "channels"))],
                         ids=ids(ALL_PENALTIES) + ["group_filters", "group_channels"])
def test_penalties_run_on_the_fake_device_without_host_round_trips(name, make):
    device = fake_device()
    shape = (3, 2, 2, 2) if name in ("group_filters", "group_channels") else (3, 4)
    w = np.random.default_rng(10).normal(size=shape)
    results = []
    for place in (np.asarray, device.asarray):
        mr.manual_seed(0)
        penalty = make()
        p = Parameter(place(w.copy()))
        value = penalty.value([p])
        value.backward()
        grad = penalty.gradient(p)
        assert p.backend.owns(grad) and p.backend.owns(p.grad.data)
        penalty.add_grad_([p])
        if penalty.has_prox:
            penalty.prox_(p, 0.3)
        assert p.backend.owns(p.data)
        results.append([value.numpy(), p.backend.to_numpy(grad), p.grad.numpy(), p.numpy()])
    for host, fake in zip(*results):
        np.testing.assert_allclose(fake, host, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("groups, shape", [("rows", (4, 5)), ("columns", (4, 5)), ("filters", (3, 2, 2, 2)),
                                           ("channels", (3, 2, 2, 2))])
def test_group_lasso_prox_in_a_diagonal_metric_is_exact(groups, shape):
    """argmin_x 1/2 sum_i (x_i - v_i)^2 / s_i + alpha*sum_g ||x_g||: the optimality conditions hold,
    the groups with ||v_g / s_g|| <= alpha are exactly zero, equal steps give the block soft threshold."""
    rng = np.random.default_rng(11)
    v, s, alpha = rng.normal(size=shape), rng.uniform(0.5, 1.0, size=shape), 0.8
    np.moveaxis(v, {"rows": 0, "columns": 1, "filters": 0, "channels": 1}[groups], 0)[0] *= 0.05   # a group to zero
    p = param(v.copy())
    GroupLasso(alpha, groups).prox_(p, s)
    x, rows_v, rows_s = (group_rows(a, groups) for a in (p.numpy(), v, s))
    zero = np.linalg.norm(rows_v / rows_s, axis=1) <= alpha
    assert zero.any() and not zero.all()
    assert np.all(x[zero] == 0)
    kept = x[~zero]
    residual = (kept - rows_v[~zero]) / rows_s[~zero] + alpha * kept / np.linalg.norm(kept, axis=1, keepdims=True)
    np.testing.assert_allclose(residual, 0, atol=1e-12)
    equal, block = param(v.copy()), param(v.copy())
    GroupLasso(alpha, groups).prox_(equal, np.full(shape, 0.3))
    GroupLasso(alpha, groups).prox_(block, 0.3)
    np.testing.assert_allclose(equal.numpy(), block.numpy(), rtol=1e-12, atol=1e-15)
