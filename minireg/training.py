"""``fit`` / ``Trainer``: epochs, validation, metrics history, callbacks, early stopping, progress,
checkpoints and exact resume.

A convenience, not a framework: the loop below is the same one you would write by hand,

    for x, y in loader:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

plus bookkeeping. Callbacks get ``on_train_begin/on_epoch_begin/on_batch_end/on_epoch_end/
on_train_end`` and may set ``trainer.stop_training``. ``verbose`` follows Keras: 0 silent, 1 a tqdm
progress bar per epoch and one summary line per epoch, 2 the lines only.

Non-finite numbers: the optimizer checks every gradient before it changes anything (see
``Optimizer.step``), so a NaN or infinite loss (whose gradients are not finite either) stops
training with a ``NonFiniteError`` naming the epoch and step, before the weights change. With
``optimizer.nonfinite = "skip"`` such steps are skipped instead (the epoch's loss then reports the
non-finite value and stops training at the epoch's end).

Device reads: the losses (and metrics that return device arrays) are summed on the device and read
once per epoch, and every 10 steps for the progress bar; ``on_batch_end`` gets the batch loss as a
number only when some callback overrides it. The optimizer's finiteness check is the one read per
step.

Regularizers: weight and bias penalties and constraints live on the parameters and the optimizer
applies them in ``step()`` (``minireg.reg.attach``), as in a hand-written loop. Activity
regularizers depend on the forward pass: ``train_step`` differentiates
``loss + model.regularization_loss()``, as a hand-written loop must. The reported ``loss`` is the
data loss alone, comparable with ``val_loss``.

Checkpoints and exact resume (in the spirit of Keras' ``ModelCheckpoint``/``BackupAndRestore`` and
PyTorch Lightning's ``fit(ckpt_path=...)``)::

    fit(model, opt, loss_fn, loader, epochs=10, callbacks=[SchedulerStep(sched),
        ModelCheckpoint("run/last.npz", save_best_only=False)])
    # ... the process dies after epoch 4; in a new process, with the same model, optimizer and
    # scheduler constructed as before:
    fit(model, opt, loss_fn, loader, epochs=10, callbacks=[...the same...], resume_from="run/last.npz")

A checkpoint written by ``ModelCheckpoint`` (or ``Trainer.save_checkpoint``) holds the model, the
optimizer, the schedulers of ``SchedulerStep`` callbacks, the other callbacks' state (early
stopping's best value and weights), the epoch and step counters, the history and
``minireg.random``'s state (dropout masks, shuffling). It is written after every callback has seen
the epoch, so it is the state the next epoch starts from, and resuming from it continues with
bitwise the same losses as the uninterrupted run (same data, same device). ``epochs`` counts from
the start of the run, as Keras' ``initial_epoch``.
"""
import math
import time

from minireg import check
from minireg._config import no_grad
from minireg.checkpoint import _restore, read, save
from minireg.errors import ArgumentError, ArgumentTypeError, CheckpointError, NonFiniteError
from minireg.tensor import Tensor


class _Sums:
    """Running sums of per-batch values that stay on the device when they are device arrays
    (0-d Tensors or arrays) and are read once, by ``means``."""

    def __init__(self, names):
        self.totals = dict.fromkeys(names, 0.0)
        self.count = 0

    def add(self, values, n):
        for name, value in values.items():
            if isinstance(value, Tensor):
                value = value.backend.xp.astype(value.data, value.backend.xp.float64)   # float64, as a float sum
            self.totals[name] = self.totals[name] + value * n
        self.count += n

    def mean(self, name):
        return _number(self.totals[name]) / self.count

    def means(self):
        return {name: self.mean(name) for name in self.totals}


def _number(value):
    """A Python float from a float, a NumPy scalar or a device array (one explicit read)."""
    if isinstance(value, (int, float)):
        return float(value)
    from minireg.backend import backend_of
    return float(backend_of(value).to_numpy(value))


class Callback:
    """Base class: override the events you need. ``state_dict``/``load_state_dict`` hold what a
    resumed run needs (JSON-able values and arrays); the default has none."""

    def on_train_begin(self, trainer): pass
    def on_epoch_begin(self, trainer, epoch): pass
    def on_batch_end(self, trainer, step, logs): pass
    def on_epoch_end(self, trainer, epoch, logs): pass
    def on_train_end(self, trainer): pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        self._prepared_load(state)()

    def _prepared_load(self, state):
        """Check that ``state`` has this callback's entries; returns the assignment."""
        expected = sorted(self.state_dict())
        if not isinstance(state, dict) or sorted(state) != expected:
            raise CheckpointError(f"{type(self).__name__}: expected a state with the entries {expected}, "
                                  f"got {sorted(state) if isinstance(state, dict) else type(state).__name__}")
        return lambda: self.__dict__.update(state)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the model ends with the weights of its best epoch.
    ``mode="auto"`` maximises metrics whose name contains "acc" and minimises the rest.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto", restore_best_weights=True):
        self.monitor = check.instance("EarlyStopping: monitor", monitor, str)
        mode = check.choice("EarlyStopping: mode", mode, ("auto", "min", "max"))
        self.patience = check.integer("EarlyStopping: patience", patience, low=0)
        self.min_delta = abs(check.real("EarlyStopping: min_delta", min_delta))
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best_weights = check.flag("EarlyStopping: restore_best_weights", restore_best_weights)
        self.best, self.best_epoch, self.wait, self.best_state = None, None, 0, None

    def on_train_begin(self, trainer):
        if not getattr(trainer, "resumed", False):
            self.best, self.best_epoch, self.wait, self.best_state = None, None, 0, None

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_state": self.best_state}

    def _improved(self, value):
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def _value(self, logs):
        if self.monitor not in logs:
            raise ArgumentError(f"{type(self).__name__} monitors {self.monitor!r}, but the epoch logs only have "
                                f"{sorted(logs)} (give a val_loader for val_* metrics)")
        return logs[self.monitor]

    def on_epoch_end(self, trainer, epoch, logs):
        value = self._value(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_state = dict(trainer.model.state_dict())
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore_best_weights and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Write a resumable checkpoint (``Trainer.save_checkpoint``) after an epoch: after every epoch
    with ``save_best_only=False`` (the one to resume from), else when ``monitor`` improves. The
    metadata holds ``epoch`` and the epoch's logs; ``fit(..., resume_from=path)`` resumes."""

    def __init__(self, path, monitor="val_loss", mode="auto", save_best_only=True):
        self.path = path
        self.save_best_only = check.flag("ModelCheckpoint: save_best_only", save_best_only)
        self._tracker = EarlyStopping(monitor, patience=0, mode=mode, restore_best_weights=False)

    def on_train_begin(self, trainer):
        self._tracker.on_train_begin(trainer)

    def state_dict(self):
        return {"best": self._tracker.best}

    def _prepared_load(self, state):
        super()._prepared_load(state)
        return lambda: setattr(self._tracker, "best", state["best"])

    def on_epoch_end(self, trainer, epoch, logs):
        improved = self._tracker._improved(self._tracker._value(logs))
        if improved:
            self._tracker.best = logs[self._tracker.monitor]
        if improved or not self.save_best_only:
            trainer.request_checkpoint(self.path, epoch=epoch, **{k: float(v) for k, v in logs.items()})


class SchedulerStep(Callback):
    """Step a learning-rate scheduler once per epoch (``ReduceLROnPlateau`` gets ``monitor``'s
    value). Its scheduler is saved in the trainer's checkpoints."""

    def __init__(self, scheduler, monitor=None):
        if not callable(getattr(scheduler, "step", None)):
            raise ArgumentTypeError(f"SchedulerStep: expected a learning-rate scheduler, got {type(scheduler).__name__}")
        self.scheduler = scheduler
        self.monitor = None if monitor is None else check.instance("SchedulerStep: monitor", monitor, str)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor is None:
            self.scheduler.step()
        elif self.monitor not in logs:
            raise ArgumentError(f"SchedulerStep monitors {self.monitor!r}, but the epoch logs only have {sorted(logs)}")
        else:
            self.scheduler.step(logs[self.monitor])


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn(output, target)``; see the module docstring.

    ``metrics`` maps names to ``fn(output, target) -> float`` (batch mean; a 0-d Tensor or device
    array is summed on the device), e.g. ``{"accuracy": minireg.metrics.accuracy}``; they are
    reported for training and validation.
    """

    def __init__(self, model, optimizer, loss_fn, metrics=None, callbacks=(), verbose=1):
        self.verbose = check.choice("Trainer: verbose (0 silent, 1 progress bar, 2 one line per epoch)", verbose,
                                    (0, 1, 2))
        if not callable(loss_fn):
            raise ArgumentTypeError(f"Trainer: loss_fn must be callable, got {type(loss_fn).__name__}")
        if not hasattr(optimizer, "step") or not hasattr(optimizer, "param_groups"):
            raise ArgumentTypeError(f"Trainer: optimizer must be a minireg optimizer, got {type(optimizer).__name__}")
        self.metrics = dict(metrics or {})
        for name, fn in self.metrics.items():
            if not callable(fn):
                raise ArgumentTypeError(f"Trainer: metric {name!r} must be a function (output, target) -> number, "
                                        f"got {type(fn).__name__}")
        self.callbacks = list(callbacks)
        for i, cb in enumerate(self.callbacks):
            if not isinstance(cb, Callback):
                raise ArgumentTypeError(f"Trainer: callback {i} must be a minireg.training.Callback, "
                                        f"got {type(cb).__name__}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.history = {}
        self.stop_training = False
        self.resumed = False
        self.epochs_done = 0          # completed epochs (the next epoch's index)
        self.global_step = 0
        self._pending_checkpoints = []
        self._batch_listeners = [cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end]

    def _progress(self, loader, epoch, epochs):
        if self.verbose != 1:
            return loader
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return loader
        return tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)

    def _where(self):
        return f"epoch {self.epoch + 1}, step {self.step + 1} (global step {self.global_step + 1})"

    def train_step(self, x, y):
        """One optimizer step on the loss plus the model's activity regularization loss (see the
        module docstring); returns (data loss as a 0-d Tensor without history, model output)."""
        output = self.model(x)
        loss = self.loss_fn(output, y)
        self.optimizer.zero_grad()
        (loss + self.model.regularization_loss()).backward()
        try:
            self.optimizer.step()
        except NonFiniteError as exc:
            value = loss.item()      # the error path: one read to say which it was
            cause = f"the training loss became {value}" if not math.isfinite(value) else \
                f"a gradient became non-finite (the loss is {value:.6g})"
            raise NonFiniteError(f"{cause} at {self._where()}; nothing was updated. Lower the learning rate, check "
                                 f"the data for NaN/inf, or clip gradients ({exc})") from exc
        return loss.detach(), output

    def evaluate(self, loader):
        """Mean loss and metrics over ``loader`` in eval mode, without recording a graph."""
        was_training = self.model.training
        self.model.eval()
        sums = _Sums(["loss", *self.metrics])
        with no_grad():
            for x, y in loader:
                output = self.model(x)
                sums.add({"loss": self.loss_fn(output, y), **self._metric_values(output, y)}, output.shape[0])
        self.model.train(was_training)
        if sums.count == 0:
            raise ArgumentError("evaluate() got an empty data loader")
        return sums.means()

    def _metric_values(self, output, target):
        return {name: fn(output, target) for name, fn in self.metrics.items()}

    # -- checkpoints ---------------------------------------------------------------------------------
    def _schedulers(self):
        return [cb.scheduler for cb in self.callbacks if isinstance(cb, SchedulerStep)]

    def save_checkpoint(self, path, **metadata):
        """Write everything a resumed ``fit`` needs to ``path`` (see the module docstring)."""
        trainer_state = {"epochs_done": self.epochs_done, "global_step": self.global_step, "history": self.history,
                         "callbacks": [[type(cb).__name__, cb.state_dict()] for cb in self.callbacks]}
        return save(path, self.model, self.optimizer, schedulers=self._schedulers(), rng_state=True,
                    trainer=trainer_state, **metadata)

    def request_checkpoint(self, path, **metadata):
        """Save a checkpoint once every callback has seen this epoch (for callbacks)."""
        self._pending_checkpoints.append((path, metadata))

    def load_checkpoint(self, path):
        """Restore a ``save_checkpoint`` file, all or nothing; returns its metadata."""
        contents = read(path)
        state = contents["metadata"].get("trainer")
        if not isinstance(state, dict) or sorted(state) != ["callbacks", "epochs_done", "global_step", "history"]:
            raise CheckpointError(f"{path} is not a Trainer checkpoint (its metadata has no complete 'trainer' "
                                  f"entry; write it with ModelCheckpoint or Trainer.save_checkpoint)")
        try:
            epochs_done = check.integer("epochs_done", state["epochs_done"], low=0)
            global_step = check.integer("global_step", state["global_step"], low=0)
        except (ArgumentError, ArgumentTypeError) as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        saved = state["callbacks"]
        names = [type(cb).__name__ for cb in self.callbacks]
        if not (isinstance(saved, list) and all(isinstance(e, list) and len(e) == 2 for e in saved)):
            raise CheckpointError(f"{path}: malformed callback states in the trainer entry")
        if [entry[0] for entry in saved] != names:
            raise CheckpointError(f"{path} was written with the callbacks {[e[0] for e in saved]}, this trainer has "
                                  f"{names}: resume with the same callbacks")
        if not isinstance(state["history"], dict):
            raise CheckpointError(f"{path}: the trainer's history is a {type(state['history']).__name__}, not a dict")
        if not all(isinstance(values, list) for values in state["history"].values()):
            raise CheckpointError(f"{path}: the trainer's history must map names to lists of per-epoch values")
        try:
            assignments = [cb._prepared_load(entry[1]) for cb, entry in zip(self.callbacks, saved)]
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        history = {key: list(values) for key, values in state["history"].items()}

        def assign():
            self.epochs_done, self.global_step, self.history = epochs_done, global_step, history
        _restore(path, contents, self.model, self.optimizer, self._schedulers(), rng_state=True,
                 extra=[*assignments, assign])
        return contents["metadata"]

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self, train_loader, epochs, val_loader=None, resume_from=None):
        """Train ``epochs`` epochs, or with ``resume_from`` (a checkpoint path) until ``epochs``
        epochs are done counting those of the checkpoint; returns the history dict of per-epoch
        lists."""
        epochs = check.positive_int("fit: epochs", epochs)
        self.resumed = resume_from is not None
        if self.resumed:
            self.load_checkpoint(resume_from)
        else:
            epochs += self.epochs_done          # a second fit() trains that many more
        self.stop_training = False
        for cb in self.callbacks:
            cb.on_train_begin(self)
        for epoch in range(self.epochs_done, epochs):
            self.epoch = epoch
            for cb in self.callbacks:
                cb.on_epoch_begin(self, epoch)
            self.model.train()
            start = time.perf_counter()
            sums = _Sums(["loss", *self.metrics])
            batches = self._progress(train_loader, epoch, epochs)
            for self.step, (x, y) in enumerate(batches):
                loss, output = self.train_step(x, y)
                with no_grad():
                    sums.add({"loss": loss, **self._metric_values(output, y)}, output.shape[0])
                self.global_step += 1
                if hasattr(batches, "set_postfix") and self.step % 10 == 0:
                    batches.set_postfix(loss=f"{sums.mean('loss'):.4f}")       # a read every 10 steps
                if self._batch_listeners:
                    logs = {"loss": loss.item()}
                    for cb in self._batch_listeners:
                        cb.on_batch_end(self, self.step, logs)
            if sums.count == 0:
                raise ArgumentError("the training data loader produced no batches")
            logs = sums.means()
            if not math.isfinite(logs["loss"]):
                raise NonFiniteError(f"the mean training loss of epoch {epoch + 1} is {logs['loss']} (steps skipped "
                                     f"for non-finite gradients: {getattr(self.optimizer, 'skipped_steps', 0)})")
            if val_loader is not None:
                logs.update({f"val_{k}": v for k, v in self.evaluate(val_loader).items()})
            logs["lr"] = self.optimizer.param_groups[0]["lr"]
            logs["seconds"] = time.perf_counter() - start
            for k, v in logs.items():
                self.history.setdefault(k, []).append(v)
            if self.verbose:
                print(f"epoch {epoch + 1}/{epochs}  " + "  ".join(
                    f"{k} {v:.4g}" for k, v in logs.items() if k != "lr"), flush=True)
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, logs)
            self.epochs_done = epoch + 1
            for path, metadata in self._pending_checkpoints:
                self.save_checkpoint(path, **metadata)
            self._pending_checkpoints.clear()
            if self.stop_training:
                break
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history


def fit(model, optimizer, loss_fn, train_loader, epochs, val_loader=None, metrics=None, callbacks=(), verbose=1,
        resume_from=None):
    """``Trainer(model, optimizer, loss_fn, metrics, callbacks, verbose).fit(train_loader, epochs,
    val_loader, resume_from)``."""
    return Trainer(model, optimizer, loss_fn, metrics, callbacks, verbose).fit(train_loader, epochs, val_loader,
                                                                                 resume_from)


__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "SchedulerStep", "Trainer", "fit"]
