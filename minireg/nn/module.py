"""Module: the container of parameters, buffers and sub-modules (PyTorch's conventions).

Assigning a Parameter or a Module to an attribute registers it; buffers (non-trainable state such
as batch-norm running statistics) are registered with ``register_buffer``. ``state_dict`` maps
dotted names to NumPy arrays, so weights move between minireg, files and devices.
"""
from collections import OrderedDict

import numpy as np

from minireg import backend as _backends
from minireg.errors import ShapeError
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
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"buffer {name!r} must be a Tensor or None, got {type(value).__name__}")
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
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"buffer {name!r} must be a Tensor or None, got {type(tensor).__name__}")
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
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter and buffer to ``device`` in place (the same Parameter objects)."""
        target = _backends.get_backend(device)
        for t in list(self.parameters()) + list(self.buffers()):
            if t.backend is not target:
                t.data = target.from_numpy(t.backend.to_numpy(t.data))
                if t.grad is not None:
                    t.grad = t.grad.to(target)
                t.backend = target
        return self

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self):
        """Dotted name -> NumPy array copy, for parameters and persistent buffers."""
        state = OrderedDict((name, p.numpy().copy()) for name, p in self.named_parameters())
        for module_prefix, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    state[f"{module_prefix}.{name}" if module_prefix else name] = b.numpy().copy()
        return state

    def _state_tensors(self):
        tensors = OrderedDict(self.named_parameters())
        for module_prefix, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    tensors[f"{module_prefix}.{name}" if module_prefix else name] = b
        return tensors

    def load_state_dict(self, state_dict, strict=True):
        """Copy values in; any mismatch is reported in full and nothing is changed.

        Missing and unexpected keys are errors when ``strict``; wrong shapes always are. Values are
        cast to each parameter's dtype and placed on its device.
        """
        own = self._state_tensors()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        misshaped = [f"{k}: checkpoint {tuple(np.shape(state_dict[k]))} vs model {own[k].shape}"
                     for k in own if k in state_dict and tuple(np.shape(state_dict[k])) != own[k].shape]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if misshaped:
            problems.append(f"mis-shaped keys: {misshaped}")
        if problems:
            raise ShapeError(f"cannot load state dict into {type(self).__name__}: " + "; ".join(problems))
        for name, t in own.items():
            if name in state_dict:
                values = np.asarray(state_dict[name]).astype(t.backend.numpy_dtype(t.dtype), copy=True)
                t.data = t.backend.from_numpy(values)
        return {"missing_keys": missing, "unexpected_keys": unexpected}

    # -- calling and printing --------------------------------------------------------------------
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


class Sequential(Module):
    """Modules applied in order: ``Sequential(Linear(4, 8), ReLU(), Linear(8, 1))``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            modules = modules[0].items()
        else:
            modules = ((str(i), m) for i, m in enumerate(modules))
        for name, module in modules:
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules, got {type(module).__name__} for entry {name!r}")
            setattr(self, name, module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def append(self, module):
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
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
