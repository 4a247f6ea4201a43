"""Optimizers against plain-NumPy versions of the published torch.optim algorithms, plus validation,
param groups, state dicts, convergence and device placement.

Gradients are set by hand from a NumPy least-squares gradient of the current parameter values, so
the optimizer and its reference see the same numbers and any difference is the update rule's.
"""
import io

import numpy as np
import pytest

import minireg as mr
from minireg.errors import (ArgumentError, ArgumentTypeError, CheckpointError, DeviceError, DTypeError,
                            NonFiniteError, ShapeError)
from minireg.nn import Parameter
from minireg.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(8, 3)), RNG.normal(size=(8, 4))
INIT = [RNG.normal(size=(3, 4)), RNG.normal(size=(4,))]   # W and b of the model X @ W + b


def grads(ws):
    """Gradient of 0.5 * ||X @ W + b - Y||^2, in float64, for the values ``ws = [W, b]``."""
    w, b = (np.asarray(v, dtype=np.float64) for v in ws)
    r = X @ w + b - Y
    return [X.T @ r, r.sum(axis=0)]


# -- references, written from the algorithms in the torch.optim documentation ---------------------
def sgd_ref(w, g, s, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    if weight_decay:
        g = g + weight_decay * w
    if momentum:
        s["b"] = g.copy() if "b" not in s else momentum * s["b"] + (1 - dampening) * g
        g = g + momentum * s["b"] if nesterov else s["b"]
    return w - lr * g


def adam_ref(w, g, s, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    b1, b2 = betas
    t = s["t"] = s.get("t", 0) + 1
    if decoupled:
        w = w * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * w
    m = s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    v = s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    if amsgrad:
        v = s["v_max"] = np.maximum(s.get("v_max", 0.0), v)
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw_ref(w, g, s, weight_decay=1e-2, **options):
    return adam_ref(w, g, s, weight_decay=weight_decay, decoupled=True, **options)


def rmsprop_ref(w, g, s, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    if weight_decay:
        g = g + weight_decay * w
    v = s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g * g
    if centered:
        s["g_ave"] = alpha * s.get("g_ave", 0.0) + (1 - alpha) * g
        v = v - s["g_ave"] ** 2
    if momentum > 0:
        s["b"] = momentum * s.get("b", 0.0) + g / (np.sqrt(v) + eps)
        return w - lr * s["b"]
    return w - lr * g / (np.sqrt(v) + eps)


def adagrad_ref(w, g, s, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    t = s["t"] = s.get("t", 0) + 1
    lr_t = lr / (1 + (t - 1) * lr_decay)
    if weight_decay:
        g = g + weight_decay * w
    s["sum"] = s.get("sum", initial_accumulator_value) + g * g
    return w - lr_t * g / (np.sqrt(s["sum"]) + eps)


REFERENCES = {SGD: sgd_ref, Adam: adam_ref, AdamW: adamw_ref, RMSprop: rmsprop_ref, Adagrad: adagrad_ref}
CONFIGS = [
    (SGD, dict(lr=0.05)),
    (SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, dict(lr=0.05, momentum=0.9, dampening=0.3)),
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (SGD, dict(lr=0.05, weight_decay=0.1)),
    (SGD, dict(lr=0.05, momentum=0.8, weight_decay=0.05, nesterov=True)),
    (Adam, dict(lr=0.05)),
    (Adam, dict(lr=0.05, weight_decay=0.1)),
    (Adam, dict(lr=0.05, betas=(0.8, 0.5), amsgrad=True)),
    (Adam, dict(lr=0.05, betas=(0.8, 0.5), weight_decay=0.1, amsgrad=True)),
    (AdamW, dict(lr=0.05)),
    (AdamW, dict(lr=0.05, weight_decay=0.5)),
    (AdamW, dict(lr=0.05, betas=(0.8, 0.5), weight_decay=0.1, amsgrad=True)),
    (RMSprop, dict(lr=0.01)),
    (RMSprop, dict(lr=0.01, centered=True)),
    (RMSprop, dict(lr=0.01, momentum=0.9)),
    (RMSprop, dict(lr=0.01, weight_decay=0.1)),
    (RMSprop, dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, weight_decay=0.1)),
    (Adagrad, dict(lr=0.1)),
    (Adagrad, dict(lr=0.1, lr_decay=0.1)),
    (Adagrad, dict(lr=0.1, weight_decay=0.1)),
    (Adagrad, dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6)),
]
CONFIG_IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, kw in CONFIGS]
STEPS = 6


def make_params(dtype=np.float64, on=None):
    arrays = [x.astype(dtype) for x in INIT]
    return [Parameter(on.asarray(a) if on else a.copy()) for a in arrays]


def set_grads(params):
    for p, g in zip(params, grads([p.numpy() for p in params])):
        p.grad = mr.Tensor(p.backend.asarray(g.astype(p.backend.numpy_dtype(p.dtype))))


def run(opt, params, steps):
    for _ in range(steps):
        set_grads(params)
        opt.step()
    return [p.numpy() for p in params]


def run_reference(update, options_per_param, steps):
    ws, states = [x.copy() for x in INIT], [{} for _ in INIT]
    for _ in range(steps):
        for i, g in enumerate(grads(ws)):
            ws[i] = update(ws[i], g, states[i], **options_per_param[i])
    return ws


@pytest.mark.parametrize("cls, options", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-4)], ids=["float64", "float32"])
def test_trajectory_matches_reference(cls, options, dtype, rtol):
    params = make_params(dtype)
    got = run(cls(params, **options), params, STEPS)
    expected = run_reference(REFERENCES[cls], [options] * len(params), STEPS)
    for g, e in zip(got, expected):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_amsgrad_configs_exercise_the_running_maximum(cls):
    options = dict(lr=0.05, betas=(0.8, 0.5))
    plain, ams = make_params(), make_params()
    run(cls(plain, **options), plain, STEPS)
    run(cls(ams, amsgrad=True, **options), ams, STEPS)
    assert not np.allclose(plain[0].numpy(), ams[0].numpy(), rtol=1e-6)


@pytest.mark.parametrize("cls", list(REFERENCES))
def test_param_groups_use_their_own_lr_and_weight_decay(cls):
    w, b = make_params()
    defaults = dict(lr=0.02, weight_decay=0.0)
    opt = cls([{"params": [w], "lr": 0.07, "weight_decay": 0.3}, {"params": [b]}], **defaults)
    assert opt.param_groups[1]["lr"] == 0.02 and opt.param_groups[1]["weight_decay"] == 0.0
    got = run(opt, [w, b], STEPS)
    expected = run_reference(REFERENCES[cls], [dict(lr=0.07, weight_decay=0.3), defaults], STEPS)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12)


def test_adamw_decay_is_decoupled_and_differs_from_adam_l2():
    lr, wd = 0.05, 0.3
    grad_seq = [RNG.normal(size=INIT[0].shape) for _ in range(STEPS)]   # independent of w
    w_plain, w_decoupled, w_coupled = (Parameter(INIT[0].copy()) for _ in range(3))
    runs = [(w_plain, Adam([w_plain], lr=lr)), (w_decoupled, AdamW([w_decoupled], lr=lr, weight_decay=wd)),
            (w_coupled, Adam([w_coupled], lr=lr, weight_decay=wd))]
    for g in grad_seq:
        before_plain, before = w_plain.numpy().copy(), w_decoupled.numpy().copy()
        for p, opt in runs:
            p.grad = mr.tensor(g.copy())
            opt.step()
        adam_step = before_plain - w_plain.numpy()
        np.testing.assert_allclose(w_decoupled.numpy(), before * (1 - lr * wd) - adam_step, rtol=1e-12, atol=1e-15)
    assert np.abs(w_decoupled.numpy() - w_coupled.numpy()).max() > 1e-3


def test_params_without_grad_are_skipped():
    w, b = make_params()
    opt = Adam([w, b], lr=0.1)
    w.grad = mr.tensor(np.ones_like(INIT[0]))
    opt.step()
    np.testing.assert_array_equal(b.numpy(), INIT[1])
    assert b not in opt.state and opt.state[w]["step"] == 1


def test_zero_grad():
    w, b = make_params()
    opt = SGD([w, b], lr=0.1)
    set_grads([w, b])
    opt.zero_grad(set_to_none=False)
    assert np.all(w.grad.numpy() == 0) and w.grad.shape == w.shape
    opt.zero_grad()
    assert w.grad is None and b.grad is None


def test_step_runs_closure_with_grad_enabled_and_returns_its_loss():
    x = mr.tensor(X)
    w = Parameter(INIT[0].copy())
    opt = SGD([w], lr=0.01)

    def closure():
        opt.zero_grad()
        loss = ((x @ w - mr.tensor(Y)) ** 2).sum()
        loss.backward()
        return loss

    with mr.no_grad():
        loss = opt.step(closure)
    assert loss.item() == pytest.approx(((X @ INIT[0] - Y) ** 2).sum())
    assert not np.array_equal(w.numpy(), INIT[0])


def test_generator_of_parameters_is_materialised():
    params = make_params()
    opt = SGD((p for p in params), lr=0.1)
    assert opt.param_groups[0]["params"] == params


# -- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, options, error, match", [
    (SGD, dict(lr=-0.1), ArgumentError, "SGD: lr must be >= 0, got -0.1"),
    (SGD, dict(lr=0.1, momentum=-0.9), ArgumentError, "momentum must be >= 0"),
    (SGD, dict(lr=0.1, nesterov=True), ArgumentError, "nesterov=True needs momentum > 0"),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ArgumentError, "dampening == 0"),
    (SGD, dict(lr=0.1, mommentum=0.9), ArgumentTypeError, "unknown option 'mommentum' .did you mean 'momentum'"),
    (Adam, dict(lr=float("nan")), ArgumentError, "lr must be finite"),
    (Adam, dict(lr="0.1"), ArgumentTypeError, "lr must be a real number"),
    (Adam, dict(betas=(0.9, 1.0)), ArgumentError, r"betas\[1\] must be in \[0, 1\), got 1.0"),
    (Adam, dict(betas=(-0.1, 0.9)), ArgumentError, r"betas\[0\] must be in \[0, 1\)"),
    (Adam, dict(betas=(1.0, 0.9)), ArgumentError, r"Adam: betas\[0\] must be in \[0, 1\), got 1.0"),
    (Adam, dict(betas=0.9), ArgumentTypeError, "betas must be a pair"),
    (Adam, dict(eps=0.0), ArgumentError, "eps must be > 0"),
    (Adam, dict(amsgrad=1), ArgumentTypeError, "amsgrad must be True or False"),
    (Adam, dict(weight_dacay=0.1), ArgumentTypeError, "did you mean 'weight_decay'"),
    (AdamW, dict(weight_decay=-1e-2), ArgumentError, "weight_decay must be >= 0"),
    (RMSprop, dict(alpha=1.5), ArgumentError, r"alpha must be in \[0, 1\)"),
    (RMSprop, dict(momentum=-0.1), ArgumentError, "momentum must be >= 0"),
    (RMSprop, dict(eps=-1e-8), ArgumentError, "eps must be > 0"),
    (Adagrad, dict(lr_decay=-1.0), ArgumentError, "lr_decay must be >= 0"),
    (Adagrad, dict(initial_accumulator_value=-1.0), ArgumentError, "initial_accumulator_value must be >= 0"),
    (Adagrad, dict(eps=0.0), ArgumentError, "eps must be > 0"),
])
def test_invalid_options_raise(cls, options, error, match):
    with pytest.raises(error, match=match):
        cls(make_params(), **options)


def test_numpy_scalars_are_numbers():
    opt = Adam(make_params(), lr=np.float32(0.5), betas=(np.float64(0.5), np.float32(0.25)), amsgrad=np.bool_(True))
    assert opt.defaults["lr"] == 0.5 and opt.defaults["betas"] == (0.5, 0.25) and opt.defaults["amsgrad"] is True


def test_invalid_options_in_a_param_group_name_the_group():
    w, b = make_params()
    with pytest.raises(ArgumentError, match="param group 1: lr must be >= 0"):
        SGD([{"params": [w]}, {"params": [b], "lr": -1.0}], lr=0.1)
    with pytest.raises(ArgumentError, match="param group 0: unknown option 'weight_dacay'"):
        SGD([{"params": [w], "weight_dacay": 0.0}], lr=0.1)
    opt = SGD([{"params": [w], "name": "weights"}], lr=0.1)     # other extra keys are kept
    assert opt.param_groups[0]["name"] == "weights"


@pytest.mark.parametrize("make, error, match", [
    (lambda w, b: [], ArgumentError, "empty parameter list"),
    (lambda w, b: (p for p in []), ArgumentError, "empty parameter list"),
    (lambda w, b: [w, b, w], ArgumentError, r"parameter 2 \(shape \(3, 4\)\) appears more than once"),
    (lambda w, b: [{"params": [w]}, {"params": [b, w]}], ArgumentError, "already in param group 0"),
    (lambda w, b: [w, mr.tensor(np.ones(2))], ArgumentError, "parameter 1 .* does not require grad"),
    (lambda w, b: [w * 2.0], ArgumentError, "not a leaf"),
    (lambda w, b: [w, np.ones(2)], ArgumentTypeError, "parameter 1 is a ndarray"),
    (lambda w, b: {w, b}, ArgumentTypeError, "not a set"),
    (lambda w, b: [w, {"params": [b]}], ArgumentTypeError, "not a mix"),
    (lambda w, b: [{"lr": 0.1}], ArgumentError, "param group 0: has no 'params' entry"),
    (lambda w, b: 3, ArgumentTypeError, "iterable of Tensors"),
])
def test_invalid_params_raise(make, error, match):
    w, b = make_params()
    with pytest.raises(error, match=match):
        SGD(make(w, b), lr=0.1)


def test_add_param_group_validates_before_adding():
    w, b = make_params()
    opt = Adam([w], lr=0.1, weight_decay=0.2)
    with pytest.raises(ArgumentError, match="already in param group 0"):
        opt.add_param_group({"params": [b, w]})
    with pytest.raises(ArgumentError, match="eps must be > 0"):
        opt.add_param_group({"params": [b], "eps": 0.0})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": b, "lr": 0.5})
    assert opt.param_groups[1] == {**opt.defaults, "lr": 0.5, "params": [b]}


# -- state dicts ----------------------------------------------------------------------------------
def assert_flattenable(obj):
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert isinstance(key, (int, str))
            assert_flattenable(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            assert_flattenable(value)
    else:
        assert isinstance(obj, (np.ndarray, int, float, str)), type(obj)


def npz_round_trip(sd):
    """Through an .npz file, the way a checkpoint stores it: every leaf becomes an array."""
    flat = {f"param_groups/{i}/{k}": np.asarray(v) for i, g in enumerate(sd["param_groups"]) for k, v in g.items()}
    flat.update({f"state/{i}/{k}": np.asarray(v) for i, entries in sd["state"].items() for k, v in entries.items()})
    flat.update(optimizer=np.asarray(sd["optimizer"]), options=np.asarray(sd["options"]))
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    buffer.seek(0)
    out = {"state": {}, "param_groups": [{} for _ in sd["param_groups"]]}
    with np.load(buffer) as data:
        out.update(optimizer=str(data["optimizer"]), options=list(data["options"]))
        for key in data.files:
            if "/" not in key:
                continue
            part, index, name = key.split("/")
            target = out["param_groups"][int(index)] if part == "param_groups" else out["state"].setdefault(index, {})
            target[name] = data[key]
    return out


def two_group_optimizer(cls, options, params):
    return cls([{"params": [params[0]]}, {"params": [params[1]], "lr": options["lr"] / 2}], **options)


@pytest.mark.parametrize("through_npz", [False, True], ids=["dict", "npz"])
@pytest.mark.parametrize("cls, options", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip_continues_the_same_trajectory(cls, options, through_npz):
    straight = make_params()
    expected = run(two_group_optimizer(cls, options, straight), straight, 2 * 3)

    first = make_params()
    opt = two_group_optimizer(cls, options, first)
    run(opt, first, 3)
    sd = opt.state_dict()
    assert_flattenable(sd)
    assert sd["param_groups"][1]["params"] == [1]
    resumed = [Parameter(p.numpy().copy()) for p in first]
    opt2 = two_group_optimizer(cls, {**options, "lr": 123.0}, resumed)   # options come from the state dict
    opt2.load_state_dict(npz_round_trip(sd) if through_npz else sd)
    assert opt2.param_groups[1]["lr"] == options["lr"] / 2
    got = run(opt2, resumed, 3)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_state_dict_holds_copies():
    params = make_params()
    opt = Adam(params, lr=0.1)
    run(opt, params, 1)
    sd = opt.state_dict()
    saved = sd["state"][0]["exp_avg"].copy()
    run(opt, params, 1)
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], saved)
    opt.load_state_dict(sd)
    opt.state[params[0]]["exp_avg"] += 1.0
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], saved)


def snapshot(opt):
    sd = opt.state_dict()
    return repr(sd["param_groups"]), {i: {k: np.array(v) for k, v in e.items()} for i, e in sd["state"].items()}


@pytest.mark.parametrize("corrupt, match", [
    (lambda sd: sd.pop("state"), "needs the entries 'optimizer', 'options', 'state' and 'param_groups'"),
    (lambda sd: sd.update(optimizer="AdamW"), "cannot load a state dict of 'AdamW' into Adam"),
    (lambda sd: sd.update(options=["lr", "momentum"]), r"has the options \['lr', 'momentum'\]"),
    (lambda sd: sd["param_groups"][1].pop("eps"), r"param group 1 lacks the options \['eps'\]"),
    (lambda sd: sd["state"][0].update(exp_avg=np.full((3, 4), np.nan)), "'exp_avg'.* holds NaN"),
    (lambda sd: sd["state"][0].update(exp_avg=np.array([["x"] * 4] * 3)), "'exp_avg'.* must be an array"),
    (lambda sd: sd["param_groups"].pop(), "1 param groups, this optimizer has 2"),
    (lambda sd: sd["param_groups"][1].update(params=[1, 2]), "param group 1 has 2 params in the state dict, 1 here"),
    (lambda sd: sd["param_groups"][0].update(params=["x"]), "must be a list of integer indices"),
    (lambda sd: sd["param_groups"][0].update(lr=-1.0), "param group 0: lr must be >= 0"),
    (lambda sd: sd["param_groups"][0].update(betas=(0.9,)), "betas must be a pair"),
    (lambda sd: sd["state"][0].update(exp_avg=np.zeros((4, 3)), exp_avg_sq=np.zeros(2)),
     r"parameter 0 \('exp_avg'\) has shape \(4, 3\), the parameter has \(3, 4\)[\s\S]*'exp_avg_sq'"),
    (lambda sd: sd["state"][1].update(momentum_buffer=np.zeros(4)), "'momentum_buffer'.* is not a state entry of Adam"),
    (lambda sd: sd["state"][1].update(step=-2), r"parameter 1 \('step'\) must be a count >= 0"),
    (lambda sd: sd["state"].update({5: {"step": 1}}), "state for parameter 5 which no param group lists"),
])
def test_invalid_state_dict_raises_before_changing_anything(corrupt, match):
    params = make_params()
    opt = two_group_optimizer(Adam, dict(lr=0.1), params)
    run(opt, params, 2)
    before = snapshot(opt)
    sd = opt.state_dict()
    corrupt(sd)
    with pytest.raises(CheckpointError, match=match):
        opt.load_state_dict(sd)
    after = snapshot(opt)
    assert after[0] == before[0]
    for i in before[1]:
        for k in before[1][i]:
            np.testing.assert_array_equal(after[1][i][k], before[1][i][k])


def test_all_state_dict_mismatches_are_listed_together():
    params = make_params()
    opt = two_group_optimizer(Adam, dict(lr=0.1), params)
    run(opt, params, 1)
    sd = opt.state_dict()
    sd["param_groups"][0]["eps"] = 0.0
    sd["state"][1]["exp_avg"] = np.zeros(5)
    with pytest.raises(ValueError) as info:
        opt.load_state_dict(sd)
    assert "eps must be > 0" in str(info.value) and "has shape (5,)" in str(info.value)


# -- convergence and devices ----------------------------------------------------------------------
@pytest.mark.parametrize("cls, options", [
    (SGD, dict(lr=0.02, momentum=0.9)),
    (SGD, dict(lr=0.02, momentum=0.9, nesterov=True)),
    (Adam, dict(lr=0.05)),
    (AdamW, dict(lr=0.05, weight_decay=0.0, amsgrad=True)),
    (RMSprop, dict(lr=0.01, momentum=0.5, centered=True)),
    (Adagrad, dict(lr=0.5)),
], ids=lambda v: getattr(v, "__name__", None))
def test_converges_on_least_squares(cls, options):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(32, 4))
    y = a @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=32)
    solution = np.linalg.lstsq(a, y, rcond=None)[0]
    w = Parameter(np.zeros(4))
    opt = cls([w], **options)
    a_t, y_t = mr.tensor(a), mr.tensor(y)
    for _ in range(400):
        opt.zero_grad()
        ((a_t @ w - y_t) ** 2).mean().backward()
        opt.step()
    np.testing.assert_allclose(w.numpy(), solution, atol=2e-3)


@pytest.mark.parametrize("cls, options", CONFIGS, ids=CONFIG_IDS)
def test_step_stays_on_the_parameters_device(backend, cls, options):
    # on the fake device (see conftest) any conversion of the data to NumPy raises
    params = make_params(on=backend)
    opt = cls(params, **options)
    got = run(opt, params, 3)
    for p in params:
        assert p.backend is backend and backend.owns(p.data)
        for name, value in opt.state[p].items():
            assert name in opt._count_state or backend.owns(value)
    host = make_params()
    expected = run(cls(host, **options), host, 3)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-11)
    opt.load_state_dict(opt.state_dict())
    assert all(backend.owns(v) for p in params for k, v in opt.state.get(p, {}).items() if k in opt._array_state)


# -- gradients are checked before anything changes (issue 9, items 10 and 12) ---------------------
class Recorder:
    """A post hook that counts its calls (it must not run when step() refuses the gradients)."""
    timing, stage, name = "post", "constraint", "recorder"

    def __init__(self):
        self.calls = 0

    def hook(self, optimizer, group, params):
        self.calls += 1


def frozen(opt, params):
    """Everything a failed step must leave alone: values, versions, optimizer state, counters."""
    return ([p.numpy().copy() for p in params], [p._version for p in params], snapshot(opt),
            opt.skipped_steps)


def assert_same(before, after):
    (values0, versions0, (groups0, state0), skipped0), (values1, versions1, (groups1, state1), skipped1) = before, after
    for v0, v1 in zip(values0, values1):
        np.testing.assert_array_equal(v0, v1)
    assert versions0 == versions1 and groups0 == groups1 and skipped0 == skipped1
    assert state0.keys() == state1.keys()
    for i in state0:
        for k in state0[i]:
            np.testing.assert_array_equal(state0[i][k], state1[i][k])


def foreign_grad(p):
    from minireg.testing.devices import fake_device
    return mr.Tensor(fake_device().asarray(np.zeros(p.shape)))


BAD_GRADS = [
    (lambda p: mr.Tensor(np.zeros((2,) + p.shape)), ShapeError, r"the gradient has shape \(2, 4\), the parameter \(4,\)"),
    (lambda p: mr.Tensor(np.zeros(p.shape, np.float32)), DTypeError, "the gradient has dtype float32, the parameter float64"),
    (foreign_grad, DeviceError, "the gradient is on fake:device1, the parameter on cpu"),
    (lambda p: mr.Tensor(np.array([0.0, np.nan, 1.0, 0.0])), NonFiniteError, "NaN or infinite gradient for param group 1, parameter 0"),
    (lambda p: mr.Tensor(np.array([0.0, -np.inf, 1.0, 0.0])), NonFiniteError, "nothing was updated"),
    (lambda p: np.zeros(p.shape), ArgumentTypeError, "the gradient is a ndarray, expected a Tensor"),
]


@pytest.mark.parametrize("bad, error, match", BAD_GRADS, ids=lambda v: getattr(v, "__name__", None))
@pytest.mark.parametrize("cls", [SGD, Adam, RMSprop, Adagrad])
def test_a_bad_gradient_on_the_second_parameter_changes_nothing(cls, bad, error, match):
    params = make_params()
    opt = two_group_optimizer(cls, dict(lr=0.1), params)
    recorder = opt.add_hook(Recorder())
    run(opt, params, 2)                       # state and step counters exist
    calls = recorder.calls
    before = frozen(opt, params)
    set_grads(params)
    params[1].grad = bad(params[1])
    with pytest.raises(error, match=match):
        opt.step()
    assert_same(before, frozen(opt, params))
    assert recorder.calls == calls


def test_gradient_errors_name_the_group_index_and_parameter_name():
    w, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    b.name = "fc.bias"
    opt = SGD([{"params": [w]}, {"params": [b]}], lr=0.1)
    w.grad, b.grad = mr.Tensor(np.ones(3)), mr.Tensor(np.ones(3))
    with pytest.raises(ShapeError, match=r"SGD.step: param group 1, parameter 0 \('fc.bias'\): the gradient has "
                                         r"shape \(3,\), the parameter \(2,\)"):
        opt.step()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the NaN/inf gradient is made on purpose
def test_a_nan_gradient_with_a_finite_loss_never_reaches_the_weights():
    w = Parameter(np.array([1.0, 2.0]))
    opt = Adam([w], lr=0.1)
    loss = mr.sqrt(w * w - mr.tensor([1.0, 0.0])).sum()    # sqrt(0) = 0 is finite, its gradient is not
    assert np.isfinite(loss.item())
    loss.backward()
    with pytest.raises(NonFiniteError, match="parameter 0"):
        opt.step()
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    assert opt.state == {}


def test_nonfinite_skip_skips_the_whole_step_and_counts_it():
    params = make_params()
    opt = two_group_optimizer(Adam, dict(lr=0.1), params)
    opt.nonfinite = "skip"
    run(opt, params, 1)
    before = frozen(opt, params)
    set_grads(params)
    params[0].grad = mr.Tensor(np.full(params[0].shape, np.inf))
    opt.step()
    assert opt.skipped_steps == 1
    assert_same((*before[:3], 0), (*frozen(opt, params)[:3], 0))
    run(opt, params, 1)                       # finite gradients step again
    assert opt.state[params[0]]["step"] == 2 and opt.skipped_steps == 1
    with pytest.raises(ArgumentError, match="nonfinite must be one of 'raise', 'skip'"):
        opt.nonfinite = "ignore"


def test_step_bumps_the_version_of_each_updated_parameter_once():
    params = make_params()
    opt = SGD(params, lr=0.1)
    opt.add_hook(Recorder())
    set_grads(params)
    params[1].grad = None                     # no gradient: not updated, version unchanged
    opt.step()
    assert [p._version for p in params] == [1, 0]


def test_the_finiteness_check_stays_on_the_device(backend):
    params = make_params(on=backend)
    opt = Adam(params, lr=0.1)
    run(opt, params, 1)
    params[0].grad = mr.Tensor(backend.asarray(np.full(params[0].shape, np.nan)))
    with pytest.raises(NonFiniteError):
        opt.step()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")    # the summing screen, on purpose
def test_finite_gradients_whose_sum_overflows_still_step(backend):
    # The generic screen (a sum of sums) overflows here; the elementwise check then decides, so the
    # step is taken: a second read on a device (with the compiled table: one exact pass, no overflow).
    params = make_params(np.float32, on=backend)
    huge = np.finfo(np.float32).max
    opt = SGD(params, lr=1 / huge)
    for p in params:
        p.grad = mr.Tensor(backend.asarray(np.full(p.shape, huge, np.float32)))
    opt.step()
    for p, init in zip(params, INIT):
        np.testing.assert_allclose(p.numpy(), init.astype(np.float32) - 1, rtol=1e-6)


class PerParameterAdamW(AdamW):
    """AdamW stepping each parameter alone (the base class's loop over ``_update``: one
    ``adamw_prox_step_`` per parameter), the reference of the multi-tensor group step."""

    def _update_group(self, group, params, attached):
        return Optimizer._update_group(self, group, params, attached)


class PerParameterAdam(Adam):
    _update_group = PerParameterAdamW._update_group


def mixed_params():
    """Six parameters of two dtypes and five shapes (a float64 one among float32 ones)."""
    rng = np.random.default_rng(5)
    shapes = [(5, 7), (7,), (7, 3), (3,), (2, 3, 4), ()]
    return [Parameter(rng.normal(size=shape).astype(np.float64 if i == 2 else np.float32))
            for i, shape in enumerate(shapes)]


def mixed_run(cls, params, options, steps=4):
    """Steps with seeded gradients; parameter 3 has none at step 2, so its step count lags; an L1
    attached in mode "prox_lr" to parameter 0 is fused into its own kernel call; parameter 2's
    max-norm constraint (a projection after the update) leaves it in the group's kernel call."""
    opt = cls(params, **options)
    mr.reg.attach(params[0], mr.reg.L1(0.01), mode="prox_lr")
    mr.reg.attach(params[2], mr.reg.MaxNorm(0.5))
    rng = np.random.default_rng(6)
    for step in range(steps):
        for i, p in enumerate(params):
            g = rng.normal(size=p.shape).astype(p.numpy().dtype)
            p.grad = None if (i == 3 and step == 1) else mr.Tensor(g)
        opt.step()
    return opt


@pytest.mark.parametrize("multi, single, options", [
    (AdamW, PerParameterAdamW, dict(lr=0.05, weight_decay=0.1)),
    (Adam, PerParameterAdam, dict(lr=0.05, weight_decay=0.1, betas=(0.5, 0.9))),
    (Adam, PerParameterAdam, dict(lr=0.05, amsgrad=True)),
], ids=["AdamW", "Adam-coupled-decay", "Adam-amsgrad"])
def test_adam_group_step_is_bitwise_the_per_parameter_kernels(monkeypatch, multi, single, options):
    expected_params, got_params = mixed_params(), mixed_params()
    expected = mixed_run(single, expected_params, options)
    kernels = got_params[0].backend.kernels
    calls = []
    original = kernels.adamw_prox_steps_
    monkeypatch.setattr(kernels, "adamw_prox_steps_", lambda ws, *a: calls.append(len(ws)) or original(ws, *a))
    got = mixed_run(multi, got_params, options)
    assert [p._version for p in got_params] == [q._version for q in expected_params]
    assert [p._version for p in got_params[1:]] == [4, 4, 3, 4, 4]      # one bump per step taken
    assert np.linalg.norm(got_params[2].numpy(), axis=1).max() <= 0.5 * (1 + 1e-12)
    for p, q in zip(got_params, expected_params):
        assert p.numpy().tobytes() == q.numpy().tobytes()
    assert got.state_dict()["param_groups"] == expected.state_dict()["param_groups"]
    for i, entries in expected.state_dict()["state"].items():
        assert got.state_dict()["state"][i].keys() == entries.keys()
        for name, value in entries.items():
            assert np.asarray(got.state_dict()["state"][i][name]).tobytes() == np.asarray(value).tobytes()
    # one call for the five unregularized parameters; at step 2 parameter 3 sits out, and from step
    # 3 on it is one step behind: a call of its own
    assert calls == ([] if options.get("amsgrad") else [5, 4, 4, 1, 4, 1])


@pytest.mark.parametrize("options", [
    dict(lr=0.1), dict(lr=0.1, weight_decay=0.01), dict(lr=0.1, momentum=0.9, dampening=0.2),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
], ids=["plain", "decay", "momentum-dampening", "nesterov-decay"])
def test_sgd_group_step_is_bitwise_the_per_parameter_numpy_step(monkeypatch, options):
    """SGD's multi-tensor step against the per-parameter NumPy code it replaced; parameter 3 gets
    its first gradient at step 2, so its buffer starts a step late (a call of its own then)."""
    params = mixed_params()
    host = [p.numpy().copy() for p in params]
    bufs = [None] * len(params)
    momentum, dampening = options.get("momentum", 0.0), options.get("dampening", 0.0)
    kernels = params[0].backend.kernels
    calls = []
    original = kernels.sgd_steps_
    monkeypatch.setattr(kernels, "sgd_steps_", lambda ws, *a: calls.append(len(ws)) or original(ws, *a))
    opt = SGD(params, **options)
    rng = np.random.default_rng(8)
    for step in range(3):
        for i, p in enumerate(params):
            g = rng.normal(size=p.shape).astype(host[i].dtype)
            p.grad = None if (i == 3 and step == 0) else mr.Tensor(g)
            if p.grad is None:
                continue
            if options.get("weight_decay"):
                g = g + options["weight_decay"] * host[i]
            if momentum:
                if bufs[i] is None:
                    bufs[i] = g.copy()
                else:
                    bufs[i] *= momentum
                    bufs[i] += (1 - dampening) * g
                g = g + momentum * bufs[i] if options.get("nesterov") else bufs[i]
            host[i] -= options["lr"] * g
        opt.step()
    for p, w in zip(params, host):
        assert p.numpy().tobytes() == w.tobytes()
    if momentum:
        assert all(opt.state[p]["momentum_buffer"].tobytes() == b.tobytes() for p, b in zip(params, bufs))
    assert calls == ([5, 5, 1, 6] if momentum else [5, 6, 6])


@pytest.mark.parametrize("hook, error, match", [
    (type("NoTiming", (), {"hook": lambda self, o, g, p: None})(), ArgumentError, "must declare timing 'pre'"),
    (type("BadStage", (), {"timing": "pre", "stage": "prox", "hook": lambda s, o, g, p: None})(), ArgumentError,
     "so its stage must be one of"),
    (type("NoMethod", (), {"timing": "post", "stage": "constraint"})(), ArgumentTypeError, "has no method hook"),
])
def test_bad_hooks_raise_minireg_errors(hook, error, match):
    opt = SGD(make_params(), lr=0.1)
    with pytest.raises(error, match=match):
        opt.add_hook(hook)
    with pytest.raises(ArgumentError, match="is not registered"):
        opt.remove_hook(hook)
    assert opt.hooks == ()


def test_an_adamw_state_does_not_load_into_sgd():
    params = make_params()
    adamw = AdamW(params, lr=0.1)
    run(adamw, params, 2)
    sgd = SGD(params, lr=0.1, momentum=0.9)
    run(sgd, params, 1)
    before = snapshot(sgd)
    with pytest.raises(CheckpointError, match="cannot load a state dict of 'AdamW' into SGD"):
        sgd.load_state_dict(adamw.state_dict())
    sd = adamw.state_dict()
    sd["optimizer"] = "SGD"                      # a relabelled state still has AdamW's options
    with pytest.raises(CheckpointError, match=r"the state dict has the options \['amsgrad', 'betas'"):
        sgd.load_state_dict(sd)
    assert snapshot(sgd)[0] == before[0]
