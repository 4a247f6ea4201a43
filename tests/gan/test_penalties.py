"""GAN regularizers.

The key checks differentiate the gradient penalties (WGAN-GP, R1) with respect to the
discriminator's weights, through dense and conv discriminators, against finite differences: the
penalty is written as a function of the weight tensors (the model reads them in place of its
parameters) and its random draws are re-seeded inside, so it is deterministic. Also: closed forms
on linear discriminators, the sampling of interpolates and perturbations, lazy R1, feature
matching, consistency regularization, LeCam EMAs, instance-noise annealing, argument validation
and the same numbers on every backend.
"""
import contextlib
import math

import numpy as np
import pytest

import minireg as mr
from minireg import F, nn
from minireg.errors import ShapeError
from minireg.gan import (DRAGAN, R1, R2, ConsistencyRegularization, Discriminator, FeatureMatching, GradientPenalty,
                         InstanceNoise, LeCam, dcgan_discriminator, input_gradients, mlp_discriminator)
from minireg.testing import gradcheck, numerical_grad

rng = np.random.default_rng(0)


def data(*shape):
    return mr.tensor(rng.normal(size=shape))


@contextlib.contextmanager
def weights_replaced(model, values):
    """Within the block, ``model`` reads ``values`` (dotted name -> Tensor) in place of its parameters.

    Each tensor goes into its module's instance ``__dict__``, which attribute lookup consults
    before the parameter registry, so the registered Parameters are shadowed, not replaced.
    """
    modules, slots = dict(model.named_modules()), []
    for name, value in values.items():
        owner, _, attr = name.rpartition(".")
        modules[owner].__dict__[attr] = value
        slots.append((modules[owner], attr))
    try:
        yield
    finally:
        for module, attr in slots:
            del module.__dict__[attr]


def of_weights(model, penalty):
    """(f, weights): f(*weights) = penalty() computed with ``weights`` as the model's parameters."""
    names = [name for name, _ in model.named_parameters()]

    def f(*weights):
        with weights_replaced(model, dict(zip(names, weights))):
            return penalty()

    return f, [p.numpy() for p in model.parameters()]


def conv_critic():
    """Two 3x3 convolutions on 1x6x6 images (6 -> 4 -> 2), LeakyReLU(0.2), then the linear head."""
    body = nn.Sequential(nn.Conv2d(1, 2, 3, dtype="float64"), nn.LeakyReLU(negative_slope=0.2),
                         nn.Conv2d(2, 2, 3, dtype="float64"), nn.LeakyReLU(negative_slope=0.2), nn.Flatten())
    return Discriminator(body, nn.Linear(8, 1, dtype="float64"), (1, 6, 6))


CRITICS = {
    "dense": (lambda: mlp_discriminator(in_dim=6, hidden=(5,), dtype="float64"), (4, 6)),
    "conv": (conv_critic, (3, 1, 6, 6)),
    "dcgan": (lambda: dcgan_discriminator(image_size=8, base_width=2, dtype="float64"), (3, 1, 8, 8)),
}


# ==== the key checks: d(penalty)/d(weights) against finite differences ==========================
@pytest.mark.parametrize("kind", CRITICS)
def test_gradient_penalty_is_differentiable_in_the_discriminator_weights(kind):
    make, shape = CRITICS[kind]
    mr.manual_seed(0)
    D, real, fake = make(), data(*shape), data(*shape)

    def penalty():
        return GradientPenalty(generator=np.random.default_rng(0))(D, real, fake)   # the same eps every time

    f, weights = of_weights(D, penalty)
    assert f(*map(mr.tensor, weights)).item() > 0
    gradcheck(f, weights, max_full_size=100, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_r1_is_differentiable_in_the_discriminator_weights(kind):
    make, shape = CRITICS[kind]
    mr.manual_seed(1)
    D, real = make(), data(*shape)
    f, weights = of_weights(D, lambda: R1(gamma=10.0)(D, real))
    gradcheck(f, weights, max_full_size=100, atol=1e-8, rtol=1e-6)


def test_dragan_is_differentiable_in_the_discriminator_weights():
    mr.manual_seed(2)
    D, real = mlp_discriminator(in_dim=6, hidden=(5,), dtype="float64"), data(4, 6)
    f, weights = of_weights(D, lambda: DRAGAN(generator=np.random.default_rng(0))(D, real))
    gradcheck(f, weights)


def test_penalty_backward_reaches_every_discriminator_weight():
    mr.manual_seed(3)
    D = dcgan_discriminator(image_size=8, base_width=2, dtype="float64")
    GradientPenalty()(D, data(2, 1, 8, 8), data(2, 1, 8, 8)).backward()
    for name, p in D.named_parameters():
        if p.ndim == 1:     # the input gradient of a piecewise-linear net does not depend on its biases
            assert p.grad is None, name
        else:
            assert np.all(np.isfinite(p.grad.numpy())) and np.any(p.grad.numpy() != 0), name


# ==== values ======================================================================================
def linear_critic():
    """D(x) = w.x + b: grad_x D = w for every sample."""
    mr.manual_seed(4)
    D = mlp_discriminator(in_dim=5, hidden=(), dtype="float64")
    return D, D.head.weight.numpy()[0]


def test_closed_forms_on_a_linear_critic():
    D, w = linear_critic()
    norm = np.linalg.norm(w)
    real, fake = data(6, 5), data(6, 5)
    np.testing.assert_allclose(GradientPenalty(weight=3.0)(D, real, fake).item(), 3.0 * (norm - 1) ** 2, rtol=1e-9)
    np.testing.assert_allclose(DRAGAN(weight=2.0)(D, real).item(), 2.0 * (norm - 1) ** 2, rtol=1e-9)
    np.testing.assert_allclose(R1(gamma=4.0)(D, real).item(), 4.0 / 2 * norm ** 2, rtol=1e-12)
    np.testing.assert_allclose(R2(gamma=4.0)(D, fake).item(), 4.0 / 2 * norm ** 2, rtol=1e-12)


def test_input_gradients_against_finite_differences():
    mr.manual_seed(5)
    D, x = CRITICS["conv"][0](), data(3, 1, 6, 6)
    out, g = input_gradients(D, x)
    np.testing.assert_allclose(out.numpy(), D(x).numpy(), rtol=1e-12)
    numeric = numerical_grad(lambda x: D(x), [x], np.ones(3))[0]
    np.testing.assert_allclose(g.numpy(), numeric, rtol=1e-6, atol=1e-8)
    assert g.requires_grad                          # the graph is kept: penalties of g are differentiable


def test_r1_value_is_half_gamma_times_the_mean_squared_input_gradient_norm():
    mr.manual_seed(6)
    D, x = CRITICS["dense"][0](), data(4, 6)
    numeric = numerical_grad(lambda x: D(x), [x], np.ones(4))[0]
    expected = 10.0 / 2 * np.mean(np.sum(numeric ** 2, axis=1))
    np.testing.assert_allclose(R1()(D, x).item(), expected, rtol=1e-6)


def test_gradient_penalty_matches_numpy_on_a_nonlinear_critic():
    mr.manual_seed(7)
    D, real, fake = CRITICS["dense"][0](), data(4, 6), data(4, 6)
    points = GradientPenalty(generator=np.random.default_rng(1)).interpolates(real, fake)
    g = numerical_grad(lambda x: D(x), [points], np.ones(4))[0]
    expected = 10.0 * np.mean((np.linalg.norm(g, axis=1) - 1) ** 2)
    np.testing.assert_allclose(GradientPenalty(generator=np.random.default_rng(1))(D, real, fake).item(), expected,
                               rtol=1e-6)


def test_interpolates_use_one_uniform_eps_per_sample():
    real, fake = data(5, 2, 3, 3), data(5, 2, 3, 3)
    points = GradientPenalty(generator=np.random.default_rng(2)).interpolates(real, fake).numpy()
    eps = np.random.default_rng(2).uniform(size=(5, 1, 1, 1))
    np.testing.assert_allclose(points, eps * real.numpy() + (1 - eps) * fake.numpy(), rtol=1e-12)
    with pytest.raises(ShapeError, match=r"real \(5, 2, 3, 3\) and fake \(4, 2, 3, 3\)"):
        GradientPenalty()(linear_critic()[0], real, data(4, 2, 3, 3))


def test_dragan_perturbs_the_reals_by_up_to_c_times_their_std():
    real = data(6, 4)
    points = DRAGAN(c=0.5, generator=np.random.default_rng(3)).perturbed(real).numpy()
    draws = np.random.default_rng(3)
    alpha, u = draws.uniform(size=(6, 1)), draws.uniform(size=(6, 4))
    np.testing.assert_allclose(points, real.numpy() + alpha * 0.5 * real.numpy().std() * u, rtol=1e-12)


def test_gradient_penalty_passes_the_condition_to_a_conditional_critic():
    mr.manual_seed(8)
    D = mlp_discriminator(in_dim=4, hidden=(3,), condition_dim=2, conditioning="projection", dtype="float64")
    real, fake, c = data(5, 4), data(5, 4), mr.tensor(np.eye(2)[[0, 1, 1, 0, 1]])
    value = GradientPenalty(generator=np.random.default_rng(4))(D, real, fake, c).item()
    points = GradientPenalty(generator=np.random.default_rng(4)).interpolates(real, fake)
    g = numerical_grad(lambda x: D(x, c), [points], np.ones(5))[0]
    np.testing.assert_allclose(value, 10 * np.mean((np.linalg.norm(g, axis=1) - 1) ** 2), rtol=1e-6)
    with pytest.raises(ShapeError, match="expected a condition"):
        GradientPenalty()(D, real, fake)


def test_lazy_r1_applies_every_k_steps_scaled_by_k():
    D, w = linear_critic()
    x, every_step = data(3, 5), 10.0 / 2 * np.sum(w ** 2)
    r1 = R1(lazy_interval=4)
    values = [r1(D, x) for _ in range(9)]
    assert [i for i, v in enumerate(values) if v is not None] == [0, 4, 8] and r1.steps == 9
    for v in values[::4]:
        np.testing.assert_allclose(v.item(), 4 * every_step, rtol=1e-12)
    assert r1(D, x, step=3) is None and r1.steps == 4          # an explicit step, then the counter goes on from it
    assert r1(D, x) is not None and r1(D, x) is None


def test_feature_matching_compares_mean_features_with_the_real_mean_as_a_constant():
    mr.manual_seed(9)
    D = mlp_discriminator(in_dim=4, hidden=(6, 3), dtype="float64")
    real, fake = data(8, 4).requires_grad_(), data(5, 4).requires_grad_()
    value = FeatureMatching(weight=2.0)(D, real, fake)
    diff = D.features(real).numpy().mean(axis=0) - D.features(fake).numpy().mean(axis=0)
    np.testing.assert_allclose(value.item(), 2.0 * np.sum(diff ** 2), rtol=1e-12)
    g_real, g_fake = mr.grad(value, [real, fake], allow_unused=True)
    assert g_real is None and np.any(g_fake.numpy() != 0)


def test_feature_matching_with_conditions():
    mr.manual_seed(10)
    D = mlp_discriminator(in_dim=4, hidden=(3,), condition_dim=2, dtype="float64")
    real, fake, c_real, c_fake = data(3, 4), data(2, 4), np.eye(2)[[0, 1, 1]], np.eye(2)[[1, 0]]
    diff = D.features(real, c_real).numpy().mean(axis=0) - D.features(fake, c_fake).numpy().mean(axis=0)
    np.testing.assert_allclose(FeatureMatching()(D, real, fake, c_real, c_fake).item(), np.sum(diff ** 2), rtol=1e-12)


# ==== consistency regularization ==================================================================
def reference_augment(x, seed, flip=True, translate=True):
    """NumPy version of the flip/translate T with the same draws."""
    draws = np.random.default_rng(seed)
    n, _, h, w = x.shape
    flips = draws.random(n) < 0.5 if flip else np.zeros(n, bool)
    sh, sw = (h // 8, w // 8) if translate else (0, 0)
    dys, dxs = draws.integers(-sh, sh + 1, n), draws.integers(-sw, sw + 1, n)
    padded = np.pad(x, ((0, 0), (0, 0), (sh, sh), (sw, sw)))
    out = np.stack([padded[i, :, sh + dy:sh + dy + h, sw + dx:sw + dx + w] for i, (dy, dx) in enumerate(zip(dys, dxs))])
    out[flips] = out[flips][..., ::-1]
    return out


@pytest.mark.parametrize("augment", ["flip_translate", "flip", "translate"])
def test_augmentation_flips_and_shifts_each_sample(augment):
    x = data(16, 2, 16, 8)
    cr = ConsistencyRegularization(augment=augment, generator=np.random.default_rng(5))
    expected = reference_augment(x.numpy(), 5, "flip" in augment, "translate" in augment)
    np.testing.assert_array_equal(cr.transform(x).numpy(), expected)
    assert not np.array_equal(expected, x.numpy())


def test_consistency_is_zero_when_the_discriminator_is_invariant():
    x = data(6, 1, 8, 8)
    ignores_input = lambda x: F.sum(F.reshape(x, (x.shape[0], -1)) * 0.0, axis=1) + 1.5
    assert ConsistencyRegularization()(ignores_input, x).item() == 0.0
    total_intensity = lambda x: F.sum(F.reshape(x, (x.shape[0], -1)), axis=1)     # flip-invariant
    assert abs(ConsistencyRegularization(augment="flip")(total_intensity, x).item()) < 1e-24
    mr.manual_seed(11)
    D = dcgan_discriminator(image_size=8, base_width=2, dtype="float64")
    assert ConsistencyRegularization()(D, x).item() > 0


def test_consistency_value_and_gradient():
    mr.manual_seed(12)
    D, x = dcgan_discriminator(image_size=8, base_width=2, dtype="float64"), data(4, 1, 8, 8)
    augmented = reference_augment(x.numpy(), 6)
    expected = 10.0 * np.mean((D(x).numpy() - D(mr.tensor(augmented)).numpy()) ** 2)
    cr = lambda x: ConsistencyRegularization(generator=np.random.default_rng(6))(D, x)
    np.testing.assert_allclose(cr(x).item(), expected, rtol=1e-12)
    gradcheck(cr, [x], mode="directional", n_directions=3)


def test_consistency_with_a_callable_augmentation_and_flat_inputs():
    D, w = linear_critic()
    x = data(4, 5)
    shift = lambda x: x + 1.0
    np.testing.assert_allclose(ConsistencyRegularization(weight=1.0, augment=shift)(D, x).item(), np.sum(w) ** 2,
                               rtol=1e-12)
    with pytest.raises(ShapeError, match=r"needs images of shape \(N, C, H, W\), got \(4, 5\); pass a callable"):
        ConsistencyRegularization()(D, x)


# ==== LeCam and instance noise ====================================================================
def test_lecam_tracks_emas_of_the_mean_logits_and_penalizes_the_gap():
    lecam = LeCam(weight=0.3, ema_decay=0.9)
    assert lecam.ema_real is None and lecam.ema_fake is None
    r1, f1, r2, f2 = (rng.normal(loc, size=8) for loc in (2.0, -2.0, 1.0, -1.0))
    first = lecam(mr.tensor(r1), mr.tensor(f1)).item()
    ema_r, ema_f = r1.mean(), f1.mean()
    np.testing.assert_allclose([lecam.ema_real.item(), lecam.ema_fake.item()], [ema_r, ema_f], rtol=1e-12)
    np.testing.assert_allclose(first, 0.3 * (np.mean((r1 - ema_f) ** 2) + np.mean((f1 - ema_r) ** 2)), rtol=1e-12)
    real, fake = mr.tensor(r2, requires_grad=True), mr.tensor(f2, requires_grad=True)
    second = lecam(real, fake)
    ema_r, ema_f = 0.9 * ema_r + 0.1 * r2.mean(), 0.9 * ema_f + 0.1 * f2.mean()
    np.testing.assert_allclose([lecam.ema_real.item(), lecam.ema_fake.item()], [ema_r, ema_f], rtol=1e-12)
    np.testing.assert_allclose(second.item(), 0.3 * (np.mean((r2 - ema_f) ** 2) + np.mean((f2 - ema_r) ** 2)),
                               rtol=1e-12)
    g_real, g_fake = mr.grad(second, [real, fake])          # the EMAs are constants
    np.testing.assert_allclose(g_real.numpy(), 0.3 * 2 * (r2 - ema_f) / 8, rtol=1e-12)
    np.testing.assert_allclose(g_fake.numpy(), 0.3 * 2 * (f2 - ema_r) / 8, rtol=1e-12)
    assert not lecam.ema_real.requires_grad


def test_instance_noise_anneals_linearly_to_zero():
    noise = InstanceNoise(std=0.2, anneal_steps=10, generator=np.random.default_rng(7))
    x = mr.tensor(np.zeros((200, 50)))
    stds = []
    for _ in range(13):
        stds.append(noise.current_std)
        if noise.current_std:
            np.testing.assert_allclose(noise(x).numpy().std(), noise.current_std, rtol=0.02)
        noise.step()
    np.testing.assert_allclose(stds, [0.2 * max(0, 1 - t / 10) for t in range(13)], rtol=1e-12)
    assert noise(x) is x                                    # annealed away: the input unchanged


def test_instance_noise_without_annealing_adds_the_same_noise_as_the_generator():
    noise, x = InstanceNoise(generator=np.random.default_rng(8)), data(3, 4)
    for _ in range(3):
        noise.step()
    assert noise.current_std == 0.1
    np.testing.assert_allclose(noise(x).numpy(), x.numpy() + np.random.default_rng(8).normal(0, 0.1, (3, 4)),
                               rtol=1e-12)


# ==== validation and backends =====================================================================
CONSTRUCTORS = {
    "GradientPenalty": (GradientPenalty, "weight"), "DRAGAN": (DRAGAN, "weight"), "DRAGAN-c": (DRAGAN, "c"),
    "R1": (R1, "gamma"), "R2": (R2, "gamma"), "FeatureMatching": (FeatureMatching, "weight"),
    "ConsistencyRegularization": (ConsistencyRegularization, "weight"), "LeCam": (LeCam, "weight"),
    "LeCam-decay": (LeCam, "ema_decay"), "InstanceNoise": (InstanceNoise, "std"),
}


@pytest.mark.parametrize("name", CONSTRUCTORS)
@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf])
def test_negative_or_non_finite_strengths_are_refused(name, value):
    cls, arg = CONSTRUCTORS[name]
    with pytest.raises(ValueError, match=f"{arg} must be a finite number >= 0, got {value!r}"):
        cls(**{arg: value})


@pytest.mark.parametrize("make, message", [
    (lambda: R1(lazy_interval=0), "R1: lazy_interval must be an integer >= 1, got 0"),
    (lambda: R2(lazy_interval=2.0), "R2: lazy_interval must be an integer, got 2.0"),
    (lambda: InstanceNoise(anneal_steps=0), "InstanceNoise: anneal_steps must be an integer >= 1, got 0"),
    (lambda: LeCam(ema_decay=1.5), r"ema_decay must lie in \[0, 1\], got 1.5"),
    (lambda: ConsistencyRegularization(augment="rotate"), "augment must be one of .* or a callable, got 'rotate'"),
])
def test_invalid_options_are_refused(make, message):
    with pytest.raises(mr.MiniregError, match=message):
        make()


def test_same_numbers_on_every_backend(backend):
    def run(target):
        mr.manual_seed(13)
        D = dcgan_discriminator(image_size=8, base_width=2, dtype="float64").to(target)
        real, fake = (mr.tensor(target.asarray(np.linspace(-1, 1, 128).reshape(2, 1, 8, 8) * s)) for s in (1, -0.5))
        host = np.random.default_rng(13)     # host draws: the same numbers on every backend (minireg.random)
        values = [GradientPenalty(generator=host)(D, real, fake), DRAGAN(generator=host)(D, real), R1()(D, real),
                  FeatureMatching()(D, real, fake), ConsistencyRegularization(generator=host)(D, real),
                  LeCam()(D(real), D(fake)), InstanceNoise(generator=host)(real).sum()]
        values[0].backward()
        return [v.numpy() for v in values] + [p.grad.numpy() for p in D.parameters() if p.ndim > 1]

    for got, want in zip(run(backend), run(mr.get_backend("numpy"))):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_penalties_print_their_settings_and_running_state():
    assert repr(GradientPenalty(5.0)) == "GradientPenalty(weight=5.0)"
    assert repr(DRAGAN()) == "DRAGAN(weight=10.0, c=0.5)"
    assert repr(ConsistencyRegularization(augment="flip")) == "ConsistencyRegularization(weight=10.0, augment='flip')"
    r1 = R1(1.0, lazy_interval=16)
    assert repr(r1) == "R1(gamma=1.0, lazy_interval=16; steps=0)"
    assert repr(InstanceNoise(0.2, anneal_steps=100)) == "InstanceNoise(std=0.2, anneal_steps=100; steps=0)"
    lecam = LeCam()
    assert repr(lecam) == "LeCam(weight=0.3, ema_decay=0.99)"
    lecam(mr.tensor(np.array([1.0, 3.0])), mr.tensor(np.array([-1.0, -3.0])))
    assert repr(lecam).startswith("LeCam(weight=0.3, ema_decay=0.99; ema_real=") and "ema_fake=" in repr(lecam)
