"""Capacity budgets: counting rules, limits met exactly, errors that give the numbers and the layer,
and BudgetedSequential refusing to grow (nothing changes when it refuses)."""
import numpy as np
import pytest

from minireg.errors import MiniregError
from minireg.nn import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, ReLU, Sequential
from minireg.reg.capacity import BudgetedSequential, CapacityBudget, CapacityError, CapacityUsage


def mlp():
    """25 + 12 = 37 parameters in 2 layers; ReLU and Dropout are not layers."""
    return Sequential(Linear(4, 5), ReLU(), Dropout(0.5), Linear(5, 2))


def test_exactly_at_the_limits_is_fine():
    assert CapacityBudget(max_params=37, max_layers=2).check(mlp()) == CapacityUsage(37, 2)
    assert CapacityBudget(max_params=37).check(mlp()) == (37, 2)
    assert CapacityBudget(max_layers=2).usage(Sequential()) == (0, 0)


def test_one_parameter_too_many_names_the_limit_the_count_and_the_layer():
    with pytest.raises(CapacityError) as info:
        CapacityBudget(max_params=36).check(mlp())
    message = str(info.value)
    assert "37 parameters, over max_params=36" in message
    assert "layer '3' (Linear(in_features=5, out_features=2, bias=True)) took the count from 25 to 37" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, MiniregError)


def test_one_layer_too_many_names_the_limit_the_count_and_the_layer():
    with pytest.raises(CapacityError, match=r"2 layers \(modules that own parameters\), over max_layers=1: "
                                            r"layer '3' \(Linear\(.*\)\) is layer 2"):
        CapacityBudget(max_layers=1).check(mlp())


def test_both_limits_are_reported_together():
    with pytest.raises(CapacityError, match="max_params=10.*max_layers=1"):
        CapacityBudget(max_params=10, max_layers=1).check(mlp())


def test_conv_and_batch_norm_are_layers_and_buffers_are_not_parameters():
    model = Sequential(Conv2d(1, 2, 3), BatchNorm2d(2), Flatten())
    assert CapacityBudget(max_layers=2).check(model) == (2 * 9 + 2 + 2 + 2, 2)


def test_shared_parameters_count_once_and_frozen_ones_count():
    first, second = Linear(3, 3, bias=False), Linear(3, 3, bias=False)
    second.weight = first.weight
    second.weight.requires_grad_(False)
    assert CapacityBudget(max_params=9).check(Sequential(first, second)) == (9, 2)


def test_nested_layers_are_named_by_their_dotted_path():
    model = Sequential(Linear(2, 2), Sequential(ReLU(), Linear(2, 4)))
    with pytest.raises(CapacityError, match=r"layer '1\.1' \(Linear.*from 6 to 18"):
        CapacityBudget(max_params=17).check(model)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_params": -1}, "max_params must be None .* or an integer >= 0, got -1"),
    ({"max_params": 1.5}, "max_params must be None .* or an integer >= 0, got 1.5"),
    ({"max_layers": True}, "max_layers must be None .* or an integer >= 0, got True"),
    ({}, "needs max_params and/or max_layers"),
])
def test_invalid_budgets_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CapacityBudget(**kwargs)


def test_budgeted_sequential_builds_within_the_budget_and_refuses_beyond():
    model = BudgetedSequential(*mlp(), budget=CapacityBudget(max_params=37))
    assert len(model) == 4 and model.num_parameters() == 37
    with pytest.raises(CapacityError, match="37 parameters, over max_params=36"):
        BudgetedSequential(*mlp(), budget=CapacityBudget(max_params=36))
    named = BudgetedSequential({"hidden": Linear(4, 5), "out": Linear(5, 2)}, budget=CapacityBudget(max_layers=2))
    assert [name for name, _ in named.named_children()] == ["hidden", "out"]
    with pytest.raises(TypeError, match="budget must be a CapacityBudget, got int"):
        BudgetedSequential(Linear(2, 2), budget=10)


def test_append_beyond_the_budget_raises_and_leaves_the_model_unchanged():
    model = BudgetedSequential(Linear(4, 5), ReLU(), budget=CapacityBudget(max_params=37, max_layers=2))
    model.append(Linear(5, 2))                               # exactly at both limits
    state = model.state_dict()
    with pytest.raises(CapacityError, match=r"layer '3' \(Linear\(in_features=2, out_features=1.*from 37 to 40"):
        model.append(Linear(2, 1))
    assert len(model) == 3 and model.num_parameters() == 37
    assert list(model.state_dict()) == list(state)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[key])
    model.append(ReLU())                                     # parameter-free modules always fit
    assert len(model) == 4


def test_assigning_a_module_or_a_smaller_budget_is_checked_too():
    model = BudgetedSequential(Linear(4, 5), budget=CapacityBudget(max_layers=1))
    with pytest.raises(CapacityError, match="layer 'head'"):
        model.head = Linear(5, 1)
    assert not hasattr(model, "head") and len(model) == 1
    model.act = ReLU()
    with pytest.raises(CapacityError, match="over max_params=10"):
        model.budget = CapacityBudget(max_params=10)
    assert model.budget.max_layers == 1 and model.budget.max_params is None
    assert "budget=CapacityBudget(max_params=None, max_layers=1)" in repr(model)
