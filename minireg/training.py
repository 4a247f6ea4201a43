"""``fit`` / ``Trainer``: epochs, validation, metrics history, callbacks, early stopping, progress.

A convenience, not a framework: the loop below is the same one you would write by hand,

    for x, y in loader:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

plus bookkeeping. Callbacks get ``on_train_begin/on_epoch_begin/on_batch_end/on_epoch_end/
on_train_end`` and may set ``trainer.stop_training``. The loss is checked every step: NaN or
infinity stops training with a ``NonFiniteError`` naming the epoch and step. ``verbose`` follows
Keras: 0 silent, 1 a tqdm progress bar per epoch and one summary line per epoch, 2 the lines only.

Regularizers given to layers (``Linear(..., weight_regularizer=L2(1e-4), activity_regularizer=...)``)
enter in one place, ``train_step``: it differentiates ``loss + regularization_loss(model, optimizer)``
(``minireg.reg.attach``; penalties that ``attach_model`` made optimizer hooks are left out, so none
counts twice). The reported ``loss`` is the data loss alone, comparable with ``val_loss``.
"""
import math
import time


from minireg._config import no_grad
from minireg.errors import NonFiniteError
from minireg.reg.attach import regularization_loss


def _batch_metric_sums(metrics, output, target):
    n = output.shape[0]
    return {name: fn(output, target) * n for name, fn in metrics.items()}, n


class Callback:
    def on_train_begin(self, trainer): pass
    def on_epoch_begin(self, trainer, epoch): pass
    def on_batch_end(self, trainer, step, logs): pass
    def on_epoch_end(self, trainer, epoch, logs): pass
    def on_train_end(self, trainer): pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the model ends with the weights of its best epoch.
    ``mode="auto"`` maximises metrics whose name contains "acc" and minimises the rest.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto", restore_best_weights=True):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'auto', 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"EarlyStopping patience must be >= 0, got {patience}")
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(min_delta)
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, trainer):
        self.best, self.best_epoch, self.wait, self.best_state = None, None, 0, None

    def _improved(self, value):
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, but the epoch logs only have {sorted(logs)}")
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_state = trainer.model.state_dict()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore_best_weights and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Save model and optimizer after each epoch (or only when ``monitor`` improves) with ``minireg.save``."""

    def __init__(self, path, monitor="val_loss", mode="auto", save_best_only=True):
        self.path, self.save_best_only = path, save_best_only
        self._tracker = EarlyStopping(monitor, patience=0, mode=mode, restore_best_weights=False)

    def on_train_begin(self, trainer):
        self._tracker.on_train_begin(trainer)

    def on_epoch_end(self, trainer, epoch, logs):
        from minireg.checkpoint import save
        improved = self._tracker._improved(logs[self._tracker.monitor])
        if improved:
            self._tracker.best = logs[self._tracker.monitor]
        if improved or not self.save_best_only:
            save(self.path, trainer.model, trainer.optimizer, epoch=epoch, **{k: float(v) for k, v in logs.items()})


class SchedulerStep(Callback):
    """Step a learning-rate scheduler once per epoch (``ReduceLROnPlateau`` gets ``monitor``'s value)."""

    def __init__(self, scheduler, monitor=None):
        self.scheduler, self.monitor = scheduler, monitor

    def on_epoch_end(self, trainer, epoch, logs):
        self.scheduler.step(logs[self.monitor]) if self.monitor else self.scheduler.step()


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn(output, target)``; see the module docstring.

    ``metrics`` maps names to ``fn(output, target) -> float`` (batch mean), e.g.
    ``{"accuracy": minireg.metrics.accuracy}``; they are reported for training and validation.
    """

    def __init__(self, model, optimizer, loss_fn, metrics=None, callbacks=(), verbose=1):
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0 (silent), 1 (progress bar) or 2 (one line per epoch), got {verbose!r}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.metrics = dict(metrics or {})
        self.callbacks = list(callbacks)
        self.verbose = verbose
        self.history = {}
        self.stop_training = False
        self.global_step = 0

    def _progress(self, loader, epoch, epochs):
        if self.verbose != 1:
            return loader
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return loader
        return tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)

    def train_step(self, x, y):
        """One optimizer step on the loss plus the layers' regularization loss (see the module
        docstring); returns (data loss value, model output)."""
        output = self.model(x)
        loss = self.loss_fn(output, y)
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteError(f"the training loss became {value} at epoch {self.epoch + 1}, step {self.step + 1} "
                                 f"(global step {self.global_step + 1}); lower the learning rate, check the data "
                                 f"for NaN/inf, or clip gradients")
        penalty = regularization_loss(self.model, self.optimizer)
        self.optimizer.zero_grad()
        (loss if penalty is None else loss + penalty).backward()
        self.optimizer.step()
        return value, output

    def evaluate(self, loader):
        """Mean loss and metrics over ``loader`` in eval mode, without recording a graph."""
        was_training = self.model.training
        self.model.eval()
        totals, count = {"loss": 0.0, **{k: 0.0 for k in self.metrics}}, 0
        with no_grad():
            for x, y in loader:
                output = self.model(x)
                sums, n = _batch_metric_sums(self.metrics, output, y)
                totals["loss"] += self.loss_fn(output, y).item() * n
                for k, v in sums.items():
                    totals[k] += v
                count += n
        self.model.train(was_training)
        if count == 0:
            raise ValueError("evaluate() got an empty data loader")
        return {k: v / count for k, v in totals.items()}

    def fit(self, train_loader, epochs, val_loader=None):
        """Train for ``epochs`` epochs; returns the history dict of per-epoch lists."""
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        self.stop_training = False
        for cb in self.callbacks:
            cb.on_train_begin(self)
        for epoch in range(epochs):
            self.epoch = epoch
            for cb in self.callbacks:
                cb.on_epoch_begin(self, epoch)
            self.model.train()
            start = time.perf_counter()
            totals, count = {"loss": 0.0, **{k: 0.0 for k in self.metrics}}, 0
            batches = self._progress(train_loader, epoch, epochs)
            for self.step, (x, y) in enumerate(batches):
                value, output = self.train_step(x, y)
                with no_grad():
                    sums, n = _batch_metric_sums(self.metrics, output, y)
                totals["loss"] += value * n
                for k, v in sums.items():
                    totals[k] += v
                count += n
                self.global_step += 1
                if hasattr(batches, "set_postfix") and self.step % 10 == 0:
                    batches.set_postfix(loss=f"{totals['loss'] / count:.4f}")
                for cb in self.callbacks:
                    cb.on_batch_end(self, self.step, {"loss": value})
            if count == 0:
                raise ValueError("the training data loader produced no batches")
            logs = {k: v / count for k, v in totals.items()}
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
            if self.stop_training:
                break
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history


def fit(model, optimizer, loss_fn, train_loader, epochs, val_loader=None, metrics=None, callbacks=(), verbose=1):
    """``Trainer(model, optimizer, loss_fn, metrics, callbacks, verbose).fit(train_loader, epochs, val_loader)``."""
    return Trainer(model, optimizer, loss_fn, metrics, callbacks, verbose).fit(train_loader, epochs, val_loader)


__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "SchedulerStep", "Trainer", "fit"]
