"""SpectralNorm: power iteration against numpy's SVD, train/eval behaviour of u and v, state dicts,
gradients through sigma (closed form, gradcheck), double backward for GAN gradient penalties,
backends and validation."""
import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.errors import MiniregError
from minireg.nn.spectral_norm import SpectralNorm
from minireg.testing import gradcheck, gradgradcheck

rng = np.random.default_rng(0)


def weight_matrix(weight, dim):
    return np.moveaxis(weight, dim, 0).reshape(weight.shape[dim], -1)


def largest_singular_value(matrix):
    return np.linalg.svd(matrix, compute_uv=False)[0]


LAYERS = {
    "Linear": (lambda: nn.Linear(6, 4, dtype="float64"), (3, 6), 0),
    "Conv2d": (lambda: nn.Conv2d(2, 3, 2, dtype="float64"), (2, 2, 4, 4), 0),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(3, 2, 2, dtype="float64"), (2, 3, 3, 3), 1),
}


@pytest.mark.parametrize("kind", LAYERS)
def test_training_forwards_normalize_the_largest_singular_value_to_one(kind):
    make, x_shape, dim = LAYERS[kind]
    mr.manual_seed(0)
    sn = SpectralNorm(make())
    assert sn.dim == dim
    x = mr.tensor(rng.normal(size=x_shape))
    for _ in range(20):
        sn(x)
    normalized = weight_matrix(sn.compute_weight().numpy(), dim)
    assert abs(largest_singular_value(normalized) - 1) < 1e-2
    exact = largest_singular_value(weight_matrix(sn.weight_orig.numpy(), dim))
    np.testing.assert_allclose(sn.sigma().item(), exact, rtol=1e-2)


def test_forward_is_the_wrapped_layer_with_the_normalized_weight():
    mr.manual_seed(1)
    linear = nn.Linear(5, 3, dtype="float64")
    weight, bias = linear.weight, linear.bias.numpy()
    sn = SpectralNorm(linear).eval()
    assert sn.weight_orig is weight and "weight" not in dict(linear.named_parameters())
    x = rng.normal(size=(4, 5))
    u, v = sn.u.numpy(), sn.v.numpy()
    sigma = u @ weight.numpy() @ v
    np.testing.assert_allclose(sn(mr.tensor(x)).numpy(), x @ (weight.numpy() / sigma).T + bias, rtol=1e-12)
    assert "weight" not in linear.__dict__          # the normalized weight does not outlive the call
    assert {id(p) for p in sn.parameters()} == {id(weight), id(linear.bias)}


def test_power_iteration_updates_u_from_v_then_v_from_the_new_u_as_torch_parametrizations():
    # torch.nn.utils.parametrizations.spectral_norm, _SpectralNorm._power_method: per iteration
    # u = normalize(W v), then v = normalize(W^T u) (the older torch.nn.utils.spectral_norm does v first).
    mr.manual_seed(4)
    sn = SpectralNorm(nn.Linear(3, 2, dtype="float64"), n_power_iterations=2)
    w = sn.weight_orig.numpy()
    u0, v0 = np.array([1.0, 0.0]), np.array([0.0, 1.0, 1.0]) / np.sqrt(2)
    sn.u.data, sn.v.data = u0.copy(), v0.copy()
    sn(mr.tensor(np.ones((1, 3))))
    u, v = u0, v0
    for _ in range(2):
        u = w @ v / np.linalg.norm(w @ v)
        v = w.T @ u / np.linalg.norm(w.T @ u)
    np.testing.assert_allclose(sn.u.numpy(), u, rtol=1e-13)
    np.testing.assert_allclose(sn.v.numpy(), v, rtol=1e-13)
    v_first = w.T @ u0 / np.linalg.norm(w.T @ u0)        # the other order gives other vectors
    assert not np.allclose(w @ v_first / np.linalg.norm(w @ v_first), w @ v0 / np.linalg.norm(w @ v0))
    np.testing.assert_allclose(sn.sigma().item(), u @ w @ v, rtol=1e-13)


def test_a_refused_input_leaves_u_and_v_unchanged():
    sn = SpectralNorm(nn.Linear(3, 2))
    u, v = sn.u.numpy().copy(), sn.v.numpy().copy()
    for bad in (np.ones((2, 3)), np.ones((2, 4), np.float32)):     # float64 into float32; wrong width
        with pytest.raises(MiniregError):
            sn(bad)
        np.testing.assert_array_equal(sn.u.numpy(), u)
        np.testing.assert_array_equal(sn.v.numpy(), v)


def test_eval_keeps_u_and_v_and_train_updates_them():
    mr.manual_seed(2)
    sn = SpectralNorm(nn.Linear(5, 4, dtype="float64"))
    x = mr.tensor(rng.normal(size=(2, 5)))
    u, v = sn.u.numpy().copy(), sn.v.numpy().copy()
    sn.eval()
    sn(x)
    np.testing.assert_array_equal(sn.u.numpy(), u)
    np.testing.assert_array_equal(sn.v.numpy(), v)
    sn.train()
    sn(x)
    assert not np.array_equal(sn.u.numpy(), u) and not np.array_equal(sn.v.numpy(), v)
    np.testing.assert_allclose(np.linalg.norm(sn.u.numpy()), 1.0)


def test_state_dict_holds_weight_orig_and_the_vectors_and_round_trips():
    mr.manual_seed(3)
    sn = SpectralNorm(nn.Conv2d(2, 3, 2, dtype="float64"))
    state = sn.state_dict()
    assert set(state) == {"weight_orig", "u", "v", "module.bias"}
    assert state["u"].shape == (3,) and state["v"].shape == (8,)
    mr.manual_seed(4)
    other = SpectralNorm(nn.Conv2d(2, 3, 2, dtype="float64"))
    other.load_state_dict(state)
    x = mr.tensor(rng.normal(size=(1, 2, 3, 3)))
    np.testing.assert_array_equal(other.eval()(x).numpy(), sn.eval()(x).numpy())


def test_weight_gradient_flows_through_sigma_as_in_torch():
    """d<G, W/sigma>/dW = G/sigma - <G, W>/sigma^2 * u v^T, with u, v constants (torch's gradient)."""
    mr.manual_seed(5)
    sn = SpectralNorm(nn.Linear(4, 3, bias=False, dtype="float64")).eval()
    g = rng.normal(size=(3, 4))
    (sn.compute_weight() * mr.tensor(g)).sum().backward()
    w, u, v = sn.weight_orig.numpy(), sn.u.numpy(), sn.v.numpy()
    sigma = u @ w @ v
    np.testing.assert_allclose(sn.weight_orig.grad.numpy(), g / sigma - np.sum(g * w) / sigma**2 * np.outer(u, v),
                               rtol=1e-12)


def with_weight_orig(sn, w):
    # gradcheck hands fn fresh leaves, which Module.__setattr__ would not register as parameters.
    sn._parameters["weight_orig"] = w
    return sn


@pytest.mark.parametrize("kind", LAYERS)
def test_gradcheck_with_respect_to_input_and_weight_orig(kind):
    make, x_shape, _ = LAYERS[kind]
    mr.manual_seed(6)
    sn = SpectralNorm(make()).eval()
    original = sn.weight_orig
    try:
        gradcheck(lambda x, w: with_weight_orig(sn, w)(x), [mr.tensor(rng.normal(size=x_shape)), original])
    finally:
        with_weight_orig(sn, original)


def discriminator():
    mr.manual_seed(7)
    return nn.Sequential(SpectralNorm(nn.Linear(3, 5, dtype="float64")), nn.Tanh(),
                         SpectralNorm(nn.Linear(5, 1, dtype="float64")))


def gradient_penalty(d, x):
    """WGAN-GP: mean over samples of (||dD/dx||_2 - 1)^2."""
    (gx,) = mr.grad(d(x).sum(), [x], create_graph=True)
    return ((((gx * gx).sum(axis=1) + 1e-12).sqrt() - 1.0) ** 2).mean()


def test_double_backward_through_a_spectrally_normalized_discriminator():
    d = discriminator().eval()
    x = mr.tensor(rng.normal(size=(4, 3)))
    gradgradcheck(lambda x: d(x), [x])
    first = d[0]
    original = first.weight_orig

    def penalty(x, w):
        with_weight_orig(first, w)
        return gradient_penalty(d, x)

    try:
        gradcheck(penalty, [x, original])
    finally:
        with_weight_orig(first, original)


def test_gradient_penalty_trains_weight_orig_in_training_mode():
    d = discriminator().train()
    x = mr.tensor(rng.normal(size=(4, 3)), requires_grad=True)
    gradient_penalty(d, x).backward()
    for sn in (d[0], d[2]):
        grad = sn.weight_orig.grad.numpy()
        assert grad.shape == sn.weight_orig.shape and np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_same_numbers_on_every_backend(backend):
    def run(target):
        mr.manual_seed(8)
        sn = SpectralNorm(nn.Linear(4, 3, dtype="float64")).to(target)
        x = mr.tensor(target.asarray(np.linspace(-1, 1, 8).reshape(2, 4)))
        outputs = [sn(x).numpy() for _ in range(3)]
        return outputs + [sn.u.numpy(), sn.v.numpy()]

    for got, want in zip(run(backend), run(mr.get_backend("numpy"))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kwargs", [{"name": "bias"}, {"name": "kernel"}, {"n_power_iterations": 0}, {"eps": 0.0},
                                    {"dim": 2}])
def test_invalid_arguments_leave_the_module_untouched(kwargs):
    linear = nn.Linear(4, 3)
    with pytest.raises(MiniregError):     # messages: tests/nn/test_bad_arguments.py
        SpectralNorm(linear, **kwargs)
    assert [name for name, _ in linear.named_parameters()] == ["weight", "bias"]
    assert "weight" in linear._parameters and not linear._buffers
