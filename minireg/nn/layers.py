"""Dense layers, dropout, embedding, flatten and activation modules."""

from minireg import check
from minireg import functional as F
from minireg._config import get_default_dtype
from minireg.errors import ArgumentTypeError, DTypeError, ShapeError
from minireg.nn import init
from minireg.nn.module import Module
from minireg.nn.parameter import Parameter
from minireg.reg.base import Constraint, Penalty
from minireg.tensor import Tensor, tensor

REGULARIZER_OPTIONS = {"weight_regularizer": Penalty, "bias_regularizer": Penalty, "activity_regularizer": None,
                       "weight_constraint": Constraint, "bias_constraint": Constraint}


def empty_parameter(shape, dtype=None):
    """A Parameter of ``shape`` on the current backend, to be filled by an initialiser."""
    import numpy as np
    return Parameter(np.zeros(shape, dtype=np.dtype(dtype) if dtype is not None else get_default_dtype()))


def describe(layer):
    """``Linear(in_features=3, ...)``: how error messages name a layer."""
    return f"{type(layer).__name__}({layer.extra_repr()})"


def check_input(layer, x, expected_ndim, expected, actual_ok):
    """Raise a ShapeError naming the layer, the expected and the actual shape."""
    if (expected_ndim is not None and x.ndim not in expected_ndim) or not actual_ok:
        raise ShapeError(f"{describe(layer)}: expected input of shape {expected}, got {x.shape}")


def layer_input(layer, x, like=None):
    """``x`` as a Tensor, checked by the dtype rule (see ``minireg.nn``); every layer's forward calls it.

    ``like`` is the layer's parameter (or buffer) whose dtype the input must have; None for layers
    without one, which accept any real floating input. Arrays and Tensors keep their dtype and
    device; Python numbers and lists have no dtype of their own and take ``like``'s (or the default).
    """
    if not isinstance(x, Tensor):
        untyped = isinstance(x, (bool, int, float, list, tuple))
        x = tensor(x, dtype=like.backend.numpy_dtype(like.dtype) if untyped and like is not None else None)
    backend = x.backend
    got = backend.numpy_dtype(x.dtype)
    if got.kind == "c":
        raise DTypeError(f"{describe(layer)}: complex input ({got.name}) is not supported; layers work on real "
                         f"floating data")
    if like is None:
        if got.kind != "f":
            raise DTypeError(f"{describe(layer)}: expected floating input, got dtype {got.name}; convert it with "
                             f"x.astype('{get_default_dtype().name}')")
        return x
    expected = backend.numpy_dtype(like.dtype)
    if got != expected:
        hint = f"convert the input with x.astype('{expected.name}')"
        if got.kind == "f":
            hint += f" or the model with model.astype('{got.name}')"
        raise DTypeError(f"{describe(layer)}: input dtype {got.name} does not match the layer's parameter dtype "
                         f"{expected.name} (minireg never promotes dtypes silently); {hint}")
    return x


def set_regularizers(layer, options):
    """Check the Keras-style options and record them: penalties and constraints on the parameters.

    ``weight_regularizer``/``bias_regularizer``: a ``Penalty``; ``weight_constraint``/``bias_constraint``:
    a ``Constraint``; each is attached (``minireg.reg.attach``, mode "auto") to that one parameter,
    so every optimizer stepping it applies it. ``activity_regularizer``: any callable
    ``output -> Tensor``, recorded by each training forward (``record_activity``) and summed by
    ``model.regularization_loss()``. The options also stay readable as attributes (None where not given);
    the weight/bias ones are records of what was attached at construction: to change them later use
    ``reg.detach(layer.weight, old)`` and ``reg.attach(layer.weight, new)`` (the activity regularizer
    is read at each forward, so assigning it works).
    """
    from minireg.errors import ArgumentError
    from minireg.reg.attach import attach
    name = type(layer).__name__
    unknown = set(options) - set(REGULARIZER_OPTIONS)
    if unknown:
        raise ArgumentTypeError(f"{name}() got unexpected options {sorted(unknown)}; expected "
                                f"{sorted(REGULARIZER_OPTIONS)}")
    for key, kind in REGULARIZER_OPTIONS.items():
        value = options.get(key)
        if value is not None and not (isinstance(value, kind) if kind else callable(value)):
            raise ArgumentTypeError(f"{name}: {key} must be {f'a {kind.__name__}' if kind else 'callable'}, "
                                    f"got {type(value).__name__}")
        if value is not None and key.startswith("bias_") and layer.bias is None:
            raise ArgumentError(f"{name}: {key} given but the layer has no bias (bias=False)")
    for key in REGULARIZER_OPTIONS:
        value = options.get(key)
        setattr(layer, key, value)
        if value is not None and key != "activity_regularizer":
            attach(getattr(layer, key.split("_")[0]), value)
    layer.activity_loss = None


def record_activity(layer, output):
    """``layer.activity_loss = activity_regularizer(output)`` in training mode, else None; returns output.

    The loss is recorded (``minireg.reg.attach.record_activity_loss``) so that an optimizer step can
    tell when backward never reached it.
    """
    regularizer = layer.activity_regularizer
    if regularizer is not None and layer.training:
        from minireg.reg.attach import record_activity_loss
        layer.activity_loss = record_activity_loss(layer, regularizer(output))
    elif layer.activity_loss is not None:
        layer.activity_loss = None
    return output


class Linear(Module):
    """y = x W^T + b; ``weight`` (out_features, in_features), ``bias`` (out_features,).

    Keyword options ``weight_regularizer``, ``bias_regularizer``, ``activity_regularizer``,
    ``weight_constraint``, ``bias_constraint`` as in Keras (see ``set_regularizers``).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None, **regularizers):
        in_features = check.positive_int("Linear: in_features", in_features)
        out_features = check.positive_int("Linear: out_features", out_features)
        bias = check.flag("Linear: bias", bias)
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = empty_parameter((out_features, in_features), dtype)
        self.bias = empty_parameter((out_features,), dtype) if bias else None
        init.default_weight_init_(self.weight, self.bias)
        set_regularizers(self, regularizers)

    def forward(self, x):
        x = layer_input(self, x, self.weight)
        check_input(self, x, None, f"(..., {self.in_features})", x.ndim >= 1 and x.shape[-1] == self.in_features)
        return record_activity(self, F.linear(x, self.weight, self.bias))

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    def forward(self, x):
        return x


class Flatten(Module):
    """Merge axes ``start_axis..end_axis`` (by default all but the batch axis)."""

    def __init__(self, start_axis=1, end_axis=-1):
        start_axis = check.integer("Flatten: start_axis", start_axis)
        end_axis = check.integer("Flatten: end_axis", end_axis)
        super().__init__()
        self.start_axis, self.end_axis = start_axis, end_axis

    def forward(self, x):
        return F.flatten(x, self.start_axis, self.end_axis)


class Dropout(Module):
    """Zero activations with probability p in training (scaled by 1/(1-p)); identity in eval."""

    def __init__(self, p=0.5):
        p = check.probability("Dropout: p", p, allow_one=True)
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(layer_input(self, x), self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim`` (initialised N(0, 1))."""

    def __init__(self, num_embeddings, embedding_dim, dtype=None):
        num_embeddings = check.positive_int("Embedding: num_embeddings", num_embeddings)
        embedding_dim = check.positive_int("Embedding: embedding_dim", embedding_dim)
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = init.normal_(empty_parameter((num_embeddings, embedding_dim), dtype))

    def forward(self, indices):
        indices = indices if isinstance(indices, Tensor) else tensor(indices)
        kind = indices.backend.numpy_dtype(indices.dtype).kind
        if kind not in "iu":
            raise DTypeError(f"{describe(self)}: indices must be integers, got dtype {indices.dtype}; convert them "
                             f"with x.astype('int64')")
        return F.embedding(indices, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


def _activation(name, fn, doc, **defaults):
    """A parameter-free module applying ``fn``; keyword options (checked against the type of their
    default: a float option is a real number, an int option an integer) are stored as attributes."""
    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise ArgumentTypeError(f"{name}() got unexpected options {sorted(unknown)}; expected {sorted(defaults)}")
        options = {key: (check.integer if isinstance(default, int) else check.real)(f"{name}: {key}", kwargs[key])
                   for key, default in defaults.items() if key in kwargs}
        Module.__init__(self)
        for key, value in {**defaults, **options}.items():
            setattr(self, key, value)

    def forward(self, x):
        return fn(x, **{k: getattr(self, k) for k in defaults})

    def extra_repr(self):
        return ", ".join(f"{k}={getattr(self, k)}" for k in defaults)

    return type(name, (Module,), {"__init__": __init__, "forward": forward, "extra_repr": extra_repr, "__doc__": doc})


ReLU = _activation("ReLU", F.relu, "max(x, 0)")
LeakyReLU = _activation("LeakyReLU", F.leaky_relu, "x if x > 0 else negative_slope * x", negative_slope=0.01)
ELU = _activation("ELU", F.elu, "x if x > 0 else alpha * (exp(x) - 1)", alpha=1.0)
Sigmoid = _activation("Sigmoid", F.sigmoid, "1 / (1 + exp(-x))")
Tanh = _activation("Tanh", F.tanh, "tanh(x)")
Softplus = _activation("Softplus", F.softplus, "log(1 + exp(x))")
GELU = _activation("GELU", F.gelu, "x * (1 + erf(x / sqrt(2))) / 2 (exact form)")
SiLU = _activation("SiLU", F.silu, "x * sigmoid(x)")
Softmax = _activation("Softmax", F.softmax, "exp(x) / sum(exp(x)) along axis", axis=-1)
LogSoftmax = _activation("LogSoftmax", F.log_softmax, "x - logsumexp(x) along axis", axis=-1)
