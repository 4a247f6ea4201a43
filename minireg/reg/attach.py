"""Attaching regularizers: to the loss, to an optimizer, or to a layer.

Two alternatives for a soft penalty R
-------------------------------------
1. **In the loss**: ``loss = data_loss + penalty.value(params)`` (or ``+ regularization_loss(model)``
   for penalties given to layers). Autograd differentiates R with everything else; the optimizer
   sees one gradient and knows nothing about R.
2. **As an optimizer hook**: ``attach(optimizer, penalty, mode)``. ``mode="grad"`` registers a
   ``PenaltyGradient`` that adds dR/dw to ``p.grad`` before the update (no graph, a compiled kernel
   where one exists; the same update as alternative 1, see ``tests/reg/test_attach.py``);
   ``mode="prox"`` registers a ``ProximalStep`` that replaces w by prox_{lr R}(w) after the update,
   which is what produces exact zeros for L1; ``mode="auto"`` picks "prox" when the penalty has a
   closed-form prox. Constraints are always hooks (a ``Projection`` after the update).

Use one alternative per regularizer, never both: that counts R twice. ``attach_model`` moves the
penalties given to layers from the loss into the optimizer, and ``regularization_loss(model,
optimizer)`` leaves out exactly those, so ``Trainer`` (which adds ``regularization_loss``) and
``attach_model`` can be combined safely.

The order of the hooks
----------------------
Whatever the registration order, every ``optimizer.step()`` runs

    penalty gradients -> gradient clipping -> optimizer update -> proximal steps -> constraints

so clipping sees the penalty-augmented gradient, proximal steps use the step's ``group["lr"]`` on
the updated values, and projections come last: after a step the parameters are feasible.

Coupled L2 is not decoupled weight decay
----------------------------------------
An L2 penalty R = (lambda/2)||w||^2 attached as a gradient (or added to the loss) is *coupled*:
lambda*w joins g before the optimizer sees it. For SGD the step is w -= lr*(g + lambda*w), exactly
``SGD(weight_decay=lambda)``. For Adam the sum passes through the adaptive scaling,
w -= lr*m_hat(g + lambda*w)/(sqrt(v_hat) + eps): coordinates with large past gradients (large v)
are barely decayed, coordinates with small gradients are decayed strongly, and the decay is
nowhere lr*lambda*w. AdamW's *decoupled* decay w -= lr*lambda*w is applied outside the adaptive
scaling, the same shrinkage for every coordinate (Loshchilov & Hutter 2019). The two coincide for
SGD and differ for Adam whenever gradient scales differ between coordinates.

Regularizers on layers
----------------------
``Linear``, ``Conv2d`` and ``ConvTranspose2d`` take Keras's ``weight_regularizer``,
``bias_regularizer``, ``activity_regularizer``, ``weight_constraint`` and ``bias_constraint``.
A weight or bias penalty acts on that one parameter (the user named it, so the default
weights-only selection does not apply); an activity regularizer is any callable on the layer's
output, evaluated at each forward in training mode and kept as ``layer.activity_loss``. Penalties
reach the training objective through ``regularization_loss`` or, with ``attach_model``, through
optimizer hooks; constraints take effect only through ``attach_model``.
"""
import copy

from minireg.reg.base import Constraint, Penalty, PenaltyGradient, Projection, ProximalStep

MODES = ("auto", "grad", "prox")


def hook_for(regularizer, mode="auto"):
    """The optimizer hook applying ``regularizer``: a ``Projection`` for a Constraint; for a Penalty a
    ``ProximalStep`` (``mode="prox"``, or "auto" when it has a prox) or a ``PenaltyGradient`` ("grad")."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(regularizer, Constraint):
        if mode != "auto":
            raise ValueError(f"{type(regularizer).__name__} is a constraint, always applied as a projection; "
                             f"mode={mode!r} applies to penalties only")
        return Projection(regularizer)
    if not isinstance(regularizer, Penalty):
        raise TypeError(f"expected a Penalty or a Constraint, got {type(regularizer).__name__}")
    if mode == "auto":
        mode = "prox" if regularizer.has_prox else "grad"
    return ProximalStep(regularizer) if mode == "prox" else PenaltyGradient(regularizer)


def attach(optimizer, regularizer, mode="auto"):
    """Register ``regularizer`` on ``optimizer`` as the hook ``hook_for(regularizer, mode)``; returns it."""
    return optimizer.add_hook(hook_for(regularizer, mode))


def detach(optimizer, hooks):
    """Remove a hook returned by ``attach``, or a list of them as returned by ``attach_model``."""
    for hook in [hooks] if hasattr(hooks, "hook") else list(hooks):
        optimizer.remove_hook(hook)


def _unique_modules(model):
    """``named_modules`` with each module once (a shared layer is regularized once)."""
    seen = set()
    for prefix, layer in model.named_modules():
        if layer not in seen:
            seen.add(layer)
            yield prefix, layer


def layer_regularizers(model):
    """``(name, parameter, regularizer)`` for each weight/bias regularizer and constraint set on a
    sub-module of ``model``; ``name`` is the parameter's dotted name, as in ``named_parameters``."""
    for prefix, layer in _unique_modules(model):
        for attr in ("weight", "bias"):
            param = getattr(layer, attr, None)
            for option in (f"{attr}_regularizer", f"{attr}_constraint"):
                regularizer = getattr(layer, option, None)
                if regularizer is None:
                    continue
                if param is None:   # e.g. SpectralNorm moved the weight to the wrapper's weight_orig
                    raise ValueError(f"layer {prefix or type(layer).__name__!r} has a {option} but no {attr!r} "
                                     f"parameter (a wrapper such as SpectralNorm may have moved it); attach the "
                                     f"regularizer to the wrapper's parameter with reg.attach(optimizer, ...)")
                yield (f"{prefix}.{attr}" if prefix else attr), param, regularizer


def attach_model(model, optimizer, mode="auto"):
    """Register one hook per layer-attached weight/bias regularizer and constraint; returns the hooks.

    Each hook holds a copy of the layer's regularizer whose selection is that one parameter object
    (so a ``bias_regularizer`` does act on the bias); the copy shares the regularizer's arrays and
    tensors but not later re-assignments of its settings: call ``attach_model`` again (after
    ``detach``) when a layer's regularizer changes. ``mode`` applies to the penalties, as in ``attach``.
    Nothing is registered if some regularized parameter is not optimized by ``optimizer`` or the
    model is already attached to it.
    """
    optimized = {p for group in optimizer.param_groups for p in group["params"]}
    already = {h.parameter for h in optimizer.hooks if hasattr(h, "parameter")}
    hooks = []
    for name, param, regularizer in layer_regularizers(model):
        if param not in optimized:
            raise ValueError(f"{name} has a {type(regularizer).__name__}, but {type(optimizer).__name__} does not "
                             f"optimize it")
        if param in already:
            raise ValueError(f"{name} already has hooks from attach_model on this optimizer; detach them first")
        own = copy.copy(regularizer)
        own.select = lambda p, param=param: p is param
        hook = hook_for(own, mode if isinstance(own, Penalty) else "auto")
        hook.name, hook.parameter = f"{hook.name}:{name}", param
        hooks.append(hook)
    for hook in hooks:
        optimizer.add_hook(hook)
    return hooks


def regularization_loss(model, optimizer=None):
    """sum of R(param) over the layer-attached weight/bias penalties, plus every ``activity_loss`` that
    the last forward (in training mode) recorded: Keras's ``model.losses``, differentiable.

    Penalties that ``attach_model`` gave to ``optimizer`` are left out (they act as its hooks).
    Returns None when there is nothing to add, so ``Trainer`` adds no op to unregularized models.
    """
    hooks = optimizer.hooks if optimizer is not None else ()
    hooked = {h.parameter for h in hooks if hasattr(h, "parameter") and hasattr(h, "penalty")}
    terms = [regularizer.penalty(param) for _, param, regularizer in layer_regularizers(model)
             if isinstance(regularizer, Penalty) and param not in hooked]
    terms += [layer.activity_loss for _, layer in _unique_modules(model)
              if getattr(layer, "activity_loss", None) is not None]
    if not terms:
        return None
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
