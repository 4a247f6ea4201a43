"""The compiled extension is really in use where it should be, and the pure switch works."""

import os
import subprocess
import sys

import pytest

import minireg.kernels as mk


@pytest.mark.skipif(
    not os.environ.get("CI") or mk.PURE_PYTHON,
    reason="only on CI without MINIREG_PURE_PYTHON: there a missing build must fail, not fall back",
)
def test_extension_is_built_on_ci():
    assert mk.HAVE_COMPILED, f"minireg._ckernels did not import: {mk.COMPILED_IMPORT_ERROR}"
    assert mk.numpy_kernels().name == "compiled"


def test_pure_python_environment_variable_selects_the_reference():
    env = {**os.environ, "MINIREG_PURE_PYTHON": "1"}
    code = "import minireg.kernels as k; print(k.PURE_PYTHON, k.numpy_kernels().name)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "reference"]


def test_numpy_kernels_choice():
    assert mk.numpy_kernels(pure=True).name == "reference"
    expected = "compiled" if mk.HAVE_COMPILED else "reference"
    assert mk.numpy_kernels(pure=False).name == expected
    assert mk.numpy_kernels(pure=False) is mk.numpy_kernels(pure=False)


def test_openmp_info():
    info = mk.openmp_info()
    assert info["compiled"] == mk.HAVE_COMPILED
    assert isinstance(info["openmp"], bool)
    assert info["max_threads"] >= 1
    if not info["openmp"]:
        assert info["max_threads"] == 1
