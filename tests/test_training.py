"""fit/Trainer on real data: learning, history, callbacks, early stopping, NaN guard."""
import math

import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.data import DataLoader, TensorDataset
from minireg.datasets import load_digits
from minireg.losses import cross_entropy
from minireg.metrics import accuracy
from minireg.optim import SGD, Adam
from minireg.training import Callback, EarlyStopping, ModelCheckpoint, SchedulerStep, Trainer, fit


@pytest.fixture(scope="module")
def digits():
    (x_train, y_train), (x_test, y_test) = load_digits()
    return (DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True),
            DataLoader(TensorDataset(x_test, y_test), batch_size=360))


def mlp():
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def test_mlp_learns_real_digits_within_seconds(digits):
    mr.manual_seed(0)
    train, test = digits
    model = mlp()
    history = fit(model, Adam(model.parameters(), lr=3e-3), cross_entropy, train, epochs=5, val_loader=test,
                  metrics={"accuracy": accuracy}, verbose=0)
    assert history["val_accuracy"][-1] > 0.9          # chance is 0.1
    assert history["loss"][-1] < history["loss"][0]
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert len(history["loss"]) == 5


def test_callbacks_see_every_event_in_order(digits):
    events = []

    class Recorder(Callback):
        def on_train_begin(self, trainer): events.append("begin")
        def on_epoch_begin(self, trainer, epoch): events.append(f"epoch{epoch}")
        def on_batch_end(self, trainer, step, logs): events.append("batch") if step == 0 else None
        def on_epoch_end(self, trainer, epoch, logs): events.append(f"end{epoch}")
        def on_train_end(self, trainer): events.append("finish")

    model = mlp()
    fit(model, SGD(model.parameters(), lr=0.1), cross_entropy, digits[0], 2, callbacks=[Recorder()], verbose=0)
    assert events == ["begin", "epoch0", "batch", "end0", "epoch1", "batch", "end1", "finish"]


def test_early_stopping_stops_and_restores_best_weights(digits):
    mr.manual_seed(0)
    model = mlp()
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.55, 0.9])   # best at epoch 1, then no improvement for 2 epochs

    class FakeScore(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["val_accuracy"] = next(scores)
            snapshots.append(trainer.model.state_dict())
    snapshots = []
    stopper = EarlyStopping(monitor="val_accuracy", patience=2)
    trainer = Trainer(model, SGD(model.parameters(), lr=0.05), cross_entropy, callbacks=[FakeScore(), stopper],
                      verbose=0)
    history = trainer.fit(digits[0], epochs=6)
    assert len(history["loss"]) == 4 and stopper.best_epoch == 1 and stopper.mode == "max"
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, snapshots[1][key])


def test_nan_loss_stops_with_the_step_named(digits):
    model = mlp()
    with mr.no_grad():
        model[0].weight.data = model[0].weight.data * np.nan
    with pytest.raises(mr.NonFiniteError, match=r"epoch 1, step 1"):
        fit(model, SGD(model.parameters(), lr=0.1), cross_entropy, digits[0], 1, verbose=0)


def test_model_checkpoint_saves_the_best_epoch(tmp_path, digits):
    mr.manual_seed(0)
    model = mlp()
    opt = Adam(model.parameters(), lr=3e-3)
    path = tmp_path / "best.npz"
    history = fit(model, opt, cross_entropy, digits[0], 3, val_loader=digits[1], metrics={"accuracy": accuracy},
                  callbacks=[ModelCheckpoint(path, monitor="val_accuracy")], verbose=0)
    meta = mr.load(path, mlp())
    assert meta["val_accuracy"] == max(history["val_accuracy"])
    assert meta["epoch"] == int(np.argmax(history["val_accuracy"]))


def test_bad_arguments(digits):
    model = mlp()
    with pytest.raises(ValueError, match="epochs"):
        fit(model, SGD(model.parameters(), lr=0.1), cross_entropy, digits[0], 0, verbose=0)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="best")
    assert math.isfinite(Trainer(model, SGD(model.parameters(), lr=0.1), cross_entropy,
                                 verbose=0).evaluate(digits[1])["loss"])


# -- exact resume in a fresh process (issue 9, item 18) ---------------------------------------------
RESUME_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import minireg as mr
from minireg import nn
from minireg.data import DataLoader, TensorDataset
from minireg.datasets import load_digits
from minireg.losses import cross_entropy
from minireg.optim import Adam
from minireg.optim.lr_scheduler import StepLR
from minireg.training import EarlyStopping, ModelCheckpoint, SchedulerStep, fit

mode, path, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
mr.manual_seed(0 if mode != "resume" else 123)     # the resumed run must not depend on its own seed
(x, y), (xv, yv) = load_digits()
train = DataLoader(TensorDataset(x[:320], y[:320]), batch_size=32, shuffle=True)
val = DataLoader(TensorDataset(xv[:100], yv[:100]), batch_size=100)
model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))
opt = Adam(model.parameters(), lr=1e-2)
callbacks = [SchedulerStep(StepLR(opt, step_size=1, gamma=0.7)), EarlyStopping(patience=10),
             ModelCheckpoint(path, save_best_only=False)]
history = fit(model, opt, cross_entropy, train, epochs, val_loader=val, callbacks=callbacks, verbose=0,
              resume_from=path if mode == "resume" else None)
weights = hashlib.sha256(b"".join(v.tobytes() for v in model.state_dict().values())).hexdigest()
print(json.dumps({"loss": [repr(v) for v in history["loss"]], "val_loss": [repr(v) for v in history["val_loss"]],
                  "lr": history["lr"], "weights": weights}))
"""


def run_script(script, tmp_path, *args):
    import json
    import os
    import subprocess
    import sys
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fit_resumed_in_a_fresh_process_repeats_the_uninterrupted_run_bitwise(tmp_path):
    straight = run_script(RESUME_SCRIPT, tmp_path, "full", tmp_path / "straight.npz", 4)
    first = run_script(RESUME_SCRIPT, tmp_path, "part", tmp_path / "run.npz", 2)
    resumed = run_script(RESUME_SCRIPT, tmp_path, "resume", tmp_path / "run.npz", 4)
    assert first["loss"] == straight["loss"][:2]
    assert resumed["loss"] == straight["loss"]          # the history comes back, and the rest repeats
    assert resumed["val_loss"] == straight["val_loss"]
    assert resumed["lr"] == straight["lr"]              # the scheduler resumed where it was
    assert resumed["weights"] == straight["weights"]
    assert len(set(straight["loss"])) == 4              # it trained (dropout, shuffling, decaying rate)


def test_resume_refuses_a_checkpoint_of_other_callbacks_and_changes_nothing(tmp_path, digits):
    mr.manual_seed(0)
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.npz"
    fit(model, opt, cross_entropy, digits[0], 1, callbacks=[ModelCheckpoint(path, monitor="loss",
                                                                            save_best_only=False)], verbose=0)
    other = mlp()
    other_opt = SGD(other.parameters(), lr=0.1)
    before = {k: v.copy() for k, v in other.state_dict().items()}
    trainer = Trainer(other, other_opt, cross_entropy, callbacks=[EarlyStopping(monitor="loss")], verbose=0)
    with pytest.raises(mr.errors.CheckpointError, match=r"written with the callbacks \['ModelCheckpoint'\]"):
        trainer.fit(digits[0], 2, resume_from=path)
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert trainer.epochs_done == 0 and trainer.history == {}
    with pytest.raises(mr.errors.CheckpointError, match="not a Trainer checkpoint"):
        Trainer(other, other_opt, cross_entropy, verbose=0).fit(digits[0], 2,
                                                                resume_from=mr.save(tmp_path / "plain.npz", other))


def test_checkpoints_are_written_after_every_callback_saw_the_epoch(tmp_path, digits):
    """ModelCheckpoint before SchedulerStep in the list still saves the stepped scheduler."""
    from minireg.optim.lr_scheduler import StepLR
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1)
    scheduler = StepLR(opt, 1, gamma=0.5)
    path = tmp_path / "run.npz"
    fit(model, opt, cross_entropy, digits[0], 1, verbose=0,
        callbacks=[ModelCheckpoint(path, monitor="loss", save_best_only=False), SchedulerStep(scheduler)])
    saved = mr.checkpoint.read(path)
    assert saved["schedulers"][0]["last_epoch"] == 1 and saved["optimizer"]["param_groups"][0]["lr"] == 0.05
    assert saved["metadata"]["trainer"]["epochs_done"] == 1


def test_a_second_fit_trains_more_epochs(digits):
    model = mlp()
    trainer = Trainer(model, SGD(model.parameters(), lr=0.1), cross_entropy, verbose=0)
    trainer.fit(digits[0], 1)
    trainer.fit(digits[0], 2)
    assert len(trainer.history["loss"]) == 3 and trainer.epochs_done == 3


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the NaN/inf gradient is made on purpose
def test_skip_nonfinite_gradients_in_fit(digits):
    """A NaN gradient with a finite loss: with nonfinite="skip" the step is skipped, not applied."""
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1)
    opt.nonfinite = "skip"

    def poisoned_loss(output, target):      # finite value, NaN gradient on the first step only
        loss = cross_entropy(output, target)
        if opt.skipped_steps == 0 and model.training:
            return loss + mr.sqrt(mr.relu(output[:1, :1] * 0.0)).sum()       # sqrt'(0) = inf
        return loss
    before = model[0].weight.numpy().copy()
    first = {}

    class FirstStep(Callback):
        def on_batch_end(self, trainer, step, logs):
            if trainer.global_step == 1:
                first["weight"] = trainer.model[0].weight.numpy().copy()
    fit(model, opt, poisoned_loss, digits[0], 1, callbacks=[FirstStep()], verbose=0)
    assert opt.skipped_steps == 1
    np.testing.assert_array_equal(first["weight"], before)      # the skipped step changed nothing
    assert np.isfinite(model[0].weight.numpy()).all()


def test_epoch_loss_is_the_same_number_as_summing_batch_floats(digits):
    """Summing on the device (float64) gives exactly the float sum of the batch losses."""
    mr.manual_seed(0)
    model = mlp()
    seen = []

    class BatchLosses(Callback):
        def on_batch_end(self, trainer, step, logs):
            seen.append(logs["loss"])
    sizes = [len(y) for _, y in digits[0]]
    mr.manual_seed(1)
    history = fit(model, SGD(model.parameters(), lr=0.1), cross_entropy, digits[0], 1, callbacks=[BatchLosses()],
                  verbose=0)
    total = 0.0
    for value, n in zip(seen, sizes):
        total += value * n
    assert history["loss"][0] == total / sum(sizes)


def test_a_corrupt_trainer_entry_is_refused_before_anything_changes(tmp_path, digits):
    mr.manual_seed(0)
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.npz"
    fit(model, opt, cross_entropy, digits[0], 1, callbacks=[EarlyStopping(monitor="loss"),
                                                            ModelCheckpoint(path, monitor="loss")], verbose=0)
    contents = mr.checkpoint.read(path)
    for corrupt, match in [(lambda s: s.update(epochs_done=-1), "epochs_done must be an integer >= 0"),
                           (lambda s: s.update(history={"loss": 3.0}), "history must map names to lists"),
                           (lambda s: s["callbacks"][0][1].pop("wait"), "EarlyStopping: expected a state")]:
        bad = mr.checkpoint.read(path)
        corrupt(bad["metadata"]["trainer"])
        mr.save(tmp_path / "bad.npz", model, opt, schedulers=[], rng_state=True, **bad["metadata"])
        other = mlp()
        before = {k: v.copy() for k, v in other.state_dict().items()}
        trainer = Trainer(other, SGD(other.parameters(), lr=0.1), cross_entropy,
                          callbacks=[EarlyStopping(monitor="loss"), ModelCheckpoint(tmp_path / "x.npz", monitor="loss")],
                          verbose=0)
        with pytest.raises(mr.errors.CheckpointError, match=match):
            trainer.load_checkpoint(tmp_path / "bad.npz")
        for key, value in other.state_dict().items():
            np.testing.assert_array_equal(value, before[key])
        assert trainer.epochs_done == 0 and trainer.history == {}
    assert contents["metadata"]["trainer"]["epochs_done"] == 1
