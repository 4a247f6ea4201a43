"""The README's python examples run as printed (each block in a fresh interpreter, in a temporary
directory), so what a newcomer copies works."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)   # as the tutorials' test
README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"README example {index} failed:\n{BLOCKS[index]}\n{done.stderr[-2000:]}"
