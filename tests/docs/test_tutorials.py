"""The tutorials in docs/tutorials cannot rot: each one's ```python blocks run, in order, in a fresh
interpreter, and the `assert` lines in them check the numbers the text talks about."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minireg.datasets import FASHION_MNIST_PATH

TUTORIAL_DIR = Path(__file__).resolve().parents[2] / "docs" / "tutorials"
TUTORIALS = sorted(TUTORIAL_DIR.glob("[a-z]-*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
TIMEOUT_S = 600   # each should take about a minute; this only stops a hung one


def tutorial_code(path):
    """The tutorial's python code blocks, joined in order."""
    return "\n\n".join(PYTHON_BLOCK.findall(path.read_text(encoding="utf-8")))


def test_every_tutorial_is_found():
    assert [p.name[0] for p in TUTORIALS] == list("abcdef")


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_and_checks_its_numbers(path, tmp_path_factory):
    code = tutorial_code(path)
    if "load_fashion_mnist" in code and not os.path.isdir(FASHION_MNIST_PATH):
        pytest.skip("needs the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    assert code.count("\nassert ") + code.count("    assert ") >= 3, f"{path.name}: too few checked outputs"
    workdir = tmp_path_factory.mktemp(path.stem)
    script = workdir / f"{path.stem}.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           # One classifier cache for all tutorials of this run (trained once, a few seconds).
           "MINIREG_CACHE": str(tmp_path_factory.getbasetemp() / "minireg-cache")}
    result = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0, (f"{path.name} failed (code in {script}):\n--- stdout\n{result.stdout[-3000:]}"
                                    f"\n--- stderr\n{result.stderr[-6000:]}")
