"""Limiting BLAS/OpenMP thread pools for small-matrix work (studies, GAN runs, tests)."""
import contextlib


def blas_threads(n):
    """A context limiting the BLAS/OpenMP thread pools to ``n`` threads with threadpoolctl.

    A no-op when ``n`` is None or threadpoolctl is not installed. Small matrices run faster on one
    thread, and on a 2-vCPU machine two threads can stall badly while the other core is busy.
    """
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n)
