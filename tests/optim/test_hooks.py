"""Optimizer hooks (order, contract, validation) and gradient clipping."""
import math

import numpy as np
import pytest

import minireg as mr
from minireg.errors import DeviceError
from minireg.nn import Parameter
from minireg.optim import (SGD, Adam, ClipGradNorm, ClipGradValue, clip_grad_norm_, clip_grad_value_)
from minireg.optim.lr_scheduler import StepLR
from minireg.testing.devices import fake_device


class Recorder:
    """Logs (name, group index, parameter values) on every call."""

    def __init__(self, log, timing, stage, name):
        self.log, self.timing, self.stage, self.name = log, timing, stage, name

    def hook(self, optimizer, group, params):
        index = next(i for i, g in enumerate(optimizer.param_groups) if g is group)
        self.log.append((self.name, index, [p.numpy().copy() for p in params]))


class Hook:
    """A hook made of a function, for tests that change gradients or parameters."""

    def __init__(self, timing, stage, fn):
        self.timing, self.stage, self.fn = timing, stage, fn

    def hook(self, optimizer, group, params):
        self.fn(group, params)


def params_with_grads(values, grads):
    params = [Parameter(np.array(v, dtype=np.float64)) for v in values]
    for p, g in zip(params, grads):
        p.grad = mr.tensor(np.asarray(g, dtype=np.float64))
    return params


def test_hooks_run_by_stage_then_registration_order_around_the_update():
    w, b = params_with_grads([[1.0, -2.0], [3.0]], [[0.5, 0.5], [1.0]])
    opt = SGD([{"params": [w]}, {"params": [b]}], lr=0.1)
    log = []
    scrambled = [("constraint", "a"), ("prox", "a"), ("clip", "a"), ("penalty", "a"),
                 ("constraint", "b"), ("penalty", "b"), ("clip", "b"), ("prox", "b")]
    for stage, suffix in scrambled:
        timing = "pre" if stage in ("penalty", "clip") else "post"
        opt.add_hook(Recorder(log, timing, stage, f"{stage}-{suffix}"))
    opt.step()

    order = ["penalty-a", "penalty-b", "clip-a", "clip-b", "prox-a", "prox-b", "constraint-a", "constraint-b"]
    assert [h.name for h in opt.hooks] == order
    assert [(name, group) for name, group, _ in log] == [(name, g) for name in order for g in (0, 1)]
    for name, group, values in log:   # pre hooks see the old values, post hooks the updated ones
        before = [[1.0, -2.0], [3.0]][group]
        after = [[0.95, -2.05], [2.9]][group]
        np.testing.assert_allclose(values[0], before if name.split("-")[0] in ("penalty", "clip") else after)


def test_each_stage_acts_on_what_the_previous_one_left():
    lr, l2, max_value, l1, box = 0.5, 0.1, 0.3, 0.2, 1.0
    w0, g0 = np.array([2.0, 0.05, 0.4, -3.0]), np.array([1.0, 0.2, -0.5, -0.8])
    (w,) = params_with_grads([w0], [g0])
    opt = SGD([w], lr=lr)

    def penalty(group, params):
        for p in params:
            p.grad = p.grad + l2 * p

    def prox(group, params):
        for p in params:
            t = group["lr"] * l1
            p.data[...] = np.sign(p.data) * np.maximum(np.abs(p.data) - t, 0.0)

    def constraint(group, params):
        for p in params:
            p.data[...] = np.clip(p.data, -box, box)

    for hook in (Hook("post", "constraint", constraint), Hook("post", "prox", prox), ClipGradValue(max_value),
                 Hook("pre", "penalty", penalty)):
        opt.add_hook(hook)
    opt.step()
    v = w0 - lr * np.clip(g0 + l2 * w0, -max_value, max_value)
    expected = np.clip(np.sign(v) * np.maximum(np.abs(v) - lr * l1, 0.0), -box, box)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-15)
    assert w.numpy()[1] == 0.0   # the prox gives exact zeros


def test_l2_penalty_hook_equals_coupled_weight_decay():
    wd = 0.3
    grads = [np.array([1.0, -2.0]), np.array([0.5, 0.1]), np.array([-1.0, 0.3])]
    runs = []
    for use_hook in (True, False):
        (w,) = params_with_grads([[1.0, 2.0]], [grads[0]])
        opt = SGD([w], lr=0.1, momentum=0.9, weight_decay=0.0 if use_hook else wd)
        if use_hook:
            opt.add_hook(Hook("pre", "penalty", lambda group, params: [setattr(p, "grad", p.grad + wd * p)
                                                                        for p in params]))
        for g in grads:
            w.grad = mr.tensor(g.copy())
            opt.step()
        runs.append(w.numpy())
    np.testing.assert_array_equal(*runs)


def test_hooks_get_only_params_with_grads_and_every_group():
    w, b, c = params_with_grads([[1.0], [2.0], [3.0]], [[1.0], [1.0], [1.0]])
    c.grad = None
    opt = SGD([{"params": [w, c]}, {"params": [b]}], lr=0.1)
    seen = []
    opt.add_hook(Hook("pre", "penalty", lambda group, params: seen.append(params)))
    opt.step()
    assert seen == [[w], [b]]
    w.grad = b.grad = None
    opt.step()
    assert seen[2:] == [[], []]


def test_prox_hooks_read_the_learning_rate_of_the_step():
    (w,) = params_with_grads([[1.0]], [[0.0]])
    opt = SGD([w], lr=0.8)
    scheduler = StepLR(opt, step_size=1, gamma=0.5)
    seen = []
    opt.add_hook(Hook("post", "prox", lambda group, params: seen.append(group["lr"])))
    for _ in range(3):
        opt.step()
        scheduler.step()
    assert seen == [0.8, 0.4, 0.2]


def test_remove_hook():
    (w,) = params_with_grads([[1.0]], [[1.0]])
    opt = SGD([w], lr=0.1)
    log = []
    first, second = Recorder(log, "pre", "penalty", "first"), Recorder(log, "post", "prox", "second")
    opt.add_hook(first)
    opt.add_hook(second)
    opt.remove_hook(first)
    opt.step()
    assert [name for name, _, _ in log] == ["second"] and opt.hooks == (second,)
    with pytest.raises(ValueError, match="'first' is not registered"):
        opt.remove_hook(first)


class Incomplete:
    def hook(self, optimizer, group, params):
        pass


def incomplete(**attributes):
    hook = Incomplete()
    hook.__dict__.update(attributes)
    return hook


@pytest.mark.parametrize("hook, error, match", [
    (incomplete(stage="penalty"), ValueError, "hook 'Incomplete' must declare timing 'pre'.* got None"),
    (incomplete(timing="before", stage="penalty"), ValueError, "got 'before'"),
    (incomplete(timing="pre", stage="prox", name="l1"), ValueError,
     r"hook 'l1' has timing 'pre', so its stage must be one of \('penalty', 'clip'\), got 'prox'"),
    (incomplete(timing="post"), ValueError, r"\('prox', 'constraint'\), got None"),
])
def test_add_hook_validates(hook, error, match):
    (w,) = params_with_grads([[1.0]], [[1.0]])
    opt = SGD([w], lr=0.1)
    with pytest.raises(error, match=match):
        opt.add_hook(hook)
    assert opt.hooks == ()


def test_add_hook_rejects_objects_without_hook_method_and_duplicates():
    (w,) = params_with_grads([[1.0]], [[1.0]])
    opt = SGD([w], lr=0.1)
    no_method = type("NoMethod", (), {"timing": "pre", "stage": "clip"})()
    with pytest.raises(TypeError, match="has no method hook"):
        opt.add_hook(no_method)
    clip = opt.add_hook(ClipGradValue(1.0))
    with pytest.raises(ValueError, match="'clip_grad_value' is already registered"):
        opt.add_hook(clip)


# -- gradient clipping ----------------------------------------------------------------------------
def numpy_clip_norm(grads, max_norm, norm_type):
    """torch's formula: the norm of the per-parameter norms; scale by min(1, max / (total + 1e-6))."""
    if norm_type == math.inf:
        total = max(np.abs(g).max() for g in grads)
    else:
        total = sum((np.abs(g) ** norm_type).sum() for g in grads) ** (1 / norm_type)
    coef = min(max_norm / (total + 1e-6), 1.0)
    return total, [g * coef for g in grads]


GRADS = [np.array([[3.0, -4.0], [1.0, 0.5]]), np.array([-2.0, 6.0, 0.25])]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_the_formula(norm_type, max_norm):
    params = params_with_grads([np.zeros_like(g) for g in GRADS], GRADS)
    total = clip_grad_norm_(params, max_norm, norm_type)
    expected_total, expected = numpy_clip_norm(GRADS, max_norm, float(norm_type))
    assert isinstance(total, float) and total == pytest.approx(expected_total, rel=1e-12)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.grad.numpy(), e, rtol=1e-12)


def test_clip_grad_norm_edge_cases():
    (w,) = params_with_grads([[0.0, 0.0]], [[3.0, 4.0]])
    assert clip_grad_norm_(w, 1.0) == pytest.approx(5.0)           # a single tensor is accepted
    np.testing.assert_allclose(w.grad.numpy(), [0.6, 0.8], rtol=1e-6)
    w.grad = None
    assert clip_grad_norm_([w], 1.0) == 0.0
    with pytest.raises(ValueError, match="max_norm must be >= 0"):
        clip_grad_norm_([w], -1.0)
    with pytest.raises(ValueError, match="norm_type must be > 0"):
        clip_grad_norm_([w], 1.0, norm_type=0)


def test_clipping_handles_gradients_shared_between_parameters():
    # the add's backward hands one gradient to both inputs; each leaf must still get its own
    # buffer, so clipping one cannot clip the other twice
    w, b = Parameter(np.zeros(2)), Parameter(np.zeros(2))
    ((w + b) * 3.0).sum().backward()
    assert w.grad is not b.grad
    clip_grad_value_([w, b], 1.0)
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])
    w.grad = b.grad = None
    ((w + b) * 3.0).sum().backward()
    total = clip_grad_norm_([w, b], 1.0)
    assert total == pytest.approx(6.0)
    np.testing.assert_allclose(w.grad.numpy(), [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), [0.5, 0.5], rtol=1e-6)


def test_clip_grad_value():
    w, b = params_with_grads([[0.0, 0.0, 0.0], [0.0]], [[-3.0, 0.2, 5.0], [0.7]])
    clip_grad_value_([w, b], 0.5)
    np.testing.assert_array_equal(w.grad.numpy(), [-0.5, 0.2, 0.5])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5])
    with pytest.raises(ValueError, match="clip_value must be >= 0"):
        ClipGradValue(-1.0)


def test_clip_grad_norm_hook_uses_the_norm_over_all_groups():
    values = [np.ones_like(g) for g in GRADS]
    params = params_with_grads(values, GRADS)
    opt = SGD([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.5}], lr=1.0)
    hook = opt.add_hook(ClipGradNorm(2.0))
    opt.step()
    total, clipped = numpy_clip_norm(GRADS, 2.0, 2.0)
    assert hook.total_norm.item() == pytest.approx(total)
    np.testing.assert_allclose(params[0].numpy(), values[0] - 1.0 * clipped[0], rtol=1e-12)
    np.testing.assert_allclose(params[1].numpy(), values[1] - 0.5 * clipped[1], rtol=1e-12)
    _, per_group = numpy_clip_norm(GRADS[:1], 2.0, 2.0)
    assert not np.allclose(clipped[0], per_group[0])   # the test tells global from per-group clipping


def test_clip_hooks_stay_on_the_parameters_device(backend):
    runs = []
    for on in (backend, None):
        params = [Parameter(on.asarray(np.ones_like(g)) if on else np.ones_like(g)) for g in GRADS]
        for p, g in zip(params, GRADS):
            p.grad = mr.Tensor(p.backend.asarray(g))
        opt = Adam(params, lr=0.1)
        norm_hook = opt.add_hook(ClipGradNorm(1.0, norm_type=3.0))
        opt.add_hook(ClipGradValue(0.2))
        opt.step()
        if on is not None:
            assert all(backend.owns(p.data) and backend.owns(p.grad.data) for p in params)
            assert norm_hook.total_norm.backend is backend
        runs.append([p.numpy() for p in params])
    for got, expected in zip(*runs):
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_clip_grad_norm_refuses_gradients_on_several_devices():
    host = Parameter(np.zeros(2))
    host.grad = mr.tensor(np.ones(2))
    dev = Parameter(fake_device().asarray(np.zeros(2)))
    dev.grad = mr.Tensor(fake_device().asarray(np.ones(2)))
    with pytest.raises(DeviceError, match="all gradients on one device"):
        clip_grad_norm_([host, dev], 1.0)


# -- regularizers attached to parameters: every optimizer applies them, once -------------------------
from minireg.optim import AdamW, Adagrad, RMSprop  # noqa: E402
from minireg.reg import L1, L2, attach  # noqa: E402

OPTIMIZERS = {
    "SGD": lambda ps: SGD(ps, lr=0.1), "SGD-momentum": lambda ps: SGD(ps, lr=0.1, momentum=0.9),
    "Adam": lambda ps: Adam(ps, lr=0.05), "AdamW": lambda ps: AdamW(ps, lr=0.05),
    "Adam-amsgrad": lambda ps: Adam(ps, lr=0.05, amsgrad=True), "RMSprop": lambda ps: RMSprop(ps, lr=0.01),
    "RMSprop-centered": lambda ps: RMSprop(ps, lr=0.01, centered=True, momentum=0.5),
    "Adagrad": lambda ps: Adagrad(ps, lr=0.1, lr_decay=0.01),
}
W_START = np.array([[1.0, -0.5, 0.02], [-2.0, 0.3, 0.7]])


def quadratic_steps(opt, w, steps=4, extra_loss=None):
    target = mr.tensor(np.array([[0.5, 0.5, -0.5], [0.5, -0.5, 0.5]]))
    for _ in range(steps):
        loss = (((w - target) ** 2) * mr.tensor(np.array([1.0, 2.0, 4.0]))).sum()
        loss = loss if extra_loss is None else loss + extra_loss(w)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.numpy()


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_every_optimizer_applies_an_attached_penalty_gradient_as_the_loss_term(make):
    penalty = L2(0.3)
    in_loss = Parameter(W_START.copy())
    expected = quadratic_steps(make([in_loss]), in_loss, extra_loss=lambda w: penalty.value([w]))
    attached = Parameter(W_START.copy())
    attach(attached, penalty, mode="grad")
    np.testing.assert_allclose(quadratic_steps(make([attached]), attached), expected, rtol=1e-13, atol=1e-15)
    plain = Parameter(W_START.copy())
    assert not np.allclose(quadratic_steps(make([plain]), plain), expected)      # it acts


def metric_steps(opt, p):
    """The per-coordinate prox steps each optimizer's documented metric gives, from its state."""
    state, group = opt.state[p], opt.param_groups[0]
    if isinstance(opt, Adam):
        v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
        return group["lr"] / (np.sqrt(v / (1 - group["betas"][1] ** state["step"])) + group["eps"])
    if isinstance(opt, RMSprop):
        square = state["square_avg"] - (state["grad_avg"] ** 2 if group["centered"] else 0)
        return group["lr"] / (np.sqrt(square) + group["eps"])
    if isinstance(opt, Adagrad):
        lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        return lr / (np.sqrt(state["sum"]) + group["eps"])
    return np.full(p.shape, group["lr"])


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_every_optimizer_takes_an_attached_prox_in_its_own_metric(make):
    """One step at a time: the attached L1 prox is the soft threshold a * s_i of the optimizer's steps s_i,
    applied after the update (compared against the plain optimizer's update from the same state)."""
    a = 0.4
    w = Parameter(W_START.copy())
    attach(w, L1(a))
    opt = make([w])
    for _ in range(3):
        shadow = Parameter(w.numpy().copy())
        shadow_opt = make([shadow])
        shadow_opt.load_state_dict(opt.state_dict())
        quadratic_steps(shadow_opt, shadow, steps=1)
        quadratic_steps(opt, w, steps=1)
        steps = metric_steps(shadow_opt, shadow)
        expected = np.sign(shadow.numpy()) * np.maximum(np.abs(shadow.numpy()) - a * steps, 0)
        np.testing.assert_allclose(w.numpy(), expected, rtol=1e-13, atol=1e-15)
        assert np.all(np.abs(w.numpy()) < np.abs(shadow.numpy()))     # every weight was shrunk


def test_a_prox_lr_attachment_thresholds_by_the_plain_learning_rate():
    w = Parameter(W_START.copy())
    attach(w, L1(0.4), mode="prox_lr")
    opt = Adam([w], lr=0.05)
    shadow = Parameter(W_START.copy())
    quadratic_steps(Adam([shadow], lr=0.05), shadow, steps=1)
    quadratic_steps(opt, w, steps=1)
    v = shadow.numpy()
    np.testing.assert_allclose(w.numpy(), np.sign(v) * np.maximum(np.abs(v) - 0.05 * 0.4, 0), rtol=1e-13)
