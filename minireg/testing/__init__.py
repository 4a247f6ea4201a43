"""Test utilities for minireg users and its own test suite.

* ``gradcheck`` / ``gradgradcheck`` / ``numerical_grad``: first and second derivatives against
  float64 central differences (see ``minireg.testing.gradcheck``).
* ``fake_device`` (``minireg.testing.devices``): a fake accelerator that refuses implicit host
  conversion and counts syncs and copies, to prove on a CPU that code makes no host round-trips.
* ``strategies``: Hypothesis strategies for shapes and arrays (imported on first use, so
  Hypothesis is only needed by code that uses them).
"""
import importlib

from minireg.testing.devices import FakeDevice, TransferCounts, fake_device
from minireg.testing.gradcheck import GradcheckResult, gradcheck, gradgradcheck, numerical_grad

__all__ = ["FakeDevice", "GradcheckResult", "TransferCounts", "fake_device", "gradcheck", "gradgradcheck",
           "numerical_grad", "strategies"]


def __getattr__(name):
    if name == "strategies":
        return importlib.import_module("minireg.testing.strategies")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
