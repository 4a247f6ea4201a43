"""Time conv2d forward + backward in minireg against a hand-written NumPy im2col, in the same run.

    python bench/bench_conv.py --threads 2 [--batch 64] [--repeat 10] [--dtype float32]

The case is N=64, 32 -> 64 channels, 14x14, 3x3 kernel, padding 1, with bias. The baseline uses
the same column layout as minireg (rows (c, i, j), columns (n, y, x): one GEMM for the batch) with
sliding_window_view + matmul and a col2im loop over kernel offsets, so the ratio is minireg's own
overhead: graph recording, Tensor wrapping and the extra copies of composing generic ops.
"""

import argparse
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="OpenMP/BLAS threads (default 1)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=10, help="timed forward+backward passes per variant")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    return parser.parse_args()


def numpy_conv(np, x, w, b, gy):
    """Forward and backward of a stride-1 conv with 'same' padding; returns (y, gx, gw, gb)."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    p = k // 2
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))     # n c h w k k
    cols = windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * k * k, n * h * wd)
    w2 = w.reshape(o, -1)
    y = (w2 @ cols).reshape(o, n, h, wd).transpose(1, 0, 2, 3) + b.reshape(o, 1, 1)
    g2 = gy.transpose(1, 0, 2, 3).reshape(o, -1)
    gw, gb = (g2 @ cols.T).reshape(w.shape), gy.sum(axis=(0, 2, 3))
    gcols = (w2.T @ g2).reshape(c, k, k, n, h, wd)
    gpad = np.zeros((c, n, h + 2 * p, wd + 2 * p), x.dtype)
    for i in range(k):
        for j in range(k):
            gpad[:, :, i:i + h, j:j + wd] += gcols[:, i, j]
    return y, gpad[:, :, p:p + h, p:p + wd].transpose(1, 0, 2, 3), gw, gb


def main():
    args = parse_args()
    # Thread counts are read when the libraries load, so set them before importing numpy.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np

    import minireg as mr
    from minireg.functional_conv import conv2d

    rng = np.random.default_rng(0)
    shape_x, shape_w = (args.batch, 32, 14, 14), (64, 32, 3, 3)
    x, w = rng.standard_normal(shape_x).astype(args.dtype), rng.standard_normal(shape_w).astype(args.dtype)
    b = rng.standard_normal(64).astype(args.dtype)
    gy = rng.standard_normal((args.batch, 64, 14, 14)).astype(args.dtype)

    def run_minireg():
        xt, wt, bt = (mr.tensor(a, requires_grad=True) for a in (x, w, b))
        y = conv2d(xt, wt, bt, padding=1)
        y.backward(mr.tensor(gy))
        return y.numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()

    def run_numpy():
        return numpy_conv(np, x, w, b, gy)

    tol = 1e-3 if args.dtype == "float32" else 1e-10
    for ours, theirs in zip(run_minireg(), run_numpy()):
        np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * float(np.abs(theirs).max()))

    print(f"threads={args.threads} x={shape_x} w={shape_w} padding=1 dtype={args.dtype} repeat={args.repeat} "
          f"numpy={np.__version__}")
    times = {}
    for label, fn in (("numpy im2col", run_numpy), ("minireg", run_minireg)):
        fn()   # warm-up
        samples = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        times[label] = sorted(samples)
    print("| variant | fwd+bwd ms min | median |")
    print("|---|---|---|")
    for label, samples in times.items():
        print(f"| {label} | {1e3 * samples[0]:.2f} | {1e3 * samples[len(samples) // 2]:.2f} |")
    print(f"ratio minireg / numpy (min): {times['minireg'][0] / times['numpy im2col'][0]:.2f}")


if __name__ == "__main__":
    main()
