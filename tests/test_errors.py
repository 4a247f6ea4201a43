"""Every error minireg raises on purpose is a MiniregError: no module raises a bare builtin exception.

The check reads the package's source (AST), so a new ``raise ValueError(...)`` fails here at once
instead of waiting for someone to hit it. The few builtins allowed are protocol errors that are not
about bad input.
"""
import ast
import builtins
import pathlib

import pytest

import minireg
from minireg import errors

PACKAGE = pathlib.Path(minireg.__file__).parent
ALLOWED = {
    "NotImplementedError",   # abstract methods
    "ImportError",           # an optional dependency is missing (the message says what to install)
    "AttributeError",        # the attribute protocol (Module.__getattr__, module-level __getattr__)
    "ArithmeticError",       # a solver that did not converge: not an input error
}
BUILTIN_ERRORS = {name for name, value in vars(builtins).items()
                  if isinstance(value, type) and issubclass(value, BaseException)}


def raised_builtins(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
            name = node.exc.func.id
            if name in BUILTIN_ERRORS and name not in ALLOWED:
                yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: raise {name}(...)"


def test_no_module_raises_a_bare_builtin_error():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in raised_builtins(path)]
    assert not found, "raise a minireg.errors class instead:\n" + "\n".join(found)


@pytest.mark.parametrize("name", [n for n in dir(errors) if isinstance(getattr(errors, n), type)
                                  and issubclass(getattr(errors, n), errors.MiniregError)])
def test_every_error_class_is_exported_and_keeps_a_builtin_base(name):
    cls = getattr(errors, name)
    assert getattr(minireg, name) is cls
    assert cls is errors.MiniregError or issubclass(cls, (ValueError, TypeError, IndexError, AssertionError,
                                                          FileNotFoundError))
