"""A stateful Hypothesis test: a model, its optimizer and checkpoints driven through good and bad
operations in random order. Every failed operation must leave the weights (and their versions),
the optimizer state and the step counters bitwise as they were; every good one must do exactly
what it says (a load restores the saved state)."""
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import minireg as mr
from minireg import nn
from minireg.errors import MiniregError
from minireg.optim import SGD, Adam
from minireg.testing.devices import fake_device

SLOTS = st.sampled_from(["a", "b"])
BAD_GRADS = ["shape", "dtype", "nan", "inf", "device", "not a tensor"]
CORRUPTIONS = ["truncated", "random bytes", "bad json", "dangling reference", "missing entry", "wrong shapes"]
BAD_STATE_DICTS = ["other class", "bad lr", "bad step", "wrong shape", "missing entry", "unknown index"]


def bad_grad(p, kind):
    if kind == "shape":
        return mr.Tensor(np.zeros(p.shape + (2,)))
    if kind == "dtype":
        return mr.Tensor(np.zeros(p.shape, np.float32))
    if kind == "device":
        return mr.Tensor(fake_device().asarray(np.zeros(p.shape)))
    if kind == "not a tensor":
        return np.zeros(p.shape)
    g = np.zeros(p.shape)
    g.flat[-1] = np.nan if kind == "nan" else -np.inf
    return mr.Tensor(g)


def corrupt(src, dst, kind, rng):
    data = Path(src).read_bytes()
    if kind == "truncated":
        Path(dst).write_bytes(data[:rng.integers(1, len(data) - 1)])
        return
    if kind == "random bytes":
        Path(dst).write_bytes(rng.bytes(400))
        return
    with np.load(src, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    document = json.loads(str(arrays["__document__"]))
    if kind == "bad json":
        arrays["__document__"] = np.array(json.dumps(document)[:-3])
    elif kind == "dangling reference":
        arrays.pop(sorted(k for k in arrays if k != "__document__")[-1])
    elif kind == "missing entry":
        del document["optimizer"]
        arrays["__document__"] = np.array(json.dumps(document))
    else:                                # the last weight matrix of another shape
        key = next(k for k in arrays if k.endswith("model.2.weight"))
        arrays[key] = np.zeros((5, 5))
    np.savez(dst, **arrays)


def bad_state_dict(sd, kind):
    if kind == "other class":
        sd["optimizer"] = "AdamW"
    elif kind == "bad lr":
        sd["param_groups"][0]["lr"] = -1.0
    elif kind == "bad step":
        next(iter(sd["state"].values()))["step"] = -3
    elif kind == "wrong shape":
        next(iter(sd["state"].values()))["exp_avg"] = np.zeros(7)
    elif kind == "missing entry":
        del sd["param_groups"]
    else:
        sd["state"][99] = {"step": 1}
    return sd


class TrainingState(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="minireg-state-"))
        self.rng = np.random.default_rng(0)
        mr.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(3, 4, dtype="float64"), nn.ReLU(), nn.Linear(4, 2, dtype="float64"))
        self.params = list(self.model.parameters())
        self.optimizer = Adam(self.params, lr=0.05)
        self.saved = {}                  # slot -> snapshot at save time
        self.x = mr.tensor(self.rng.normal(size=(5, 3)))

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- what must not change ------------------------------------------------------------------
    def snapshot(self):
        sd = self.optimizer.state_dict()
        state = {i: {k: np.array(v) for k, v in entries.items()} for i, entries in sd["state"].items()}
        return ({k: v.copy() for k, v in self.model.state_dict().items()}, repr(sd["param_groups"]), state,
                self.optimizer.skipped_steps)

    @staticmethod
    def same(a, b):
        (weights_a, groups_a, state_a, skipped_a), (weights_b, groups_b, state_b, skipped_b) = a, b
        return (weights_a.keys() == weights_b.keys() and groups_a == groups_b and skipped_a == skipped_b
                and all(np.array_equal(weights_a[k], weights_b[k]) for k in weights_a)
                and state_a.keys() == state_b.keys()
                and all(state_a[i].keys() == state_b[i].keys() and
                        all(np.array_equal(state_a[i][k], state_b[i][k]) for k in state_a[i]) for i in state_a))

    def refused(self, operation):
        """Run ``operation``; it must raise a MiniregError and change nothing (versions included)."""
        before, versions = self.snapshot(), [p._version for p in self.params]
        try:
            operation()
        except MiniregError:
            pass
        else:
            raise AssertionError("a bad operation was accepted")
        assert self.same(before, self.snapshot())
        assert [p._version for p in self.params] == versions

    def set_grads(self):
        self.optimizer.zero_grad()
        (self.model(self.x) ** 2).mean().backward()

    @initialize()
    def one_good_step(self):               # state and step counters exist from the start
        self.good_step()

    # -- good operations -------------------------------------------------------------------------
    @rule()
    def good_step(self):
        self.set_grads()
        versions = [p._version for p in self.params]
        self.optimizer.step()
        assert [p._version for p in self.params] == [v + 1 for v in versions]

    @rule(slot=SLOTS)
    def save(self, slot):
        mr.save(self.dir / f"{slot}.npz", self.model, self.optimizer, slot=slot)
        self.saved[slot] = self.snapshot()

    @precondition(lambda self: self.saved)
    @rule(data=st.data())
    def load(self, data):
        slot = data.draw(st.sampled_from(sorted(self.saved)))
        assert mr.load(self.dir / f"{slot}.npz", self.model, self.optimizer) == {"slot": slot}
        assert self.same(self.snapshot(), self.saved[slot])

    # -- bad operations ----------------------------------------------------------------------------
    @rule(index=st.integers(0, 3), kind=st.sampled_from(BAD_GRADS))
    def step_with_a_bad_gradient(self, index, kind):
        self.set_grads()
        self.params[index].grad = bad_grad(self.params[index], kind)
        self.refused(self.optimizer.step)

    @precondition(lambda self: self.saved)
    @rule(data=st.data(), kind=st.sampled_from(CORRUPTIONS))
    def load_a_corrupt_checkpoint(self, data, kind):
        slot = data.draw(st.sampled_from(sorted(self.saved)))
        target = self.dir / "corrupt.npz"
        corrupt(self.dir / f"{slot}.npz", target, kind, self.rng)
        self.refused(lambda: mr.load(target, self.model, self.optimizer))

    @rule()
    def load_another_optimizers_checkpoint(self):
        other = SGD(nn.Sequential(nn.Linear(3, 4, dtype="float64"), nn.ReLU(),
                                  nn.Linear(4, 2, dtype="float64")).parameters(), lr=0.1)
        path = mr.save(self.dir / "sgd.npz", self.model, other)
        self.refused(lambda: mr.load(path, self.model, self.optimizer))

    @rule(kind=st.sampled_from(BAD_STATE_DICTS))
    def load_a_bad_optimizer_state_dict(self, kind):
        sd = bad_state_dict(self.optimizer.state_dict(), kind)
        self.refused(lambda: self.optimizer.load_state_dict(sd))

    @rule(kind=st.sampled_from(["late bad entry", "missing key", "strings"]))
    def load_a_bad_model_state_dict(self, kind):
        sd = self.model.state_dict()
        if kind == "late bad entry":
            sd["2.bias"] = np.zeros(3)                 # after good entries
        elif kind == "missing key":
            del sd["2.weight"]
        else:
            sd["2.bias"] = np.array(["x", "y"])
        sd["0.weight"] = sd["0.weight"] + 1.0          # a good entry that must not be written
        self.refused(lambda: self.model.load_state_dict(sd))

    @invariant()
    def weights_stay_finite(self):
        assert all(np.isfinite(p.numpy()).all() for p in self.params)


TrainingState.TestCase.settings = settings(max_examples=30, stateful_step_count=8, deadline=None, derandomize=True)
test_training_state_machine = TrainingState.TestCase
