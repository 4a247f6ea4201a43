"""L2-SP / Anchor and soft weight-sharing: formulas, references, proxes, gradients w.r.t. weights and
prior parameters, learning the prior on real data, quantization, validation and the fake device."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minireg as mr
from minireg import functional as F
from minireg.datasets import load_digits
from minireg.errors import DeviceError, ShapeError
from minireg.nn import Linear, Parameter, Sequential, Tanh
from minireg.optim import SGD, Adam
from minireg.reg.attach import attach
from minireg.reg.penalties import L2
from minireg.reg.priors import L2SP, Anchor, SoftWeightSharing
from minireg.testing import gradcheck, gradgradcheck
from minireg.testing import strategies as mst
from minireg.testing.devices import fake_device

RNG = np.random.default_rng(0)
W = RNG.normal(size=(3, 4))
REF = RNG.normal(size=(3, 4))
MATRICES = mst.shapes(min_dims=2, max_dims=2, min_side=1, max_side=4)


def param(array):
    return Parameter(np.array(array, dtype=np.float64))


def anchored(w=W, ref=REF, alpha=0.7):
    p = param(w)
    return p, L2SP(alpha, {p: ref})


def np_log_mixture(w, means, gammas, log_pi):
    """log sum_j pi_j N(w_i | mu_j, exp(-gamma_j)) for each w_i, in NumPy."""
    terms = log_pi + 0.5 * (gammas - math.log(2 * math.pi)) - 0.5 * np.exp(gammas) * (w.reshape(-1, 1) - means) ** 2
    top = terms.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(terms - top).sum(axis=1, keepdims=True))).ravel()


# -- L2-SP -----------------------------------------------------------------------------------------
def test_l2sp_value_is_alpha_times_the_squared_distance_to_the_reference():
    p, reg = anchored()
    assert reg.value([p]).item() == pytest.approx(0.7 * ((W - REF) ** 2).sum())
    assert Anchor is L2SP


def test_l2sp_with_a_zero_reference_is_l2():
    p = param(W)
    reg = L2SP(0.7, {p: np.zeros_like(W)})
    assert reg.value([p]).item() == pytest.approx(L2(0.7).value([p]).item())
    np.testing.assert_allclose(reg.gradient(p), L2(0.7).gradient(p))


def test_references_are_snapshots_unless_learnable():
    p = param(W)
    ref = REF.copy()
    reg = L2SP(0.5, {p: ref})
    ref += 100.0                                   # the caller's array is copied
    assert reg.value([p]).item() == pytest.approx(0.5 * ((W - REF) ** 2).sum())
    target = Parameter(REF.copy())
    learnable = L2SP(0.5, {p: target})
    assert learnable.reference(p) is target        # kept: training moves it


def test_from_model_snapshots_the_current_weights_and_skips_the_rest():
    model = Sequential(Linear(4, 3, dtype="float64"), Tanh(), Linear(3, 2, dtype="float64"))
    reg = L2SP.from_model(model, alpha=0.5)
    params = list(model.parameters())
    assert reg.value(params).item() == 0.0
    first, second = model[0].weight, model[2].weight
    first.data += 1.0                              # in place, as an optimizer would
    assert reg.value(params).item() == pytest.approx(0.5 * first.size)
    # biases have no reference (weights only by default): skipped by value and by the hook path
    assert reg.selected(params) == [first, second]
    model[0].bias.grad = None
    reg.add_grad_(params)
    assert model[0].bias.grad is None
    np.testing.assert_allclose(first.grad.numpy(), np.ones(first.shape))
    everything = L2SP.from_model(model, alpha=0.5, select=lambda q: True)
    assert len(everything.selected(params)) == 4


def test_parameters_without_a_reference_are_skipped_or_named():
    p, reg = anchored()
    stranger = param(W)
    assert reg.selected([p, stranger]) == [p]
    with pytest.raises(ValueError, match="no reference"):
        reg.penalty(stranger)
    with pytest.raises(ValueError, match="no reference"):
        reg.prox_(stranger, 0.1)
    np.testing.assert_array_equal(stranger.numpy(), W)


def test_l2sp_accepts_a_list_aligned_with_params():
    a, b = param(W), param(REF)
    reg = L2SP(0.5, [REF, W], params=[a, b])
    assert reg.value([a, b]).item() == pytest.approx(2 * 0.5 * ((W - REF) ** 2).sum())


@pytest.mark.parametrize("make, error, match", [
    (lambda p: L2SP(-1.0, {p: REF}), ValueError, "alpha"),
    (lambda p: L2SP(1.0, REF), TypeError, "dict"),
    (lambda p: L2SP(1.0, [REF]), ValueError, "params"),
    (lambda p: L2SP(1.0, [REF], params=[p, p]), ValueError, "params"),
    (lambda p: L2SP(1.0, {p: REF}, params=[p]), ValueError, "params"),
    (lambda p: L2SP(1.0, {p: np.zeros((4, 3))}), ShapeError, r"\(4, 3\).*\(3, 4\)"),
    (lambda p: L2SP(1.0, {p: mr.tensor(fake_device().asarray(REF))}), DeviceError, "fake"),
])
def test_l2sp_validation(make, error, match):
    with pytest.raises(error, match=match):
        make(param(W))


def test_l2sp_gradient_paths_agree():
    p, reg = anchored()
    reg.value([p]).backward()
    expected = 2 * 0.7 * (W - REF)
    np.testing.assert_allclose(p.grad.numpy(), expected)
    np.testing.assert_allclose(reg.gradient(p), expected)
    q, reg = anchored()
    reg.add_grad_([q])
    np.testing.assert_allclose(q.grad.numpy(), expected)

    c = RNG.normal(size=W.shape)
    a, reg_a = anchored()
    opt = SGD([a], lr=0.1)
    ((a * c).sum() + reg_a.value([a])).backward()
    opt.step()
    b, reg_b = anchored()
    opt = SGD([b], lr=0.1)
    attach(opt, reg_b, mode="grad")
    (b * c).sum().backward()
    opt.step()
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-13)


@given(w=mst.float_arrays(MATRICES), ref=st.data())
def test_l2sp_gradcheck_in_the_weight_and_a_learnable_reference(w, ref):
    r = ref.draw(mst.float_arrays(w.shape))

    def value(weight, target):
        return L2SP(0.7, {weight: target}).value([weight])

    gradcheck(value, [w, r])
    gradgradcheck(value, [w, r])


def test_a_learnable_reference_is_trained_with_the_weights():
    p, target = param(W), Parameter(REF.copy())
    reg = L2SP(0.5, {p: target})
    opt = SGD([p, target], lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        reg.value([p]).backward()
        opt.step()
    # equal and opposite gradients: both move to the midpoint, the gap shrinking by 1 - 2*lr*2*alpha a step
    np.testing.assert_allclose(p.numpy() + target.numpy(), W + REF, rtol=1e-12)
    np.testing.assert_allclose(p.numpy() - target.numpy(), 0.8 ** 20 * (W - REF), rtol=1e-10)


@given(v=mst.float_arrays((3, 4)), ref=mst.float_arrays((3, 4)), step=st.floats(0.0, 2.0))
def test_l2sp_prox_closed_form_and_optimality(v, ref, step):
    p = param(v)
    reg = L2SP(0.7, {p: ref})
    reg.prox_(p, step)
    t = 2 * step * 0.7
    np.testing.assert_allclose(p.numpy(), (v + t * ref) / (1 + t), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(v - p.numpy(), t * (p.numpy() - ref), atol=1e-12)   # 0 = p - v + step * grad R(p)
    if step == 0.0:
        np.testing.assert_array_equal(p.numpy(), v)


@given(a=mst.float_arrays((3, 4)), b=mst.float_arrays((3, 4)), step=st.floats(0.0, 2.0), seed=st.integers(0, 999))
def test_l2sp_prox_is_non_expansive_and_minimizes_the_proximal_objective(a, b, step, seed):
    pa, pb = param(a), param(b)
    reg = L2SP(0.7, {pa: REF, pb: REF})
    reg.prox_(pa, step)
    reg.prox_(pb, step)
    assert np.linalg.norm(pa.numpy() - pb.numpy()) <= np.linalg.norm(a - b) * (1 + 1e-12) + 1e-12
    objective = lambda x: 0.5 * ((x - a) ** 2).sum() + step * 0.7 * ((x - REF) ** 2).sum()  # noqa: E731
    rng = np.random.default_rng(seed)
    best = objective(pa.numpy())
    assert all(best <= objective(pa.numpy() + s * rng.normal(size=a.shape)) + 1e-12 for s in (1e-3, 1e-1, 1.0))


def test_l2sp_bad_step_changes_nothing():
    p, reg = anchored()
    with pytest.raises(ValueError, match="step"):
        reg.prox_(p, -1.0)
    np.testing.assert_array_equal(p.numpy(), W)


def test_l2sp_on_the_fake_device():
    results = []
    for place in (np.asarray, fake_device().asarray):
        p = Parameter(place(W.copy()))
        reg = L2SP(0.7, {p: place(REF.copy())})
        value = reg.value([p])
        value.backward()
        grad = reg.gradient(p)
        reg.add_grad_([p])
        reg.prox_(p, 0.3)
        assert p.backend.owns(grad) and p.backend.owns(p.data)
        results.append((value.numpy(), p.backend.to_numpy(grad), p.grad.numpy(), p.numpy()))
    for host, fake in zip(*results):
        np.testing.assert_allclose(fake, host, rtol=1e-13)


# -- soft weight-sharing ---------------------------------------------------------------------------
def prior64(**options):
    return SoftWeightSharing(dtype="float64", **options)


def test_initialisation_follows_ullrich():
    prior = prior64(n_components=5, pi_zero=0.99)
    means, gammas, log_pi = (t.numpy() for t in prior.components())
    np.testing.assert_allclose(means, [0.0, -0.6, -0.2, 0.2, 0.6])
    np.testing.assert_allclose(np.exp(-gammas / 2), 0.25)                   # sigma
    np.testing.assert_allclose(np.exp(log_pi), [0.99] + [0.0025] * 4)
    assert [name for name, _ in prior.named_parameters()] == ["means", "log_precisions", "mixing_logits"]
    assert prior.means.dtype == np.float64


@pytest.mark.parametrize("options, argument", [
    (dict(n_components=1), "n_components"), (dict(n_components=2.5), "n_components"),
    (dict(pi_zero=1.0), "pi_zero"), (dict(pi_zero=0), "pi_zero"), (dict(init_std=0.0), "init_std"),
    (dict(init_range=-1.0), "init_range"), (dict(tau=float("nan")), "tau"),
    (dict(precision_prior=(1.0, 2.0)), "precision_prior"), (dict(precision_prior=((1, 2), (3, -1))), "precision_prior"),
])
def test_soft_weight_sharing_validation(options, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        prior64(**options)


def test_value_is_tau_times_the_negative_log_mixture_plus_the_hyperprior():
    prior = prior64(n_components=6, tau=0.01)
    a, b = param(0.5 * W), param(0.3 * REF.T)
    means, gammas, log_pi = (t.numpy() for t in prior.components())
    data_term = -0.01 * sum(np_log_mixture(x, means, gammas, log_pi).sum() for x in (0.5 * W, 0.3 * REF.T))
    shape, rate = np.array([5e3] + [250.0] * 5), np.array([2.0] + [0.1] * 5)
    hyper = 0.01 * ((1 - shape) * gammas + rate * np.exp(gammas)).sum()
    assert prior.value([a, b]).item() == pytest.approx(data_term + hyper, rel=1e-12)
    assert prior([a, b]).item() == pytest.approx(data_term + hyper, rel=1e-12)   # a Module: forward = value
    no_hyper = prior64(n_components=6, tau=0.01, precision_prior=None)
    assert no_hyper.value([a, b]).item() == pytest.approx(data_term, rel=1e-12)
    assert prior.penalty(a).item() == pytest.approx(-0.01 * np_log_mixture(0.5 * W, means, gammas, log_pi).sum())


def test_value_is_stable_far_from_every_component():
    prior = prior64(n_components=4, tau=1.0, precision_prior=None)
    far = param(np.array([[40.0, -35.0]]))
    value = prior.value([far])
    value.backward()
    assert np.isfinite(value.item()) and np.all(np.isfinite(far.grad.numpy()))


def sws_value(w, means, gammas, logits, tau=0.05):
    prior = prior64(n_components=4, tau=tau)
    # plain tensors in place of the prior's parameters, so gradcheck can perturb them
    prior.means, prior.log_precisions, prior.mixing_logits = means, gammas, logits
    return prior.value([w])


PRIOR_STATE = [np.array([-0.5, 0.1, 0.7]), np.array([2.0, 1.0, 3.0, 2.5]), np.array([0.3, -0.2, 0.1])]


@given(w=mst.float_arrays(MATRICES, lo=-1.5, hi=1.5))
def test_soft_weight_sharing_gradcheck_in_weights_and_prior_parameters(w):
    gradcheck(sws_value, [w] + PRIOR_STATE)


def test_soft_weight_sharing_gradgradcheck():
    gradgradcheck(sws_value, [0.5 * W] + PRIOR_STATE)


def test_soft_weight_sharing_gradient_paths_agree():
    prior = prior64(n_components=5)
    p = param(0.4 * W)
    prior.penalty(p).backward()
    expected = p.grad.numpy()
    np.testing.assert_allclose(prior.gradient(param(0.4 * W)), expected, rtol=1e-12)
    q = param(0.4 * W)
    prior.add_grad_([q])                           # inside no_grad, as an optimizer hook
    np.testing.assert_allclose(q.grad.numpy(), expected, rtol=1e-12)


def test_the_prior_never_penalizes_its_own_parameters():
    prior = prior64(n_components=3)
    p = param(W)
    everything = SoftWeightSharing(n_components=3, dtype="float64", select=lambda q: True)
    assert everything.selected([p, *everything.parameters()]) == [p]
    assert prior.selected([p, *prior.parameters()]) == [p]


def test_responsibilities_and_quantize():
    prior = prior64(n_components=3, pi_zero=0.5, init_range=1.0, init_std=0.1, precision_prior=None)
    w = np.array([[0.02, -0.9, 1.1, -0.03], [0.95, 0.01, -1.05, 0.7]])
    p = param(w)
    r = prior.responsibilities(p).numpy()
    assert r.shape == (2, 4, 3)
    np.testing.assert_allclose(r.sum(axis=-1), 1.0)
    assert not prior.responsibilities(p).requires_grad
    prior.quantize([p])
    expected = np.array([[0.0, -1.0, 1.0, 0.0], [1.0, 0.0, -1.0, 1.0]])
    np.testing.assert_array_equal(p.numpy(), expected)   # weights of the zero component are exactly 0


def test_state_dict_round_trip():
    prior = prior64(n_components=4)
    prior.means.data += 0.1
    clone = prior64(n_components=4)
    clone.load_state_dict(prior.state_dict())
    np.testing.assert_array_equal(clone.means.numpy(), prior.means.numpy())


def test_soft_weight_sharing_on_the_fake_device():
    results = []
    for device in (None, fake_device()):
        prior = prior64(n_components=4)
        p = param(0.4 * W)
        if device is not None:
            prior.to(device)
            p = Parameter(device.asarray(0.4 * W))
        value = prior.value([p])
        value.backward()
        prior.quantize([p])
        assert p.backend.owns(p.data) and p.backend.owns(prior.means.grad.data)
        results.append((value.numpy(), prior.means.grad.numpy(), prior.log_precisions.grad.numpy(), p.numpy()))
    for host, fake in zip(*results):
        np.testing.assert_allclose(fake, host, rtol=1e-12, atol=1e-15)


def test_learning_the_prior_clusters_the_weights_of_a_digits_mlp():
    """Ullrich et al.'s procedure in small: pretrain, then retrain with the prior's parameters in the
    optimizer; the prior moves, the weights gather around its means, most at the zero component."""
    (x, y), (x_val, y_val) = load_digits()
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
    x, x_val = ((x - mean) / std).astype(np.float64), ((x_val - mean) / std).astype(np.float64)

    def make_model():
        return Sequential(Linear(64, 32, dtype="float64"), Tanh(), Linear(32, 10, dtype="float64"))

    def weights(model):
        return np.concatenate([p.numpy().ravel() for p in model.parameters() if p.ndim >= 2])

    def accuracy(model):
        return float((model(x_val).numpy().argmax(axis=1) == y_val).mean())

    mr.manual_seed(0)
    pretrained = make_model()
    opt = Adam(pretrained.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(pretrained(x), y).backward()
        opt.step()

    def retrain(prior):
        model = make_model()
        model.load_state_dict(pretrained.state_dict())
        groups = [{"params": list(model.parameters())}]
        if prior is not None:
            groups += [{"params": [prior.means]}, {"params": [prior.log_precisions, prior.mixing_logits], "lr": 3e-2}]
        opt = Adam(groups, lr=1e-3)
        for _ in range(250):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            if prior is not None:
                loss = loss + prior.value(model.parameters())
            loss.backward()
            opt.step()
        return model

    prior = prior64(n_components=8, init_range=1.0, tau=3e-4)
    initial = [p.numpy().copy() for p in prior.parameters()]
    plain, shared = retrain(None), retrain(prior)

    for before, p in zip(initial, prior.parameters()):
        assert np.abs(p.numpy() - before).max() > 1e-2          # the prior was learned
    w = weights(shared)
    means = prior.components()[0].numpy()
    sigmas = np.exp(-0.5 * prior.log_precisions.numpy())
    near_a_mean = (np.abs(w[:, None] - means) <= 2 * sigmas).any(axis=1)
    assert near_a_mean.mean() > 0.9
    near_zero, near_zero_plain = (np.abs(w) < 0.05).mean(), (np.abs(weights(plain)) < 0.05).mean()
    assert near_zero > 0.5 and near_zero > 3 * near_zero_plain
    assert accuracy(shared) > 0.85                                # still a working classifier
    prior.quantize(list(shared.parameters()))
    assert len(np.unique(weights(shared))) <= 8
    assert accuracy(shared) > 0.7


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("with_hyperprior", [True, False])
def test_the_fused_value_matches_its_reference_in_value_and_gradients(dtype, with_hyperprior):
    """One op over several weight tensors (the kernel's blocks and chunks split across them) against
    the composite definition, in the value and the gradients w.r.t. the weights and the prior."""
    rng = np.random.default_rng(5)
    shapes = [(300, 40), (7,), (130, 33)]            # 16.5k weights x 16 components
    weights = [0.3 * rng.standard_normal(shape) for shape in shapes]
    state = [rng.uniform(-0.6, 0.6, 15), rng.uniform(1.0, 4.0, 16), rng.normal(size=15)]
    results = []
    for fused in (True, False):
        prior = SoftWeightSharing(16, tau=0.05, dtype=dtype)
        for p, a in zip(prior.parameters(), state):
            p.data[...] = a
        ws = [mr.tensor(w.astype(dtype), requires_grad=True) for w in weights]
        value = (prior._fused_value(ws, with_hyperprior) if fused else
                 prior.reference_value(ws, with_hyperprior=with_hyperprior))
        value.backward()
        results.append([value.numpy()] + [x.grad.numpy() for x in [*ws, *prior.parameters()]])
    rtol = 1e-4 if dtype == "float32" else 1e-11
    for fused, reference in zip(*results):
        np.testing.assert_allclose(fused, reference, rtol=rtol, atol=rtol * np.abs(reference).max())


def test_value_is_one_op_over_all_the_selected_weights():
    prior = prior64(n_components=4)
    a, b = param(0.5 * W), param(0.3 * REF.T)
    value = prior.value([a, b, param(np.ones(3))])                 # the bias is not selected
    assert type(value.creator).__name__ == "SoftWeightSharingValue"
    assert [id(x) for x in value.creator.inputs[3:]] == [id(a), id(b)]


def test_the_fused_value_follows_settings_changed_after_construction():
    prior = prior64(n_components=4)
    p = param(0.4 * W)
    prior.value([p])                         # makes the fused value's constant arrays
    prior.pi_zero, prior.precision_prior = 0.5, ((2.0, 1.0), (3.0, 0.5))
    assert prior.value([p]).item() == pytest.approx(prior.reference_value([p]).item(), rel=1e-12)


def test_a_step_with_the_prior_makes_no_host_round_trip_on_the_fake_device():
    """The fused value and its backward stay on the device: after a first call (which makes the
    constant arrays), value + backward read nothing back and copy nothing to the device."""
    device = fake_device()
    prior = prior64(n_components=5)
    prior.to(device)
    weights = [Parameter(device.asarray(0.4 * W)), Parameter(device.asarray(0.3 * REF.T))]

    def step():
        prior.value(weights).backward()

    step()
    with device.counting() as counts:
        step()
    assert (counts.syncs, counts.copies_to_device, counts.implicit) == (0, 0, 0), counts.report()
