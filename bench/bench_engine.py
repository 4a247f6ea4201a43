"""Engine overhead against raw NumPy doing the same arithmetic, measured in the same run.

    python bench/bench_engine.py --threads 1

1. A chain of 100 small ops on 4-element float32 tensors (multiply, add, tanh, subtract, repeated),
   forward + backward. Target: under 10 us per op (bench_torch.py's add chain compares with PyTorch).
2. A 512x512 float32 matmul forward + backward (three GEMMs). Target: within 1.2x of NumPy.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import parse_args, row, timeit  # noqa: E402

args = parse_args(__doc__.splitlines()[0])

import numpy as np  # noqa: E402

import minireg as mr  # noqa: E402

N_BLOCKS = 25                      # 4 ops per block: 100 ops, plus the final sum
rng = np.random.default_rng(0)
x0 = rng.normal(size=4).astype(np.float32)
scale = np.float32(1.01)


def engine_chain():
    x = mr.tensor(x0, requires_grad=True)
    y = x
    for _ in range(N_BLOCKS):
        y = mr.tanh(y * 1.01 + x) - 0.5
    y.sum().backward()
    return x.grad


def numpy_chain():
    # forward, keeping what backward needs
    y, saved = x0, []
    for _ in range(N_BLOCKS):
        t = np.tanh(y * scale + x0)
        saved.append(t)
        y = t - np.float32(0.5)
    # backward of the same ops
    gy, gx = np.ones_like(x0), np.zeros_like(x0)
    for t in reversed(saved):
        g_pre = gy * (1 - t * t)        # tanh
        gx = gx + g_pre                 # add x
        gy = g_pre * scale              # multiply by constant
    return gx + gy


np.testing.assert_allclose(engine_chain().numpy(), numpy_chain(), rtol=1e-5)

a0 = rng.normal(size=(512, 512)).astype(np.float32)
b0 = rng.normal(size=(512, 512)).astype(np.float32)
g0 = rng.normal(size=(512, 512)).astype(np.float32)
a, b = mr.tensor(a0, requires_grad=True), mr.tensor(b0, requires_grad=True)
g = mr.tensor(g0)


def engine_matmul():
    a.grad = b.grad = None
    (a @ b).backward(g)


def numpy_matmul():
    c = a0 @ b0
    return c, g0 @ b0.T, a0.T @ g0


n_ops = 4 * N_BLOCKS + 1
chain_engine, chain_numpy = timeit(engine_chain, args.repeat), timeit(numpy_chain, args.repeat)
mm_engine, mm_numpy = timeit(engine_matmul, args.repeat), timeit(numpy_matmul, args.repeat)
print(f"threads={args.threads} numpy={np.__version__} minireg kernels={mr.get_backend('numpy').kernels.name}")
print("| benchmark | minireg min / median | NumPy min / median | ratio |")
print("|---|---|---|---|")
print(row("100-op chain, fwd+bwd, per op", tuple(t / n_ops for t in chain_engine),
          tuple(t / n_ops for t in chain_numpy)))
print(row("512x512 matmul fwd+bwd", mm_engine, mm_numpy, unit="ms", scale=1e3))
per_op = chain_engine[0] / n_ops * 1e6
print(f"per small op: {per_op:.2f} us (target < 10 us): {'OK' if per_op < 10 else 'ABOVE TARGET'}; "
      f"matmul ratio {mm_engine[0] / mm_numpy[0]:.2f}x (target <= 1.2x): "
      f"{'OK' if mm_engine[0] / mm_numpy[0] <= 1.2 else 'ABOVE TARGET'}")
