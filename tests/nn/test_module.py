"""Module registration, traversal, modes, devices, state dicts and printing."""
import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.testing.devices import fake_device


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
    with pytest.raises(mr.ShapeError) as info:
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
    assert list(model.parameters()) == params          # same objects, so optimizers keep working
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
    with pytest.raises(TypeError, match="Sequential takes Modules"):
        nn.Sequential(nn.Linear(1, 1), lambda x: x)
    with pytest.raises(TypeError, match="unexpected options"):
        nn.LeakyReLU(slope=0.1)
