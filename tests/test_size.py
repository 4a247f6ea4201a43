"""The engine core stays small enough to read in one sitting (tinygrad's line budget, on a small scale)."""
from pathlib import Path

CORE = ["_config.py", "tensor.py", "function.py", "autograd.py", "functional.py", "backend/__init__.py",
        "backend/base.py", "backend/numpy_backend.py", "backend/cupy_backend.py"]
BUDGET = 1600


def test_engine_core_line_budget():
    root = Path(__file__).resolve().parents[1] / "minireg"
    counts = {name: len((root / name).read_text().splitlines()) for name in CORE}
    total = sum(counts.values())
    assert total <= BUDGET, f"engine core has {total} lines (budget {BUDGET}): {counts}"
