"""Attaching regularizers: they live on parameters, and every optimizer applies them.

    reg.attach(layer.weight, reg.L1(1e-3))          # one parameter
    reg.attach(model, reg.MaxNorm(3.0))             # the selected parameters of a module (weights)
    reg.attach(optimizer, reg.L1(1e-3))             # the selected parameters an optimizer steps
    nn.Linear(64, 10, weight_regularizer=reg.L2(1e-4), weight_constraint=reg.MaxNorm(3.0))

Each call records one ``Attachment`` (the regularizer and its mode) in ``param.regularizers``.
Every minireg optimizer applies the attachments of the parameters it steps, inside ``step()``, so
the regularizer acts exactly once per step whatever drives the loop: ``fit``, ``Trainer``,
``GANTrainer`` or a hand-written ``zero_grad / backward / step``. A parameter shared by two layers
is one object, so it is regularized once. A parameter carries at most one regularizer of each
kind: attaching the same regularizer, or a second ``L1``, to a parameter raises ``ArgumentError``
(so a layer's ``weight_regularizer=L2(...)`` plus ``attach(model, L2(...))`` cannot count L2
twice). ``detach(target, regularizer)`` removes one.

Modes of a penalty R with strength alpha: every mode minimizes the same objective L + alpha*R
---------------------------------------------------------------------------------------------
- ``"grad"``: dR/dw is added to ``p.grad`` before gradient clipping and the update (no graph, a
  compiled kernel where one exists): the same step as adding ``R`` to the loss.
- ``"prox"``: after the update, w <- prox of R in the optimizer's own metric. For SGD (and
  momentum SGD) the metric is Euclidean with step lr: w <- prox_{lr R}(w). For the adaptive
  optimizers (Adam, AdamW, RMSprop, Adagrad) the update is w - D^{-1} m with a diagonal
  D = diag((sqrt(v_hat) + eps) / lr), and the prox is taken in the same metric:
  w <- argmin_x 1/2 ||x - w||_D^2 + R(x). For L1 that is the soft threshold with the
  per-coordinate threshold lr*alpha / (sqrt(v_hat) + eps); elastic net and L2 likewise per
  coordinate; group lasso has the exact block form (``GroupLasso.prox_``). The fixed points are
  those of the subgradient method on L + alpha*R, and the zeros are exact (variable-metric
  proximal gradient; Yun, Lozano & Yang 2021; Melchior et al. 2019). See docs/regularizers.md.
- ``"prox_lr"``: the prox in parameter units, w <- prox_{lr R}(w), whatever the optimizer.
  Under Adam this is NOT L + alpha*R: Adam moves each weight by about lr per step, so the
  threshold lr*alpha acts like a penalty alpha*(sqrt(v_hat) + eps) that depends on the gradient
  scale. Kept as an explicitly named option (it is what ``ProximalAdamW(prox_lr=True)`` does).
- ``"auto"`` (the default): ``"prox"`` when R has a closed-form prox, else ``"grad"``.

Constraints are always projections after the update (and after the proximal steps), so after a
step the parameters are feasible. Activity regularizers depend on the forward pass and are not
attached: the loss gets them from ``model.regularization_loss()``.

Adding ``penalty.value(params)`` to the loss by hand remains possible; it is a separate, explicit
choice: such a penalty is not attached, so the optimizer does not apply it again.

Coupled L2 is not decoupled weight decay
----------------------------------------
An L2 penalty attached as a gradient (or added to the loss) is *coupled*: 2*alpha*w joins g
before the optimizer sees it; for SGD the step is w -= lr*(g + 2*alpha*w), exactly
``SGD(weight_decay=2*alpha)``. For Adam the sum passes through the adaptive scaling. AdamW's
*decoupled* decay w -= lr*lambda*w is applied outside the adaptive scaling: the same shrinkage
for every coordinate (Loshchilov & Hutter 2019); it is an optimizer option, not a penalty.
"""
import weakref

from minireg import check
from minireg.errors import ArgumentError, ArgumentTypeError, GraphError
from minireg.function import Function
from minireg.reg.base import Constraint, Penalty, Regularizer
from minireg.tensor import Tensor

MODES = ("auto", "grad", "prox", "prox_lr")
STAGE_OF_MODE = {"grad": "penalty", "prox": "prox", "prox_lr": "prox", "project": "constraint"}


class Attachment:
    """One regularizer recorded on one parameter, with the mode the optimizer applies it in:
    ``"grad"``, ``"prox"``, ``"prox_lr"`` (penalties) or ``"project"`` (constraints)."""
    __slots__ = ("regularizer", "mode")

    def __init__(self, regularizer, mode):
        self.regularizer, self.mode = regularizer, mode

    @property
    def stage(self):
        """The optimizer stage it runs in: "penalty", "prox" or "constraint"."""
        return STAGE_OF_MODE[self.mode]

    def __repr__(self):
        return f"{self.mode}:{self.regularizer!r}"


def resolve_mode(regularizer, mode="auto"):
    """The mode ``regularizer`` is applied in: "project" for a Constraint; for a Penalty "grad",
    "prox" or "prox_lr" ("auto": "prox" when it has a closed-form prox, else "grad")."""
    check.choice("attach: mode", mode, MODES)
    if isinstance(regularizer, Constraint):
        if mode != "auto":
            raise ArgumentError(f"attach: {type(regularizer).__name__} is a constraint, always applied as a "
                                f"projection after the update; mode={mode!r} applies to penalties only")
        return "project"
    if not isinstance(regularizer, Penalty):
        raise ArgumentTypeError(f"attach: regularizer must be a minireg.reg Penalty or Constraint, got "
                                f"{type(regularizer).__name__} (activity regularizers go to a layer's "
                                f"activity_regularizer= and into the loss via model.regularization_loss())")
    if getattr(regularizer, "activity_only", False):
        raise ArgumentTypeError(f"attach: {type(regularizer).__name__} penalizes activations, not parameters: give "
                                f"it to a layer as activity_regularizer= and add model.regularization_loss() to "
                                f"the loss")
    if mode == "auto":
        return "prox" if regularizer.has_prox else "grad"
    if mode != "grad" and not regularizer.has_prox:
        raise ArgumentError(f"attach: {type(regularizer).__name__} has no closed-form prox, so mode={mode!r} is "
                            f"impossible; use mode='grad' (or 'auto')")
    return mode


def attachments(param):
    """The ``Attachment``s recorded on ``param`` (an empty tuple when there are none)."""
    recorded = param.__dict__.get("regularizers")     # read by every optimizer step, per parameter
    return tuple(recorded) if recorded else ()


def fused_strengths(p, modes):
    """(l1, l2) when ``p``'s only attached proximal step is an L1 / L2 / elastic net penalty
    (``ElasticNetForm``) in one of ``modes``, so that an optimizer may fuse it into its update
    kernel; else None."""
    if not p.__dict__.get("regularizers"):      # the common case, on every step of every parameter
        return None
    from minireg.reg.penalties import ElasticNetForm
    proxes = [a for a in attachments(p) if a.stage == "prox"]
    if len(proxes) == 1 and proxes[0].mode in modes and isinstance(proxes[0].regularizer, ElasticNetForm):
        return proxes[0].regularizer.strengths
    return None


def _targets(target, regularizer):
    """The parameters ``attach(target, regularizer)`` acts on, in a stable order, each once."""
    from minireg.nn.module import Module
    from minireg.optim.optimizer import Optimizer
    if isinstance(target, Tensor):
        params = [target]                       # the user named it: no selection
    elif isinstance(target, Module):
        params = regularizer.selected(list(target.parameters()))
    elif isinstance(target, Optimizer):
        params = regularizer.selected([p for group in target.param_groups for p in group["params"]])
    else:
        raise ArgumentTypeError(f"attach: target must be a Parameter, a Module or an Optimizer, got "
                                f"{type(target).__name__}")
    for p in params:
        if not isinstance(p, Tensor) or not p.is_leaf or not p.requires_grad:
            raise ArgumentError(f"attach: regularizers go on trainable leaf tensors (nn.Parameter); got a tensor "
                                f"of shape {tuple(p.shape)} that {'is not a leaf' if not p.is_leaf else 'does not require grad'}")
    if not params:
        raise ArgumentError(f"attach: {regularizer!r} selects none of the parameters of the "
                            f"{type(target).__name__} (default: weights with ndim >= 2); pass select= to choose others")
    return params


def attach(target, regularizer, mode="auto"):
    """Record ``regularizer`` on the parameters of ``target`` (a Parameter, a Module or an Optimizer);
    returns the list of parameters it was attached to. See the module docstring for the modes.

    All or nothing: if any parameter already carries a regularizer of the same kind, ArgumentError
    and nothing is recorded.
    """
    mode = resolve_mode(regularizer, mode)
    params = _targets(target, regularizer)
    for p in params:
        for existing in attachments(p):
            if type(existing.regularizer) is type(regularizer):
                same = "it is" if existing.regularizer is regularizer else f"{existing.regularizer!r} is"
                raise ArgumentError(f"attach: {regularizer!r}: {same} already attached to this parameter of shape "
                                    f"{tuple(p.shape)}; a parameter carries at most one regularizer of each kind, "
                                    f"so that none acts twice (reg.detach(param, old) first, or combine the "
                                    f"strengths into one)")
    for p in params:
        p.__dict__.setdefault("regularizers", []).append(Attachment(regularizer, mode))
    return params


def detach(target, regularizer):
    """Remove ``regularizer`` from the parameters of ``target`` that carry it; returns them."""
    if not isinstance(regularizer, Regularizer):
        raise ArgumentTypeError(f"detach: regularizer must be a minireg.reg Penalty or Constraint, got "
                                f"{type(regularizer).__name__}")
    if isinstance(target, Tensor):
        params = [target]
    else:
        params = _targets(target, Regularizer(select=lambda p: True))
    removed = []
    for p in params:
        kept = [a for a in attachments(p) if a.regularizer is not regularizer]
        if len(kept) != len(attachments(p)):
            p.__dict__["regularizers"] = kept
            removed.append(p)
    if not removed:
        raise ArgumentError(f"detach: {regularizer!r} is not attached to any parameter of the {type(target).__name__}")
    return removed


# -- activity regularizers: recorded by a layer's training forward, added to the loss ---------------
_recorded = weakref.WeakKeyDictionary()     # layer -> ActivityRecord of its last training forward


class ActivityRecord:
    """Whether the activity loss of a layer's last training forward reached a backward pass."""
    __slots__ = ("reached",)

    def __init__(self):
        self.reached = False


class _MarkReached(Function):
    """Identity whose backward notes, in its record, that the activity loss reached a backward pass."""
    saves = ()

    def __init__(self, record):
        self.record = record

    def forward(self, x):
        return x

    def backward(self, gy):
        self.record.reached = True
        return (gy,)


def record_activity_loss(layer, loss):
    """``loss`` (a Tensor) as ``layer``'s activity loss of this forward. When it is part of a graph,
    backward marks its record as reached, which the optimizer checks (``check_activity``)."""
    if isinstance(loss, Tensor) and loss.requires_grad:
        record = _recorded[layer] = ActivityRecord()
        return _MarkReached(record)(loss)
    _recorded.pop(layer, None)
    return loss


def check_activity(optimizer):
    """GraphError when a layer owning one of ``optimizer``'s parameters recorded an activity loss in its
    last training forward that no backward reached (it was left out of the loss): ``step()`` calls it."""
    if not _recorded:
        return
    params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for layer, record in list(_recorded.items()):
        if record.reached or not any(id(p) in params for p in layer.parameters(recurse=False)):
            continue
        raise GraphError(f"{type(layer).__name__}({layer.extra_repr()}) recorded an activity regularization loss "
                         f"in its last training forward, but backward never reached it: add "
                         f"model.regularization_loss() to the loss before backward (fit and Trainer do), or run "
                         f"forwards that are not training steps in eval mode (model.eval()) or under no_grad()")


def regularization_loss(model):
    """Sum of the activity losses recorded by ``model``'s layers in their last training forward
    (Keras's ``model.losses``), differentiable; 0.0 when there are none. Weight and bias penalties
    are not in it: they live on the parameters, and the optimizer applies them."""
    terms, seen = [], set()
    for layer in model.modules():
        loss = layer.__dict__.get("activity_loss")
        if loss is not None and id(layer) not in seen:
            seen.add(id(layer))
            terms.append(loss)
    if not terms:
        return 0.0
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
