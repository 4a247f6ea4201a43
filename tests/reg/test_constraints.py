"""Hard constraints: projections are feasible, idempotent and fixed on feasible points; for convex
sets also the closest feasible point and non-expansive. Every property runs on each backend and on
float32/float64. Plus Keras equivalence (axis conventions), exact values, validation, and errors
raised before a parameter is touched."""
import dataclasses
from typing import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minireg as mr
from minireg.errors import ShapeError
from minireg.nn import Linear, Parameter
from minireg.optim import SGD
from minireg.reg.attach import attach
from minireg.reg.constraints import L1Ball, L2Ball, MaxNorm, MinMaxNorm, NonNeg, TopK, UnitNorm, WeightClip
from minireg.testing import strategies as mst

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
CPU = mr.get_backend("numpy")


def tolerance(dtype, size):
    """Slack for comparisons: rounding in sums of ``size`` terms (e.g. the float32 cumulative sum of the
    reference L1-ball kernel) grows like size * eps; |w| <= 4 keeps the scale small."""
    return 16 * float(np.finfo(dtype).eps) * (1 + size)


def row_norms(a):
    return np.sqrt(np.sum(a.reshape(a.shape[0], -1).astype(np.float64) ** 2, axis=1, keepdims=True))


def scale_rows(a, bound):
    """Each row scaled into norm <= bound by plain rescaling: a feasible point built without the code under test."""
    flat = a.reshape(a.shape[0], -1)
    return (flat * np.minimum(1.0, bound / np.maximum(row_norms(a), 1e-300))).reshape(a.shape)


def first_k(a, k):
    flat = a.reshape(-1).copy()
    flat[k:] = 0
    return flat.reshape(a.shape)


@dataclasses.dataclass
class Case:
    name: str
    make: Callable
    feasible: Callable          # NumPy map from any array to a point of the feasible set
    shapes: st.SearchStrategy
    convex: bool = True
    kinks: tuple = ()

    def __str__(self):
        return self.name


ANY = mst.shapes(max_dims=3)
ROWS = mst.shapes(min_dims=2, max_dims=4, max_side=4)     # Linear (out, in) and conv (out, in, kh, kw)
MATRIX = mst.shapes(min_dims=2, max_dims=2)

CASES = [
    Case("WeightClip", lambda: WeightClip(0.5), lambda a: a * (0.5 / max(np.abs(a).max(initial=0), 0.5)), ANY),
    Case("NonNeg", NonNeg, np.abs, ANY),
    Case("MaxNorm-rows", lambda: MaxNorm(1.5), lambda a: scale_rows(a, 1.5), ROWS),
    Case("MaxNorm-columns", lambda: MaxNorm(1.5, axis="columns"), lambda a: scale_rows(a.T, 1.5).T, MATRIX),
    Case("L2Ball", lambda: L2Ball(2.0), lambda a: scale_rows(a.reshape(1, -1), 2.0).reshape(a.shape), ANY),
    Case("L1Ball", lambda: L1Ball(2.0), lambda a: a * (2.0 / max(np.abs(a).sum(), 2.0)), ANY),
    # Not convex (min_value > 0, the L0 set): feasibility, idempotence and fixed points only. Elements
    # stay 1e-3 away from 0 so no unit's squared norm underflows.
    Case("MinMaxNorm", lambda: MinMaxNorm(0.5, 1.5),
         lambda a: (a.reshape(a.shape[0], -1) / row_norms(a) * (0.5 + row_norms(a) % 1.0)).reshape(a.shape),
         ROWS, convex=False, kinks=(0.0,)),
    Case("UnitNorm-columns", lambda: UnitNorm("columns"), lambda a: (a / row_norms(a.T).T), MATRIX,
         convex=False, kinks=(0.0,)),
    Case("TopK", lambda: TopK(3), lambda a: first_k(a, 3), ANY, convex=False),
]
CONVEX = [c for c in CASES if c.convex]


def projected(constraint, values, backend):
    """(host copy of the projection of ``values``, the projected Parameter) on ``backend``."""
    p = Parameter(backend.asarray(np.array(values, copy=True)))
    constraint.project_(p)
    return p.numpy(), p


def on(values, backend):
    return Parameter(backend.asarray(np.array(values, copy=True)))


def draw_values(data, case, dtype, shape=None):
    shape = shape if shape is not None else data.draw(case.shapes)
    return data.draw(mst.float_arrays(shape, lo=-4.0, hi=4.0, dtype=dtype, kinks=case.kinks))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=str)
@given(data=st.data())
def test_projection_is_feasible_idempotent_and_fixes_feasible_points(case, dtype, backend, data):
    c = case.make()
    w = draw_values(data, case, dtype)
    tol = tolerance(dtype, w.size)
    p, param = projected(c, w, backend)
    assert p.dtype == dtype and p.shape == w.shape
    assert c.is_feasible(param, tol)
    np.testing.assert_allclose(projected(c, p, backend)[0], p, rtol=tol, atol=tol)

    z = case.feasible(draw_values(data, case, dtype, w.shape).astype(np.float64)).astype(dtype)
    assert c.is_feasible(on(z, backend), tol)
    np.testing.assert_allclose(projected(c, z, backend)[0], z, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONVEX, ids=str)
@given(data=st.data())
def test_convex_projection_is_the_closest_point_and_non_expansive(case, dtype, backend, data):
    c = case.make()
    w = draw_values(data, case, dtype)
    tol = tolerance(dtype, w.size)
    w2 = draw_values(data, case, dtype, w.shape)
    p, p2 = (projected(c, a, backend)[0].astype(np.float64) for a in (w, w2))
    w, w2 = w.astype(np.float64), w2.astype(np.float64)
    slack = tol * (1 + np.linalg.norm(w))
    assert np.linalg.norm(p - p2) <= np.linalg.norm(w - w2) + 2 * slack

    # Feasible competitors: far ones built from random points, near ones around the projection.
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    competitors = [case.feasible(rng.normal(size=w.shape) * s) for s in (0.5, 2.0, 8.0)]
    competitors += [case.feasible(p + rng.normal(size=w.shape) * s) for s in (1e-3, 1e-2, 1e-1)]
    distance = np.linalg.norm(w - p)
    for z in competitors:
        assert distance <= np.linalg.norm(w - z) + slack


def keras_unit_constraint(kernel, axis, min_value, max_value, rate):
    """keras.constraints.MinMaxNorm.__call__ (MaxNorm is min 0, rate 1), epsilon 1e-7."""
    norms = np.sqrt(np.sum(kernel**2, axis=axis, keepdims=True))
    desired = rate * np.clip(norms, min_value, max_value) + (1 - rate) * norms
    return kernel * desired / (1e-7 + norms)


@pytest.mark.parametrize("make, min_value, max_value, rate", [
    (lambda axis: MaxNorm(2.0, axis), 0.0, 2.0, 1.0),
    (lambda axis: MinMaxNorm(0.5, 1.0, 0.5, axis), 0.5, 1.0, 0.5),
    (lambda axis: UnitNorm(axis), 1.0, 1.0, 1.0),
], ids=["MaxNorm", "MinMaxNorm", "UnitNorm"])
def test_rows_and_columns_match_keras_axes(make, min_value, max_value, rate):
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(5, 3)) * 2                   # ours (out, in); Keras kernel (in, out) = dense.T
    conv = rng.normal(size=(4, 2, 3, 3))                  # ours (out, in, kh, kw); Keras (kh, kw, in, out)
    keras_conv = conv.transpose(2, 3, 1, 0)
    expected = {
        ("rows", "dense"): keras_unit_constraint(dense.T, 0, min_value, max_value, rate).T,
        ("columns", "dense"): keras_unit_constraint(dense.T, 1, min_value, max_value, rate).T,
        ("rows", "conv"): keras_unit_constraint(keras_conv, (0, 1, 2), min_value, max_value, rate)
        .transpose(3, 2, 0, 1),
    }
    for (axis, kind), want in expected.items():
        got, _ = projected(make(axis), dense if kind == "dense" else conv, CPU)
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"{axis} {kind}")


def test_exact_values():
    w = np.array([[3.0, -1.0, 0.5], [-0.2, 0.1, 4.0]])
    np.testing.assert_array_equal(projected(WeightClip(0.5), w, CPU)[0], [[0.5, -0.5, 0.5], [-0.2, 0.1, 0.5]])
    np.testing.assert_array_equal(projected(NonNeg(), w, CPU)[0], [[3.0, 0.0, 0.5], [0.0, 0.1, 4.0]])
    # sum |w| = 8.8 > 4: theta solves sum max(|w| - theta, 0) = 4 on the support {3, 4}: theta = 1.5
    np.testing.assert_allclose(projected(L1Ball(4.0), w, CPU)[0], [[1.5, 0, 0], [0, 0, 2.5]])
    np.testing.assert_allclose(projected(L2Ball(1.0), w, CPU)[0], w / np.linalg.norm(w))
    np.testing.assert_allclose(projected(MaxNorm(1.0, "columns"), w, CPU)[0],
                               w / np.maximum(np.linalg.norm(w, axis=0), 1.0))


def test_topk_keeps_largest_magnitudes_with_ties_broken_by_lowest_index():
    w = np.array([[1.0, -2.0, 1.0], [-1.0, 0.5, 2.0]])
    np.testing.assert_array_equal(projected(TopK(3), w, CPU)[0], [[1.0, -2.0, 0.0], [0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(projected(TopK(6), w, CPU)[0], w)
    np.testing.assert_array_equal(projected(TopK(100), w, CPU)[0], w)


def test_zero_units_stay_zero_and_count_as_feasible(backend):
    w = np.array([[0.0, 0.0], [3.0, 4.0]])
    for c in (UnitNorm(), MinMaxNorm(2.0, 3.0)):
        p, param = projected(c, w, backend)
        np.testing.assert_allclose(p, [[0.0, 0.0], w[1] / 5 * (1.0 if isinstance(c, UnitNorm) else 3.0)])
        assert c.is_feasible(param)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_same_result_on_every_backend(case, backend):
    w = np.random.default_rng(1).normal(size=(3, 4)) * 2
    np.testing.assert_allclose(projected(case.make(), w, backend)[0], projected(case.make(), w, CPU)[0], rtol=1e-12)


@pytest.mark.parametrize("constraint", [MaxNorm(1.0), MaxNorm(1.0, "columns"), MinMaxNorm(0.5, 1.0), L2Ball(1.0),
                                        TopK(2)], ids=repr)
def test_strided_and_fortran_ordered_parameters_are_projected_in_place(constraint):
    base = np.random.default_rng(2).normal(size=(4, 3)) * 3
    expected, _ = projected(constraint, base.T, CPU)
    for param in (Parameter(base.copy().T), Parameter(np.asfortranarray(base.T.copy()))):
        data = param.data
        constraint.project_(param)
        assert param.data is data
        np.testing.assert_allclose(param.data, expected, rtol=1e-12)
    view_owner = base.copy()
    param = Parameter(view_owner.T)
    constraint.project_(param)
    np.testing.assert_allclose(view_owner.T, expected, rtol=1e-12)


@pytest.mark.parametrize("constraint, shape, message", [
    (MaxNorm(), (5,), "at least 2 dimensions"),
    (MinMaxNorm(), (), "at least 2 dimensions"),
    (MaxNorm(axis="columns"), (2, 3, 1, 1), "a 2-D weight"),
    (UnitNorm("columns"), (4,), "a 2-D weight"),
])
def test_wrong_rank_raises_before_touching_the_parameter(constraint, shape, message):
    values = np.full(shape, 10.0)
    param = Parameter(values.copy())
    for method in (constraint.project_, constraint.is_feasible):
        with pytest.raises(ShapeError, match=message) as info:
            method(param)
        assert str(shape) in str(info.value)
        np.testing.assert_array_equal(param.numpy(), values)


def test_projection_hook_keeps_linear_weights_feasible_and_skips_the_bias():
    layer = Linear(4, 3, dtype="float64")
    layer.weight.data = layer.weight.data * 10
    layer.bias.data = np.array([5.0, -5.0, 5.0])
    constraint = MaxNorm(1.0)
    opt = SGD(layer.parameters(), lr=0.1)
    attach(opt, constraint)
    layer.weight.grad = mr.tensor(np.ones((3, 4)))
    layer.bias.grad = mr.tensor(np.zeros(3))
    opt.step()
    assert constraint.is_feasible(layer.weight)
    np.testing.assert_allclose(row_norms(layer.weight.numpy()), 1.0)
    np.testing.assert_array_equal(layer.bias.numpy(), [5.0, -5.0, 5.0])


@pytest.mark.parametrize("scale", [1e20, 1e-20])
@pytest.mark.parametrize("constraint", [UnitNorm(), MinMaxNorm(0.5, 2.0), MinMaxNorm(0.5, 2.0, rate=0.5)])
def test_float32_units_far_from_one_are_measured_in_float64(scale, constraint):
    units = np.array([[3.0, 4.0, 0.0], [0.0, 1.0, 0.0]])
    param = Parameter((units * scale).astype(np.float32))
    constraint.project_(param)
    result = param.numpy()
    assert result.dtype == np.float32 and np.all(np.isfinite(result))
    start = np.array([5.0, 1.0]) * scale
    clipped = np.clip(start, constraint.min_value, constraint.max_value)
    expected = constraint.rate * clipped + (1 - constraint.rate) * start
    norms = np.linalg.norm(result.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, expected, rtol=1e-6)
    np.testing.assert_allclose(result / norms[:, None], units / np.array([[5.0], [1.0]]), rtol=1e-6, atol=1e-7)
    assert constraint.is_feasible(param) == (constraint.rate == 1.0)


def test_unit_norm_constraints_on_a_device_make_no_reads_or_copies():
    from minireg.testing.devices import fake_device
    with fake_device() as device:
        params = [Parameter(device.asarray(np.full((3, 4), 1e20, np.float32))) for _ in range(3)]
        with device.counting() as counts:
            for constraint, p in zip([UnitNorm(), MinMaxNorm(0.5, 2.0), MinMaxNorm(0.5, 2.0, rate=0.5, axis="columns")],
                                     params):
                constraint.project_(p)
    assert counts.syncs == counts.implicit == counts.copies_to_device == 0, counts.report()
    np.testing.assert_allclose(np.linalg.norm(params[0].numpy(), axis=1), 1.0, rtol=1e-6)
