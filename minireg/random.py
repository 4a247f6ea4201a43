"""One seeded source of randomness for minireg (initialisers, dropout, shuffling).

Numbers are drawn on the host from a NumPy Generator and moved to the backend's device, so a run
with the same seed sees the same numbers on the CPU and on the GPU.
"""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Seed every random draw minireg makes (initialisation, dropout masks, data shuffling)."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed needs a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def default_generator():
    """The global NumPy Generator; pass your own ``numpy.random.Generator`` where an API takes one."""
    return _generator
