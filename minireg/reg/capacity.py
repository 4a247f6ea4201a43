"""Capacity budgets: hard regularization by architecture.

Instead of penalizing weights, cap how big the model may be: at most ``max_params`` parameters
and/or ``max_layers`` layers. ``CapacityBudget.check(model)`` measures a model;
``BudgetedSequential`` refuses to be built or grown beyond its budget.

What is counted:

- a *layer* is a module that owns parameters directly: Linear, Conv2d, ConvTranspose2d,
  BatchNorm1d/2d, LayerNorm, Embedding, ... Containers (Sequential, ModuleList) and parameter-free
  modules (activations, Dropout, pooling, Flatten) are not layers;
- *parameters* are the elements of every parameter, trainable or frozen, each parameter counted
  once even when layers share it (a layer that only reuses an already counted parameter still
  counts as a layer). Buffers (batch-norm running statistics, spectral-norm vectors) are state, not
  parameters.

Layers are visited in registration order (``Module.named_modules``), so the error names the
first layer at which a count went over its limit.
"""
from collections import OrderedDict
from typing import NamedTuple

from minireg.errors import ArgumentError, ArgumentTypeError, MiniregError
from minireg.nn.module import Module, Sequential


class CapacityError(MiniregError, ValueError):
    """A model exceeds its capacity budget; the message gives the limit, the count and the layer."""


class CapacityUsage(NamedTuple):
    params: int
    layers: int


class _Step(NamedTuple):
    name: str
    module: Module
    params_before: int
    usage: CapacityUsage


def _limit(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ArgumentError(f"{name} must be None (no limit) or an integer >= 0, got {value!r}")
    return value


def _steps(model):
    """One step per layer, with the counts up to and including it."""
    seen, params, layers = set(), 0, 0
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        before = params
        params += sum(p.size for p in own if id(p) not in seen)
        seen.update(id(p) for p in own)
        layers += 1
        yield _Step(name, module, before, CapacityUsage(params, layers))


def _describe(step):
    where = f"layer {step.name!r}" if step.name else "the model itself"
    return f"{where} ({type(step.module).__name__}({step.module.extra_repr()}))"


class CapacityBudget:
    """At most ``max_params`` parameters and ``max_layers`` layers (None: that count is not limited).

    No library ships this (Keras only reports ``count_params()``); see the module docstring for
    what counts as a layer and a parameter.
    """

    def __init__(self, max_params=None, max_layers=None):
        max_params, max_layers = _limit("max_params", max_params), _limit("max_layers", max_layers)
        if max_params is None and max_layers is None:
            raise ArgumentError("a CapacityBudget needs max_params and/or max_layers (both are None)")
        self.max_params, self.max_layers = max_params, max_layers

    def usage(self, model):
        """The model's CapacityUsage(params, layers), without checking the limits."""
        steps = list(_steps(model))
        return steps[-1].usage if steps else CapacityUsage(0, 0)

    def check(self, model):
        """The model's CapacityUsage, or a CapacityError naming each limit it exceeds, the actual
        count and the first layer that took the count over the limit."""
        steps = list(_steps(model))
        total = steps[-1].usage if steps else CapacityUsage(0, 0)
        problems = []
        if self.max_params is not None and total.params > self.max_params:
            step = next(s for s in steps if s.usage.params > self.max_params)
            problems.append(f"the model has {total.params:,} parameters, over max_params={self.max_params:,}: "
                            f"{_describe(step)} took the count from {step.params_before:,} to "
                            f"{step.usage.params:,}")
        if self.max_layers is not None and total.layers > self.max_layers:
            step = steps[self.max_layers]
            problems.append(f"the model has {total.layers} layers (modules that own parameters), over "
                            f"max_layers={self.max_layers}: {_describe(step)} is layer {step.usage.layers}")
        if problems:
            raise CapacityError("capacity budget exceeded: " + "; ".join(problems))
        return total

    def __repr__(self):
        return f"CapacityBudget(max_params={self.max_params!r}, max_layers={self.max_layers!r})"


class BudgetedSequential(Sequential):
    """A Sequential that stays within ``budget``: building it, ``append`` and assigning a module (or
    a new budget) raise CapacityError when the result would exceed the budget, before anything
    changes, so the model stays as it was.

    Changes made inside a child after it was added (appending to a nested Sequential) are not seen;
    ``model.budget.check(model)`` re-measures.
    """

    def __init__(self, *modules, budget):
        if not isinstance(budget, CapacityBudget):
            raise ArgumentTypeError(f"budget must be a CapacityBudget, got {type(budget).__name__}")
        budget.check(Sequential(*modules))
        super().__init__(*modules)
        self.budget = budget

    def __setattr__(self, name, value):
        if name == "budget":
            if not isinstance(value, CapacityBudget):
                raise ArgumentTypeError(f"budget must be a CapacityBudget, got {type(value).__name__}")
            value.check(self)
        elif isinstance(value, Module) and "budget" in self.__dict__:
            children = OrderedDict(self._modules)
            children[name] = value
            self.budget.check(Sequential(children))
        super().__setattr__(name, value)

    def extra_repr(self):
        return f"budget={self.budget!r}"
