"""Schedules for the learning rate, or for any other numeric option of a param group.

Like torch.optim.lr_scheduler: a scheduler is created after the optimizer, takes an initial step on
construction (epoch 0) and is stepped once per epoch with ``step()``; ``get_last_lr()`` gives the
values it last set, one per group. ``param_name`` (default "lr") picks the option, e.g.
``ExponentialLR(opt, 0.9, param_name="weight_decay")``. A group's starting value is stored in it as
``"initial_<param_name>"`` (``"initial_lr"``), so schedulers created later, and resumed ones, share it.

The epoch-based schedulers here are closed forms, value = f(initial value, epoch): they do not
chain, so a manual edit of ``group[param_name]`` lasts until the next ``step()``, and two of them
on the same option overwrite each other (compose them with ``SequentialLR`` instead).
``state_dict()`` holds only numbers, strings and lists (LambdaLR's functions are not saved).
"""
import bisect
import math
import numbers

import numpy as np

from minireg import check
from minireg.errors import ArgumentError, ArgumentTypeError, CheckpointError
from minireg.tensor import Tensor


def _count(owner, name, value, minimum=1):
    return check.integer(f"{owner}: {name}", value, low=minimum)


def _checked_entry(where, saved, current):
    """``saved`` normalised to the kind of ``current`` (an .npz round trip may turn numbers into
    0-d arrays and lists into arrays), or CheckpointError."""
    if isinstance(saved, np.ndarray):
        saved = saved.tolist()
    if isinstance(current, bool) or current is None or isinstance(current, str):
        if saved != current:
            raise CheckpointError(f"{where} is {saved!r} in the state dict, {current!r} here: the scheduler is "
                                  f"configured differently")
        return saved
    if isinstance(current, numbers.Integral):
        try:
            return check.integer(where, saved)
        except (ArgumentError, ArgumentTypeError) as exc:
            raise CheckpointError(str(exc)) from None
    if isinstance(current, numbers.Real):
        try:
            return check.real(where, saved, finite=False)
        except (ArgumentError, ArgumentTypeError) as exc:
            raise CheckpointError(str(exc)) from None
    if isinstance(current, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(current):
            raise CheckpointError(f"{where} must be a list of {len(current)} values (one per param group or "
                                  f"milestone), got {saved!r}")
        return type(current)(_checked_entry(f"{where}[{i}]", s, c) for i, (s, c) in enumerate(zip(saved, current)))
    raise CheckpointError(f"{where}: cannot restore a {type(current).__name__}")


class _Scheduler:
    """What every scheduler shares: the optimizer option it drives, (de)serialisation and the repr."""

    _not_saved = ("optimizer",)
    _settings = ()        # constructor arguments shown by repr

    def _init_option(self, optimizer, param_name):
        name = type(self).__name__
        if not hasattr(optimizer, "param_groups"):
            raise ArgumentTypeError(f"{name}: optimizer must be a minireg optimizer, got {type(optimizer).__name__}")
        param_name = check.instance(f"{name}: param_name", param_name, str)
        for i, group in enumerate(optimizer.param_groups):
            if param_name not in group:
                raise ArgumentError(f"{name}: param group {i} has no option {param_name!r} to schedule; "
                                    f"it has {sorted(k for k in group if k != 'params')}")
            if isinstance(group[param_name], (bool, tuple, list, str)):
                raise ArgumentTypeError(f"{name}: can only schedule a number, but {param_name!r} "
                                        f"of param group {i} is {group[param_name]!r}")
        self.optimizer = optimizer
        self.param_name = param_name

    def get_last_lr(self):
        """The values of the scheduled option set by the last step, one per param group."""
        return list(self.last_values)

    def _describe(self):
        """The settings as constructor arguments: ``step_size=3, gamma=0.5, param_name='lr'``."""
        return ", ".join([f"{key}={getattr(self, key)!r}" for key in self._settings] + [f"param_name={self.param_name!r}"])

    def __repr__(self):
        values = ", ".join(f"{v:.6g}" for v in self.last_values)
        return f"{type(self).__name__}({self._describe()}; last_epoch={self.last_epoch}, {self.param_name}=[{values}])"

    def state_dict(self):
        """The scheduler's class name and its attributes (numbers, strings and lists)."""
        saved = {key: value for key, value in vars(self).items() if key not in self._not_saved}
        return {"scheduler": type(self).__name__, **saved}

    def load_state_dict(self, state_dict):
        """Restore ``state_dict()`` output, and the scheduled values in the optimizer's groups (so it
        does not matter whether the optimizer's state dict is loaded before or after). A state dict
        of another scheduler class or configuration raises ``CheckpointError``; nothing changes."""
        self._prepared_load(state_dict)()

    def _prepared_load(self, state_dict):
        """Validate ``state_dict``; returns the assignment (which cannot fail)."""
        name = type(self).__name__
        if not isinstance(state_dict, dict):
            raise CheckpointError(f"{name}.load_state_dict: expected a dict, got {type(state_dict).__name__}")
        state_dict = dict(state_dict)
        saved_class = state_dict.pop("scheduler", None)
        if saved_class != name:
            raise CheckpointError(f"{name}.load_state_dict: the state dict is of {saved_class!r}, not {name}")
        current = {key: value for key, value in vars(self).items() if key not in self._not_saved}
        if set(state_dict) != set(current):
            raise CheckpointError(f"{name}.load_state_dict: expected the entries {sorted(current)}, "
                                  f"got {sorted(state_dict)}")
        checked = {key: _checked_entry(f"{name}.load_state_dict: {key}", state_dict[key], value)
                   for key, value in current.items()}

        def assign():
            self.__dict__.update(checked)
            for group, value in zip(self.optimizer.param_groups, self.last_values):
                group[self.param_name] = value
        return assign


class LRScheduler(_Scheduler):
    """Base of the epoch-based schedules: subclasses set their settings, call this ``__init__``
    and implement ``values_at(epoch)`` (the closed form, one value per group)."""

    def __init__(self, optimizer, last_epoch=-1, param_name="lr"):
        self._init_option(optimizer, param_name)
        last_epoch = _count(type(self).__name__, "last_epoch", last_epoch, minimum=-1)
        key = f"initial_{param_name}"
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault(key, group[param_name])
        elif any(key not in group for group in optimizer.param_groups):
            raise ArgumentError(f"{type(self).__name__}: resuming at last_epoch={last_epoch} needs {key!r} in "
                             f"every param group (load the optimizer's state dict first)")
        self.base_values = [group[key] for group in optimizer.param_groups]
        self._apply(last_epoch + 1)

    def values_at(self, epoch):
        raise NotImplementedError

    def step(self):
        self._apply(self.last_epoch + 1)

    def _apply(self, epoch):
        self.last_epoch = epoch
        self.last_values = self.values_at(epoch)
        for group, value in zip(self.optimizer.param_groups, self.last_values):
            group[self.param_name] = value


class LambdaLR(LRScheduler):
    """value = initial * lr_lambda(epoch); ``lr_lambda`` is one function or one per group."""

    _not_saved = ("optimizer", "lr_lambdas")

    def __init__(self, optimizer, lr_lambda, last_epoch=-1, param_name="lr"):
        self._init_option(optimizer, param_name)
        n = len(optimizer.param_groups)
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(self.lr_lambdas) != n:
            raise ArgumentError(f"LambdaLR: got {len(self.lr_lambdas)} functions for {n} param groups")
        for i, fn in enumerate(self.lr_lambdas):
            if not callable(fn):
                raise ArgumentTypeError(f"LambdaLR: lr_lambda {i} must be a function epoch -> factor, "
                                        f"got {type(fn).__name__}")
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        return [base * fn(epoch) for base, fn in zip(self.base_values, self.lr_lambdas)]


class StepLR(LRScheduler):
    """value = initial * gamma ** (epoch // step_size)"""

    _settings = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1, param_name="lr"):
        self.step_size = _count("StepLR", "step_size", step_size)
        self.gamma = check.nonnegative("StepLR: gamma", gamma)
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        return [base * self.gamma ** (epoch // self.step_size) for base in self.base_values]


class ExponentialLR(LRScheduler):
    """value = initial * gamma ** epoch"""

    _settings = ("gamma",)

    def __init__(self, optimizer, gamma, last_epoch=-1, param_name="lr"):
        self.gamma = check.nonnegative("ExponentialLR: gamma", gamma)
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        return [base * self.gamma ** epoch for base in self.base_values]


class CosineAnnealingLR(LRScheduler):
    """value = eta_min + (initial - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    (no restarts: past T_max the value rises again along the cosine, as in torch)
    """

    _settings = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1, param_name="lr"):
        self.T_max = _count("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = check.nonnegative("CosineAnnealingLR: eta_min", eta_min)
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        cos = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * cos for base in self.base_values]


class LinearLR(LRScheduler):
    """value = initial * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) / total_iters)

    The linear warm-up: LinearLR(opt, start_factor=0.01, total_iters=warmup_steps).
    """

    _settings = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer, start_factor=1 / 3, end_factor=1.0, total_iters=5, last_epoch=-1,
                 param_name="lr"):
        self.start_factor = check.nonnegative("LinearLR: start_factor", start_factor)
        self.end_factor = check.nonnegative("LinearLR: end_factor", end_factor)
        self.total_iters = _count("LinearLR", "total_iters", total_iters)
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        progress = min(epoch, self.total_iters) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base * factor for base in self.base_values]


class SequentialLR(LRScheduler):
    """Scheduler ``schedulers[i]`` from epoch ``milestones[i - 1]`` on, restarted at its epoch 0 there."""

    _not_saved = ("optimizer", "schedulers")

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        schedulers = list(schedulers)
        milestones = [_count("SequentialLR", f"milestones[{i}]", m) for i, m in enumerate(milestones)]
        last_epoch = _count("SequentialLR", "last_epoch", last_epoch, minimum=-1)
        if not schedulers:
            raise ArgumentError("SequentialLR needs at least one scheduler")
        if len(milestones) != len(schedulers) - 1:
            raise ArgumentError(f"SequentialLR: {len(schedulers)} schedulers need {len(schedulers) - 1} "
                                f"milestones, got {milestones}")
        if milestones != sorted(milestones):
            raise ArgumentError(f"SequentialLR: milestones must be increasing, got {milestones}")
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRScheduler):
                raise ArgumentTypeError(f"SequentialLR: scheduler {i} must be an epoch-based scheduler, "
                                        f"got {type(s).__name__}")
            if s.optimizer is not optimizer or s.param_name != schedulers[0].param_name:
                raise ArgumentError("SequentialLR: every scheduler must drive the same optimizer and option")
        self.schedulers, self.milestones = schedulers, milestones
        self.optimizer, self.param_name = optimizer, schedulers[0].param_name
        self.base_values = schedulers[0].base_values
        self._apply(last_epoch + 1)

    def _describe(self):
        inner = ", ".join(f"{type(s).__name__}({s._describe()})" for s in self.schedulers)
        return f"[{inner}], milestones={self.milestones}"

    def _apply(self, epoch):
        i = bisect.bisect_right(self.milestones, epoch)
        current = self.schedulers[i]
        current._apply(epoch - (self.milestones[i - 1] if i else 0))
        self.last_epoch, self.last_values = epoch, current.last_values

    def state_dict(self):
        return {**super().state_dict(), "schedulers": [s.state_dict() for s in self.schedulers]}

    def _prepared_load(self, state_dict):
        if not isinstance(state_dict, dict):
            raise CheckpointError(f"SequentialLR.load_state_dict: expected a dict, got {type(state_dict).__name__}")
        state_dict = dict(state_dict)
        saved = state_dict.pop("schedulers", [])
        if not isinstance(saved, (list, tuple)) or len(saved) != len(self.schedulers):
            raise CheckpointError(f"SequentialLR.load_state_dict: {len(saved)} saved schedulers, "
                                  f"{len(self.schedulers)} here")
        assignments = [super()._prepared_load(state_dict)]
        assignments += [s._prepared_load(sd) for s, sd in zip(self.schedulers, saved)]

        def assign():
            for inner in assignments[1:]:
                inner()
            assignments[0]()          # the sequence's own values last: they are the ones in the groups
        return assign


def warmup_cosine(optimizer, warmup_steps, total_steps, start_factor=0.0, eta_min=0.0, param_name="lr"):
    """Linear warm-up from ``start_factor * initial`` to the initial value over ``warmup_steps``,
    then cosine annealing to ``eta_min`` at ``total_steps``."""
    warmup_steps = _count("warmup_cosine", "warmup_steps", warmup_steps)
    total_steps = _count("warmup_cosine", "total_steps", total_steps)
    if total_steps <= warmup_steps:
        raise ArgumentError(f"warmup_cosine: total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
    warmup = LinearLR(optimizer, start_factor, 1.0, warmup_steps, param_name=param_name)
    cosine = CosineAnnealingLR(optimizer, total_steps - warmup_steps, eta_min, param_name=param_name)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


class ReduceLROnPlateau(_Scheduler):
    """Multiply the option by ``factor`` when ``step(metric)`` has not improved for ``patience`` epochs.

    Improvement (mode "min", threshold_mode "rel"): metric < best * (1 - threshold); "abs":
    metric < best - threshold; mode "max" mirrors both. After a reduction, ``cooldown`` epochs pass
    before bad epochs count again. Values never go below ``min_lr`` (a number or one per group), and
    changes smaller than ``eps`` are skipped.
    """

    _settings = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lrs", "eps")

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0, eps=1e-8, param_name="lr"):
        name = "ReduceLROnPlateau"
        self._init_option(optimizer, param_name)
        mode = check.choice(f"{name}: mode", mode, ("min", "max"))
        threshold_mode = check.choice(f"{name}: threshold_mode", threshold_mode, ("rel", "abs"))
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            min_lrs = [check.nonnegative(f"{name}: min_lr[{i}]", v) for i, v in enumerate(min_lr)]
        else:
            min_lrs = [check.nonnegative(f"{name}: min_lr", min_lr)] * n
        if len(min_lrs) != n:
            raise ArgumentError(f"{name}: got {len(min_lrs)} min_lr values for {n} param groups")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = check.probability(f"{name}: factor", factor)
        self.threshold = check.nonnegative(f"{name}: threshold", threshold)
        self.eps = check.nonnegative(f"{name}: eps", eps)
        self.patience = _count(name, "patience", patience, 0)
        self.cooldown = _count(name, "cooldown", cooldown, 0)
        self.min_lrs = min_lrs
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = self.last_epoch = 0
        self.last_values = [group[param_name] for group in optimizer.param_groups]

    def is_better(self, metric, best):
        sign = 1 if self.mode == "min" else -1
        if self.threshold_mode == "rel":
            return sign * metric < sign * best * (1 - sign * self.threshold)
        return sign * metric < sign * best - self.threshold

    def step(self, metric):
        metric = check.real("ReduceLROnPlateau.step: metric", metric.item() if isinstance(metric, Tensor) else metric,
                            finite=False)
        self.last_epoch += 1
        if self.is_better(metric, self.best):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
                old = group[self.param_name]
                new = max(old * self.factor, floor)
                if old - new > self.eps:
                    group[self.param_name] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self.last_values = [group[self.param_name] for group in self.optimizer.param_groups]

