"""GAN losses: values against the NumPy formulas, gradient checks, finiteness at logits of +-1000,
the registry and its error message."""
import numpy as np
import pytest

import minireg as mr
from minireg.gan import GAN_LOSSES, get_loss
from minireg.testing import gradcheck

rng = np.random.default_rng(0)


def log_sigmoid(t):
    return -np.logaddexp(0.0, -t)


# (d_loss(real, fake), g_loss(fake)) straight from the papers' formulas
REFERENCE = {
    "minimax": (lambda r, f: -np.mean(log_sigmoid(r)) - np.mean(log_sigmoid(-f)),
                lambda f: np.mean(log_sigmoid(-f))),
    "non_saturating": (lambda r, f: -np.mean(log_sigmoid(r)) - np.mean(log_sigmoid(-f)),
                       lambda f: -np.mean(log_sigmoid(f))),
    "wgan": (lambda r, f: np.mean(f) - np.mean(r), lambda f: -np.mean(f)),
    "hinge": (lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)), lambda f: -np.mean(f)),
    "least_squares": (lambda r, f: 0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f ** 2),
                      lambda f: 0.5 * np.mean((f - 1) ** 2)),
}


def test_registry_holds_every_loss_under_its_name():
    assert set(GAN_LOSSES) == set(REFERENCE)
    for name, loss in GAN_LOSSES.items():
        assert loss.name == name and get_loss(name) is loss
    d_loss, g_loss = get_loss("hinge")[1:]
    assert callable(d_loss) and callable(g_loss)


@pytest.mark.parametrize("name", REFERENCE)
def test_values_match_the_numpy_formulas(name):
    real, fake = rng.normal(scale=3, size=(7, 1)), rng.normal(scale=3, size=(5, 1))
    loss, (d_ref, g_ref) = get_loss(name), REFERENCE[name]
    np.testing.assert_allclose(loss.d_loss(mr.tensor(real), mr.tensor(fake)).item(), d_ref(real, fake), rtol=1e-12)
    np.testing.assert_allclose(loss.g_loss(mr.tensor(fake)).item(), g_ref(fake), rtol=1e-12)


@pytest.mark.parametrize("name", REFERENCE)
def test_gradients_match_finite_differences(name):
    loss = get_loss(name)
    real, fake = np.array([-2.3, -0.4, 0.3, 0.8, 1.7, 2.9]), np.array([-1.6, -0.7, 0.2, 1.2])   # off the hinge kinks
    gradcheck(loss.d_loss, [real, fake])
    gradcheck(loss.g_loss, [fake])


@pytest.mark.parametrize("name", REFERENCE)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_gradients_stay_finite_at_extreme_logits(name, dtype):
    loss = get_loss(name)
    logits = np.array([-1000.0, 1000.0, 0.0], dtype=dtype)
    real, fake = mr.tensor(logits, requires_grad=True), mr.tensor(-logits, requires_grad=True)
    values = [loss.d_loss(real, fake), loss.g_loss(fake)]
    for value in values:
        grads = mr.grad(value, [real, fake], allow_unused=True)
        assert np.isfinite(value.item())
        assert all(g is None or np.all(np.isfinite(g.numpy())) for g in grads)


def test_logistic_losses_saturate_exactly_as_the_formulas_say():
    big = mr.tensor(np.array([1000.0]))
    # a confident, correct D: no D loss; the minimax G loss is flat there, the non-saturating one is not
    assert get_loss("minimax").d_loss(big, -big).item() == 0.0
    np.testing.assert_allclose(get_loss("non_saturating").g_loss(-big).item(), 1000.0)
    fake = mr.tensor(np.array([-1000.0]), requires_grad=True)
    assert mr.grad(get_loss("minimax").g_loss(fake), fake)[0].item() == 0.0
    assert mr.grad(get_loss("non_saturating").g_loss(fake), fake)[0].item() == -1.0


def test_numpy_arrays_are_accepted_as_logits():
    np.testing.assert_allclose(get_loss("wgan").d_loss(np.array([1.0, 3.0]), np.array([0.5])).item(), -1.5)


@pytest.mark.parametrize("name", ["vanilla", None, 3])
def test_unknown_names_list_the_registered_ones(name):
    with pytest.raises(ValueError, match=f"unknown GAN loss {name!r}; expected one of minimax, non_saturating, "
                                         "wgan, hinge, least_squares"):
        get_loss(name)


def test_a_gan_loss_prints_its_two_formulas():
    assert repr(get_loss("hinge")) == ("GANLoss('hinge': L_D = E relu(1 - D(x)) + E relu(1 + D(G(z))), "
                                       "L_G = -E D(G(z)))")
    assert all(repr(loss).startswith(f"GANLoss({name!r}: L_D = ") for name, loss in GAN_LOSSES.items())
