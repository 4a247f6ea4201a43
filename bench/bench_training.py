"""Training-step time of minireg networks against the same networks hand-written in NumPy.

    python bench/bench_training.py --threads 1      (and --threads 2)

MLP: 64-256-256-10, ReLU, batch 128, softmax cross entropy, Adam(1e-3). Target: within 1.3x of NumPy.
CNN: conv 32 (3x3, pad 1) - ReLU - max pool 2 - conv 64 - ReLU - max pool 2 - dense 128 - ReLU -
dense 10 on 28x28 inputs, batch 64, Adam. Target: no slower than the NumPy im2col version below
(sliding_window_view + matmul). Both sides run float32 from the same initial weights, and the
first steps are checked to agree before timing.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import parse_args, row, timeit  # noqa: E402

args = parse_args(__doc__.splitlines()[0])

import numpy as np  # noqa: E402
from _steps import cnn_steps, mlp_steps  # noqa: E402

import minireg as mr  # noqa: E402

rng = np.random.default_rng(0)


# ---- MLP ------------------------------------------------------------------------------------------
engine_mlp_step, numpy_mlp_step = mlp_steps(rng)


# ---- CNN ------------------------------------------------------------------------------------------
engine_cnn_step, numpy_cnn_step = cnn_steps(rng)


# Both implementations compute the same thing: compare the first three losses.
for minireg_step, numpy_step, name in ((engine_mlp_step, numpy_mlp_step, "MLP"), (engine_cnn_step, numpy_cnn_step, "CNN")):
    a = [minireg_step() for _ in range(3)]
    b = [numpy_step() for _ in range(3)]
    np.testing.assert_allclose(a, b, rtol=2e-4, err_msg=f"{name}: minireg and NumPy steps disagree")

print(f"threads={args.threads} numpy={np.__version__} kernels={mr.get_backend('numpy').kernels.name}")
print("| training step | minireg min / median | NumPy min / median | ratio | target |")
print("|---|---|---|---|---|")
mlp_ratio = timeit(engine_mlp_step, args.repeat), timeit(numpy_mlp_step, args.repeat)
print(row("MLP 64-256-256-10, batch 128, Adam", *mlp_ratio, unit="ms", scale=1e3) + " <= 1.3x |")
cnn_ratio = timeit(engine_cnn_step, args.repeat), timeit(numpy_cnn_step, args.repeat)
print(row("CNN conv32-conv64-dense128, batch 64, 28x28, Adam", *cnn_ratio, unit="ms", scale=1e3) + " <= 1.0x |")
