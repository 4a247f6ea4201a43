"""Shared test setup: Hypothesis profiles, the backend matrix, and the gpu marker.

Backends every op test runs on:
- ``numpy``: the CPU backend;
- ``fake-device``: the generic array-API backend on array_api_strict's "device1", a fake
  accelerator whose arrays refuse implicit conversion to NumPy and mixing with other devices, so an
  op that round-trips through the host fails here without a GPU;
- ``cupy`` (marked gpu): only where CuPy sees a GPU.
"""
import pytest
from threadpoolctl import threadpool_limits

from minireg.backend import cupy_status, get_backend
from minireg.testing.devices import fake_device
from minireg.testing.strategies import load_profile_from_env, register_profiles

register_profiles()
load_profile_from_env()

# The tests multiply tiny matrices: one BLAS thread is faster there, keeps float summation order
# fixed, and cannot stall when the other core is busy (2-thread OpenBLAS made a GAN test 90x slower).
threadpool_limits(1)

HAVE_GPU = cupy_status()[0]


def _backend_params():
    return [pytest.param("numpy", id="numpy"),
            pytest.param("fake", id="fake-device"),
            pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=_backend_params(), scope="session")
def backend(request):
    """Each available backend in turn (session-scoped, so it can be used inside @given tests)."""
    if request.param == "fake":
        return fake_device()
    if request.param == "cupy" and not HAVE_GPU:
        pytest.skip(cupy_status()[1])
    return get_backend(request.param)


GPU_SKIP_REASON = f"needs a CUDA GPU: {cupy_status()[1]}"


def pytest_collection_modifyitems(config, items):
    if HAVE_GPU:
        return
    skip = pytest.mark.skip(reason=GPU_SKIP_REASON)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Give every GPU skip the same location, so ``pytest -ra`` folds them into one summary line
    ("SKIPPED [N] tests/conftest.py: needs a CUDA GPU: ...") instead of one line per test site."""
    outcome = yield
    report = outcome.get_result()
    if not HAVE_GPU and report.skipped and "gpu" in item.keywords and isinstance(report.longrepr, tuple):
        report.longrepr = (__file__, None, GPU_SKIP_REASON)
