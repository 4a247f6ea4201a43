"""Proximal optimizers: ISTA/FISTA/ProximalAdamW against NumPy references and against the plain
optimizer with a ProximalStep hook, the fused kernels taken where they apply, state dicts, devices
and validation."""
import math

import numpy as np
import pytest

import minireg as mr
from minireg.nn import Parameter
from minireg.optim import SGD, AdamW
from minireg.optim.proximal import FISTA, ProximalAdamW, ProximalSGD, fista_t
from minireg.reg.attach import attach, fused_strengths
from minireg.reg.penalties import L1, L2, ElasticNet, GroupLasso, Orthogonal

RNG = np.random.default_rng(0)
W0, B0 = RNG.normal(size=(4, 5)), RNG.normal(size=4)
TARGETS = RNG.normal(size=(4, 5)), RNG.normal(size=4)
STEPS = 5


def soft(x, t):
    return np.sign(x) * np.maximum(np.abs(x) - t, 0)


def gradients(ws):
    """The gradient of f = 1/2 sum_p c_p ||w_p - target_p||^2, different curvature per entry."""
    return [(np.arange(w.size).reshape(w.shape) % 3 + 0.5) * (w - t) for w, t in zip(ws, TARGETS)]


def make_params(on=None):
    return [Parameter(on.asarray(a.copy()) if on else a.copy()) for a in (W0, B0)]


def run(opt, params, steps=STEPS):
    for _ in range(steps):
        for p, g in zip(params, gradients([p.numpy() for p in params])):
            p.grad = mr.Tensor(p.backend.asarray(g))
        opt.step()
    return [p.numpy() for p in params]


PROXES = {   # penalty -> prox_{t R} in NumPy, on the (4, 5) weight
    "L1": (L1(0.3), lambda v, t: soft(v, t * 0.3)),
    "L2": (L2(0.3), lambda v, t: v / (1 + 2 * t * 0.3)),
    "ElasticNet": (ElasticNet(0.4, l1_ratio=0.25), lambda v, t: soft(v, t * 0.1) / (1 + t * 0.3)),
    "GroupLasso": (GroupLasso(0.5, groups="rows"),
                   lambda v, t: v * np.maximum(0, 1 - t * 0.5 / np.linalg.norm(v, axis=1, keepdims=True))),
}


@pytest.mark.parametrize("name", PROXES)
def test_proximal_sgd_is_ista(name):
    penalty, prox = PROXES[name]
    lr = 0.3
    w, b = W0.copy(), B0.copy()
    for _ in range(STEPS):
        gw, gb = gradients([w, b])
        w, b = prox(w - lr * gw, lr), b - lr * gb      # the bias is not selected: a plain step
    params = make_params()
    got = run(ProximalSGD(params, lr=lr, penalty=penalty), params)
    np.testing.assert_allclose(got[0], w, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got[1], b, rtol=1e-13)


def reference_fista(prox, lr, steps=STEPS):
    y = [W0.copy(), B0.copy()]
    x_prev, t = [a.copy() for a in y], 1.0
    for _ in range(steps):
        gw, gb = gradients(y)
        x = [prox(y[0] - lr * gw, lr), y[1] - lr * gb]
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = [xi + (t - 1) / t_next * (xi - xp) for xi, xp in zip(x, x_prev)]
        x_prev, t = x, t_next
    return y, x_prev


@pytest.mark.parametrize("name", PROXES)
def test_fista_follows_beck_and_teboulle(name):
    penalty, prox = PROXES[name]
    y, x = reference_fista(prox, lr=0.3)
    params = make_params()
    opt = FISTA(params, lr=0.3, penalty=penalty)
    got = run(opt, params)
    for p, g, want_y, want_x in zip(params, got, y, x):
        np.testing.assert_allclose(g, want_y, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(opt.state[p]["iterate"], want_x, rtol=1e-12, atol=1e-15)
    assert opt.state[params[0]]["step"] == STEPS


def test_fista_t_sequence():
    assert fista_t(1) == 1.0 and fista_t(2) == pytest.approx((1 + math.sqrt(5)) / 2, rel=1e-15)
    assert fista_t(1000) == pytest.approx(1001 / 2, rel=0.01)
    assert all(fista_t(k + 1) >= fista_t(k) + 0.5 for k in range(1, 100))


@pytest.mark.parametrize("name", PROXES)
@pytest.mark.parametrize("plain, proximal", [
    (lambda ps: SGD(ps, lr=0.3), lambda ps, pen: ProximalSGD(ps, lr=0.3, penalty=pen)),
    (lambda ps: AdamW(ps, lr=0.05, weight_decay=0.1), lambda ps, pen: ProximalAdamW(ps, lr=0.05, weight_decay=0.1,
                                                                                     penalty=pen)),
    (lambda ps: AdamW(ps, lr=0.05, amsgrad=True, weight_decay=0.0),
     lambda ps, pen: ProximalAdamW(ps, lr=0.05, amsgrad=True, penalty=pen)),
], ids=["ProximalSGD", "ProximalAdamW", "ProximalAdamW-amsgrad"])
def test_proximal_optimizer_is_the_plain_one_with_a_prox_hook(name, plain, proximal):
    penalty = PROXES[name][0]
    hooked = make_params()
    opt = plain(hooked)
    attach(opt, penalty, mode="prox")
    expected = run(opt, hooked)
    params = make_params()
    for got, want in zip(run(proximal(params, penalty), params), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", PROXES)
@pytest.mark.parametrize("cls, fused_kernel, options", [
    (ProximalSGD, "sgd_prox_step_", dict(lr=0.3)),
    (FISTA, "sgd_prox_step_", dict(lr=0.3)),
    (ProximalAdamW, "adamw_prox_step_", dict(lr=0.05, prox_lr=True)),
    (ProximalAdamW, "adamw_prox_step_", dict(lr=0.05)),
], ids=["ProximalSGD", "FISTA", "ProximalAdamW-prox_lr", "ProximalAdamW"])
def test_elastic_net_penalties_take_one_fused_kernel(monkeypatch, name, cls, fused_kernel, options):
    penalty = PROXES[name][0]
    params = make_params()
    kernels = params[0].backend.kernels
    calls = []
    for kernel in ("sgd_prox_step_", "adamw_prox_step_", "adamw_prox_steps_", "prox_l1_", "prox_l2_",
                   "prox_elastic_net_", "prox_elastic_net_scaled_", "prox_group_lasso_"):
        original = getattr(kernels, kernel)
        monkeypatch.setattr(kernels, kernel, lambda *a, _k=kernel, _f=original: calls.append(_k) or _f(*a))
    run(cls(params, penalty=penalty, **options), params, steps=1)
    adam, adaptive = cls is ProximalAdamW, cls is ProximalAdamW and not options.get("prox_lr")
    # For Adam with prox_lr an L2 part is a second, cheap pass; in Adam's own metric the step is the
    # Adam kernel, then the scaled prox; penalties without a fused form take the plain step (SGD:
    # no kernel), then their own prox.
    fused = [fused_kernel, "prox_elastic_net_scaled_"] if adaptive else [fused_kernel]
    weight = {"L1": fused, "L2": fused + ["prox_l2_"] * (adam and not adaptive),
              "ElasticNet": fused + ["prox_l2_"] * (adam and not adaptive),
              "GroupLasso": [fused_kernel] * adam + ["prox_group_lasso_"] * (not adaptive)}[name]
    # the bias is not selected: the plain step (Adam: the multi-tensor kernel of unregularized parameters)
    assert calls == weight + ["adamw_prox_steps_"] * adam


def test_adam_prox_is_taken_in_adams_metric():
    """ProximalAdamW(L1(a)): soft threshold lr*a / (sqrt(v_hat) + eps) per coordinate after the step."""
    lr, a, eps, (b1, b2) = 0.05, 0.3, 1e-8, (0.9, 0.999)
    w, m, v = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    for t in range(1, STEPS + 1):
        (g, _) = gradients([w, B0])
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        steps = lr / (np.sqrt(v / (1 - b2 ** t)) + eps)
        w = w - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
        w = soft(w, steps * a)
    params = make_params()
    got = run(ProximalAdamW(params, lr=lr, penalty=L1(a)), params)
    np.testing.assert_allclose(got[0], w, rtol=1e-12, atol=1e-15)
    assert np.count_nonzero(w == 0) > 0


def test_elastic_net_strengths_match_the_penalties():
    assert L1(0.3).strengths == (0.3, 0.0)
    assert L2(0.3).strengths == (0.0, 0.6)           # 0.3*||w||^2 = 0.6/2*||w||^2
    assert ElasticNet(0.4, 0.25).strengths == pytest.approx((0.1, 0.3))
    w = Parameter(np.ones((2, 2)))
    assert fused_strengths(w, ("prox",)) is None
    attach(w, GroupLasso(0.1))
    assert fused_strengths(w, ("prox",)) is None     # no fused form
    v = Parameter(np.ones((2, 2)))
    attach(v, L1(0.3), mode="prox_lr")
    assert fused_strengths(v, ("prox_lr",)) == (0.3, 0.0) and fused_strengths(v, ("prox",)) is None


@pytest.mark.parametrize("make", [
    lambda ps: ProximalSGD(ps, lr=0.3, penalty=L1(0.3)),
    lambda ps: FISTA(ps, lr=0.3, penalty=ElasticNet(0.4)),
    lambda ps: ProximalAdamW(ps, lr=0.05, weight_decay=0.1, penalty=L1(0.3)),
    lambda ps: ProximalAdamW(ps, lr=0.05, penalty=GroupLasso(0.5)),
], ids=["ProximalSGD", "FISTA", "ProximalAdamW-L1", "ProximalAdamW-GroupLasso"])
def test_state_dict_round_trip_continues_the_same_trajectory(make, tmp_path):
    params = make_params()
    straight = run(make(params), params, steps=2 * STEPS)
    params = make_params()
    first = make(params)
    run(first, params)
    np.savez(tmp_path / "state.npz", state=np.array(first.state_dict(), dtype=object))
    saved = np.load(tmp_path / "state.npz", allow_pickle=True)["state"].item()
    params = [Parameter(p.numpy().copy()) for p in params]     # a fresh process: new parameters
    second = make(params)
    second.load_state_dict(saved)
    for got, want in zip(run(second, params), straight):
        np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("make", [
    lambda ps: ProximalSGD(ps, lr=0.3, penalty=L1(0.3)),
    lambda ps: FISTA(ps, lr=0.3, penalty=GroupLasso(0.5)),
    lambda ps: ProximalAdamW(ps, lr=0.05, weight_decay=0.1, penalty=ElasticNet(0.4)),
], ids=["ProximalSGD", "FISTA", "ProximalAdamW"])
def test_steps_stay_on_the_parameters_device(backend, make):
    # on the fake device (see conftest) any conversion of the data to NumPy raises
    params = make_params(on=backend)
    opt = make(params)
    got = run(opt, params)
    assert all(p.backend is backend and backend.owns(p.data) for p in params)
    assert all(backend.owns(v) for p in params for k, v in opt.state.get(p, {}).items() if k in opt._array_state)
    host = make_params()
    for g, want in zip(got, run(make(host), host)):
        np.testing.assert_allclose(g, want, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("make, error, match", [
    (lambda ps: ProximalSGD(ps, lr=0.1, penalty=Orthogonal(0.1)), ValueError, "no closed-form prox"),
    (lambda ps: FISTA(ps, lr=0.1, penalty=0.1), TypeError, "regularizer must be a minireg.reg Penalty"),
    (lambda ps: ProximalAdamW(ps, lr=0.1), TypeError, "penalty"),
    (lambda ps: ProximalAdamW(ps, lr=0.1, penalty=L1(0.1), weight_decy=0.1), TypeError, "did you mean 'weight_decay'"),
    (lambda ps: ProximalSGD(ps, lr=-0.1, penalty=L1(0.1)), ValueError, "lr must be >= 0"),
])
def test_invalid_arguments_raise(make, error, match):
    with pytest.raises(error, match=match):
        make(make_params())
