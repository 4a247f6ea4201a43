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

    backend = current_backend()
    omp = kernels.openmp_info()
    cupy_ok, cupy_reason = cupy_status()
    return {
        "minireg": minireg.__version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "cupy": next((v for v in (_version(d) for d in ("cupy-cuda12x", "cupy-cuda13x", "cupy"))
                      if v != "not installed"), "not installed"),
        "backend": backend.name,
        "device": backend.device_name,
        "available_backends": available_backends(),
        "cupy_status": "available" if cupy_ok else cupy_reason,
        "kernels": backend.kernels.name,
        "compiled_extension": "built" if kernels.HAVE_COMPILED else f"missing ({kernels.COMPILED_IMPORT_ERROR})",
        "MINIREG_PURE_PYTHON": os.environ.get("MINIREG_PURE_PYTHON", ""),
        "openmp": f"{omp['openmp']} (max threads {omp['max_threads']})",
        "executable": sys.executable,
    }


def show_config(file=None):
    """Print versions, the active backend and device, and which kernel implementation runs."""
    for key, value in config().items():
        print(f"{key:>20}: {value}", file=file or sys.stdout)
