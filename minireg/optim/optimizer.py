"""The Optimizer base class: parameter groups, per-parameter state, hooks and state dicts.

Names and semantics follow ``torch.optim``. A subclass declares its options (``_checks``: name ->
checker that validates and normalises a value), the names of its state entries, and one
``_update(p, g, state, group)`` that changes ``p.data`` in place with the backend's array namespace
(``p.backend.xp``) or kernel table (``p.backend.kernels``), so the data never leaves its device.
A subclass may also override ``_update_group`` to update a group's parameters in one multi-tensor
kernel call (Adam does: ``adamw_prox_steps_``), the results bitwise those of ``_update``.

Parameter groups
----------------
``params`` is an iterable of leaf tensors that require grad (``model.parameters()`` is fine), or a
list of dicts ``{"params": [...], "lr": ..., ...}``; options missing from a group come from the
constructor's arguments. Keys that are not options (a group ``"name"``, a hook's per-group setting,
a scheduler's ``"initial_lr"``) are kept as they are, except keys that look like a misspelt option,
which raise. ``param_groups`` is a plain list of dicts: edit ``group["lr"]`` to change the step.

Regularizers and hooks
----------------------
``step()`` applies the regularizers attached to the parameters it steps (``minireg.reg.attach``:
``p.regularizers``; penalty gradients, proximal steps in this optimizer's metric (``_prox_step``)
and projections), and the optimizer's own hooks. A hook is any object with

- ``timing``: ``"pre"`` (runs before the update) or ``"post"`` (after it); required;
- ``stage``: ``"penalty"`` or ``"clip"`` when pre, ``"prox"`` or ``"constraint"`` when post;
- ``name`` (optional): shown in messages;
- ``hook(optimizer, group, params)``: called once per param group, in group order, with the list of
  that group's parameters that have a gradient (possibly empty).

``step()`` runs, inside ``no_grad``::

    attached penalty gradients, penalty hooks -> clip hooks -> the update rule, then each
    parameter's attached proximal steps -> prox hooks -> attached constraints, constraint hooks

so penalty gradients are in place before gradients are clipped, clipping sees the full gradient,
proximal steps read the learning rate of this very step from ``group["lr"]``, and projections come
last, leaving the parameters feasible. Within a stage, hooks run in registration order; each hook
runs over every group before the next hook starts. Pre hooks change gradients, post hooks change
``p.data`` in place. Hooks may update ``p.grad.data`` in place: backward gives every leaf its own
writable gradient buffer.
"""
import inspect

import numpy as np

from minireg import check
from minireg._config import enable_grad, no_grad
from minireg.reg.attach import attachments, check_activity
from minireg.check import flag, nonnegative, positive, probability as unit_interval, suggest as _suggest
from minireg.errors import (ArgumentError, ArgumentTypeError, CheckpointError, DeviceError, DTypeError,
                            NonFiniteError, ShapeError)
from minireg.tensor import Tensor

PRE_STAGES = ("penalty", "clip")
POST_STAGES = ("prox", "constraint")
_STAGES = {"pre": PRE_STAGES, "post": POST_STAGES}
_STAGE_ORDER = {stage: i for i, stage in enumerate(PRE_STAGES + POST_STAGES)}
NONFINITE_POLICIES = ("raise", "skip")


# Option checkers (``_checks`` values) are those of minireg.check: checker(name, value) validates one
# value and returns it normalised (state dicts may hand back NumPy scalars, 0-d arrays or lists where
# the user passed floats, bools and tuples). ``unit_interval`` is [0, 1); ``betas`` a pair of those.
def betas(name, value):
    """A pair (beta1, beta2) of numbers in [0, 1), as a tuple of floats."""
    try:
        beta1, beta2 = value
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be a pair (beta1, beta2), got {value!r}") from None
    return unit_interval(f"{name}[0]", beta1), unit_interval(f"{name}[1]", beta2)


def _index(value):
    """``value`` as an int if it is an integral number (int, NumPy integer or 0-d array, decimal
    string: the forms an index or count takes after an .npz round trip), else None."""
    try:
        number = int(value)
        return number if np.ndim(value) == 0 and number == float(value) else None
    except (TypeError, ValueError):
        return None


def _as_list(params, where):
    if isinstance(params, Tensor):
        return [params]
    if isinstance(params, (set, frozenset)):
        raise ArgumentTypeError(f"{where} must be an ordered iterable (a list or generator), not a set: the order "
                        f"of parameters numbers them in state dicts")
    if isinstance(params, dict):
        raise ArgumentTypeError(f"{where}: a single param group dict must be wrapped in a list, [{{'params': ...}}]")
    try:
        return list(params)
    except TypeError:
        raise ArgumentTypeError(f"{where} must be an iterable of Tensors or of param group dicts, "
                        f"got {type(params).__name__}") from None


class Optimizer:
    """Base class. ``Optimizer(params, defaults)``; see the module docstring for groups and hooks."""

    _checks = {}          # option name -> checker(name, value) -> normalised value
    _array_state = ()     # state entries shaped like the parameter (arrays on its device)
    _count_state = ()     # state entries that are integer counts (e.g. "step")

    def __new__(cls, *args, **kwargs):
        # Python's own error for a misspelt keyword does not list the valid ones; do it here, before
        # __init__ runs, so nothing is stored either way.
        signature = inspect.signature(cls.__init__)
        names = [n for n, p in signature.parameters.items() if n != "self" and p.kind != p.VAR_POSITIONAL]
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            for key in kwargs:
                if key not in names:
                    raise ArgumentTypeError(f"{cls.__name__} got an unknown option {key!r}{_suggest(key, names)}; "
                                    f"expected one of {', '.join(names)}")
        return super().__new__(cls)

    def __init__(self, params, defaults):
        name = type(self).__name__
        self.defaults = self._checked_options(defaults, f"{name}: ")
        items = _as_list(params, f"{name}: params")
        if not items:
            raise ArgumentError(f"{name} got an empty parameter list")
        if all(isinstance(item, dict) for item in items):
            groups = items
        elif any(isinstance(item, dict) for item in items):
            raise ArgumentTypeError(f"{name}: params must be all Tensors or all param group dicts, not a mix")
        else:
            groups = [{"params": items}]
        owners = {}
        checked = [self._checked_group(group, i, owners) for i, group in enumerate(groups)]
        self.param_groups = checked
        self.state = {}       # parameter -> {entry name: array or number}; keyed by the object itself
        self._hooks = []      # registration order
        self._order_hooks()

    def __repr__(self):
        """The options, the parameter counts, then one line per attached regularizer (with the shapes
        of the parameters it acts on) and per hook, in the order ``step()`` applies them."""
        sizes = ", ".join(str(len(g["params"])) for g in self.param_groups)
        options = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        lines = [f"{type(self).__name__}({options}; params per group: {sizes})"]
        for stage in PRE_STAGES + POST_STAGES:
            for attachment, params in self.regularizers():
                if attachment.stage == stage:
                    shapes = ", ".join(str(tuple(p.shape)) for p in params)
                    lines.append(f"  {attachment!r} on {len(params)} parameter{'s' * (len(params) > 1)}: {shapes}")
            lines += [f"  hook {h!r}" for h in self._hooks_by_stage[stage]]
        return "\n".join(lines)

    def regularizers(self):
        """``[(attachment, [params])]``: each regularizer attached to parameters of this optimizer
        (``minireg.reg.attach``), with the parameters it acts on, in attachment order."""
        found = {}
        for group in self.param_groups:
            for p in group["params"]:
                for attachment in attachments(p):
                    key = (id(attachment.regularizer), attachment.mode)
                    found.setdefault(key, (attachment, []))[1].append(p)
        return list(found.values())

    # -- validation ------------------------------------------------------------------------------
    def _checked_options(self, options, where):
        out = dict(options)
        for key, check in self._checks.items():
            if key in out:
                try:
                    out[key] = check(key, out[key])
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"{where}{exc}") from None
        for key in out:
            hint = "" if key in self._checks or key == "params" else _suggest(key, list(self._checks))
            if hint:
                raise ArgumentError(f"{where}unknown option {key!r}{hint}; options are {', '.join(self._checks)}")
        try:
            self._check_group(out)
        except ValueError as exc:
            raise ArgumentError(f"{where}{exc}") from None
        return out

    def _check_group(self, group):
        """Checks that involve several options (subclasses override)."""

    def _checked_group(self, group, index, owners):
        """A validated copy of ``group`` with defaults filled in; ``owners`` maps parameter -> group index."""
        where = f"{type(self).__name__}: param group {index}: "
        if not isinstance(group, dict):
            raise ArgumentTypeError(f"{where}expected a dict with a 'params' entry, got {type(group).__name__}")
        if "params" not in group:
            raise ArgumentError(f"{where}has no 'params' entry")
        params = _as_list(group["params"], f"{where}'params'")
        for j, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise ArgumentTypeError(f"{where}parameter {j} is a {type(p).__name__}, expected a Tensor or Parameter")
            if not p.requires_grad:
                raise ArgumentError(f"{where}parameter {j} (shape {p.shape}) does not require grad; "
                                 f"optimize only tensors created with requires_grad=True")
            if not p.is_leaf:
                raise ArgumentError(f"{where}parameter {j} is not a leaf (it was computed by an op); "
                                 f"optimize the leaf tensors instead")
            if p in owners:
                raise ArgumentError(f"{where}parameter {j} (shape {p.shape}) appears more than once "
                                 f"(already in param group {owners[p]})")
            owners[p] = index
        checked = self._checked_options({**self.defaults, **group}, where)
        checked["params"] = params
        return checked

    def add_param_group(self, group):
        """Append a param group (validated like the constructor's; missing options from the defaults)."""
        owners = {p: i for i, g in enumerate(self.param_groups) for p in g["params"]}
        self.param_groups.append(self._checked_group(group, len(self.param_groups), owners))

    # -- hooks -----------------------------------------------------------------------------------
    def add_hook(self, hook):
        """Register ``hook`` (see the module docstring for the contract); returns it."""
        label = getattr(hook, "name", None) or type(hook).__name__
        timing = getattr(hook, "timing", None)
        if timing not in _STAGES:
            raise ArgumentError(f"hook {label!r} must declare timing 'pre' (before the update) or 'post' "
                                f"(after it), got {timing!r}")
        stage = getattr(hook, "stage", None)
        if stage not in _STAGES[timing]:
            raise ArgumentError(f"hook {label!r} has timing {timing!r}, so its stage must be one of "
                                f"{_STAGES[timing]}, got {stage!r}")
        if not callable(getattr(hook, "hook", None)):
            raise ArgumentTypeError(f"hook {label!r} has no method hook(optimizer, group, params)")
        if any(h is hook for h in self._hooks):
            raise ArgumentError(f"hook {label!r} is already registered")
        self._hooks.append(hook)
        self._order_hooks()
        return hook

    def remove_hook(self, hook):
        for i, registered in enumerate(self._hooks):
            if registered is hook:
                del self._hooks[i]
                self._order_hooks()
                return
        raise ArgumentError(f"hook {getattr(hook, 'name', None) or type(hook).__name__!r} is not registered")

    def _order_hooks(self):
        ordered = sorted(self._hooks, key=lambda h: _STAGE_ORDER[h.stage])   # stable: registration order
        self._pre_hooks = tuple(h for h in ordered if h.timing == "pre")
        self._post_hooks = tuple(h for h in ordered if h.timing == "post")
        self._hooks_by_stage = {stage: tuple(h for h in ordered if h.stage == stage) for stage in _STAGE_ORDER}

    @property
    def hooks(self):
        """The registered hooks in the order ``step()`` runs them."""
        return self._pre_hooks + self._post_hooks

    # -- stepping --------------------------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Drop gradients (``set_to_none``) or replace them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    # A fresh tensor, not zeroing in place: grads may be shared or read-only.
                    p.grad = None if set_to_none else Tensor._make(p.backend.xp.zeros_like(p.data), p.backend)

    @property
    def nonfinite(self):
        """What ``step()`` does when a gradient holds NaN or infinity: ``"raise"`` (the default) a
        ``NonFiniteError`` naming the parameters, or ``"skip"`` the whole step (nothing changes,
        ``skipped_steps`` counts it; as AMP's GradScaler does). Set it after construction:
        ``optimizer.nonfinite = "skip"``."""
        return self.__dict__.get("_nonfinite", "raise")

    @nonfinite.setter
    def nonfinite(self, policy):
        self._nonfinite = check.choice(f"{type(self).__name__}.nonfinite", policy, NONFINITE_POLICIES)

    skipped_steps = 0     # steps skipped for non-finite gradients (nonfinite="skip")

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given.

        ``closure`` (recomputes the loss and calls backward) runs with gradients enabled.

        Every gradient is checked first, before any hook, update or state change: its shape, dtype
        and device must be the parameter's (``ShapeError``, ``DTypeError``, ``DeviceError``) and its
        values finite (``NonFiniteError``, or a skipped step: see ``nonfinite``). The finiteness
        check is one pass over the gradients on their device (the kernel table's ``surely_finite``)
        and one read of a single flag per step, the step's only device synchronisation (a second
        read only when that flag cannot vouch for the gradients). Each updated parameter's version
        is bumped once (``Tensor._bump_version``), after the post hooks.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            active = [[p for p in group["params"] if p.grad is not None] for group in self.param_groups]
            if not self._gradients_ok(active):
                self.skipped_steps += 1
                return loss
            check_activity(self)
            attached = self._attached(active)
            self._apply_attached("penalty", attached)
            self._run_hooks(self._pre_hooks, active)
            for group, params in zip(self.param_groups, active):
                self._update_group(group, params, attached)
            self._run_post_stages(active, attached)
            for params in active:           # the one place the in-place updates are recorded
                for p in params:
                    p._bump_version()
        return loss

    # -- gradient checks (before anything changes) ---------------------------------------------------
    def _label(self, group_index, p):
        """The label of ``p`` (in group ``group_index``) in messages: param group i, parameter j (name)."""
        j = next(j for j, q in enumerate(self.param_groups[group_index]["params"]) if q is p)   # Tensor == is elementwise
        name = f" ({p.name!r})" if getattr(p, "name", None) else ""
        return f"param group {group_index}, parameter {j}{name}"

    def _gradients_ok(self, active):
        """Raise for a gradient of the ``active`` parameters (per group, those with a gradient) that
        does not fit its parameter; False when one is non-finite and ``nonfinite == "skip"``, else True."""
        grads = {}            # backend -> (the gradient arrays on it, their (group index, parameter))
        for i, params in enumerate(active):
            for p in params:
                g, w = p.grad, p.data     # a mismatch is described (labels formatted) only when found
                if not isinstance(g, Tensor) or g.backend is not p.backend or g.data.shape != w.shape \
                        or g.data.dtype != w.dtype:
                    self._raise_mismatch(i, p)
                entry = grads.get(p.backend)
                if entry is None:
                    entry = grads[p.backend] = ([], [])
                entry[0].append(g.data)
                entry[1].append((i, p))
        for backend, (arrays, owners) in grads.items():
            if bool(backend.to_numpy(backend.kernels.surely_finite(arrays))):     # the one read per step
                continue
            xp = backend.xp
            finite = [xp.all(xp.isfinite(a)) for a in arrays]     # elementwise: the flag may be a false alarm
            if bool(backend.to_numpy(xp.all(xp.stack(finite)))):
                continue
            if self.nonfinite == "skip":
                return False
            bad = [self._label(i, p) for (i, p), flag in zip(owners, finite) if not bool(backend.to_numpy(flag))]
            raise NonFiniteError(f"{type(self).__name__}.step: NaN or infinite gradient for {'; '.join(bad)}; nothing "
                                 f"was updated (lower the learning rate, clip gradients, check the loss and the data, "
                                 f"or set optimizer.nonfinite = 'skip' to skip such steps)")
        return True

    def _raise_mismatch(self, group_index, p):
        """The error for a gradient of ``p`` that is not a Tensor of p's device, shape and dtype."""
        g = p.grad
        where = f"{type(self).__name__}.step: {self._label(group_index, p)}"
        if not isinstance(g, Tensor):
            raise ArgumentTypeError(f"{where}: the gradient is a {type(g).__name__}, expected a Tensor")
        if g.backend is not p.backend:
            raise DeviceError(f"{where}: the gradient is on {g.backend.device_name}, the parameter on "
                              f"{p.backend.device_name}")
        if g.shape != p.shape:
            raise ShapeError(f"{where}: the gradient has shape {g.shape}, the parameter {p.shape}")
        raise DTypeError(f"{where}: the gradient has dtype {g.dtype}, the parameter {p.dtype}")

    def _run_hooks(self, hooks, active):
        for hook in hooks:
            for group, params in zip(self.param_groups, active):
                hook.hook(self, group, params)

    # -- the update rule ----------------------------------------------------------------------------
    def _update_group(self, group, params, attached):
        """Update the ``params`` of ``group`` (those with a gradient), each followed by its attached
        proximal steps. ``attached`` lists ``(p, attachments)`` for the stepped parameters that carry
        regularizers. Subclasses override it to step several parameters in one kernel call (Adam)."""
        for p in params:
            self._update_param(p, group)

    def _batches(self, group, params, attached, entry):
        """The multi-tensor kernels' batches: ``{key: [arrays, ...]}`` with ``(key, arrays) =
        entry(p, state)`` for each parameter without an attached proximal step (one kernel call per
        key: backend, step count, ...). The others are updated one by one (``_update_param``), each
        with its proximal steps."""
        with_prox = {p for p, regs in attached if any(a.stage == "prox" for a in regs)}
        batches = {}
        for p in params:
            if p in with_prox:
                self._update_param(p, group)
                continue
            state = self.state.get(p)
            if state is None:
                state = self.state[p] = {}
            key, arrays = entry(p, state)
            batch = batches.get(key)
            if batch is None:
                batch = batches[key] = []
            batch.append(arrays)
        return batches

    def _update_param(self, p, group):
        """``_update`` of one parameter, then its attached proximal steps unless ``_update`` took them."""
        state = self.state.setdefault(p, {})
        if not self._update(p, p.grad.data, state, group):     # True: it applied the prox itself
            self._apply_prox(p, state, group)

    # -- regularizers attached to the parameters (minireg.reg.attach) ------------------------------
    @staticmethod
    def _attached(active):
        """``[(p, attachments(p))]`` for the stepped parameters that carry regularizers (usually
        none): read once per step for the penalty and constraint stages and the update."""
        attached = []
        for params in active:
            for p in params:
                regs = attachments(p)
                if regs:
                    attached.append((p, regs))
        return attached

    @staticmethod
    def _apply_attached(stage, attached):
        """Penalty gradients ("penalty") or projections ("constraint") of the stepped parameters;
        ``attached`` lists ``(p, attachments)`` for those that carry regularizers."""
        for p, regs in attached:
            for attachment in regs:
                if attachment.stage == stage:
                    if stage == "penalty":
                        attachment.regularizer.accumulate_grad_(p)
                    else:
                        attachment.regularizer.project_(p)

    def _apply_prox(self, p, state, group):
        """The proximal steps attached to ``p``, right after its update: mode "prox" in this
        optimizer's metric (``_prox_step``), mode "prox_lr" with the plain learning rate."""
        metric = None
        for attachment in attachments(p):
            if attachment.mode == "prox":
                metric = self._prox_step(p, state, group) if metric is None else metric
                attachment.regularizer.prox_(p, metric)
            elif attachment.mode == "prox_lr":
                attachment.regularizer.prox_(p, group["lr"])

    def _prox_step(self, p, state, group):
        """The step of the proximal operator in this optimizer's metric, right after the update of
        ``p``: the learning rate (Euclidean metric, as for SGD), or for adaptive optimizers the array
        of per-coordinate steps lr / (sqrt(v_hat) + eps) of the update just taken."""
        return group["lr"]

    def _run_post_stages(self, active, attached):
        """prox hooks -> attached constraints -> constraint hooks."""
        self._run_hooks(self._hooks_by_stage["prox"], active)
        self._apply_attached("constraint", attached)
        self._run_hooks(self._hooks_by_stage["constraint"], active)

    def _update(self, p, g, state, group):
        """Update ``p.data`` in place from gradient array ``g``; ``state`` is p's (mutable) state.
        Returns True only when it also applied ``p``'s attached proximal steps (a fused kernel)."""
        raise NotImplementedError

    @staticmethod
    def _buffer(state, name, p, fill=0.0):
        """``state[name]``, created as an array like ``p`` filled with ``fill`` on first use."""
        if name not in state:
            state[name] = p.backend.xp.full_like(p.data, fill)
        return state[name]

    # -- state dicts -----------------------------------------------------------------------------
    def state_dict(self):
        """``{"optimizer": class name, "options": [option names], "state": {index: {name: ndarray or
        int}}, "param_groups": [{options, "params": [index]}]}``.

        Parameters are numbered in group order. Only NumPy arrays (host copies), Python numbers,
        strings, tuples, lists and dicts, so it can be flattened into an .npz file.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = [index.setdefault(p, len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, i in index.items():
            if self.state.get(p):
                state[i] = {name: np.array(p.backend.to_numpy(value)) if name in self._array_state else value
                            for name, value in self.state[p].items()}
        return {"optimizer": type(self).__name__, "options": list(self._checks), "state": state,
                "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore ``state_dict()`` output (also after an .npz round trip: numbers may come back as
        0-d arrays, tuples as arrays, keys as strings). It must come from the same optimizer class
        with the same options; every mismatch is reported in one ``CheckpointError``, raised before
        anything changes; arrays go to each parameter's device and dtype."""
        self._prepared_load(state_dict)()

    def _prepared_load(self, state_dict):
        """Validate ``state_dict`` fully and return a function that assigns it (and cannot fail), so
        ``minireg.load`` can check a model, an optimizer and schedulers before changing any."""
        name = type(self).__name__
        try:
            saved_class, saved_options = state_dict["optimizer"], state_dict["options"]
            saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        except (KeyError, TypeError, IndexError):
            raise CheckpointError(f"cannot load into {name}: an optimizer state dict needs the entries "
                                  f"'optimizer', 'options', 'state' and 'param_groups'") from None
        if saved_class != name:
            raise CheckpointError(f"cannot load a state dict of {saved_class!r} into {name}: the optimizer "
                                  f"classes differ")
        try:
            saved_options = sorted(map(str, saved_options))
        except TypeError:
            raise CheckpointError(f"cannot load into {name}: 'options' must be a list of names, "
                                  f"got {saved_options!r}") from None
        if saved_options != sorted(self._checks):
            raise CheckpointError(f"cannot load into {name}: the state dict has the options {saved_options}, "
                                  f"this optimizer {sorted(self._checks)}")
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise CheckpointError(f"cannot load into {name}: 'param_groups' must be a list and 'state' a dict")
        if len(saved_groups) != len(self.param_groups):
            raise CheckpointError(f"cannot load into {name}: the state dict has {len(saved_groups)} param groups, "
                                  f"this optimizer has {len(self.param_groups)}")
        errors = []
        params_of = {}        # saved index -> current parameter
        new_groups = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict):
                errors.append(f"param group {i} must be a dict, got {type(saved).__name__}")
                continue
            indices = [_index(k) for k in saved.get("params", ())]
            if None in indices:
                errors.append(f"param group {i}: 'params' must be a list of integer indices, "
                              f"got {saved.get('params')!r}")
            elif len(indices) != len(group["params"]):
                errors.append(f"param group {i} has {len(indices)} params in the state dict, "
                              f"{len(group['params'])} here")
            else:
                params_of.update(zip(indices, group["params"]))
            missing = [key for key in self._checks if key not in saved]
            if missing:
                errors.append(f"param group {i} lacks the options {missing}")
            options = {key: value for key, value in saved.items() if key != "params"}
            try:
                new_groups.append(self._checked_options({**group, **options}, f"param group {i}: "))
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        new_state = {}
        # a group whose parameter list does not fit leaves its state unplaced: that is no extra news
        groups_match = len(params_of) == sum(len(group["params"]) for group in self.param_groups)
        for key, entries in saved_state.items():
            p = params_of.get(_index(key))
            if p is None:
                if groups_match:
                    errors.append(f"state for parameter {key} which no param group lists")
            elif not isinstance(entries, dict):
                errors.append(f"state of parameter {key} must be a dict, got {type(entries).__name__}")
            else:
                new_state[p] = self._checked_state(p, key, entries, errors)
        if errors:
            raise CheckpointError(f"cannot load the state dict into {name}:\n  - " + "\n  - ".join(errors))

        def assign():
            for group, new in zip(self.param_groups, new_groups):
                params = group["params"]
                group.clear()
                group.update(new, params=params)
            self.state = {p: {entry: p.backend.from_numpy(value) if entry in self._array_state else value
                              for entry, value in entries.items()}
                          for p, entries in new_state.items()}
        return assign

    def _checked_state(self, p, key, entries, errors):
        """Host copies of one parameter's saved state, converted to p's dtype; problems go to ``errors``."""
        out = {}
        for name, value in entries.items():
            where = f"state of parameter {key} ({name!r})"
            if name in self._count_state:
                count = _index(value)
                if count is None or count < 0:
                    errors.append(f"{where} must be a count >= 0, got {value!r}")
                out[name] = count
            elif name in self._array_state:
                try:
                    out[name] = np.array(value, dtype=p.backend.numpy_dtype(p.dtype))
                except (TypeError, ValueError):
                    errors.append(f"{where} must be an array, got {type(value).__name__}")
                    continue
                if out[name].shape != p.shape:
                    errors.append(f"{where} has shape {out[name].shape}, the parameter has {p.shape}")
                elif not np.isfinite(out[name]).all():
                    errors.append(f"{where} holds NaN or infinite values")
            else:
                errors.append(f"{where} is not a state entry of {type(self).__name__} (it keeps "
                              f"{', '.join(self._count_state + self._array_state)})")
        return out
