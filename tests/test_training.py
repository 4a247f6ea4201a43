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
from minireg.training import Callback, EarlyStopping, ModelCheckpoint, Trainer, fit


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
