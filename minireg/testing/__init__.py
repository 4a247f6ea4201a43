"""Test utilities for minireg users and its own test suite.

* ``gradcheck`` / ``gradgradcheck`` / ``numerical_grad``: first and second derivatives against
  float64 central differences (see ``minireg.testing.gradcheck``).
* ``strategies``: Hypothesis strategies for shapes and arrays (imported on first use, so
  Hypothesis is only needed by code that uses them).
"""
import importlib

from minireg.testing.gradcheck import GradcheckResult, gradcheck, gradgradcheck, numerical_grad

__all__ = ["GradcheckResult", "gradcheck", "gradgradcheck", "numerical_grad", "strategies"]


def __getattr__(name):
    if name == "strategies":
        return importlib.import_module("minireg.testing.strategies")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
