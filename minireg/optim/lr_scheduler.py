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

from minireg.tensor import Tensor


def _count(name, value, minimum=1):
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _Scheduler:
    """What every scheduler shares: the optimizer option it drives and (de)serialisation."""

    _not_saved = ("optimizer",)

    def _init_option(self, optimizer, param_name):
        self.optimizer = optimizer
        self.param_name = param_name
        for i, group in enumerate(optimizer.param_groups):
            if param_name not in group:
                raise ValueError(f"{type(self).__name__}: param group {i} has no option {param_name!r} to schedule; "
                                 f"it has {sorted(k for k in group if k != 'params')}")
            if isinstance(group[param_name], (bool, tuple, list, str)):
                raise TypeError(f"{type(self).__name__}: can only schedule a number, but {param_name!r} "
                                f"of param group {i} is {group[param_name]!r}")

    def get_last_lr(self):
        """The values of the scheduled option set by the last step, one per param group."""
        return list(self.last_values)

    def state_dict(self):
        return {key: value for key, value in vars(self).items() if key not in self._not_saved}

    def load_state_dict(self, state_dict):
        """Restore ``state_dict()`` output, and the scheduled values in the optimizer's groups (so it
        does not matter whether the optimizer's state dict is loaded before or after)."""
        expected = {key for key in vars(self) if key not in self._not_saved}
        if set(state_dict) != expected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected the entries {sorted(expected)}, "
                             f"got {sorted(state_dict)}")
        if len(state_dict["last_values"]) != len(self.optimizer.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {len(state_dict['last_values'])} saved "
                             f"values for {len(self.optimizer.param_groups)} param groups")
        self.__dict__.update(state_dict)
        for group, value in zip(self.optimizer.param_groups, self.last_values):
            group[self.param_name] = value


class LRScheduler(_Scheduler):
    """Base of the epoch-based schedules: subclasses set their settings, call this ``__init__``
    and implement ``values_at(epoch)`` (the closed form, one value per group)."""

    def __init__(self, optimizer, last_epoch=-1, param_name="lr"):
        self._init_option(optimizer, param_name)
        key = f"initial_{param_name}"
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault(key, group[param_name])
        elif any(key not in group for group in optimizer.param_groups):
            raise ValueError(f"{type(self).__name__}: resuming at last_epoch={last_epoch} needs {key!r} in "
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
        n = len(optimizer.param_groups)
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(self.lr_lambdas) != n:
            raise ValueError(f"LambdaLR: got {len(self.lr_lambdas)} functions for {n} param groups")
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        return [base * fn(epoch) for base, fn in zip(self.base_values, self.lr_lambdas)]


class StepLR(LRScheduler):
    """value = initial * gamma ** (epoch // step_size)"""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1, param_name="lr"):
        self.step_size, self.gamma = _count("step_size", step_size), float(gamma)
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        return [base * self.gamma ** (epoch // self.step_size) for base in self.base_values]


class ExponentialLR(LRScheduler):
    """value = initial * gamma ** epoch"""

    def __init__(self, optimizer, gamma, last_epoch=-1, param_name="lr"):
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        return [base * self.gamma ** epoch for base in self.base_values]


class CosineAnnealingLR(LRScheduler):
    """value = eta_min + (initial - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    (no restarts: past T_max the value rises again along the cosine, as in torch)
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1, param_name="lr"):
        self.T_max, self.eta_min = _count("T_max", T_max), float(eta_min)
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        cos = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * cos for base in self.base_values]


class LinearLR(LRScheduler):
    """value = initial * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) / total_iters)

    The linear warm-up: LinearLR(opt, start_factor=0.01, total_iters=warmup_steps).
    """

    def __init__(self, optimizer, start_factor=1 / 3, end_factor=1.0, total_iters=5, last_epoch=-1,
                 param_name="lr"):
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        if not (self.start_factor >= 0 and self.end_factor >= 0):
            raise ValueError(f"LinearLR: start_factor and end_factor must be >= 0, got "
                             f"{start_factor!r} and {end_factor!r}")
        self.total_iters = _count("total_iters", total_iters)
        super().__init__(optimizer, last_epoch, param_name)

    def values_at(self, epoch):
        progress = min(epoch, self.total_iters) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base * factor for base in self.base_values]


class SequentialLR(LRScheduler):
    """Scheduler ``schedulers[i]`` from epoch ``milestones[i - 1]`` on, restarted at its epoch 0 there."""

    _not_saved = ("optimizer", "schedulers")

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        schedulers, milestones = list(schedulers), [int(m) for m in milestones]
        if not schedulers:
            raise ValueError("SequentialLR needs at least one scheduler")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: {len(schedulers)} schedulers need {len(schedulers) - 1} milestones, "
                             f"got {milestones}")
        if milestones != sorted(milestones) or (milestones and milestones[0] < 1):
            raise ValueError(f"SequentialLR: milestones must be increasing and >= 1, got {milestones}")
        for s in schedulers:
            if s.optimizer is not optimizer or s.param_name != schedulers[0].param_name:
                raise ValueError("SequentialLR: every scheduler must drive the same optimizer and option")
        self.schedulers, self.milestones = schedulers, milestones
        self.optimizer, self.param_name = optimizer, schedulers[0].param_name
        self.base_values = schedulers[0].base_values
        self._apply(last_epoch + 1)

    def _apply(self, epoch):
        i = bisect.bisect_right(self.milestones, epoch)
        current = self.schedulers[i]
        current._apply(epoch - (self.milestones[i - 1] if i else 0))
        self.last_epoch, self.last_values = epoch, current.last_values

    def state_dict(self):
        return {**super().state_dict(), "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        saved = state_dict.pop("schedulers", [])
        if len(saved) != len(self.schedulers):
            raise ValueError(f"SequentialLR.load_state_dict: {len(saved)} saved schedulers, "
                             f"{len(self.schedulers)} here")
        super().load_state_dict(state_dict)
        for s, sd in zip(self.schedulers, saved):
            s.load_state_dict(sd)


def warmup_cosine(optimizer, warmup_steps, total_steps, start_factor=0.0, eta_min=0.0, param_name="lr"):
    """Linear warm-up from ``start_factor * initial`` to the initial value over ``warmup_steps``,
    then cosine annealing to ``eta_min`` at ``total_steps``."""
    warmup_steps, total_steps = _count("warmup_steps", warmup_steps), _count("total_steps", total_steps)
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
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

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0, eps=1e-8, param_name="lr"):
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if not 0 <= factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in [0, 1), got {factor!r}")
        n = len(optimizer.param_groups)
        min_lrs = [float(v) for v in min_lr] if isinstance(min_lr, (list, tuple)) else [float(min_lr)] * n
        if len(min_lrs) != n:
            raise ValueError(f"ReduceLROnPlateau: got {len(min_lrs)} min_lr values for {n} param groups")
        self._init_option(optimizer, param_name)
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor, self.threshold, self.eps = float(factor), float(threshold), float(eps)
        self.patience, self.cooldown = _count("patience", patience, 0), _count("cooldown", cooldown, 0)
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
        metric = metric.item() if isinstance(metric, Tensor) else float(metric)
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

