"""Penalties on activations, outputs and inputs: formulas, gradients (first and second order),
validation, double backpropagation through a model, and the fake device."""
import math

import numpy as np
import pytest
from hypothesis import given

import minireg as mr
from minireg import functional as F
from minireg.errors import GraphError, ShapeError
from minireg.nn import Parameter
from minireg.optim import Adam
from minireg.reg.activity import ActivityRegularization, ConfidencePenalty, InputGradientPenalty, TotalVariation
from minireg.testing import gradcheck, gradgradcheck
from minireg.testing import strategies as mst
from minireg.testing.devices import fake_device

RNG = np.random.default_rng(0)
ACTIVATIONS = RNG.normal(size=(4, 5))
IMAGES = RNG.normal(size=(2, 3, 4, 5))
LOGITS = 2 * RNG.normal(size=(6, 4))


def np_total_variation(x, isotropic, eps=1e-8):
    down = np.diff(x, axis=2)
    right = np.diff(x, axis=3)
    if not isotropic:
        return np.abs(down).sum() + np.abs(right).sum()
    down = np.pad(down, ((0, 0), (0, 0), (0, 1), (0, 0)))
    right = np.pad(right, ((0, 0), (0, 0), (0, 0), (0, 1)))
    return (np.sqrt(down ** 2 + right ** 2 + eps) - math.sqrt(eps)).sum()


def np_mean_entropy(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(axis=-1).mean()


@pytest.mark.parametrize("make, argument", [
    (lambda: ActivityRegularization(l1=-1.0), "l1"), (lambda: ActivityRegularization(l2=float("nan")), "l2"),
    (lambda: TotalVariation(-0.1), "weight"), (lambda: TotalVariation(1.0, eps=0.0), "eps"),
    (lambda: ConfidencePenalty(float("inf")), "beta"),
    (lambda: InputGradientPenalty(-1.0), "weight"), (lambda: InputGradientPenalty(1.0, norm="l3"), "norm"),
])
def test_bad_arguments_name_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize("regularizer", [ActivityRegularization(0.1), TotalVariation(1.0), ConfidencePenalty(0.1)])
def test_activity_penalties_refuse_to_act_on_parameters(regularizer):
    weight = Parameter(np.ones((2, 2)))
    for method in (regularizer.value, regularizer.add_grad_):
        with pytest.raises(TypeError, match="activations"):
            method([weight])
    assert weight.grad is None


# -- ActivityRegularization ------------------------------------------------------------------------
def test_activity_regularization_is_keras_3s_sum_over_the_batch():
    reg = ActivityRegularization(l1=0.01, l2=0.02)
    expected = 0.01 * np.abs(ACTIVATIONS).sum() + 0.02 * (ACTIVATIONS ** 2).sum()
    assert reg(ACTIVATIONS).item() == pytest.approx(expected)
    doubled = np.concatenate([ACTIVATIONS, ACTIVATIONS])
    assert reg(doubled).item() == pytest.approx(2 * expected)   # summed, not averaged, over the batch
    assert ActivityRegularization()(ACTIVATIONS).item() == 0.0


@given(a=mst.float_arrays(mst.shapes(min_dims=1), kinks=(0.0,), margin=0.05))
def test_activity_regularization_gradients(a):
    gradcheck(ActivityRegularization(l1=0.3, l2=0.2), [a])
    gradgradcheck(ActivityRegularization(l2=0.2), [a])


def test_activity_regularization_subgradient_at_zero_is_zero():
    a = mr.tensor(np.array([0.0, 2.0, -1.0]), requires_grad=True)
    ActivityRegularization(l1=0.5).penalty(a).backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.5, -0.5])


# -- TotalVariation --------------------------------------------------------------------------------
@pytest.mark.parametrize("isotropic", [False, True])
def test_total_variation_formula_and_constant_images(isotropic):
    tv = TotalVariation(0.7, isotropic=isotropic)
    assert tv(IMAGES).item() == pytest.approx(0.7 * np_total_variation(IMAGES, isotropic))
    assert tv(np.full((1, 2, 3, 3), 4.0)).item() == pytest.approx(0.0, abs=1e-12)


def test_total_variation_isotropic_is_the_gradient_magnitude():
    ramp = np.broadcast_to(3.0 * np.arange(4.0)[:, None] + 4.0 * np.arange(4.0)[None, :], (1, 1, 4, 4))
    # inner pixels have (dv, dh) = (3, 4): magnitude 5; the last row/column have one difference only
    # (and each of the 15 pixels with a difference is offset by -sqrt(eps))
    expected = 9 * 5 + 3 * 3 + 3 * 4 - 15 * math.sqrt(1e-8)
    assert TotalVariation(1.0, isotropic=True)(ramp).item() == pytest.approx(expected, abs=1e-7)
    assert TotalVariation(1.0)(ramp).item() == pytest.approx(4 * 3 * 3 + 4 * 3 * 4)


def test_total_variation_needs_image_batches():
    with pytest.raises(ShapeError, match=r"\(3, 4, 5\)"):
        TotalVariation(1.0)(np.ones((3, 4, 5)))


@given(x=mst.float_arrays((1, 2, 3, 3), unique=True, min_gap=0.05))
def test_total_variation_gradients(x):
    gradcheck(TotalVariation(0.5), [x])               # distinct pixels: no difference sits at the kink
    gradcheck(TotalVariation(0.5, isotropic=True), [x])
    gradgradcheck(TotalVariation(0.5, isotropic=True, eps=1e-2), [x])


def test_total_variation_denoises_a_piecewise_constant_image():
    clean = np.zeros((1, 1, 12, 12))
    clean[..., 3:9, 4:10] = 1.0
    noisy = clean + 0.3 * np.random.default_rng(1).normal(size=clean.shape)
    x = Parameter(noisy.copy())
    opt = Adam([x], lr=0.02)
    tv = TotalVariation(0.15, isotropic=True)
    for _ in range(150):
        opt.zero_grad()
        (0.5 * ((x - noisy) ** 2).sum() + tv(x)).backward()
        opt.step()
    assert np.abs(x.numpy() - clean).mean() < 0.6 * np.abs(noisy - clean).mean()


# -- ConfidencePenalty -----------------------------------------------------------------------------
def test_confidence_penalty_is_minus_beta_times_the_mean_entropy():
    assert ConfidencePenalty(0.4)(LOGITS).item() == pytest.approx(-0.4 * np_mean_entropy(LOGITS))
    uniform = ConfidencePenalty(0.4)(np.zeros((3, 5))).item()
    assert uniform == pytest.approx(-0.4 * math.log(5))   # most uncertain: lowest penalty
    confident = ConfidencePenalty(0.4)(np.array([[50.0, 0.0, 0.0]])).item()
    assert uniform < confident <= 0 and confident == pytest.approx(0.0, abs=1e-15)
    shifted = ConfidencePenalty(0.4)(LOGITS + 1e3).item()        # stable for large logits
    assert shifted == pytest.approx(-0.4 * np_mean_entropy(LOGITS))


@given(z=mst.float_arrays(mst.shapes(min_dims=1, max_dims=3)))
def test_confidence_penalty_gradients(z):
    gradcheck(ConfidencePenalty(0.3), [z])
    gradgradcheck(ConfidencePenalty(0.3), [z])


def test_confidence_penalty_training_raises_the_entropy():
    z = Parameter(LOGITS.copy())
    opt = Adam([z], lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        ConfidencePenalty(1.0)(z).backward()
        opt.step()
    assert np_mean_entropy(z.numpy()) > np_mean_entropy(LOGITS) + 0.1


# -- InputGradientPenalty --------------------------------------------------------------------------
X = RNG.normal(size=(5, 3))
Y = RNG.normal(size=5)
LABELS = np.array([0, 1, 2, 1, 0])


def squared_errors(x, w):
    r = F.matmul(x, w) - Y
    return 0.5 * r * r


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_input_gradient_penalty_of_a_linear_model(norm):
    w = np.array([0.5, -1.0, 2.0])
    x = mr.tensor(X, requires_grad=True)
    value = InputGradientPenalty(0.3, norm=norm)(squared_errors(x, w), x).item()
    residual = X @ w - Y                        # d loss_i / d x_i = residual_i * w
    per_example = residual ** 2 * (w ** 2).sum() if norm == "l2" else np.abs(residual) * np.abs(w).sum()
    assert value == pytest.approx(0.3 * per_example.mean())


def test_input_gradient_penalty_of_a_mean_loss_scales_gradients_by_one_over_n():
    w = np.array([0.5, -1.0, 2.0])
    x = mr.tensor(X, requires_grad=True)
    losses = squared_errors(x, w)
    penalty = InputGradientPenalty(1.0)
    assert penalty(losses.mean(), x).item() == pytest.approx(penalty(losses, x).item() / len(X) ** 2)


def mlp_penalty(w1, w2, norm="l2", weight=0.7):
    """weight * mean ||d CE_i / d x_i||^2 of a tanh MLP, as a function of its weights."""
    x = mr.tensor(X, requires_grad=True)
    losses = F.cross_entropy(F.linear(F.tanh(F.linear(x, w1)), w2), LABELS, reduction="none")
    return InputGradientPenalty(weight, norm=norm)(losses, x)


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_input_gradient_penalty_is_differentiable_in_the_weights(norm):
    w1, w2 = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 4))
    gradcheck(lambda a, b: mlp_penalty(a, b, norm), [w1, w2])


def test_input_gradient_penalty_trains_with_backward():
    w1, w2 = Parameter(RNG.normal(size=(4, 3))), Parameter(RNG.normal(size=(3, 4)))
    opt = Adam([w1, w2], lr=0.05)
    start = mlp_penalty(w1, w2).item()
    for _ in range(30):
        opt.zero_grad()
        mlp_penalty(w1, w2).backward()
        opt.step()
    assert mlp_penalty(w1, w2).item() < 0.5 * start


def test_input_gradient_penalty_input_errors():
    w = np.array([0.5, -1.0, 2.0])
    penalty = InputGradientPenalty(1.0)
    x = mr.tensor(X)
    with pytest.raises(GraphError, match="requires_grad"):
        penalty(squared_errors(x, w), x)
    x = mr.tensor(X, requires_grad=True)
    with pytest.raises(ShapeError, match=r"\(4,\)"):
        penalty(squared_errors(x, w)[:4], x)


# -- fake device -----------------------------------------------------------------------------------
@pytest.mark.parametrize("regularizer, data", [
    (ActivityRegularization(0.1, 0.2), ACTIVATIONS), (TotalVariation(0.5), IMAGES),
    (TotalVariation(0.5, isotropic=True), IMAGES), (ConfidencePenalty(0.3), LOGITS),
])
def test_activity_penalties_on_the_fake_device(regularizer, data):
    results = []
    for place in (np.asarray, fake_device().asarray):
        x = mr.tensor(place(data.copy()), requires_grad=True)
        value = regularizer(x)
        value.backward()
        results.append((value.numpy(), x.grad.numpy()))
    for host, fake in zip(*results):
        np.testing.assert_allclose(fake, host, rtol=1e-12, atol=1e-14)


def test_input_gradient_penalty_on_the_fake_device():
    results = []
    for place in (np.asarray, fake_device().asarray):
        w = Parameter(place(np.array([0.5, -1.0, 2.0])))
        x = mr.tensor(place(X.copy()), requires_grad=True)
        r = F.matmul(x, w) - mr.tensor(place(Y.copy()))
        value = InputGradientPenalty(0.3)(0.5 * r * r, x)
        value.backward()
        results.append((value.numpy(), w.grad.numpy()))
    for host, fake in zip(*results):
        np.testing.assert_allclose(fake, host, rtol=1e-12)
