"""Parameters and buffers: tensors a Module owns."""
from minireg.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad and is registered by the Module it is assigned to.

    ``regularizers`` lists the ``minireg.reg.attach.Attachment``s recorded on it (by a layer's
    ``weight_regularizer=`` / ``weight_constraint=`` options or by ``minireg.reg.attach``); every
    minireg optimizer that steps the parameter applies them (see ``minireg.reg.attach``).
    """

    def __init__(self, data, requires_grad=True, dtype=None, name=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, name=name)
        self.regularizers = []

    def __repr__(self):
        text = "Parameter(" + super().__repr__()[len("tensor("):]
        if self.__dict__.get("regularizers"):
            text = f"{text[:-1]}, regularizers={self.regularizers!r})"
        return text
