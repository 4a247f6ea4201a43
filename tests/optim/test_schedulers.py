"""Schedules against their closed forms, any-option scheduling, ReduceLROnPlateau, state dicts."""
import math

import numpy as np
import pytest

import minireg as mr
from minireg.errors import ArgumentError, ArgumentTypeError, CheckpointError
from minireg.nn import Parameter
from minireg.optim import SGD, AdamW
from minireg.optim.lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, LinearLR, ReduceLROnPlateau,
                                        SequentialLR, StepLR, warmup_cosine)

BASES = [0.1, 0.02]
EPOCHS = 12


def make_optimizer(cls=SGD, **options):
    groups = [{"params": [Parameter(np.ones(2))], "lr": BASES[0]}, {"params": [Parameter(np.ones(3))], "lr": BASES[1]}]
    return cls(groups, **options)


SCHEDULES = {
    "step": (lambda opt: StepLR(opt, step_size=3, gamma=0.5), lambda base, e: base * 0.5 ** (e // 3)),
    "exponential": (lambda opt: ExponentialLR(opt, gamma=0.9), lambda base, e: base * 0.9 ** e),
    "cosine": (lambda opt: CosineAnnealingLR(opt, T_max=8, eta_min=0.001),
               lambda base, e: 0.001 + (base - 0.001) * (1 + math.cos(math.pi * e / 8)) / 2),
    "linear": (lambda opt: LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=4),
               lambda base, e: base * (0.25 + 0.75 * min(e, 4) / 4)),
    "lambda": (lambda opt: LambdaLR(opt, lambda e: 1 / (1 + e)), lambda base, e: base / (1 + e)),
    "warmup_cosine": (lambda opt: warmup_cosine(opt, warmup_steps=3, total_steps=10, start_factor=0.1),
                      lambda base, e: base * (0.1 + 0.9 * e / 3) if e < 3
                      else base * (1 + math.cos(math.pi * (e - 3) / 7)) / 2),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_follows_its_closed_form(name):
    make, formula = SCHEDULES[name]
    opt = make_optimizer()
    scheduler = make(opt)
    for epoch in range(EPOCHS):     # construction takes the step to epoch 0
        expected = [formula(base, epoch) for base in BASES]
        assert scheduler.last_epoch == epoch
        assert scheduler.get_last_lr() == pytest.approx(expected, rel=1e-12)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(expected, rel=1e-12)
        scheduler.step()
    assert [g["initial_lr"] for g in opt.param_groups] == BASES


def test_lambda_lr_takes_one_function_per_group():
    opt = make_optimizer()
    scheduler = LambdaLR(opt, [lambda e: 1.0, lambda e: 2.0 ** e])
    scheduler.step()
    scheduler.step()
    assert scheduler.get_last_lr() == pytest.approx([BASES[0], BASES[1] * 4])
    with pytest.raises(ArgumentError, match="got 3 functions for 2 param groups"):
        LambdaLR(opt, [lambda e: 1.0] * 3)


def test_any_numeric_option_can_follow_a_schedule():
    opt = make_optimizer(AdamW, weight_decay=0.1)
    scheduler = ExponentialLR(opt, 0.5, param_name="weight_decay")
    scheduler.step()
    scheduler.step()
    assert [g["weight_decay"] for g in opt.param_groups] == pytest.approx([0.025, 0.025])
    assert [g["initial_weight_decay"] for g in opt.param_groups] == [0.1, 0.1]
    assert [g["lr"] for g in opt.param_groups] == BASES
    # the optimizer uses the scheduled value: same result as an AdamW built with it
    fresh = make_optimizer(AdamW, weight_decay=0.025)
    for o in (opt, fresh):
        for group in o.param_groups:
            group["params"][0].grad = mr.tensor(np.full(group["params"][0].shape, 0.5))
        o.step()
    for a, b in zip(opt.param_groups, fresh.param_groups):
        np.testing.assert_array_equal(a["params"][0].numpy(), b["params"][0].numpy())


def test_schedule_needs_a_numeric_option():
    opt = make_optimizer(AdamW)
    with pytest.raises(ArgumentError, match="param group 0 has no option 'momentum' to schedule"):
        StepLR(opt, 2, param_name="momentum")
    with pytest.raises(ArgumentTypeError, match="can only schedule a number"):
        StepLR(opt, 2, param_name="betas")


@pytest.mark.parametrize("make, error, match", [
    (lambda opt: StepLR(opt, step_size=0), ArgumentError, "step_size must be an integer >= 1"),
    (lambda opt: CosineAnnealingLR(opt, T_max=2.5), ArgumentTypeError, "CosineAnnealingLR: T_max must be an integer"),
    (lambda opt: CosineAnnealingLR(opt, T_max=np.int64(0)), ArgumentError, "T_max must be an integer >= 1"),
    (lambda opt: LinearLR(opt, start_factor=-0.1), ArgumentError, "LinearLR: start_factor must be >= 0, got -0.1"),
    (lambda opt: SequentialLR(opt, [StepLR(opt, 2), StepLR(opt, 3)], milestones=[]), ArgumentError,
     "2 schedulers need 1 milestones"),
    (lambda opt: SequentialLR(opt, [], milestones=[]), ArgumentError, "at least one scheduler"),
    (lambda opt: SequentialLR(opt, [StepLR(opt, 2), StepLR(make_optimizer(), 3)], milestones=[2]), ArgumentError,
     "same optimizer"),
    (lambda opt: warmup_cosine(opt, 5, 5), ArgumentError, "total_steps .5. must exceed warmup_steps"),
    (lambda opt: ReduceLROnPlateau(opt, factor=1.0), ArgumentError, r"factor must be in \[0, 1\)"),
    (lambda opt: ReduceLROnPlateau(opt, mode="lowest"), ArgumentError, "mode must be one of 'min', 'max'; got 'lowest'"),
    (lambda opt: ReduceLROnPlateau(opt, min_lr=[0.1]), ArgumentError, "got 1 min_lr values for 2 param groups"),
    (lambda opt: StepLR(opt, 2, last_epoch=4), ArgumentError, "needs 'initial_lr' in every param group"),
    (lambda opt: StepLR(opt, 2, gamma="0.5"), ArgumentTypeError, "StepLR: gamma must be a real number"),
    (lambda opt: ExponentialLR(opt, gamma=-0.5), ArgumentError, "ExponentialLR: gamma must be >= 0"),
    (lambda opt: StepLR(opt, 2, last_epoch=-2), ArgumentError, "last_epoch must be an integer >= -1"),
    (lambda opt: LambdaLR(opt, 0.5), ArgumentTypeError, "lr_lambda 0 must be a function"),
    (lambda opt: StepLR(None, 2), ArgumentTypeError, "optimizer must be a minireg optimizer"),
    (lambda opt: ReduceLROnPlateau(opt, patience=-1), ArgumentError, "patience must be an integer >= 0"),
])
def test_invalid_scheduler_arguments_raise(make, error, match):
    with pytest.raises(error, match=match):
        make(make_optimizer())


def test_reduce_on_plateau_with_patience_cooldown_and_min_lr():
    opt = make_optimizer()
    opt.param_groups[0]["lr"] = 1.0
    scheduler = ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=[0.3, 0.0])
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.5]
    seen = []
    for metric in metrics:
        scheduler.step(mr.tensor(metric) if metric == 0.5 else metric)
        seen.append(scheduler.get_last_lr())
    first = [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3]
    second = [0.02, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005]
    assert seen == [list(pair) for pair in zip(first, second)]
    assert scheduler.best == 0.5 and scheduler.last_epoch == len(metrics)


@pytest.mark.parametrize("mode, threshold_mode, best, better, worse", [
    ("min", "rel", 1.0, 0.89, 0.91),     # better: < best * (1 - 0.1)
    ("min", "abs", 1.0, 0.89, 0.91),     # better: < best - 0.1
    ("max", "rel", 2.0, 2.21, 2.19),     # better: > best * (1 + 0.1)
    ("max", "abs", 2.0, 2.11, 2.09),     # better: > best + 0.1
])
def test_plateau_thresholds(mode, threshold_mode, best, better, worse):
    scheduler = ReduceLROnPlateau(make_optimizer(), mode=mode, threshold=0.1, threshold_mode=threshold_mode)
    assert scheduler.is_better(better, best) and not scheduler.is_better(worse, best)


def assert_flattenable(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            assert_flattenable(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            assert_flattenable(value)
    else:
        assert isinstance(obj, (int, float, str)), type(obj)


RESUMABLE = {
    **{name: make for name, (make, _) in SCHEDULES.items()},
    "plateau": lambda opt: ReduceLROnPlateau(opt, factor=0.5, patience=1),
}
PLATEAU_METRICS = [1.0, 0.5, 0.6, 0.7, 0.4, 0.45, 0.5, 0.55, 0.3, 0.3]


def advance(scheduler, epochs):
    for epoch in epochs:
        scheduler.step(PLATEAU_METRICS[epoch]) if isinstance(scheduler, ReduceLROnPlateau) else scheduler.step()
    return scheduler.get_last_lr()


@pytest.mark.parametrize("name", RESUMABLE)
def test_scheduler_state_dict_resumes_the_same_schedule(name):
    make = RESUMABLE[name]
    straight = make(make_optimizer())
    trace = [advance(straight, [epoch]) for epoch in range(len(PLATEAU_METRICS))]

    opt = make_optimizer()
    first = make(opt)
    advance(first, range(4))
    saved_opt, saved = opt.state_dict(), first.state_dict()
    assert_flattenable(saved)

    opt2 = make_optimizer()
    opt2.load_state_dict(saved_opt)
    resumed = make(opt2)
    resumed.load_state_dict(saved)
    assert [g["lr"] for g in opt2.param_groups] == trace[3]
    assert [advance(resumed, [epoch]) for epoch in range(4, len(PLATEAU_METRICS))] == trace[4:]


@pytest.mark.parametrize("corrupt, match", [
    (lambda sd: {"last_epoch": 3, "scheduler": "StepLR"}, "expected the entries"),
    (lambda sd: {**sd, "scheduler": "ExponentialLR"}, "the state dict is of 'ExponentialLR', not StepLR"),
    (lambda sd: {**sd, "last_epoch": "x"}, "last_epoch must be an integer"),
    (lambda sd: {**sd, "last_values": [0.1]}, "last_values must be a list of 2 values"),
    (lambda sd: {**sd, "param_name": "momentum"}, "param_name is 'momentum' in the state dict, 'lr' here"),
])
def test_scheduler_load_state_dict_refuses_bad_states_and_changes_nothing(corrupt, match):
    opt = make_optimizer()
    scheduler = StepLR(opt, 2)
    advance(scheduler, range(3))
    before, lrs = scheduler.state_dict(), [g["lr"] for g in opt.param_groups]
    with pytest.raises(CheckpointError, match=match):
        scheduler.load_state_dict(corrupt(scheduler.state_dict()))
    assert scheduler.state_dict() == before and [g["lr"] for g in opt.param_groups] == lrs


def test_sequential_load_state_dict_checks_every_inner_state_before_assigning():
    sequence = warmup_cosine(make_optimizer(), 2, 5)
    with pytest.raises(CheckpointError, match="1 saved schedulers, 2 here"):
        sequence.load_state_dict({**sequence.state_dict(), "schedulers": [{}]})
    advance(sequence, range(3))
    before = sequence.state_dict()
    bad = sequence.state_dict()
    bad["schedulers"][1]["T_max"] = -1.5
    with pytest.raises(CheckpointError, match="T_max must be an integer"):
        sequence.load_state_dict(bad)
    assert sequence.state_dict() == before


def test_scheduler_state_survives_a_checkpoint_file(tmp_path):
    model = mr.nn.Linear(2, 1)
    opt = SGD(model.parameters(), lr=0.1)
    scheduler = StepLR(opt, 2, gamma=0.5)
    advance(scheduler, range(3))
    path = mr.save(tmp_path / "ck.npz", model, opt, schedulers=[scheduler])
    opt2 = SGD(model.parameters(), lr=0.1)
    resumed = StepLR(opt2, 2, gamma=0.5)          # restarts at the first rate...
    mr.load(path, model, opt2, schedulers=[resumed])
    assert resumed.last_epoch == 3 and opt2.param_groups[0]["lr"] == 0.1 * 0.5   # ...until loaded
    resumed.step()
    scheduler.step()
    assert resumed.get_last_lr() == scheduler.get_last_lr() == [0.025]


@pytest.mark.parametrize("make, text", [
    (lambda opt: StepLR(opt, 3, 0.5), "StepLR(step_size=3, gamma=0.5, param_name='lr'; last_epoch=0, lr=[0.1, 0.02])"),
    (lambda opt: ExponentialLR(opt, 0.9, param_name="lr"), "ExponentialLR(gamma=0.9, param_name='lr'; last_epoch=0"),
    (lambda opt: warmup_cosine(opt, 3, 10), "SequentialLR([LinearLR(start_factor=0.0, end_factor=1.0, total_iters=3, "
     "param_name='lr'), CosineAnnealingLR(T_max=7, eta_min=0.0, param_name='lr')], milestones=[3]; last_epoch=0"),
    (lambda opt: ReduceLROnPlateau(opt, patience=2), "ReduceLROnPlateau(mode='min', factor=0.1, patience=2,"),
])
def test_scheduler_reprs_show_settings_and_position(make, text):
    assert text in repr(make(make_optimizer()))


def test_resuming_with_last_epoch_uses_the_saved_initial_value():
    opt = make_optimizer()
    StepLR(opt, 2, gamma=0.5)
    saved = opt.state_dict()
    opt2 = make_optimizer()
    opt2.param_groups[0]["lr"] = 7.0
    opt2.load_state_dict(saved)
    resumed = StepLR(opt2, 2, gamma=0.5, last_epoch=4)
    assert resumed.last_epoch == 5
    assert resumed.get_last_lr() == pytest.approx([b * 0.25 for b in BASES])
