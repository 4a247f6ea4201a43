"""Module: the container of parameters, buffers and sub-modules (PyTorch's conventions).

Assigning a Parameter or a Module to an attribute registers it; buffers (non-trainable state such
as batch-norm running statistics) are registered with ``register_buffer``. ``state_dict`` maps
dotted names to NumPy arrays, so weights move between minireg, files and devices.
"""
import numbers
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from minireg import backend as _backends
from minireg import check
from minireg._config import get_default_dtype, no_grad
from minireg.errors import CheckpointError, DeviceError
from minireg.nn.parameter import Parameter
from minireg.tensor import Tensor


class Module:
    def __init__(self):
        d = self.__dict__
        d["_parameters"], d["_buffers"], d["_modules"] = OrderedDict(), OrderedDict(), OrderedDict()
        d["_non_persistent"] = set()
        d["training"] = True

    # -- registration ----------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for registry in (self._parameters, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._buffers.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name in self._buffers:
            if value is not None:
                check.instance(f"buffer {name!r}", value, Tensor, "a Tensor or None")
            self._buffers[name] = value
        else:
            self.__dict__[name] = value
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        super().__delattr__(name)

    def register_buffer(self, name, tensor, persistent=True):
        """Non-trainable state saved in the state dict (unless ``persistent=False``) and moved by ``to``."""
        if tensor is not None:
            check.instance(f"register_buffer: buffer {name!r}", tensor, Tensor, "a Tensor or None")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        (self._non_persistent.discard if persistent else self._non_persistent.add)(name)

    # -- traversal -------------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs; a parameter shared by two modules is listed once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_prefix}.{name}" if module_prefix else name), p

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix=""):
        for module_prefix, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def num_parameters(self, trainable_only=False):
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- modes and devices -----------------------------------------------------------------------
    def train(self, mode=True):
        mode = check.flag(f"{type(self).__name__}.train: mode", mode)
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        return self.train(False)

    def regularization_loss(self):
        """The activity regularization losses recorded by the last training forward, summed (Keras's
        ``model.losses``); 0.0 when there are none. Add it to the loss: ``minireg.reg.attach``."""
        from minireg.reg.attach import regularization_loss
        return regularization_loss(self)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device=None, dtype=None):
        """Move every parameter and buffer to ``device`` and/or cast the floating ones (and their
        gradients) to the floating ``dtype``, in place: the same Parameter objects, so optimizers
        keep working on them. Integer buffers keep their dtype, as in PyTorch."""
        target = None if device is None else _backends.get_backend(device)
        dtype = None if dtype is None else check.float_dtype(f"{type(self).__name__}.to: dtype", dtype)
        for t in list(self.parameters()) + list(self.buffers()):
            changed = False
            if target is not None and t.backend is not target:
                t.data = target.from_numpy(t.backend.to_numpy(t.data))
                if t.grad is not None:
                    t.grad = t.grad.to(target)
                t.backend, changed = target, True
            if dtype is not None and t.backend.is_float(t.dtype) and t.backend.numpy_dtype(t.dtype) != dtype:
                t.data = t.backend.xp.astype(t.data, t.backend.dtype(dtype))
                if t.grad is not None:
                    t.grad = Tensor._make(t.backend.xp.astype(t.grad.data, t.backend.dtype(dtype)), t.backend)
                changed = True
            if changed:
                t._bump_version()
        return self

    def astype(self, dtype):
        """Cast every floating parameter and buffer to ``dtype`` in place: ``model.to(dtype=dtype)``."""
        return self.to(dtype=dtype)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self):
        """Dotted name -> NumPy array copy (through each tensor's backend), for parameters and
        persistent buffers."""
        return OrderedDict((name, t.numpy().copy()) for name, t in self._state_tensors().items())

    def _state_tensors(self):
        """Dotted name -> the parameter or persistent buffer itself, in ``state_dict`` order."""
        tensors = OrderedDict(self.named_parameters())
        for module_prefix, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    tensors[f"{module_prefix}.{name}" if module_prefix else name] = b
        return tensors

    def load_state_dict(self, state_dict, strict=True):
        """Copy values in, all or nothing: every entry is checked first, then all are written.

        Missing and unexpected keys are problems when ``strict``; wrong shapes and values that are not
        numeric arrays castable to the entry's dtype (NumPy's ``same_kind`` rule: float64 into float32
        yes, strings, complex numbers or floats into an integer buffer no) always are. All problems
        are listed in one ``CheckpointError`` and nothing changes. Values may be NumPy arrays (copied
        to each tensor's device through its backend), Tensors or arrays of any backend (cast on
        their own device when it is the tensor's). Each tensor is written in place (the same arrays,
        so views and optimizer references stay valid) and its version is bumped.
        """
        check.instance(f"{type(self).__name__}.load_state_dict: state_dict", state_dict, Mapping,
                       "a mapping of names to arrays")
        own = self._state_tensors()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        values, misshaped, bad_values = {}, [], []
        for name, t in own.items():
            if name in state_dict:
                value, problem = _state_value(state_dict[name], t)
                if problem is not None:
                    bad_values.append(f"{name}: {problem}")
                elif tuple(value.shape) != t.shape:
                    misshaped.append(f"{name}: checkpoint {tuple(value.shape)} vs model {t.shape}")
                else:
                    values[name] = value
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if misshaped:
            problems.append(f"mis-shaped keys: {misshaped}")
        if bad_values:
            problems.append(f"bad values: {bad_values}")
        if problems:
            raise CheckpointError(f"cannot load state dict into {type(self).__name__} (nothing was changed): "
                                  + "; ".join(problems))
        with no_grad():
            for name, value in values.items():
                own[name].copy_(Tensor._make(value, own[name].backend))
        return {"missing_keys": missing, "unexpected_keys": unexpected}

    # -- calling and printing --------------------------------------------------------------------
    def summary(self, input_shape=None, dtype=None, print_fn=print):
        """A Keras-style table of the layers: name (type), output shape, parameter count, and totals.

        With ``input_shape`` (one sample's shape, without the batch axis, e.g. ``(1, 28, 28)``) the
        model runs once on zeros of shape ``(1, *input_shape)`` in ``dtype`` (default: the dtype of
        the model's first parameter, else the default dtype; pass an integer dtype for embedding
        models), in eval mode under ``no_grad``; output shapes show the batch axis as ``N``. Every
        module's attributes (training flags, recorded activity losses) are restored afterwards.
        Without ``input_shape`` shapes are ``?``. Each parameter is counted once, in the first row
        that owns it. The table goes to ``print_fn`` (``print``, as Keras) and nothing is returned;
        ``print_fn=None`` returns the table as a string instead.
        """
        shapes = {} if input_shape is None else self._output_shapes(input_shape, dtype)
        named = [(name, m) for name, m in self.named_modules() if name] or [(type(self).__name__, self)]
        seen, rows = set(), []
        for name, module in named:
            own = [p for p in module._parameters.values() if p is not None and id(p) not in seen]
            seen.update(id(p) for p in own)
            shape = "?" if input_shape is None else shapes.get(id(module), "-")
            rows.append((f"{name} ({type(module).__name__})", shape, f"{sum(p.size for p in own):,}"))
        header = ("Layer (type)", "Output shape", "Param #")
        widths = [max(len(row[i]) for row in rows + [header]) for i in range(3)]
        line = lambda row: "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
        rule = "=" * (sum(widths) + 4)
        total, trainable = self.num_parameters(), self.num_parameters(trainable_only=True)
        table = "\n".join([f"{type(self).__name__} summary", rule, line(header), rule, *map(line, rows), rule,
                           f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                           f"Non-trainable params: {total - trainable:,}"])
        if print_fn is None:
            return table
        print_fn(table)
        return None

    def _output_shapes(self, input_shape, dtype):
        """id(module) -> the shape text of its output for one forward of zeros of (1, *input_shape)."""
        input_shape = tuple(check.positive_int("summary: input_shape", n) for n in
                            (input_shape if isinstance(input_shape, (tuple, list)) else (input_shape,)))
        first = next(iter(self.parameters()), None)
        backend = first.backend if first is not None else _backends.current_backend()
        if dtype is None:
            dtype = first.dtype if first is not None and backend.is_float(first.dtype) else get_default_dtype()
        x = Tensor._make(backend.zeros((1,) + input_shape, backend.dtype(dtype)), backend)
        modules = list(self.modules())
        saved = [dict(m.__dict__) for m in modules]   # forward may record state (activity losses)
        shapes = {}

        def recording(module, forward):
            def forward_and_record(*args, **kwargs):
                out = forward(*args, **kwargs)
                shapes.setdefault(id(module), _shape_text(out))
                return out
            return forward_and_record

        try:
            for m in modules:   # an instance attribute shadows the class's forward for this call only
                m.__dict__["forward"] = recording(m, m.forward)
            self.eval()
            with no_grad():
                self(x)
        finally:
            for m, attributes in zip(modules, saved):
                m.__dict__.clear()
                m.__dict__.update(attributes)
        return shapes

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        own = sum(p.size for p in self._parameters.values() if p is not None)
        if not lines:
            return head + ")" + (f"  # {own:,} params" if own else "")
        total = self.num_parameters()
        return head + "\n" + "\n".join(lines) + f"\n)  # {total:,} params"


def _state_value(value, target):
    """(``value`` as an array on ``target``'s device in its dtype, None) or (None, what is wrong)."""
    if isinstance(value, Tensor):
        source, array = value.backend, value.data
    elif isinstance(value, (np.ndarray, np.generic, numbers.Number, list, tuple)):
        try:
            source, array = _backends.get_backend("numpy"), np.asarray(value)
        except ValueError as exc:   # ragged nested lists
            return None, f"not an array ({exc})"
    else:
        try:
            source, array = _backends.backend_of(value), value
        except DeviceError:
            return None, f"expected an array, got {type(value).__name__}"
    backend = target.backend
    got, expected = source.numpy_dtype(array.dtype), backend.numpy_dtype(target.dtype)
    if got.kind not in "biuf" or not np.can_cast(got, expected, casting="same_kind"):
        return None, f"values of dtype {got} cannot be cast to the model's {expected}"
    if not getattr(getattr(target.data, "flags", None), "writeable", True):
        return None, "the model's array is read-only"
    if source is not backend:   # an explicit transfer through both backends' own conversions
        array = backend.from_numpy(source.to_numpy(array))
    return backend.xp.astype(array, backend.dtype(expected), copy=True), None


def _shape_text(out):
    """``(N, 10)`` for a Tensor output (the batch axis as N); tuples and lists element by element."""
    if isinstance(out, Tensor):
        return "(" + ", ".join(["N"] + [str(n) for n in out.shape[1:]]) + ")" if out.ndim else "()"
    if isinstance(out, (tuple, list)):
        return ", ".join(_shape_text(o) for o in out)
    return type(out).__name__


class Sequential(Module):
    """Modules applied in order: ``Sequential(Linear(4, 8), ReLU(), Linear(8, 1))``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            modules = modules[0].items()
        else:
            modules = ((str(i), m) for i, m in enumerate(modules))
        for name, module in modules:
            check.instance(f"Sequential: entry {name!r}", module, Module, "a Module")
            setattr(self, name, module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def append(self, module):
        check.instance(f"{type(self).__name__}.append: module", module, Module, "a Module")
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, index):
        items = list(self._modules.values())
        return Sequential(*items[index]) if isinstance(index, slice) else items[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleList(Module):
    """A list of modules whose parameters are registered (for models built in loops)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        check.instance(f"{type(self).__name__}.append: module", module, Module, "a Module")
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
