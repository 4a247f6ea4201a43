"""The Function base class: one subclass per op.

``forward`` works on raw backend arrays; ``backward`` receives the output's gradient as a Tensor and
returns one Tensor (or None) per input, written with differentiable ops, so that a gradient can be
differentiated again. Everything ops have in common lives here, once: device checks, graph
recording, and reducing a gradient over broadcast axes (done by the backward pass, see autograd).
"""
import weakref

import numpy as np

from minireg._config import _grad_enabled
from minireg.errors import DeviceError, ShapeError
from minireg.tensor import Tensor


class Function:
    inputs = None          # the input Tensors, kept only while the op is part of a live graph
    generation = 0         # longest path from a leaf: backward visits ops in decreasing order
    _output_ref = None

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
        if isinstance(y, np.generic):  # NumPy returns scalars from 0-d arithmetic; keep arrays
            y = np.asarray(y)
        out = Tensor._make(y, backend)
        if needs_grad and _grad_enabled.get():
            out.requires_grad = True
            out.creator = self
            self.inputs = inputs
            self.generation = generation
            out.generation = generation + 1
            self._output_ref = weakref.ref(out)
        return out

    @property
    def output(self):
        """The output Tensor (alive during backward: later ops or the caller hold it)."""
        return self._output_ref()

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    def const(self, array):
        """Wrap a raw array computed in backward as a constant (non-differentiable) Tensor."""
        return Tensor._make(array, self.backend)

    def release(self):
        """Drop the references that keep the graph alive (called after backward)."""
        self.inputs = None
        self._output_ref = None
