"""minireg: a small autograd engine for studying regularization in deep learning."""
from minireg import backend
from minireg import functional
from minireg import functional as F
from minireg._config import enable_grad, get_default_dtype, is_grad_enabled, no_grad, set_default_dtype, using_dtype
from minireg._info import show_config
from minireg.autograd import grad
from minireg.checkpoint import load, save
from minireg.backend import available_backends, current_backend, get_backend, set_backend, using_backend
from minireg.errors import (ArgumentError, ArgumentTypeError, BackendUnavailableError, CheckpointError, DeviceError,
                            DTypeError, GradcheckError, GraphError, IndexOutOfRangeError, MiniregError,
                            MissingDataError, NonFiniteError, NotFittedError, ShapeError)
from minireg.creation import (arange, as_tensor, empty, eye, from_dlpack, from_numpy, full, linspace, ones, ones_like,
                              zeros, zeros_like)
from minireg.function import Function
from minireg.functional import (abs, cat, clip, concatenate, elu, erf, exp, flatten, gelu, leaky_relu, log, log_softmax,
                                logsumexp, matmul, maximum, mean, minimum, neg, pad, relu, reshape, sigmoid, sign, silu,
                                softmax, softplus, sqrt, squeeze, stack, tanh, transpose, unsqueeze, where)
from minireg.random import manual_seed, rand, randint, randn
from minireg.tensor import Tensor, tensor
from minireg import nn  # noqa: E402  (after the engine, which nn builds on)
from minireg import optim, reg  # noqa: E402

__version__ = "0.1.0"
