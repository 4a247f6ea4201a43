"""Time the reference kernels against the compiled ones, in the same run.

    python bench/bench_kernels.py --threads 2 [--size 10000000] [--repeat 7]

Each repeat copies the same input into preallocated work arrays (identical for both tables), then
times one in-place call. GB/s counts the bytes each kernel must move: one read and one write of
every written array plus one read of every array that is only read.
"""

import argparse
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="OpenMP/BLAS threads (default 1)")
    parser.add_argument("--size", type=int, default=10_000_000, help="elements per array")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per kernel and table")
    return parser.parse_args()


def cases(size):
    """(label, call(kernels, a, b), shape, arrays written, arrays only read)."""
    rows = 10_000
    return [
        ("prox_l1_", lambda k, w, g: k.prox_l1_(w, 1e-4), (size,), 1, 0),
        ("prox_elastic_net_", lambda k, w, g: k.prox_elastic_net_(w, 1e-4, 1e-4), (size,), 1, 0),
        ("clip_", lambda k, w, g: k.clip_(w, -0.5, 0.5), (size,), 1, 0),
        ("l2_grad_", lambda k, w, g: k.l2_grad_(w, g, 1e-4), (size,), 1, 1),
        ("max_norm_ (rescale)", lambda k, w, g: k.max_norm_(w, 1.0), (rows, size // rows), 1, 0),
        ("max_norm_ (within)", lambda k, w, g: k.max_norm_(w, 1e9), (rows, size // rows), 0, 1),
        ("sgd_prox_step_", lambda k, w, g: k.sgd_prox_step_(w, g, 1e-2, 1e-2, 1e-2), (size,), 1, 1),
    ]


def main():
    args = parse_args()
    # Thread counts are read when the libraries load, so set them before importing numpy.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np

    from minireg.kernels import CompiledKernels, Kernels, openmp_info

    tables = {"reference": Kernels(np), "compiled": CompiledKernels(np)}
    print(f"threads={args.threads} size={args.size:,} repeat={args.repeat} numpy={np.__version__} "
          f"kernels={openmp_info()}")
    print("| kernel | dtype | reference ms min/med | compiled ms min/med | speedup (min) "
          "| reference GB/s | compiled GB/s |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for label, call, shape, written, read in cases(args.size):
        source = [rng.standard_normal(shape), rng.standard_normal(shape)]
        for dtype in (np.float32, np.float64):
            inputs = [s.astype(dtype) for s in source]
            work = [np.empty_like(a) for a in inputs]
            gigabytes = (2 * written + read) * inputs[0].nbytes / 1e9
            times, results = {}, {}
            for name, kernels in tables.items():
                samples = []
                for _ in range(args.repeat + 1):  # the first call warms up
                    for dst, src in zip(work, inputs):
                        np.copyto(dst, src)
                    start = time.perf_counter()
                    call(kernels, *work)
                    samples.append(time.perf_counter() - start)
                times[name] = np.array(samples[1:]) * 1e3
                results[name] = work[0].copy()
            np.testing.assert_allclose(results["compiled"], results["reference"], rtol=1e-5, atol=1e-6)
            ref, comp = times["reference"], times["compiled"]
            print(f"| {label} | {np.dtype(dtype).name} "
                  f"| {ref.min():.2f} / {np.median(ref):.2f} | {comp.min():.2f} / {np.median(comp):.2f} "
                  f"| {ref.min() / comp.min():.1f}x "
                  f"| {gigabytes / ref.min() * 1e3:.1f} | {gigabytes / comp.min() * 1e3:.1f} |")


if __name__ == "__main__":
    main()
