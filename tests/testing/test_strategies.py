"""Properties of minireg.testing.strategies (host NumPy only, no engine needed except on_backend)."""
import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from minireg.testing import strategies as mst

deterministic = settings(derandomize=True, deadline=None, database=None)


def draw_one(strategy):
    """One example, generated deterministically without shrinking."""
    found = []

    @settings(derandomize=True, deadline=None, database=None, max_examples=1, phases=[Phase.generate])
    @given(strategy)
    def run(x):
        found.append(x)
    run()
    return found[0]


@deterministic
@given(mst.shapes(min_dims=1, max_dims=2, min_side=2, max_side=3))
def test_shapes_respect_bounds(shape):
    assert 1 <= len(shape) <= 2 and all(2 <= s <= 3 for s in shape)


@deterministic
@given(st.integers(1, 4).flatmap(lambda n: st.tuples(st.just(n), mst.broadcastable_shapes(n, max_dims=3))))
def test_broadcastable_shapes_broadcast(n_and_shapes):
    n, shapes = n_and_shapes
    assert len(shapes) == n and all(len(s) <= 3 and all(1 <= d <= 4 for d in s) for s in shapes)
    np.broadcast_shapes(*shapes)


@deterministic
@given(mst.matmul_shapes(max_batch_dims=2, max_side=4))
def test_matmul_shapes_are_compatible(shapes):
    a, b = shapes
    assert len(a) >= 2 and len(b) >= 2 and len(a) <= 4 and len(b) <= 4
    assert a[-1] == b[-2]
    out = np.matmul(np.ones(a), np.ones(b))
    assert out.shape == np.broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])


@deterministic
@given(st.data(), st.integers(0, 4), st.booleans())
def test_axes_are_valid(data, ndim, allow_none):
    axis = data.draw(mst.axes(ndim, allow_none=allow_none))
    if axis is None:
        assert allow_none
    elif isinstance(axis, int):
        assert -ndim <= axis < ndim
    else:
        assert all(-ndim <= a < ndim for a in axis)
        assert len({a % ndim for a in axis}) == len(axis)   # distinct after normalising negatives
    np.sum(np.ones((2,) * ndim), axis=axis)                 # NumPy accepts it


def test_axes_include_negative_and_tuple_values():
    strategy = mst.axes(3)
    assert find(strategy, lambda a: isinstance(a, int) and a < 0, settings=deterministic) < 0
    assert isinstance(find(strategy, lambda a: isinstance(a, tuple) and any(x < 0 for x in a),
                           settings=deterministic), tuple)


KINKS = (0.0, 1.0, 1.0015, -3.0)   # two kinks closer than 2*margin, one on the lower bound


@deterministic
@given(st.data(), st.sampled_from([np.float64, np.float32]), st.sampled_from([1e-3, 0.05]))
def test_float_arrays_stay_away_from_kinks(data, dtype, margin):
    x = data.draw(mst.float_arrays(mst.shapes(max_dims=3), dtype=dtype, kinks=KINKS, margin=margin))
    assert x.dtype == dtype and np.all(np.isfinite(x))
    assert np.all((x >= -3.0) & (x <= 3.0))
    dist = np.abs(x.astype(np.float64)[..., None] - np.array(KINKS))
    assert np.all(dist >= margin)


def test_float_arrays_nudge_values_near_kinks():
    # the nudge map puts would-be kink values on the allowed boundary, deterministically
    x = find(mst.float_arrays((2,), kinks=(0.0,), margin=0.1), lambda a: np.all(np.abs(a) < 0.2),
             settings=deterministic)
    assert np.all(np.abs(x) >= 0.1)


@deterministic
@given(st.data(), st.sampled_from([np.float64, np.float32]), st.sampled_from([1e-3, 0.1]))
def test_float_arrays_unique_keep_min_gap(data, dtype, min_gap):
    x = data.draw(mst.float_arrays(mst.shapes(min_dims=1, max_dims=2, max_side=4), dtype=dtype, kinks=KINKS,
                                   unique=True, min_gap=min_gap, lo=-2.0, hi=2.0))
    assert x.dtype == dtype and np.all((x >= -2.0) & (x <= 2.0))
    assert np.all(np.abs(x.astype(np.float64)[..., None] - np.array(KINKS)) >= 1e-3)
    flat = np.sort(x.astype(np.float64).ravel())
    assert np.all(np.diff(flat) >= min_gap)


@deterministic
@given(mst.float_arrays(5, lo=0.5, hi=0.5))
def test_float_arrays_int_shape_and_degenerate_range(x):
    assert x.shape == (5,) and np.all(x == 0.5)


def test_float_arrays_impossible_constraints_raise():
    with pytest.raises(InvalidArgument):
        mst.float_arrays((2,), lo=-1e-4, hi=1e-4, kinks=(0.0,))
    with pytest.raises(InvalidArgument):
        draw_one(mst.float_arrays((20,), lo=0.0, hi=1.0, unique=True, min_gap=0.1))


@deterministic
@given(mst.arrays_for(mst.broadcastable_shapes(3), kinks=(0.0,)))
def test_arrays_for_draws_one_array_per_shape(arrays):
    assert len(arrays) == 3
    np.broadcast_shapes(*(a.shape for a in arrays))
    assert all(a.dtype == np.float64 and np.all(np.abs(a) >= 1e-3) for a in arrays)


@deterministic
@given(st.integers(1, 5).flatmap(lambda n: st.tuples(st.just(n), mst.index_arrays(n, max_len=6))))
def test_index_arrays_in_range(n_and_index):
    n, index = n_and_index
    assert index.dtype == np.int64 and index.ndim == 1 and 1 <= index.size <= 6
    assert np.all((index >= 0) & (index < n))


def test_index_arrays_duplicates_on_request():
    dup = find(mst.index_arrays(4), lambda a: len(set(a.tolist())) < a.size, settings=deterministic)
    assert len(set(dup.tolist())) < dup.size

    @deterministic
    @given(mst.index_arrays(3, max_len=6, allow_duplicates=False))
    def no_duplicates(index):
        assert len(set(index.tolist())) == index.size <= 3
    no_duplicates()


def test_on_backend_maps_arrays_and_tuples():
    class FakeBackend:
        def asarray(self, x, dtype=None):
            return ("on-fake", x.shape)
    fake = FakeBackend()
    assert draw_one(mst.on_backend(mst.float_arrays((2, 3)), fake)) == ("on-fake", (2, 3))
    pair = draw_one(mst.on_backend(mst.arrays_for(st.just(((1,), (2,)))), fake))
    assert pair == (("on-fake", (1,)), ("on-fake", (2,)))


def test_on_backend_with_real_numpy_backend():
    minireg = pytest.importorskip("minireg")
    x = draw_one(mst.on_backend(mst.float_arrays((2,)), "numpy"))
    assert minireg.tensor(x).shape == (2,)


def test_profiles(monkeypatch):
    previous = settings.get_current_profile_name()
    try:
        mst.register_profiles()
        expected = {"ci": (True, 25), "dev": (False, 50), "thorough": (False, 500), "gpu": (True, 25)}
        for name, (derandomize, max_examples) in expected.items():
            profile = settings.get_profile(name)
            assert profile.derandomize is derandomize and profile.max_examples == max_examples
            assert profile.deadline is None
        assert settings.get_profile("ci").database is None and settings.get_profile("ci").print_blob
        monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
        monkeypatch.setenv("CI", "true")
        assert mst.load_profile_from_env() == "ci"
        monkeypatch.delenv("CI")
        assert mst.load_profile_from_env() == "dev" and settings().max_examples == 50
        monkeypatch.setenv("HYPOTHESIS_PROFILE", "thorough")
        assert mst.load_profile_from_env() == "thorough" and settings().max_examples == 500
    finally:
        settings.load_profile(previous)
