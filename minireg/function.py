"""The Function base class: one subclass per op.

``forward`` works on raw backend arrays; ``backward`` receives the output's gradient as a Tensor and
returns a tuple with one Tensor (or None) per input, written with differentiable ops, so that a
gradient can be differentiated again. Everything ops have in common lives here, once: device checks,
graph recording, version checks of saved tensors, and reducing a gradient over broadcast axes (done
by the backward pass, see autograd).

``saves`` declares what ``backward`` reads: None (the default) means every input and the output;
otherwise a tuple of input positions, plus ``"output"`` when it reads ``self.output``. The versions
of those tensors are recorded when the op runs, and backward raises a GraphError if one of them was
changed in place since (PyTorch's version counters). Ops that read only shapes save ``()``.
"""
import operator
import weakref

import numpy as np

from minireg._config import _grad_enabled
from minireg.errors import DeviceError, GraphError, ShapeError
from minireg.tensor import Tensor


_version = operator.attrgetter("_version")
_new_tensor = object.__new__


class Function:
    inputs = None          # the input Tensors, kept only while the op is part of a live graph
    generation = 0         # longest path from a leaf: backward visits ops in decreasing order
    saves = None           # what backward reads: None (everything) or input positions and "output"
    _output_ref = None
    _versions = ()
    # Derived from ``saves`` once per class (the hot paths read these instead of ``saves``):
    _checks_versions = True   # backward reads a tensor, so its version is recorded and checked
    _keeps_output = True      # backward reads ``self.output``, so the op keeps a weak reference to it

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._checks_versions = cls.saves is None or bool(cls.saves)
        cls._keeps_output = cls.saves is None or "output" in cls.saves

    def __call__(self, *inputs):
        backend = inputs[0].backend
        needs_grad, generation, arrays = False, 0, []
        for x in inputs:   # one pass: device check, grad flag, generation, raw arrays (hot path)
            if x.backend is not backend:
                raise DeviceError(f"{type(self).__name__}: inputs live on different devices "
                                  f"({backend.device_name} and {x.backend.device_name}); move them "
                                  f"explicitly with Tensor.to(), minireg never copies between devices")
            if x.requires_grad:
                needs_grad = True
                if x.generation > generation:
                    generation = x.generation
            arrays.append(x.data)
        self.backend = backend
        self.xp = backend.xp
        try:
            y = self.forward(*arrays)
        except ShapeError:
            raise                        # already names the op and the shapes
        except ValueError as exc:
            shapes = " and ".join(str(tuple(x.shape)) for x in inputs)
            raise ShapeError(f"{type(self).__name__}: cannot apply to inputs of shapes {shapes}: {exc}") from exc
        if type(y) is not np.ndarray and isinstance(y, np.generic):   # NumPy returns scalars from 0-d
            y = np.asarray(y)                                            # arithmetic; keep arrays
        out = _new_tensor(Tensor)      # Tensor._make inlined (hot path)
        out.data = y
        out.backend = backend
        if needs_grad and _grad_enabled.get():
            out.requires_grad = True
            out.creator = self
            self.inputs = inputs
            if self._checks_versions:  # ops that read only shapes have no versions to check
                self._versions = tuple(map(_version, inputs))
            self.generation = generation
            out.generation = generation + 1
            if self._keeps_output:
                self._output_ref = weakref.ref(out)
        return out

    _needs_input_grad = None  # set by the backward pass of grad(outputs, inputs) while backward runs

    @property
    def needs_input_grad(self):
        """One flag per input: whether ``backward`` must return its gradient (PyTorch's
        ``ctx.needs_input_grad``). The input requires grad and, within ``grad(outputs, inputs)``, a
        gradient through it reaches one of ``inputs``; backward may return None for the others
        (they are dropped anyway), which skips work such as the weight products of a Linear."""
        flags = self._needs_input_grad
        return tuple(x.requires_grad for x in self.inputs) if flags is None else flags

    @property
    def output(self):
        """The output Tensor (alive during backward: later ops or the caller hold it); only for ops
        whose ``saves`` names "output" (or is None)."""
        if self._output_ref is None:
            raise GraphError(f"{type(self).__name__}.backward reads self.output, but its saves = {self.saves!r} does not "
                             f"name \"output\" (or the graph was freed)")
        return self._output_ref()

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    def check_saved_versions(self):
        """Raise a GraphError if a tensor that backward reads was changed in place since forward.
        (The backward pass skips the call for ops with ``saves == ()``.)"""
        saved = (*range(len(self.inputs)), "output") if self.saves is None else self.saves
        for i in saved:
            t, recorded = (self.output, 0) if i == "output" else (self.inputs[i], self._versions[i])
            if t._version != recorded:
                what = "its output" if i == "output" else f"input {i}"
                label = f" {t.name!r}" if t.name else ""
                raise GraphError(
                    f"{type(self).__name__}: {what}, the tensor{label} of shape {tuple(t.shape)}, was modified in "
                    f"place after {type(self).__name__} saved it for backward (version {recorded} when saved, "
                    f"{t._version} now); change tensors only after backward (e.g. optimizer.step() after "
                    f"loss.backward()), or compute on a copy")

    def check_gradients(self, grads):
        """``grads`` as returned by backward must be a tuple (or list) with one Tensor or None per input;
        the backward pass calls this only when its own cheap test of a tuple fails."""
        n = len(self.inputs)
        if not isinstance(grads, (tuple, list)) or len(grads) != n or not all(
                g is None or isinstance(g, Tensor) for g in grads):
            got = (f"a {type(grads).__name__}" if not isinstance(grads, (tuple, list)) else
                   f"{len(grads)} items of types {', '.join(type(g).__name__ for g in grads)}")
            raise GraphError(f"{type(self).__name__}.backward must return a tuple with one Tensor or None per "
                             f"input ({n} here, e.g. ``return (gx,)`` for one input; use self.const(array) "
                             f"to wrap a raw array), got {got}")
        return grads

    def const(self, array):
        """Wrap a raw array computed in backward as a constant (non-differentiable) Tensor."""
        return Tensor._make(array, self.backend)
