"""Exceptions raised by minireg.

Bad input raises a subclass of ValueError or TypeError, so code that already catches those keeps
working, and every minireg error can be caught at once as ``MiniregError``.
"""


class MiniregError(Exception):
    """Base class of every error minireg raises on purpose."""


class ShapeError(MiniregError, ValueError):
    """Shapes that cannot be combined (broadcasting, matmul, layer inputs, checkpoints)."""


class DeviceError(MiniregError, ValueError):
    """Tensors on different devices met in one op; minireg never copies between devices silently."""


class BackendUnavailableError(MiniregError, ValueError):
    """A backend was asked for that is unknown or cannot run here (e.g. CuPy without a GPU)."""


class DTypeError(MiniregError, TypeError):
    """A dtype that the operation does not accept (e.g. requires_grad on integer data)."""


class GraphError(MiniregError, ValueError):
    """Misuse of the autograd graph: backward twice without retain_graph, non-scalar backward, ..."""


class NonFiniteError(MiniregError, ValueError):
    """NaN or infinity where finite numbers are required (gradient checks, training losses)."""


class GradcheckError(MiniregError, AssertionError):
    """Analytic and numerical gradients disagree; the message names the worst element."""


class ArgumentError(MiniregError, ValueError):
    """An argument with a wrong value (out of range, unknown choice, inconsistent with another)."""


class ArgumentTypeError(MiniregError, TypeError):
    """An argument of the wrong type (a string where a number is expected, a list for a Tensor)."""


class CheckpointError(MiniregError, ValueError):
    """A checkpoint or state dict that cannot be read or does not fit: the message names the path
    or entry and what is wrong. Nothing is assigned when it is raised."""


class IndexOutOfRangeError(MiniregError, IndexError):
    """An integer index outside ``[-n, n)`` of its axis, or an index that does not fit the tensor
    (a boolean mask of the wrong shape, too many indices). Raised on every backend, also where the
    array library would wrap the index around (CuPy's take and scatter_add)."""


class NotFittedError(MiniregError, ValueError):
    """A fitted object (e.g. ``data.Standardizer``) used before ``fit``, as in scikit-learn."""


class MissingDataError(MiniregError, FileNotFoundError):
    """A data set that a loader or study task needs is not installed; the message says how to
    install it (nothing is ever downloaded at run time)."""
