"""Regularization kernel tables (thinc pattern).

``Kernels(xp)`` is the generic array-API reference; ``CompiledKernels(numpy)`` overrides it with
Cython loops from ``minireg._ckernels``; ``minireg.kernels.cuda.CupyKernels`` (imported lazily by
the CuPy backend) with CUDA kernels. Setting ``MINIREG_PURE_PYTHON=1`` makes ``numpy_kernels()``
return the reference even when the extension is built.
"""

import functools
import os

import numpy

from minireg.kernels.compiled import CompiledKernels
from minireg.kernels.reference import Kernels

__all__ = [
    "COMPILED_IMPORT_ERROR",
    "CompiledKernels",
    "HAVE_COMPILED",
    "Kernels",
    "PURE_PYTHON",
    "numpy_kernels",
    "openmp_info",
]

PURE_PYTHON = os.environ.get("MINIREG_PURE_PYTHON", "") not in ("", "0")

try:
    from minireg import _ckernels
# Any failure (missing build, stale .so, ABI mismatch) must leave the package importable; the
# reason is kept for show_config-style reporting and for the CI check in tests/kernels/test_build.py.
except Exception as exc:
    _ckernels = None
    COMPILED_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
else:
    COMPILED_IMPORT_ERROR = None

HAVE_COMPILED = _ckernels is not None


@functools.cache
def _numpy_kernels(compiled):
    return CompiledKernels(numpy) if compiled else Kernels(numpy)


def numpy_kernels(pure=None):
    """The kernel table for NumPy arrays: compiled when available, unless `pure` (default:
    the MINIREG_PURE_PYTHON environment variable) asks for the reference. Tables are shared."""
    if pure is None:
        pure = PURE_PYTHON
    return _numpy_kernels(HAVE_COMPILED and not pure)


def openmp_info():
    """``{"compiled": bool, "openmp": bool, "max_threads": int}`` for the compiled kernels."""
    if _ckernels is None:
        return {"compiled": False, "openmp": False, "max_threads": 1}
    return {"compiled": True, **_ckernels.openmp_info()}
