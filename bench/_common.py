"""Shared benchmark plumbing: thread settings before NumPy loads, and a min/median timer."""
import argparse
import os
import time


def parse_args(description, **extra):
    """``--threads`` and ``--repeat`` plus any ``name=(type, default, help)`` extras; sets thread env vars."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (default 1)")
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats (min and median reported)")
    for name, (kind, default, help_text) in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=help_text)
    args = parser.parse_args()
    # Thread pools are sized when the libraries load, so this must run before numpy is imported.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    return args


def timeit(fn, repeat=7, min_seconds=0.2, sample_seconds=0.002):
    """(min, median) seconds per call over many short samples.

    Each sample times enough back-to-back calls to last ~``sample_seconds``; samples are taken
    until ``repeat`` * ``min_seconds`` have passed (at least 5 * ``repeat`` samples). Short samples
    make the minimum robust on a shared, busy machine: some samples run without being preempted.
    """
    fn()   # warm-up
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < sample_seconds:
        fn()
        calls += 1
    number = max(1, int(calls * sample_seconds / max(time.perf_counter() - start, 1e-9)))
    samples, deadline = [], time.perf_counter() + repeat * min_seconds
    while len(samples) < 5 * repeat or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    samples.sort()
    return samples[0], samples[len(samples) // 2]


def row(label, engine, baseline, unit="us", scale=1e6):
    """A markdown table row: engine and baseline min/median, and the engine/baseline ratio of minima."""
    return (f"| {label} | {engine[0] * scale:.1f} / {engine[1] * scale:.1f} {unit} "
            f"| {baseline[0] * scale:.1f} / {baseline[1] * scale:.1f} {unit} | {engine[0] / baseline[0]:.2f}x |")
