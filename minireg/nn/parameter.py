"""Parameters and buffers: tensors a Module owns."""
from minireg.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad and is registered by the Module it is assigned to."""

    def __init__(self, data, requires_grad=True, dtype=None, name=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, name=name)

    def __repr__(self):
        return "Parameter(" + super().__repr__()[len("tensor("):]
