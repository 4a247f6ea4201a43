"""Regularization kernels at 10 million float32 parameters: compiled kernel vs the textbook NumPy
expression vs a memory copy of the same bytes, all measured in the same run.

    python bench/bench_regularizers.py --threads 1
    python bench/bench_regularizers.py --threads 2      # sets OMP_WAIT_POLICY=PASSIVE, see below

Bytes a kernel must touch: one read and one write of every array it writes plus one read of every
array it only reads (as bench_kernels). "vs copy" is the kernel's time over the time of
``np.copyto`` moving those bytes (half read, half written), i.e. how far the kernel is from the
machine's memory bandwidth; NumPy's copy is single-threaded, so with several threads a kernel may
beat it. The NumPy column is the update written as in a textbook, ``w[...] = expression`` (or
``g += expression``), with the temporaries NumPy allocates. Targets (printed OK/ABOVE): every
elementwise kernel >= 3x faster than NumPy and <= 2x a copy; the fused AdamW+prox step >= 4x
faster than the same step in plain NumPy.

With more than one thread, OMP_WAIT_POLICY=PASSIVE is set (unless already set): on a small VM the
default spin-waiting of idle OpenMP threads steals the CPU from the thread doing the work.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_args, timeit  # noqa: E402

SIZE = 10_000_000
ROWS = 10_000
LR, L1, L2, DECAY, BETA1, BETA2, EPS = 1e-3, 1e-4, 1e-4, 1e-2, 0.9, 0.999, 1e-8


def elementwise_cases(np, kernels):
    """(label, compiled call, NumPy call, shape, number of arrays written, number only read).

    Calls take (a, b): the written array first. max_norm_ lowers its bound by 3% per call so that
    every call rescales every row (a bound already met would skip the writes).
    """
    sign, maximum, absolute = np.sign, np.maximum, np.abs
    bound = {"kernel": 1.0, "numpy": 1.0}

    def shrinking(key):
        bound[key] *= 0.97
        return bound[key]

    def max_norm_numpy(w):
        norms = np.sqrt((w * w).sum(axis=1, keepdims=True))
        c = shrinking("numpy")
        w[...] = w * np.minimum(1.0, c / norms)

    return [
        ("l1_grad_", lambda g, w: kernels.l1_grad_(g, w, L1),
         lambda g, w: np.add(g, L1 * sign(w), out=g), (SIZE,), 1, 1),
        ("l2_grad_", lambda g, w: kernels.l2_grad_(g, w, L2),
         lambda g, w: np.add(g, L2 * w, out=g), (SIZE,), 1, 1),
        ("elastic_net_grad_", lambda g, w: kernels.elastic_net_grad_(g, w, L1, L2),
         lambda g, w: np.add(g, L1 * sign(w) + L2 * w, out=g), (SIZE,), 1, 1),
        ("prox_l1_", lambda w, _: kernels.prox_l1_(w, LR * L1),
         lambda w, _: np.copyto(w, sign(w) * maximum(absolute(w) - LR * L1, 0)), (SIZE,), 1, 0),
        ("prox_l2_", lambda w, _: kernels.prox_l2_(w, LR * L2),
         lambda w, _: np.copyto(w, w / (1 + LR * L2)), (SIZE,), 1, 0),
        ("prox_elastic_net_", lambda w, _: kernels.prox_elastic_net_(w, LR * L1, LR * L2),
         lambda w, _: np.copyto(w, sign(w) * maximum(absolute(w) - LR * L1, 0) / (1 + LR * L2)), (SIZE,), 1, 0),
        ("clip_", lambda w, _: kernels.clip_(w, -0.5, 0.5),
         lambda w, _: np.copyto(w, np.clip(w, -0.5, 0.5)), (SIZE,), 1, 0),
        (f"max_norm_ ({ROWS}x{SIZE // ROWS})", lambda w, _: kernels.max_norm_(w, shrinking("kernel")),
         lambda w, _: max_norm_numpy(w), (ROWS, SIZE // ROWS), 1, 1),
        ("sgd_prox_step_", lambda w, g: kernels.sgd_prox_step_(w, g, LR, L1, L2),
         lambda w, g: sgd_prox_numpy(np, w, g), (SIZE,), 1, 1),
    ]


def sgd_prox_numpy(np, w, g):
    v = w - LR * g
    np.copyto(w, np.sign(v) * np.maximum(np.abs(v) - LR * L1, 0) / (1 + LR * L2))


def adamw_prox_numpy(np, w, g, m, v, step):
    """The AdamW step (PyTorch order) then the soft threshold, as one would write it in NumPy."""
    m[...] = BETA1 * m + (1 - BETA1) * g
    v[...] = BETA2 * v + (1 - BETA2) * g * g
    m_hat, v_hat = m / (1 - BETA1 ** step), v / (1 - BETA2 ** step)
    w[...] = w * (1 - LR * DECAY) - LR * m_hat / (np.sqrt(v_hat) + EPS)
    w[...] = np.sign(w) * np.maximum(np.abs(w) - LR * L1, 0)


def verdict(ok):
    return "OK" if ok else "ABOVE"


def main():
    args = parse_args(__doc__.splitlines()[0])
    if args.threads > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import numpy as np

    from minireg.kernels import CompiledKernels, openmp_info

    kernels = CompiledKernels(np)
    rng = np.random.default_rng(0)
    copy_times = {}

    def copy_time(nbytes):
        """(min, median) seconds of np.copyto moving ``nbytes`` (nbytes/2 read, nbytes/2 written)."""
        if nbytes not in copy_times:
            n = nbytes // 2 // 4
            src, dst = rng.standard_normal(n, dtype=np.float32), np.empty(n, np.float32)
            copy_times[nbytes] = timeit(lambda: np.copyto(dst, src), args.repeat)
        return copy_times[nbytes]

    def ms(t):
        return f"{t[0] * 1e3:.2f} / {t[1] * 1e3:.2f}"

    print(f"threads={args.threads} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')} "
          f"size={SIZE:,} float32 repeat={args.repeat} numpy={np.__version__} kernels={openmp_info()}\n")
    print("| kernel | compiled ms min/med | NumPy ms min/med | copy ms min/med | speedup vs NumPy "
          "| kernel / copy | >=3x NumPy | <=2x copy |")
    print("|---|---|---|---|---|---|---|---|")
    for label, compiled, plain, shape, written, read in elementwise_cases(np, kernels):
        a, b = rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)
        a2, b2 = a.copy(), b.copy()
        kernel = timeit(lambda: compiled(a, b), args.repeat)
        numpy_time = timeit(lambda: plain(a2, b2), args.repeat)
        copy = copy_time((2 * written + read) * a.nbytes)
        speedup, ratio = numpy_time[0] / kernel[0], kernel[0] / copy[0]
        print(f"| {label} | {ms(kernel)} | {ms(numpy_time)} | {ms(copy)} | {speedup:.1f}x | {ratio:.2f} "
              f"| {verdict(speedup >= 3)} | {verdict(ratio <= 2)} |")

    w, g, m, v = (rng.standard_normal(SIZE, dtype=np.float32) for _ in range(4))
    v = np.abs(v)
    w2, m2, v2 = w.copy(), m.copy(), v.copy()
    steps = {"kernel": 0, "numpy": 0}

    def fused():
        steps["kernel"] += 1
        kernels.adamw_prox_step_(w, g, m, v, steps["kernel"], LR, BETA1, BETA2, EPS, DECAY, L1)

    def plain():
        steps["numpy"] += 1
        adamw_prox_numpy(np, w2, g, m2, v2, steps["numpy"])

    kernel, numpy_time = timeit(fused, args.repeat), timeit(plain, args.repeat)
    copy = copy_time(7 * w.nbytes)   # w, m, v read and written, g read
    speedup = numpy_time[0] / kernel[0]
    print(f"\n| step | fused ms min/med | NumPy ms min/med | copy ms min/med | speedup vs NumPy | kernel / copy "
          f"| >=4x NumPy |\n|---|---|---|---|---|---|---|\n"
          f"| AdamW + L1 prox (adamw_prox_step_) | {ms(kernel)} | {ms(numpy_time)} | {ms(copy)} | {speedup:.1f}x "
          f"| {kernel[0] / copy[0]:.2f} | {verdict(speedup >= 4)} |")


if __name__ == "__main__":
    main()
