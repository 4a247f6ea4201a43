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
from _steps import NumpyAdam, engine_step, mlp_steps, softmax_ce_grad  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

import minireg as mr  # noqa: E402
from minireg import nn  # noqa: E402

rng = np.random.default_rng(0)


# ---- MLP ------------------------------------------------------------------------------------------
engine_mlp_step, numpy_mlp_step = mlp_steps(rng)


# ---- CNN ------------------------------------------------------------------------------------------
def im2col(x, pad):
    """(N, C, H, W) -> (N*H*W, C*9) columns of 3x3 windows with ``pad`` zero padding."""
    n, c, h, w = x.shape
    windows = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))), (3, 3), axis=(2, 3))
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)


def conv_forward(x, w, b):
    n, _, h, wd = x.shape
    cols = im2col(x, 1)
    out = cols @ w.reshape(w.shape[0], -1).T + b
    return out.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def conv_backward(gout, cols, w, need_dx):
    n, o, h, wd = gout.shape
    g2 = gout.transpose(0, 2, 3, 1).reshape(-1, o)
    gw, gb = (g2.T @ cols).reshape(w.shape), g2.sum(0)
    if not need_dx:
        return None, gw, gb
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)              # full convolution with the flipped kernel
    dx = im2col(gout, 1) @ flipped.reshape(flipped.shape[0], -1).T
    return dx.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), gw, gb


def pool_forward(x):
    n, c, h, w = x.shape
    r = x.reshape(n, c, h // 2, 2, w // 2, 2)
    out = r.max(axis=(3, 5))
    return out, r == out[:, :, :, None, :, None]


def pool_backward(gout, mask):
    n, c, h, _, w, _ = mask.shape
    return (mask * gout[:, :, :, None, :, None]).reshape(n, c, h * 2, w * 2)


mr.manual_seed(0)
cnn = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
cnn_params = [p.numpy().copy() for p in cnn.parameters()]
x_cnn = rng.random((64, 1, 28, 28), dtype=np.float32)
y_cnn = rng.integers(0, 10, 64)
np_cnn_opt = NumpyAdam(cnn_params)
engine_cnn_step = engine_step(cnn, x_cnn, y_cnn)


def numpy_cnn_step():
    c1w, c1b, c2w, c2b, d1w, d1b, d2w, d2b = cnn_params
    a1, cols1 = conv_forward(x_cnn, c1w, c1b)
    r1 = np.maximum(a1, 0)
    p1, m1 = pool_forward(r1)
    a2, cols2 = conv_forward(p1, c2w, c2b)
    r2 = np.maximum(a2, 0)
    p2, m2 = pool_forward(r2)
    flat = p2.reshape(len(x_cnn), -1)
    h = np.maximum(flat @ d1w.T + d1b, 0)
    loss, g = softmax_ce_grad(h @ d2w.T + d2b, y_cnn)
    gd2w, gd2b = g.T @ h, g.sum(0)
    g = (g @ d2w) * (h > 0)
    gd1w, gd1b = g.T @ flat, g.sum(0)
    g = (g @ d1w).reshape(p2.shape)
    g = pool_backward(g, m2) * (a2 > 0)
    g, gc2w, gc2b = conv_backward(g, cols2, c2w, need_dx=True)
    g = pool_backward(g, m1) * (a1 > 0)
    _, gc1w, gc1b = conv_backward(g, cols1, c1w, need_dx=False)
    np_cnn_opt.step([gc1w, gc1b, gc2w, gc2b, gd1w, gd1b, gd2w, gd2b])
    return loss


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
