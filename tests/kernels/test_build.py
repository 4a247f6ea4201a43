"""The compiled extension is really in use where it should be, and the pure switch works."""

import os
import platform
import subprocess
import sys

import numpy as np
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


def _avx2_build():
    """The AVX2 build and the baseline one, or a skip where this machine cannot run or lacks it."""
    baseline = pytest.importorskip("minireg._ckernels")
    if not baseline.cpu_has_avx2_fma():
        pytest.skip("this CPU has no AVX2 and FMA")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the AVX2 build is x86-only")
    import minireg._ckernels_avx2 as avx2    # built by setup.py on every x86 machine: a failure is a bug
    return baseline, avx2


def test_avx2_build_is_used_where_the_cpu_has_it():
    baseline, avx2 = _avx2_build()
    from minireg.kernels.compiled import compiled_module
    assert compiled_module() is avx2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_avx2_build_gives_the_same_bits_as_the_baseline(dtype):
    baseline, avx2 = _avx2_build()
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(1000) * 0.1).astype(dtype)
    means, log_precisions = np.linspace(-0.3, 0.3, 5).astype(dtype), np.linspace(2, 6, 5).astype(dtype)
    log_mix = np.full(5, -np.log(5), dtype)
    results = []
    for module in (baseline, avx2):
        nll, (grad_w,), *component_grads = module.mixture_nll([w], means, log_precisions, log_mix)
        state = [a.copy() for a in (w, w * 0.5, np.abs(w) * 0.1)]      # w, m, v of one AdamW step
        module.adamw_prox_step(state[0], w, state[1], state[2], 0.9, 0.999, 0.99, 1e-2, 1.2, 1e-8, 1e-4)
        results.append([np.asarray(nll), *component_grads, grad_w, *state])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
