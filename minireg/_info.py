"""``show_config()``: what this minireg installation runs on."""
import importlib.metadata
import os
import platform
import sys


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def config():
    """The facts ``show_config`` prints, as a dict (handy in bug reports and benchmark headers)."""
    import minireg
    from minireg import kernels
    from minireg.backend import available_backends, cupy_status, current_backend
    from minireg.errors import BackendUnavailableError

    try:
        backend, problem = current_backend(), None
    except BackendUnavailableError as exc:       # reported, not raised: info is what one runs to find out
        backend, problem = None, str(exc)
    omp = kernels.openmp_info()
    cupy_ok, cupy_reason = cupy_status()
    facts = {
        "minireg": minireg.__version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "cupy": next((v for v in (_version(d) for d in ("cupy-cuda12x", "cupy-cuda13x", "cupy"))
                      if v != "not installed"), "not installed"),
        "backend": backend.name if backend else f"unavailable (MINIREG_BACKEND={os.environ.get('MINIREG_BACKEND')!r})",
        "device": backend.device_name if backend else "none",
        "available_backends": available_backends(),
        "cupy_status": "available" if cupy_ok else cupy_reason,
        "kernels": backend.kernels.name if backend else "none",
        "compiled_extension": "built" if kernels.HAVE_COMPILED else f"missing ({kernels.COMPILED_IMPORT_ERROR})",
        "compiled_build": _compiled_build() if kernels.HAVE_COMPILED else "none",
        "MINIREG_PURE_PYTHON": os.environ.get("MINIREG_PURE_PYTHON", ""),
        "openmp": f"{omp['openmp']} (max threads {omp['max_threads']})",
        "executable": sys.executable,
    }
    if problem:
        facts["problem"] = problem
    return facts


def show_config(file=None):
    """Print versions, the active backend and device, and which kernel implementation runs. A
    ``MINIREG_BACKEND`` that cannot be used is reported on a ``problem`` line, not raised."""
    for key, value in config().items():
        print(f"{key:>20}: {value}", file=file or sys.stdout)


def _compiled_build():
    from minireg.kernels.compiled import compiled_module
    return "avx2" if compiled_module().__name__.endswith("_avx2") else "baseline"
