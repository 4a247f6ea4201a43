"""The attach API: hooks for penalties and constraints, the enforced hook order, coupled L2 vs decoupled
decay, the penalty fast path vs the loss term, layer-attached regularizers (attach_model,
regularization_loss, activity regularizers) and the Trainer's use of them."""
import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.data import DataLoader, TensorDataset
from minireg.losses import mse_loss
from minireg.nn import Parameter
from minireg.optim import SGD, Adam, AdamW, ClipGradNorm
from minireg.reg.activity import ActivityRegularization
from minireg.reg.attach import attach, attach_model, detach, hook_for, regularization_loss
from minireg.reg.base import PenaltyGradient, Projection, ProximalStep
from minireg.reg.constraints import MaxNorm, NonNeg, WeightClip
from minireg.reg.penalties import L1, L2, ElasticNet, GroupLasso, Orthogonal
from minireg.training import Trainer


def soft(x, t):
    return np.sign(x) * np.maximum(np.abs(x) - t, 0)


def param(values):
    return Parameter(np.array(values, dtype=np.float64))


def with_grad(p, values):
    p.grad = mr.tensor(np.array(values, dtype=np.float64))
    return p


# -- attach / detach --------------------------------------------------------------------------------
@pytest.mark.parametrize("regularizer, mode, kind", [
    (L1(0.1), "auto", ProximalStep),
    (L1(0.1), "grad", PenaltyGradient),
    (ElasticNet(0.1), "prox", ProximalStep),
    (Orthogonal(0.1), "auto", PenaltyGradient),     # no closed-form prox
    (MaxNorm(1.0), "auto", Projection),
], ids=["L1-auto", "L1-grad", "ElasticNet-prox", "Orthogonal-auto", "MaxNorm"])
def test_attach_registers_the_hook_the_mode_names(regularizer, mode, kind):
    w = param([[1.0, 2.0]])
    opt = SGD([w], lr=0.1)
    hook = attach(opt, regularizer, mode)
    assert type(hook) is kind
    assert (hook.constraint if kind is Projection else hook.penalty) is regularizer
    assert opt.hooks == (hook,)
    detach(opt, hook)
    assert opt.hooks == ()


@pytest.mark.parametrize("regularizer, mode, error, match", [
    (L1(0.1), "proximal", ValueError, "mode must be one of"),
    (Orthogonal(0.1), "prox", ValueError, "no closed-form prox"),
    (MaxNorm(1.0), "grad", ValueError, "always applied as a projection"),
    (lambda w: w, "auto", TypeError, "expected a Penalty or a Constraint"),
])
def test_attach_rejects_what_cannot_be_a_hook(regularizer, mode, error, match):
    opt = SGD([param([[1.0]])], lr=0.1)
    with pytest.raises(error, match=match):
        attach(opt, regularizer, mode)
    assert opt.hooks == ()


# -- the documented order ---------------------------------------------------------------------------
class Spy:
    """Wraps a hook; logs (name, grad, data) of the group's first parameter before and after it runs."""

    def __init__(self, inner, log):
        self.inner, self.log = inner, log
        self.timing, self.stage, self.name = inner.timing, inner.stage, inner.stage

    def hook(self, optimizer, group, params):
        p = group["params"][0]
        self.log.append((self.name, "before", p.grad.numpy().copy(), p.numpy().copy()))
        self.inner.hook(optimizer, group, params)
        self.log.append((self.name, "after", p.grad.numpy().copy(), p.numpy().copy()))


def test_hooks_registered_in_any_order_run_penalty_clip_update_prox_constraint():
    w0, g0 = np.array([[0.9, -0.3, 0.02], [-1.4, 0.6, 0.25]]), np.array([[1.0, -2.0, 0.5], [0.3, 0.1, -1.5]])
    lr, l2, l1, max_norm, c = 0.1, 0.5, 0.3, 1.0, 0.7
    w = with_grad(param(w0), g0)
    opt = SGD([w], lr=lr)
    log = []
    clip = ClipGradNorm(max_norm)
    for inner in [hook_for(WeightClip(c)), hook_for(L1(l1), "prox"), clip, hook_for(L2(l2), "grad")]:
        opt.add_hook(Spy(inner, log))
    opt.step()

    g1 = g0 + 2 * l2 * w0                                   # L2 = l2 * ||w||^2
    g2 = g1 * min(1.0, max_norm / (np.linalg.norm(g1) + 1e-6))
    w1 = w0 - lr * g2
    w2 = soft(w1, lr * l1)
    w3 = np.clip(w2, -c, c)
    expected = [("penalty", "before", g0, w0), ("penalty", "after", g1, w0),
                ("clip", "before", g1, w0), ("clip", "after", g2, w0),     # clipping sees the penalty's gradient
                ("prox", "before", g2, w1), ("prox", "after", g2, w2),     # prox sees the update, with this lr
                ("constraint", "before", g2, w2), ("constraint", "after", g2, w3)]   # projection sees the prox
    assert [entry[:2] for entry in log] == [entry[:2] for entry in expected]
    for (name, when, grad, data), (_, _, want_grad, want_data) in zip(log, expected):
        np.testing.assert_allclose(grad, want_grad, rtol=1e-15, atol=0, err_msg=f"grad {when} {name}")
        np.testing.assert_allclose(data, want_data, rtol=1e-15, atol=0, err_msg=f"data {when} {name}")
    assert float(clip.total_norm.item()) == pytest.approx(np.linalg.norm(g1), rel=1e-15)
    # every stage changed something, so the checks above pin the order down
    assert not np.allclose(g1, g2) and not np.allclose(w1, w2) and not np.allclose(w2, w3)
    np.testing.assert_array_equal(w.numpy(), log[-1][3])


# -- coupled L2 vs decoupled decay ------------------------------------------------------------------
SCALES = np.array([1e4, 1.0, 0.0])   # per-coordinate curvature of f(w) = 1/2 sum s_i w_i^2


def run_quadratic(opt_factory, steps=100, penalty=None):
    w = param(np.ones(3))
    opt = opt_factory([w])
    if penalty is not None:
        attach(opt, penalty, mode="grad")
    scales = mr.tensor(SCALES)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (scales * w * w).sum()).backward()
        opt.step()
    return w.numpy()


def test_l2_penalty_is_weight_decay_for_sgd():
    wd = 0.2
    hooked = run_quadratic(lambda p: SGD(p, lr=1e-4, momentum=0.9), penalty=L2(wd / 2, select=lambda p: True))
    builtin = run_quadratic(lambda p: SGD(p, lr=1e-4, momentum=0.9, weight_decay=wd))
    np.testing.assert_allclose(hooked, builtin, rtol=1e-14)


def test_l2_penalty_through_adam_is_rescaled_but_adamw_decay_is_not():
    lr, wd, steps = 1e-3, 0.2, 100
    everything = dict(select=lambda p: True)
    coupled = run_quadratic(lambda p: Adam(p, lr=lr), steps, penalty=L2(wd / 2, **everything))
    np.testing.assert_allclose(coupled, run_quadratic(lambda p: Adam(p, lr=lr, weight_decay=wd), steps), rtol=1e-14)
    decoupled = run_quadratic(lambda p: AdamW(p, lr=lr, weight_decay=wd), steps)

    # Zero data gradient: AdamW shrinks by exactly (1 - lr*wd) per step, while Adam normalizes the
    # L2 gradient wd*w to a step of about lr, 1/(wd*w) ~ 5 times the decay itself.
    assert decoupled[2] == pytest.approx((1 - lr * wd) ** steps, rel=1e-12)
    assert 1 - coupled[2] == pytest.approx(steps * lr, rel=0.05)
    assert (1 - coupled[2]) > 4 * (1 - decoupled[2])
    # The stiff coordinate's gradient dominates its second moment: the L2 term is scaled down
    # there, so the two methods differ coordinate by coordinate, not by one common factor.
    assert not np.allclose(coupled, decoupled, rtol=1e-3)
    ratios = (1 - coupled) / (1 - decoupled)
    assert ratios.max() / ratios.min() > 2


# -- the fast path is the loss term -----------------------------------------------------------------
@pytest.mark.parametrize("penalty", [L1(0.05), L2(0.05), ElasticNet(0.1, l1_ratio=0.3),
                                     GroupLasso(0.05, groups="rows"), GroupLasso(0.05, groups="columns"),
                                     Orthogonal(0.05)], ids=repr)
def test_penalty_gradient_hook_gives_the_update_of_the_penalty_in_the_loss(penalty):
    rng = np.random.default_rng(0)
    w0 = rng.uniform(0.5, 1.5, size=(3, 4)) * rng.choice([-1.0, 1.0], size=(3, 4))   # L1: away from 0
    b0 = rng.normal(size=3)
    x, y = mr.tensor(rng.normal(size=(8, 4))), mr.tensor(rng.normal(size=(8, 3)))

    def train(hooked):
        w, b = param(w0), param(b0)
        opt = SGD([w, b], lr=0.01, momentum=0.9)
        if hooked:
            attach(opt, penalty, mode="grad")
        for _ in range(3):
            loss = mse_loss(x @ w.T + b, y)
            if not hooked:
                loss = loss + penalty.value([w, b])   # selects w only, as the hook does
            opt.zero_grad()
            loss.backward()
            opt.step()
        return w.numpy(), b.numpy()

    for got, want in zip(train(hooked=True), train(hooked=False)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    assert np.all(np.abs(train(hooked=True)[0]) > 0.3)    # still away from L1's kink


# -- layer options ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda **kw: nn.Linear(3, 2, **kw),
                                  lambda **kw: nn.Conv2d(3, 2, 3, **kw),
                                  lambda **kw: nn.ConvTranspose2d(3, 2, 3, **kw)],
                         ids=["Linear", "Conv2d", "ConvTranspose2d"])
def test_layers_store_keras_style_options(make):
    options = dict(weight_regularizer=L2(1e-3), bias_regularizer=L1(1e-3), activity_regularizer=lambda y: y.sum(),
                   weight_constraint=MaxNorm(2.0), bias_constraint=NonNeg())
    layer = make(**options)
    assert all(getattr(layer, key) is value for key, value in options.items())
    assert make().weight_regularizer is None and make().activity_loss is None
    with pytest.raises(TypeError, match="unexpected options.*weight_regulariser"):
        make(weight_regulariser=L2(1e-3))
    with pytest.raises(TypeError, match="weight_regularizer must be a Penalty, got MaxNorm"):
        make(weight_regularizer=MaxNorm(2.0))
    with pytest.raises(TypeError, match="bias_constraint must be a Constraint, got L1"):
        make(bias_constraint=L1(1.0))
    with pytest.raises(TypeError, match="activity_regularizer must be callable"):
        make(activity_regularizer=0.1)
    with pytest.raises(ValueError, match="no bias"):
        make(bias=False, bias_regularizer=L1(1e-3))


@pytest.mark.parametrize("layer, shape", [(nn.Linear(3, 2, dtype="float64"), (5, 3)),
                                          (nn.Conv2d(2, 3, 3, padding=1, dtype="float64"), (2, 2, 4, 4)),
                                          (nn.ConvTranspose2d(2, 3, 3, dtype="float64"), (2, 2, 4, 4))],
                         ids=["Linear", "Conv2d", "ConvTranspose2d"])
def test_activity_regularizer_is_recorded_at_each_training_forward(layer, shape):
    layer.activity_regularizer = ActivityRegularization(l1=0.1, l2=0.01)
    rng = np.random.default_rng(0)
    x1, x2 = mr.tensor(rng.normal(size=shape)), mr.tensor(rng.normal(size=shape))
    y1 = layer(x1).numpy()
    assert layer.activity_loss.item() == pytest.approx(0.1 * np.abs(y1).sum() + 0.01 * (y1 ** 2).sum(), rel=1e-12)
    y2 = layer(x2).numpy()
    assert layer.activity_loss.item() == pytest.approx(0.1 * np.abs(y2).sum() + 0.01 * (y2 ** 2).sum(), rel=1e-12)
    layer.eval()
    layer(x1)
    assert layer.activity_loss is None


# -- attach_model and regularization_loss -----------------------------------------------------------
def regularized_mlp():
    mr.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 4, dtype="float64", weight_regularizer=L1(0.1), bias_regularizer=L2(0.5),
                  weight_constraint=MaxNorm(0.5), activity_regularizer=ActivityRegularization(l2=0.1)),
        nn.ReLU(),
        nn.Linear(4, 2, dtype="float64", bias_constraint=NonNeg()))


def test_regularization_loss_sums_layer_penalties_and_activity_losses():
    model = regularized_mlp()
    first = model[0]
    w, b = first.weight.numpy(), first.bias.numpy()
    weights_only = 0.1 * np.abs(w).sum() + 0.5 * (b ** 2).sum()     # the bias penalty acts on the bias
    assert regularization_loss(model).item() == pytest.approx(weights_only, rel=1e-12)

    x = mr.tensor(np.random.default_rng(0).normal(size=(5, 3)))
    hidden = x.numpy() @ w.T + b
    model(x)
    total = regularization_loss(model)
    assert total.item() == pytest.approx(weights_only + 0.1 * (hidden ** 2).sum(), rel=1e-12)
    total.backward()      # differentiable: d/dw of L1 + d/dw of the activity term through the forward
    np.testing.assert_allclose(first.weight.grad.numpy(), 0.1 * np.sign(w) + 0.2 * hidden.T @ x.numpy(), rtol=1e-12)
    np.testing.assert_allclose(first.bias.grad.numpy(), 2 * 0.5 * b + 0.2 * hidden.sum(axis=0), rtol=1e-12)
    assert regularization_loss(nn.Sequential(nn.Linear(3, 2), nn.ReLU())) is None


def test_a_shared_layer_is_regularized_once():
    layer = nn.Linear(3, 3, dtype="float64", weight_regularizer=L2(0.5), activity_regularizer=lambda y: y.sum())
    model = nn.Sequential(layer, nn.ReLU(), layer)
    out = model(mr.tensor(np.ones((1, 3))))        # the second call's activity overwrites the first's
    expected = 0.5 * (layer.weight.numpy() ** 2).sum() + out.numpy().sum()
    assert regularization_loss(model).item() == pytest.approx(expected, rel=1e-12)
    opt = SGD(model.parameters(), lr=0.1)
    assert len(attach_model(model, opt)) == 1


def test_attach_model_binds_each_hook_to_its_own_parameter():
    model = regularized_mlp()
    before = {name: p.numpy().copy() for name, p in model.named_parameters()}
    lr = 0.2
    opt = SGD(model.parameters(), lr=lr)
    hooks = attach_model(model, opt)
    assert [h.name for h in opt.hooks] == ["prox:L1:0.weight", "prox:L2:0.bias", "project:MaxNorm:0.weight",
                                           "project:NonNeg:2.bias"]
    for p in model.parameters():
        with_grad(p, np.zeros(p.shape))
    opt.step()

    shrunk = soft(before["0.weight"], lr * 0.1)
    norms = np.linalg.norm(shrunk, axis=1, keepdims=True)
    after = dict(model.named_parameters())
    np.testing.assert_allclose(after["0.weight"].numpy(), shrunk * np.minimum(1, 0.5 / norms), rtol=1e-12)
    # L2's default selection is weights only; named as bias_regularizer it acts on the bias
    np.testing.assert_allclose(after["0.bias"].numpy(), before["0.bias"] / (1 + 2 * lr * 0.5), rtol=1e-15)
    np.testing.assert_array_equal(after["2.weight"].numpy(), before["2.weight"])
    np.testing.assert_array_equal(after["2.bias"].numpy(), np.maximum(before["2.bias"], 0))
    # the layer's own regularizer object is left as the user made it
    bias_hook = next(h for h in hooks if h.name == "prox:L2:0.bias")
    assert bias_hook.parameter is model[0].bias and model[0].bias_regularizer.select is not bias_hook.penalty.select

    detach(opt, hooks)
    assert opt.hooks == ()


def test_attached_penalties_leave_the_regularization_loss():
    model = regularized_mlp()
    opt = SGD(model.parameters(), lr=0.1)
    x = mr.tensor(np.ones((2, 3)))
    model(x)
    activity = model[0].activity_loss.item()
    assert regularization_loss(model, opt).item() > activity
    hooks = attach_model(model, opt, mode="grad")
    assert sorted(type(h).__name__ for h in hooks) == ["PenaltyGradient", "PenaltyGradient", "Projection",
                                                       "Projection"]
    assert regularization_loss(model, opt).item() == pytest.approx(activity, rel=1e-15)
    assert regularization_loss(model).item() > activity     # without the optimizer, all of it
    detach(opt, hooks)
    assert regularization_loss(model, opt).item() > activity


def test_attach_model_registers_nothing_when_it_cannot_attach_everything():
    model = regularized_mlp()
    opt = SGD(model[0].parameters(), lr=0.1)        # the last layer's bias constraint has no optimizer
    with pytest.raises(ValueError, match="2.bias has a NonNeg, but SGD does not optimize it"):
        attach_model(model, opt)
    assert opt.hooks == ()
    opt = SGD(model.parameters(), lr=0.1)
    attach_model(model, opt)
    with pytest.raises(ValueError, match="already has hooks from attach_model"):
        attach_model(model, opt)
    assert len(opt.hooks) == 4


# -- Trainer ----------------------------------------------------------------------------------------
def manual_epoch(model, opt, batches, hooked):
    """One epoch by hand; returns the mean data loss."""
    first, data_losses = model[0], []
    for x, y in batches:
        data_loss = mse_loss(model(x), y)
        data_losses.append(data_loss.item())
        loss = data_loss + first.activity_loss      # activity terms are always in the loss
        if not hooked:
            loss = loss + 0.1 * first.weight.abs().sum() + 0.5 * (first.bias * first.bias).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return np.mean(data_losses)


@pytest.mark.parametrize("hooked", [False, True], ids=["in-loss", "attach_model"])
def test_trainer_adds_the_regularization_loss_once(hooked):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    model, reference = regularized_mlp(), regularized_mlp()
    opt, reference_opt = SGD(model.parameters(), lr=0.05), SGD(reference.parameters(), lr=0.05)
    if hooked:
        attach_model(model, opt)
        attach_model(reference, reference_opt)
    history = Trainer(model, opt, mse_loss, verbose=0).fit(loader, epochs=2)
    data_losses = [manual_epoch(reference, reference_opt, loader, hooked) for _ in range(2)]
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(history["loss"], data_losses, rtol=1e-12)   # logged: the data loss alone


def test_regularizer_on_a_layer_whose_weight_a_wrapper_moved_is_an_error_not_a_silent_skip():
    from minireg import nn
    from minireg.optim import SGD
    from minireg.reg import attach_model
    from minireg.reg.penalties import L2
    wrapped = nn.SpectralNorm(nn.Linear(3, 2, weight_regularizer=L2(1e-3)))
    with pytest.raises(ValueError, match="SpectralNorm may have moved it"):
        attach_model(wrapped, SGD(wrapped.parameters(), lr=0.1))
