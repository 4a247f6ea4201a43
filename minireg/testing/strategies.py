"""Hypothesis strategies for minireg tests.

Arrays are generated on the host as NumPy arrays (float64 unless asked otherwise) and mapped to a
backend by the caller (``on_backend``), so the same example runs on every backend without
per-element device round-trips.

    >>> from hypothesis import given
    >>> from minireg.testing import strategies as mst
    >>> @given(mst.float_arrays(mst.shapes(), kinks=(0.0,)))
    ... def test_abs_gradient(x):
    ...     ...   # every element of x is at least 1e-3 away from 0

Profiles: ``register_profiles()`` registers ``ci``, ``dev``, ``thorough`` and ``gpu``;
``load_profile_from_env()`` loads ``$HYPOTHESIS_PROFILE`` (default "ci" when ``$CI`` is set,
else "dev").
"""
import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

__all__ = ["shapes", "broadcastable_shapes", "matmul_shapes", "axes", "float_arrays", "arrays_for",
           "index_arrays", "on_backend", "register_profiles", "load_profile_from_env"]


# -- shapes ---------------------------------------------------------------------------------------
def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Array shapes, 0-d included by default."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4):
    """A tuple of ``num_shapes`` shapes that broadcast together."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims,
                                             max_side=max_side).map(lambda b: b.input_shapes)


def matmul_shapes(max_batch_dims=2, max_side=4):
    """``(shape_a, shape_b)`` with ``a @ b`` valid: (..., m, n) and (..., n, p), batch dims broadcasting."""
    return hnp.mutually_broadcastable_shapes(signature="(m,n),(n,p)->(m,p)", max_dims=max_batch_dims,
                                             max_side=max_side).map(lambda b: b.input_shapes)


def axes(ndim, allow_none=True):
    """A valid ``axis`` argument for an ``ndim``-d array: None, an int or a tuple of distinct axes,
    each possibly negative."""
    options = [st.just(None)] if allow_none else []
    if ndim > 0:
        options.append(st.integers(-ndim, ndim - 1))
    options.append(hnp.valid_tuple_axes(ndim))   # distinct axes, negative ones included
    return st.one_of(*options)


# -- arrays ---------------------------------------------------------------------------------------
def _allowed_intervals(lo, hi, kinks, half_width):
    """[lo, hi] minus the open intervals (k - half_width, k + half_width), as sorted closed intervals."""
    forbidden = []
    for k in sorted(float(k) for k in kinks):
        a, b = k - half_width, k + half_width
        if forbidden and a <= forbidden[-1][1]:
            forbidden[-1][1] = max(forbidden[-1][1], b)
        else:
            forbidden.append([a, b])
    allowed, start = [], lo
    for a, b in forbidden:
        if a > start:
            allowed.append((start, min(a, hi)))
        start = max(start, b)
        if start > hi:
            break
    if start <= hi:
        allowed.append((start, hi))
    allowed = [(a, b) for a, b in allowed if a <= b]
    if not allowed:
        raise InvalidArgument(f"no value in [{lo}, {hi}] is {half_width:g} away from every kink in {tuple(kinks)}")
    return allowed


def _nudge(x, allowed):
    """Move every value outside the allowed intervals to the nearest allowed endpoint (deterministic)."""
    ends = np.array([e for ab in allowed for e in ab])
    inside = np.zeros(x.shape, bool)
    for a, b in allowed:
        inside |= (x >= a) & (x <= b)
    nearest = ends[np.argmin(np.abs(x[..., None] - ends), axis=-1)] if x.size else x
    return np.where(inside, x, nearest)


def _grid(allowed, gap, pad, cap=100_000):
    """Allowed values at least 2*gap apart, each followed by room for a jitter of up to gap - pad."""
    step = max(2 * gap, sum(b - a for a, b in allowed) / cap)
    points, nxt = [], -np.inf
    for a, b in allowed:
        start, stop = max(a, nxt), b - gap + pad
        if stop >= start:
            points.append(start + step * np.arange(int((stop - start) // step) + 1))
            nxt = points[-1][-1] + step
    return np.concatenate(points) if points else np.zeros(0)


def float_arrays(shape, *, lo=-3.0, hi=3.0, dtype=np.float64, kinks=(), margin=1e-3, unique=False, min_gap=None):
    """Finite arrays with elements in [lo, hi], at least ``margin`` away from every value in ``kinks``.

    ``unique=True`` also keeps every pair of elements at least ``min_gap`` apart (default
    ``margin``), for max/min/sort-like ops whose gradient is undefined at ties. Kinks are avoided by
    construction (a nudge map, or a grid of allowed values for ``unique``), never by filtering.
    ``shape`` may be a shape, an int or a strategy of shapes.
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f" or not lo <= hi:
        raise InvalidArgument(f"float_arrays needs a floating dtype and lo <= hi, got {dtype}, [{lo}, {hi}]")
    scale = max([1.0, abs(lo), abs(hi)] + [abs(float(k)) for k in kinks])
    pad = 8 * float(np.finfo(dtype).eps) * scale       # survives rounding to ``dtype``
    allowed = _allowed_intervals(float(lo), float(hi), kinks, margin + pad if kinks else 0.0)
    gap = (margin if min_gap is None else min_gap) + pad

    @st.composite
    def draw_array(draw):
        shp = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
        shp = (shp,) if isinstance(shp, int) else tuple(shp)
        if not unique:
            x = draw(hnp.arrays(np.float64, shp, elements=st.floats(lo, hi, allow_nan=False, allow_infinity=False,
                                                                    allow_subnormal=False)))
            return _nudge(x, allowed).astype(dtype)
        grid = _grid(allowed, gap, pad)
        if grid.size < int(np.prod(shp)):
            raise InvalidArgument(f"[{lo}, {hi}] holds only {grid.size} values {gap:g} apart away from the kinks, "
                                  f"not enough for an array of shape {shp}")
        picks = draw(hnp.arrays(np.int64, shp, elements=st.integers(0, grid.size - 1), unique=True))
        jitter = draw(hnp.arrays(np.float64, shp, elements=st.floats(0.0, gap - pad, allow_subnormal=False)))
        return (grid[picks] + jitter).astype(dtype)

    return draw_array()


def arrays_for(shapes_strategy, **float_kwargs):
    """One float array per shape drawn from ``shapes_strategy`` (e.g. ``broadcastable_shapes()``)."""
    @st.composite
    def draw_arrays(draw):
        return tuple(draw(float_arrays(s, **float_kwargs)) for s in draw(shapes_strategy))
    return draw_arrays()


def index_arrays(size, max_len=6, allow_duplicates=True, min_len=1):
    """1-d int64 arrays of indices into an axis of length ``size``; repeated indices on purpose
    (they exercise scatter-add in the backward of indexing)."""
    if size <= 0 and min_len > 0:
        raise InvalidArgument("index_arrays: cannot index an empty axis")
    max_len = max_len if allow_duplicates else min(max_len, size)
    elements = st.integers(0, max(size - 1, 0))
    return st.lists(elements, min_size=min_len, max_size=max_len, unique=not allow_duplicates).map(
        lambda xs: np.asarray(xs, dtype=np.int64))


def on_backend(strategy, backend):
    """Map host arrays (or tuples of them) drawn from ``strategy`` onto ``backend`` (object or name)."""
    if isinstance(backend, str):
        from minireg.backend import get_backend
        backend = get_backend(backend)

    def convert(x):
        return tuple(backend.asarray(a) for a in x) if isinstance(x, tuple) else backend.asarray(x)
    return strategy.map(convert)


# -- settings profiles ----------------------------------------------------------------------------
def register_profiles():
    """Register the ``ci``, ``dev``, ``thorough`` and ``gpu`` profiles with every field explicit, so
    none of them inherits from Hypothesis's auto-loaded ``ci`` profile."""
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    local_db = settings.get_profile("default").database
    settings.register_profile("ci", derandomize=True, database=None, max_examples=25, print_blob=True, **common)
    settings.register_profile("dev", derandomize=False, database=local_db, max_examples=50, print_blob=False,
                              **common)
    settings.register_profile("thorough", derandomize=False, database=local_db, max_examples=500,
                              print_blob=True, **common)
    settings.register_profile("gpu", derandomize=True, database=None, max_examples=25, print_blob=True, **common)


def load_profile_from_env():
    """Load ``$HYPOTHESIS_PROFILE`` (default "ci" when ``$CI`` is set, else "dev"); returns its name."""
    register_profiles()
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    settings.load_profile(name)
    return name
