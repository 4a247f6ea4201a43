"""show_config and the command line report what actually runs."""
import io
import os
import subprocess
import sys

import minireg as mr


def test_show_config_names_backend_device_and_kernels():
    out = io.StringIO()
    mr.show_config(file=out)
    text = out.getvalue()
    for key in ("minireg", "numpy", "backend", "device", "kernels", "compiled_extension", "openmp"):
        assert f"{key}:" in text
    assert mr._info.config()["kernels"] == mr.get_backend("numpy").kernels.name


def test_command_line_info_and_pure_python_switch():
    env = dict(os.environ, MINIREG_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-m", "minireg", "info"], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "kernels: reference" in out and "backend: numpy" in out


def test_info_reports_an_unusable_minireg_backend_without_a_traceback():
    for name, reason in (("cupy", "cannot use the 'cupy' backend"), ("bogus", "unknown backend 'bogus'")):
        if name == "cupy" and mr.backend.cupy_status()[0]:
            continue                                     # a GPU machine can use it
        env = dict(os.environ, MINIREG_BACKEND=name)
        done = subprocess.run([sys.executable, "-m", "minireg", "info"], env=env, capture_output=True, text=True)
        assert done.returncode == 0 and "Traceback" not in done.stderr + done.stdout
        assert f"backend: unavailable (MINIREG_BACKEND='{name}')" in done.stdout
        assert f"problem: MINIREG_BACKEND='{name}' cannot be used: {reason}" in done.stdout
