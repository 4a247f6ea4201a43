"""Regularizers live on parameters: attach/detach, one regularizer of each kind per parameter, the
enforced order (value snapshots), coupled L2 vs decoupled decay, the gradient fast path vs the loss
term, layer options, activity regularizers and the check that their loss reached backward, and
fit vs a hand-written loop (bitwise) for every kind of layer regularizer."""
import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.data import DataLoader, TensorDataset
from minireg.errors import ArgumentError, GraphError
from minireg.losses import mse_loss
from minireg.nn import Parameter
from minireg.optim import SGD, Adam, AdamW, ClipGradNorm
from minireg.reg.activity import ActivityRegularization
from minireg.reg.attach import attach, attachments, detach, regularization_loss
from minireg.reg.constraints import MaxNorm, NonNeg, WeightClip
from minireg.reg.penalties import L1, L2, ElasticNet, GroupLasso, Orthogonal
from minireg.training import Trainer, fit


def soft(x, t):
    return np.sign(x) * np.maximum(np.abs(x) - t, 0)


def param(values):
    return Parameter(np.array(values, dtype=np.float64))


def with_grad(p, values):
    p.grad = mr.tensor(np.array(values, dtype=np.float64))
    return p


# -- attach / detach --------------------------------------------------------------------------------
@pytest.mark.parametrize("regularizer, mode, recorded", [
    (L1(0.1), "auto", "prox"),
    (L1(0.1), "grad", "grad"),
    (L1(0.1), "prox_lr", "prox_lr"),
    (ElasticNet(0.1), "prox", "prox"),
    (Orthogonal(0.1), "auto", "grad"),     # no closed-form prox
    (MaxNorm(1.0), "auto", "project"),
], ids=["L1-auto", "L1-grad", "L1-prox_lr", "ElasticNet-prox", "Orthogonal-auto", "MaxNorm"])
def test_attach_records_the_mode_on_the_parameter(regularizer, mode, recorded):
    w = param([[1.0, 2.0]])
    assert attach(w, regularizer, mode) == [w]
    (attachment,) = attachments(w)
    assert attachment.regularizer is regularizer and attachment.mode == recorded
    assert w.regularizers == [attachment]
    assert detach(w, regularizer) == [w]
    assert attachments(w) == ()


def test_attach_to_a_module_or_an_optimizer_takes_the_selected_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert attach(model, L2(1e-3)) == [model[0].weight, model[2].weight]     # weights only
    assert attachments(model[0].bias) == ()
    opt = SGD(model.parameters(), lr=0.1)
    everything = MaxNorm(1.0, select=lambda p: True)
    assert len(attach(opt, everything)) == 4
    assert detach(model, everything) == list(model.parameters())


@pytest.mark.parametrize("regularizer, mode, error, match", [
    (L1(0.1), "proximal", ValueError, "mode must be one of"),
    (Orthogonal(0.1), "prox", ValueError, "no closed-form prox"),
    (MaxNorm(1.0), "grad", ValueError, "always applied as a projection"),
    (lambda w: w, "auto", TypeError, "must be a minireg.reg Penalty or Constraint"),
    (ActivityRegularization(l1=0.1), "auto", TypeError, "penalizes activations"),
])
def test_attach_rejects_what_cannot_act_on_a_parameter(regularizer, mode, error, match):
    w = param([[1.0]])
    with pytest.raises(error, match=match):
        attach(w, regularizer, mode)
    assert attachments(w) == ()


def test_attach_refuses_non_parameters_and_empty_selections():
    with pytest.raises(TypeError, match="Parameter, a Module or an Optimizer"):
        attach([param([[1.0]])], L1(0.1))
    with pytest.raises(ValueError, match="does not require grad"):
        attach(mr.tensor([[1.0]]), L1(0.1))
    with pytest.raises(ValueError, match="selects none"):
        attach(nn.Sequential(nn.ReLU()), L1(0.1))
    with pytest.raises(ValueError, match="is not attached"):
        detach(param([[1.0]]), L1(0.1))


# -- double application is impossible ----------------------------------------------------------------
def test_the_same_regularizer_twice_on_a_parameter_is_an_error_and_records_nothing():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    l1 = L1(0.1)
    attach(model[1].weight, l1)
    with pytest.raises(ArgumentError, match="already attached"):
        attach(model, l1)                       # would reach model[1].weight a second time
    assert attachments(model[0].weight) == ()   # all or nothing
    with pytest.raises(ArgumentError, match="at most one regularizer of each kind"):
        attach(model[1].weight, L1(0.2))        # another instance of the same kind
    assert len(attachments(model[1].weight)) == 1


def test_a_layer_option_and_an_attach_of_the_same_kind_cannot_both_act():
    model = nn.Sequential(nn.Linear(3, 4, weight_regularizer=L2(1e-3)))
    with pytest.raises(ArgumentError, match="already attached"):
        attach(model, L2(1e-3))
    with pytest.raises(ArgumentError, match="already attached"):
        attach(SGD(model.parameters(), lr=0.1), L2(1e-3))


def test_a_parameter_shared_by_two_layers_is_regularized_once():
    def run(shared):
        mr.manual_seed(0)
        first = nn.Linear(3, 3, bias=False, dtype="float64", weight_regularizer=L2(0.5),
                          weight_constraint=MaxNorm(0.8))
        second = nn.Linear(3, 3, bias=False, dtype="float64")
        if shared:
            second.weight = first.weight
            model = nn.Sequential(first, nn.Tanh(), second)
        else:
            model = nn.Sequential(first, nn.Tanh(), first)     # the same layer twice
        opt = SGD(model.parameters(), lr=0.1)
        x = mr.tensor(np.random.default_rng(0).normal(size=(5, 3)))
        for _ in range(3):
            opt.zero_grad()
            (model(x) ** 2).sum().backward()
            opt.step()
        return first.weight.numpy(), opt

    shared, opt = run(shared=True)
    np.testing.assert_array_equal(shared, run(shared=False)[0])
    assert [len(params) for _, params in opt.regularizers()] == [1, 1]     # L2 and MaxNorm, on one parameter


def test_a_penalty_added_to_the_loss_by_hand_is_not_applied_again():
    """``loss + penalty.value(params)`` is explicit and separate: the optimizer knows nothing of it."""
    def run(by_hand):
        w = param([[1.0, -2.0], [0.5, 3.0]])
        penalty = L2(0.3)
        opt = SGD([w], lr=0.1)
        if not by_hand:
            attach(w, penalty, mode="grad")
        for _ in range(3):
            loss = (w * w * w).sum()
            loss = loss + penalty.value([w]) if by_hand else loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        return w.numpy()

    np.testing.assert_allclose(run(by_hand=True), run(by_hand=False), rtol=1e-14)


# -- the documented order, with value snapshots -----------------------------------------------------
def spying(cls, method, log, stage):
    """A subclass of regularizer ``cls`` that logs (stage, before/after, grad, data) around ``method``."""
    def spy(self, p, *args):
        log.append((stage, "before", p.grad.numpy().copy(), p.numpy().copy()))
        getattr(cls, method)(self, p, *args)
        log.append((stage, "after", p.grad.numpy().copy(), p.numpy().copy()))
    return type(f"Spying{cls.__name__}", (cls,), {method: spy})


class SpyHook:
    """Wraps a hook; logs like ``spying``."""

    def __init__(self, inner, log):
        self.inner, self.log = inner, log
        self.timing, self.stage, self.name = inner.timing, inner.stage, inner.stage

    def hook(self, optimizer, group, params):
        p = group["params"][0]
        self.log.append((self.name, "before", p.grad.numpy().copy(), p.numpy().copy()))
        self.inner.hook(optimizer, group, params)
        self.log.append((self.name, "after", p.grad.numpy().copy(), p.numpy().copy()))


def test_attached_in_any_order_they_run_penalty_clip_update_prox_constraint():
    w0, g0 = np.array([[0.9, -0.3, 0.02], [-1.4, 0.6, 0.25]]), np.array([[1.0, -2.0, 0.5], [0.3, 0.1, -1.5]])
    lr, l2, l1, max_norm, c = 0.1, 0.5, 0.3, 1.0, 0.7
    w = with_grad(param(w0), g0)
    opt = SGD([w], lr=lr)
    log = []
    clip = ClipGradNorm(max_norm)
    attach(w, spying(WeightClip, "project_", log, "constraint")(c))
    attach(w, spying(L1, "prox_", log, "prox")(l1), mode="prox")
    opt.add_hook(SpyHook(clip, log))
    attach(w, spying(L2, "accumulate_grad_", log, "penalty")(l2), mode="grad")
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


def test_the_optimizer_repr_lists_what_it_applies_in_order():
    model = nn.Sequential(nn.Linear(3, 4, weight_constraint=MaxNorm(2.0)), nn.Linear(4, 2))
    opt = Adam(model.parameters(), lr=0.01)
    attach(opt, L1(1e-3))
    opt.add_hook(ClipGradNorm(1.0))
    lines = repr(opt).splitlines()
    assert lines[0].startswith("Adam(lr=0.01") and "params per group: 4" in lines[0]
    assert lines[1:] == ["  hook ClipGradNorm(max_norm=1.0, norm_type=2.0)",
                         "  prox:L1(alpha=0.001) on 2 parameters: (4, 3), (2, 4)",
                         "  project:MaxNorm(max_value=2.0, axis='rows') on 1 parameter: (4, 3)"]


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


def test_layer_options_are_recorded_on_their_parameters():
    weight_penalty, bias_penalty, weight_constraint = L2(1e-3), L1(1e-3), MaxNorm(2.0)
    layer = nn.Linear(3, 2, weight_regularizer=weight_penalty, bias_regularizer=bias_penalty,
                      weight_constraint=weight_constraint, bias_constraint=NonNeg())
    assert [(a.regularizer, a.mode) for a in attachments(layer.weight)] == [(weight_penalty, "prox"),
                                                                             (weight_constraint, "project")]
    assert [a.mode for a in attachments(layer.bias)] == ["prox", "project"]    # named: no weights-only selection
    assert "regularizers=[prox:L2(alpha=0.001), project:MaxNorm(" in repr(layer.weight)


def test_a_wrapper_that_moves_the_weight_keeps_its_regularizers():
    inner = nn.Linear(3, 2, weight_constraint=MaxNorm(0.1))
    wrapped = nn.SpectralNorm(inner)
    opt = SGD(wrapped.parameters(), lr=0.1)
    assert [a.mode for a in attachments(wrapped.weight_orig)] == ["project"]
    wrapped(mr.tensor(np.ones((1, 3), dtype=np.float32))).sum().backward()
    opt.step()
    assert MaxNorm(0.1).is_feasible(wrapped.weight_orig)


# -- activity regularizers -------------------------------------------------------------------------
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
    assert layer.regularization_loss() is layer.activity_loss
    layer.eval()
    layer(x1)
    assert layer.activity_loss is None and layer.regularization_loss() == 0.0


def regularized_mlp():
    mr.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 4, dtype="float64", weight_regularizer=L1(0.1), bias_regularizer=L2(0.5),
                  weight_constraint=MaxNorm(0.5), activity_regularizer=ActivityRegularization(l2=0.1)),
        nn.ReLU(),
        nn.Linear(4, 2, dtype="float64", bias_constraint=NonNeg(), activity_regularizer=ActivityRegularization(l1=0.2)))


def test_regularization_loss_is_the_sum_of_the_activity_losses_only():
    model = regularized_mlp()
    assert model.regularization_loss() == 0.0 == regularization_loss(model)    # no forward yet
    x = mr.tensor(np.random.default_rng(0).normal(size=(5, 3)))
    model(x)
    expected = model[0].activity_loss.item() + model[2].activity_loss.item()
    assert model.regularization_loss().item() == pytest.approx(expected, rel=1e-15)
    shared = nn.Sequential(model[0], nn.ReLU(), model[0].__class__(4, 3, dtype="float64"), model[0])
    shared(x)   # the shared layer's last forward counts once
    assert shared.regularization_loss().item() == pytest.approx(model[0].activity_loss.item(), rel=1e-15)


def test_a_step_after_a_backward_that_missed_the_activity_loss_is_an_error_that_changes_nothing():
    model = regularized_mlp()
    opt = SGD(model.parameters(), lr=0.1)
    x = mr.tensor(np.random.default_rng(0).normal(size=(5, 3)))
    opt.zero_grad()
    (model(x) ** 2).sum().backward()          # forgot model.regularization_loss()
    before = [p.numpy().copy() for p in model.parameters()]
    with pytest.raises(GraphError, match=r"Linear\(in_features=3.*model.regularization_loss\(\)"):
        opt.step()
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), b)
    opt.zero_grad()
    ((model(x) ** 2).sum() + model.regularization_loss()).backward()
    opt.step()                                 # reached: fine
    with mr.no_grad():
        model(x)                               # no graph: nothing to reach
    opt.step()
    model.eval()
    opt.zero_grad()
    (model(x) ** 2).sum().backward()           # eval mode records nothing
    opt.step()


# -- fit, Trainer and a hand-written loop: the same regularizers, applied once ----------------------
KINDS = {
    "weight": dict(weight_regularizer=L2(0.05)),
    "bias": dict(bias_regularizer=L1(0.05)),
    "penalty": dict(weight_regularizer=GroupLasso(0.05, groups="columns")),
    "constraint": dict(weight_constraint=MaxNorm(0.3)),
    "activity": dict(activity_regularizer=ActivityRegularization(l1=0.01)),
}


def kind_model(options):
    mr.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 8, dtype="float64", **options), nn.Tanh(), nn.Linear(8, 2, dtype="float64"))


def kind_loader():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(24, 4)), rng.normal(size=(24, 2))
    return DataLoader(TensorDataset(x, y), batch_size=8)


def hand_written(model, optimizer, epochs=2):
    opt = optimizer(model.parameters())
    for _ in range(epochs):
        for x, y in kind_loader():
            loss = mse_loss(model(x), y) + model.regularization_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return [p.numpy() for p in model.parameters()]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", [lambda ps: Adam(ps, lr=0.05), lambda ps: SGD(ps, lr=0.1, momentum=0.9)],
                         ids=["Adam", "SGD"])
def test_fit_and_a_hand_written_loop_give_bitwise_the_same_weights(kind, optimizer):
    options = {k: v.__class__(**vars_of(v)) for k, v in KINDS[kind].items()}
    model = kind_model(options)
    fit(model, optimizer(model.parameters()), mse_loss, kind_loader(), epochs=2, verbose=0)
    fitted = [p.numpy() for p in model.parameters()]
    options = {k: v.__class__(**vars_of(v)) for k, v in KINDS[kind].items()}
    by_hand = hand_written(kind_model(options), optimizer)
    plain = hand_written(kind_model({}), optimizer)
    for got, want in zip(fitted, by_hand):
        np.testing.assert_array_equal(got, want)
    assert any(not np.array_equal(got, want) for got, want in zip(fitted, plain))     # it acts


def vars_of(regularizer):
    return {k: v for k, v in vars(regularizer).items() if not k.startswith("_") and k != "select"}


def test_a_conv_weight_constraint_holds_under_fit():
    """The issue's report: Conv2d(weight_constraint=MaxNorm(0.3)) under fit ended with unit norms 0.81."""
    mr.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, dtype="float64", weight_constraint=MaxNorm(0.3)), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 2, dtype="float64"))
    rng = np.random.default_rng(0)
    loader = DataLoader(TensorDataset(rng.normal(size=(16, 1, 6, 6)), rng.normal(size=(16, 2))), batch_size=8)
    fit(model, Adam(model.parameters(), lr=0.05), mse_loss, loader, epochs=2, verbose=0)
    norms = np.linalg.norm(model[0].weight.numpy().reshape(4, -1), axis=1)
    assert norms.max() <= 0.3 * (1 + 1e-12) and norms.max() > 0.29


def test_trainer_logs_the_data_loss_and_applies_the_regularizers_once():
    model, reference = regularized_mlp(), regularized_mlp()
    opt, reference_opt = SGD(model.parameters(), lr=0.05), SGD(reference.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    loader = DataLoader(TensorDataset(rng.normal(size=(12, 3)), rng.normal(size=(12, 2))), batch_size=4)
    history = Trainer(model, opt, mse_loss, verbose=0).fit(loader, epochs=2)
    data_losses = []
    for _ in range(2):
        epoch = []
        for x, y in loader:
            data_loss = mse_loss(reference(x), y)
            epoch.append(data_loss.item())
            reference_opt.zero_grad()
            (data_loss + reference.regularization_loss()).backward()
            reference_opt.step()
        data_losses.append(np.mean(epoch))
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    np.testing.assert_allclose(history["loss"], data_losses, rtol=1e-12)   # logged: the data loss alone
    assert np.all(model[2].bias.numpy() >= 0) and MaxNorm(0.5).is_feasible(model[0].weight)


def test_gan_trainer_applies_parameter_regularizers_and_adds_activity_losses():
    from minireg.datasets import load_digits
    from minireg.gan import GANTrainer, mlp_discriminator, mlp_generator
    from minireg.optim import RMSprop
    (x, _), _ = load_digits()
    loader = DataLoader(TensorDataset((x * 2 - 1).astype(np.float32)), batch_size=32, shuffle=True, drop_last=True,
                        generator=np.random.default_rng(0))
    mr.manual_seed(0)
    G, D = mlp_generator(noise_dim=8, hidden=(32,), out_dim=64), mlp_discriminator(in_dim=64, hidden=(32,))
    c = 0.02
    attach(D, WeightClip(c, select=lambda p: True))          # on D's parameters, not via d_constraints
    hidden = next(m for m in G.modules() if isinstance(m, nn.Linear))
    hidden.activity_regularizer = ActivityRegularization(l2=1e-3)
    trainer = GANTrainer(G, D, loss="wgan", n_critic=2, d_optimizer=RMSprop(D.parameters(), lr=5e-3), verbose=0)
    trainer.fit(loader, 3)
    for name, p in D.named_parameters():
        assert np.abs(p.numpy()).max() <= c * (1 + 1e-6), name
    assert any(np.isclose(np.abs(p.numpy()).max(), c) for p in D.parameters())
    assert hidden.activity_loss is not None       # recorded, and it reached backward (else step raises)


def test_the_value_of_an_attached_penalty_cannot_join_a_loss():
    w = param([[1.0, -2.0]])
    penalty = L1(0.5)
    attach(w, penalty)
    with pytest.raises(ArgumentError, match="count it twice"):
        penalty.value([w])
    with mr.no_grad():
        assert penalty.value([w]).item() == pytest.approx(1.5)      # reporting the objective is fine
    assert L1(0.5).value([w]).item() == pytest.approx(1.5)        # another, unattached instance: explicit
