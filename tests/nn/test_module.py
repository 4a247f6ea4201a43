"""Module registration, traversal, modes, devices, state dicts and printing."""
import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.errors import ArgumentTypeError, CheckpointError, DTypeError
from minireg.testing.devices import fake_device

rng = np.random.default_rng(0)


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4)
        self.out = nn.Linear(4, 2)
        self.scale = 2.0   # plain attributes are not registered

    def forward(self, x):
        return self.out(mr.relu(self.norm(self.hidden(x)))) * self.scale


def test_registration_and_traversal_order():
    model = TwoLayer()
    assert [n for n, _ in model.named_parameters()] == [
        "hidden.weight", "hidden.bias", "norm.weight", "norm.bias", "out.weight", "out.bias"]
    assert [n for n, _ in model.named_buffers()] == ["norm.running_mean", "norm.running_var"]
    assert [type(c).__name__ for c in model.children()] == ["Linear", "BatchNorm1d", "Linear"]
    assert model.num_parameters() == 3 * 4 + 4 + 4 + 4 + 4 * 2 + 2
    assert model.scale == 2.0 and "scale" not in dict(model.named_parameters())


def test_shared_parameters_are_listed_once():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2


def test_reassigning_replaces_the_registration():
    model = TwoLayer()
    model.out = nn.Linear(4, 5)
    assert model.out.out_features == 5
    model.out = None
    assert "out" not in dict(model.named_children())


def test_train_eval_propagate():
    model = TwoLayer().eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_state_dict_round_trip_and_atomic_failure():
    mr.manual_seed(0)
    a, b = TwoLayer(), TwoLayer()
    b.load_state_dict(a.state_dict())
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
    before = {k: v.copy() for k, v in b.state_dict().items()}
    bad = a.state_dict()
    bad["out.weight"] = np.zeros((3, 3))
    bad["extra"] = np.zeros(1)
    del bad["hidden.bias"]
    with pytest.raises(CheckpointError) as info:
        b.load_state_dict(bad)
    message = str(info.value)
    assert "missing keys: ['hidden.bias']" in message and "unexpected keys: ['extra']" in message
    assert "out.weight: checkpoint (3, 3) vs model (2, 4)" in message
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, before[k])   # nothing changed


def test_state_dict_is_a_copy_and_keeps_dtype():
    model = nn.Linear(2, 2, dtype="float64")
    sd = model.state_dict()
    sd["weight"][:] = 7.0
    assert not np.any(model.weight.numpy() == 7.0)
    assert sd["weight"].dtype == np.float64


def test_zero_grad_and_to_device():
    model = TwoLayer()
    model(mr.tensor(np.ones((5, 3), np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    params = list(model.parameters())
    model.to(fake_device())
    assert all(a is b for a, b in zip(model.parameters(), params))   # same objects: optimizers keep working
    assert all(t.backend is fake_device() for t in list(model.parameters()) + list(model.buffers()))
    x = mr.tensor(fake_device().asarray(np.ones((5, 3), np.float32)))
    model(x).sum().backward()
    assert model.hidden.weight.grad.backend is fake_device()


def test_repr_shows_structure_and_parameter_counts():
    text = repr(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)))
    assert "(0): Linear(in_features=64, out_features=256, bias=True)  # 16,640 params" in text
    assert "(1): ReLU()" in text
    assert text.endswith("# 19,210 params")


def test_module_misuse_is_reported():
    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Linear(1, 1)
    with pytest.raises(AttributeError, match="super"):
        Forgot()
    with pytest.raises(ArgumentTypeError, match="Sequential: entry '1' must be a Module, got function"):
        nn.Sequential(nn.Linear(1, 1), lambda x: x)


# -- load_state_dict: everything is checked, then everything is written ---------------------------

def mlp():
    mr.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2), nn.BatchNorm1d(2))


@pytest.mark.parametrize("bad_value, problem", [
    (np.array(["x", "y"]), "1.bias: values of dtype <U1 cannot be cast to the model's float32"),
    (np.array([1 + 2j, 3j]), "1.bias: values of dtype complex128 cannot be cast"),
    (np.array([object(), object()]), "1.bias: values of dtype object cannot be cast"),
    ("ab", "1.bias: expected an array, got str"),
    ({"a": 1}, "1.bias: expected an array, got dict"),
    ([[1.0], [2.0, 3.0]], "1.bias: not an array"),
])
def test_a_bad_value_after_good_ones_changes_nothing(bad_value, problem):
    model, source = mlp(), mlp()
    for p in source.parameters():
        p.data = p.data + 1.0                  # every good entry differs from the model
    state = source.state_dict()
    state["1.bias"] = bad_value                # after the good 0.weight, 0.bias, 1.weight
    before = {k: v.copy() for k, v in model.state_dict().items()}
    versions = [t._version for t in model._state_tensors().values()]
    with pytest.raises(CheckpointError) as info:
        model.load_state_dict(state)
    assert isinstance(info.value, ValueError)
    assert problem in str(info.value) and "nothing was changed" in str(info.value)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert [t._version for t in model._state_tensors().values()] == versions


def test_every_problem_is_listed_at_once():
    model, state = mlp(), mlp().state_dict()
    state["0.weight"] = np.zeros((5, 5))
    state["1.bias"] = np.array(["x", "y"])
    del state["2.running_var"]
    state["extra"] = np.zeros(1)
    with pytest.raises(CheckpointError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing keys: ['2.running_var']" in message and "unexpected keys: ['extra']" in message
    assert "0.weight: checkpoint (5, 5) vs model (2, 3)" in message and "1.bias: values of dtype <U1" in message


def test_loading_writes_in_place_casts_and_bumps_versions():
    model, source = mlp(), mlp()
    for p in source.parameters():
        p.data = p.data * 3.0
    arrays = {k: t.data for k, t in model._state_tensors().items()}
    versions = {k: t._version for k, t in model._state_tensors().items()}
    state = {k: v.astype(np.float64) for k, v in source.state_dict().items()}   # float64 into float32: same kind
    state["2.running_mean"] = np.array([1, 2])                                  # integers into float32
    assert model.load_state_dict(state) == {"missing_keys": [], "unexpected_keys": []}
    for key, t in model._state_tensors().items():
        assert t.data is arrays[key] and t.dtype == np.float32          # the same arrays, written into
        assert t._version == versions[key] + 1
        np.testing.assert_array_equal(t.numpy(), np.asarray(state[key]).astype(np.float32))


def test_integer_buffers_refuse_floats_and_non_strict_loads_skip_missing_keys():
    model = nn.Linear(2, 2)
    model.register_buffer("steps", mr.tensor(np.array([3], dtype=np.int64)))
    with pytest.raises(CheckpointError, match="steps: values of dtype float64 cannot be cast to the model's int64"):
        model.load_state_dict({**model.state_dict(), "steps": np.array([1.5])})
    assert model.load_state_dict({"steps": np.array([5])}, strict=False)["missing_keys"] == ["weight", "bias"]
    assert model.steps.numpy().tolist() == [5]
    with pytest.raises(ArgumentTypeError, match="state_dict must be a mapping of names to arrays, got list"):
        model.load_state_dict([("weight", np.zeros((2, 2)))])


def test_loading_on_a_device_keeps_the_data_there():
    device = fake_device()
    model = mlp().to(device)
    source = mlp()
    for p in source.parameters():
        p.data = p.data - 1.0
    model.load_state_dict(source.state_dict())                 # host arrays go to the device
    assert all(t.backend is device for t in model._state_tensors().values())
    np.testing.assert_array_equal(model[0].weight.numpy(), source[0].weight.numpy())
    on_device = {k: mr.tensor(device.asarray(v * 2)) for k, v in source.state_dict().items()}
    model.load_state_dict(on_device)                            # device Tensors stay on the device
    np.testing.assert_array_equal(model[1].bias.numpy(), source[1].bias.numpy() * 2)


def test_to_dtype_casts_floating_tensors_and_gradients_in_place():
    model = mlp()
    model.register_buffer("steps", mr.tensor(np.array([3], dtype=np.int64)))
    model[0](np.ones((2, 3), np.float32)).sum().backward()
    params = list(model.parameters())
    assert model.to(dtype=np.float64) is model
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert all(p.dtype == np.float64 for p in params) and model[0].weight.grad.dtype == np.float64
    assert model.steps.dtype == np.int64 and model[2].running_mean.dtype == np.float64
    with pytest.raises(DTypeError, match="to: dtype must be a floating dtype"):
        model.astype("int32")


# -- summary --------------------------------------------------------------------------------------

class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        return self.head(self.drop(self.features(x)).flatten(1))


def test_summary_lists_layers_output_shapes_and_counts():
    model = ConvNet()
    model.drop.eval()                            # a mixed mode, to be restored exactly
    running = model.features[1].running_mean.numpy().copy()
    text = model.summary(input_shape=(1, 28, 28), print_fn=None)
    lines = text.splitlines()
    assert lines[0] == "ConvNet summary"
    rows = {line.split(" (")[0]: line.split() for line in lines if " (" in line}
    assert rows["features.0"][1:] == ["(Conv2d)", "(N,", "4,", "28,", "28)", "40"]
    assert rows["features.1"][-1] == "8" and rows["features.3"][2:] == ["(N,", "4,", "14,", "14)", "0"]
    assert rows["head"][1:] == ["(Linear)", "(N,", "10)", "7,850"]
    total = 40 + 8 + 7850
    assert f"Total params: {total:,}" in lines and f"Trainable params: {total:,}" in lines
    assert "Non-trainable params: 0" in lines
    assert model.training and model.features.training and not model.drop.training
    np.testing.assert_array_equal(model.features[1].running_mean.numpy(), running)   # ran in eval mode


def test_summary_without_input_shape_prints_question_marks(capsys):
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    model[1].weight = model[0].weight            # a shared parameter is counted once
    assert model.summary() is None
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if " (" in line]
    assert rows[1:] == [["0", "(Linear)", "?", "9"], ["1", "(ReLU)", "?", "0"]] and "Total params: 9" in printed
    frozen = nn.Linear(4, 1)
    frozen.bias.requires_grad = False
    text = frozen.summary(input_shape=4, print_fn=None)
    assert "Linear (Linear)  (N, 1)" in text and "Trainable params: 4" in text and "Non-trainable params: 1" in text


def test_loading_summary_and_astype_on_a_device_make_no_reads_and_only_the_needed_copies():
    with fake_device() as device:
        model = mlp()
        host_state = model.state_dict()
        device_state = {k: mr.tensor(device.asarray(v)) for k, v in host_state.items()}
        with device.counting() as counts:
            model.load_state_dict(device_state)
            model.summary(input_shape=(3,), print_fn=None)
            model.astype("float64")
        assert counts.syncs == counts.implicit == counts.copies_to_device == 0, counts.report()
        with device.counting() as counts:
            model.load_state_dict(host_state)                     # host arrays: one copy each, no reads
        assert counts.syncs == counts.implicit == 0 and counts.copies_to_device == len(host_state), counts.report()
