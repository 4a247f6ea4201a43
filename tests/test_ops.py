"""Every op, from one registry: forward vs NumPy, gradient and second derivative vs finite
differences, dtypes, 0-d/empty and non-contiguous inputs, on every backend.

Adding an op to minireg adds one line to OPS below.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from scipy_free_reference import logsumexp_ref, log_softmax_ref, softmax_ref, softplus_ref, elu_ref, sigmoid_ref

import minireg as mr
from minireg import F
from minireg.testing import gradcheck, gradgradcheck
from minireg.testing import opspec as S
from minireg.testing.opspec import OpSpec


def erf_ref(a):
    return np.vectorize(math.erf, otypes=[a.dtype])(a)


OPS = [
    # elementwise arithmetic, broadcasting
    OpSpec("add", lambda a, b: a + b, np.add, S.elementwise(2)),
    OpSpec("subtract", lambda a, b: a - b, np.subtract, S.elementwise(2)),
    OpSpec("multiply", lambda a, b: a * b, np.multiply, S.elementwise(2)),
    OpSpec("divide", lambda a, b: a / b, np.divide, S.elementwise(2, ranges=[(-3, 3), (0.5, 3)])),
    OpSpec("power", lambda a, b: a ** b, np.power, S.elementwise(2, ranges=[(0.5, 3), (-2, 2)])),
    OpSpec("square", lambda a: a ** 2, np.square, S.elementwise()),
    OpSpec("negative", lambda a: -a, np.negative, S.elementwise()),
    OpSpec("maximum", F.maximum, np.maximum, S.elementwise(2, unique=True)),
    OpSpec("minimum", F.minimum, np.minimum, S.elementwise(2, unique=True)),
    OpSpec("where", lambda a, b, condition: F.where(condition, a, b),
           lambda a, b, condition: np.where(condition, a, b), S.where_inputs()),
    # elementwise math and activations (kinks declared, samples kept away from them)
    OpSpec("exp", F.exp, np.exp, S.elementwise()),
    OpSpec("log", F.log, np.log, S.elementwise(lo=0.1, hi=5)),
    OpSpec("sqrt", F.sqrt, np.sqrt, S.elementwise(lo=0.1, hi=5)),
    OpSpec("abs", F.abs, np.abs, S.elementwise(kinks=(0.0,))),
    OpSpec("sign", F.sign, np.sign, S.elementwise(kinks=(0.0,))),
    OpSpec("clip", lambda a: F.clip(a, -1.0, 1.5), lambda a: np.clip(a, -1.0, 1.5), S.elementwise(kinks=(-1.0, 1.5))),
    OpSpec("relu", F.relu, lambda a: np.maximum(a, 0), S.elementwise(kinks=(0.0,))),
    OpSpec("leaky_relu", lambda a: F.leaky_relu(a, 0.2), lambda a: np.where(a > 0, a, 0.2 * a),
           S.elementwise(kinks=(0.0,))),
    OpSpec("elu", lambda a: F.elu(a, 0.7), lambda a: elu_ref(a, 0.7), S.elementwise(kinks=(0.0,))),
    OpSpec("sigmoid", F.sigmoid, sigmoid_ref, S.elementwise(lo=-8, hi=8)),
    OpSpec("tanh", F.tanh, np.tanh, S.elementwise()),
    OpSpec("softplus", F.softplus, softplus_ref, S.elementwise(lo=-8, hi=8)),
    OpSpec("erf", F.erf, erf_ref, S.elementwise(lo=-4, hi=4)),
    OpSpec("gelu", F.gelu, lambda a: 0.5 * a * (1 + erf_ref(a / math.sqrt(2))), S.elementwise(lo=-4, hi=4)),
    OpSpec("silu", F.silu, lambda a: a * sigmoid_ref(a), S.elementwise(lo=-8, hi=8)),
    OpSpec("neg", F.neg, np.negative, S.elementwise()),
    # linear algebra
    OpSpec("matmul", F.matmul, np.matmul, S.matmul_inputs()),
    OpSpec("matmul_transposed", lambda a, b, transpose_a, transpose_b: F.MatMul(transpose_a, transpose_b)(a, b),
           lambda a, b, transpose_a, transpose_b: np.matmul(np.swapaxes(a, -1, -2) if transpose_a else a,
                                                            np.swapaxes(b, -1, -2) if transpose_b else b),
           S.transposed_matmul_inputs()),
    # reductions
    OpSpec("sum", F.sum, np.sum, S.reduction()),
    OpSpec("mean", F.mean, np.mean, S.reduction(), empty=False),
    OpSpec("var", F.var, np.var, S.reduction(), empty=False),
    OpSpec("max", F.max, np.max, S.reduction(unique=True), empty=False),
    OpSpec("min", F.min, np.min, S.reduction(unique=True), empty=False),
    OpSpec("logsumexp", F.logsumexp, logsumexp_ref, S.reduction(), empty=False),
    OpSpec("softmax", F.softmax, softmax_ref, S.reduction(keepdims=False, single_axis=True), empty=False),
    OpSpec("log_softmax", F.log_softmax, log_softmax_ref, S.reduction(keepdims=False, single_axis=True), empty=False),
    # shape, indexing, joining
    OpSpec("reshape", F.reshape, np.reshape, S.reshape_inputs()),
    OpSpec("transpose", F.transpose, np.transpose, S.transpose_inputs()),
    OpSpec("flatten", F.flatten, np.ravel, S.elementwise(min_side=0)),
    OpSpec("broadcast_to", F.broadcast_to, np.broadcast_to, S.broadcast_inputs()),
    OpSpec("getitem", F.getitem, lambda a, index: a[index], S.getitem_inputs()),
    OpSpec("concatenate", lambda *xs, axis: F.concatenate(xs, axis), lambda *xs, axis: np.concatenate(xs, axis),
           S.join_inputs()),
    OpSpec("stack", lambda *xs, axis: F.stack(xs, axis), lambda *xs, axis: np.stack(xs, axis), S.stack_inputs()),
    OpSpec("pad", F.pad, lambda a, pad_width, value: np.pad(a, pad_width, constant_values=value), S.pad_inputs()),
]


def _on(backend, arrays, dtype=np.float64):
    return [mr.tensor(backend.asarray(a.astype(dtype))) for a in arrays]


def _kwargs_on(backend, kwargs):
    """Array-valued keyword arguments (masks, index arrays) must live on the op's device too."""
    def convert(v):
        if isinstance(v, np.ndarray):
            return backend.asarray(v)
        if isinstance(v, tuple):
            return tuple(convert(i) for i in v)
        return v
    return {k: convert(v) for k, v in kwargs.items()}


def _bind(spec, backend, kwargs):
    kw = _kwargs_on(backend, kwargs)
    return lambda *xs: spec.fn(*xs, **kw)


ids = [spec.name for spec in OPS]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", OPS, ids=ids)
def test_forward_matches_numpy(spec, dtype, backend):
    @given(spec.inputs)
    def check(case):
        arrays, kwargs = case
        arrays = [a.astype(dtype) for a in arrays]
        expected = np.asarray(spec.reference(*arrays, **kwargs))
        out = _bind(spec, backend, kwargs)(*_on(backend, arrays, dtype))
        assert out.backend is backend
        assert out.shape == expected.shape
        assert backend.numpy_dtype(out.dtype) == expected.dtype
        rtol = spec.rtol if dtype == np.float64 else spec.float32_rtol
        np.testing.assert_allclose(out.numpy(), expected, rtol=rtol, atol=rtol)
    check()


@pytest.mark.parametrize("spec", OPS, ids=ids)
def test_gradcheck(spec, backend):
    @given(spec.inputs)
    def check(case):
        arrays, kwargs = case
        gradcheck(_bind(spec, backend, kwargs), _on(backend, arrays), atol=spec.grad_atol, rtol=spec.grad_rtol)
    check()


@pytest.mark.parametrize("spec", [s for s in OPS if s.second_order], ids=[s.name for s in OPS if s.second_order])
def test_gradgradcheck(spec, backend):
    @settings(max_examples=10)
    @given(spec.inputs)
    def check(case):
        arrays, kwargs = case
        gradgradcheck(_bind(spec, backend, kwargs), _on(backend, arrays))
    check()


@pytest.mark.parametrize("spec", OPS, ids=ids)
def test_float32_gradients_match_float64(spec):
    @settings(max_examples=10)
    @given(spec.inputs)
    def check(case):
        arrays, kwargs = case
        grads = []
        for dtype in (np.float32, np.float64):
            xs = [t.requires_grad_() for t in _on(mr.get_backend("numpy"), arrays, dtype)]
            out = spec.fn(*xs, **kwargs)
            v = np.random.default_rng(0).normal(size=out.shape).astype(dtype)
            out.backward(mr.tensor(v))
            grads.append([x.grad for x in xs])
        for g32, g64 in zip(*grads):
            assert g32.dtype == np.float32
            np.testing.assert_allclose(g32.numpy(), g64.numpy(), rtol=2e-3, atol=2e-4)
    check()


@pytest.mark.parametrize("spec", OPS, ids=ids)
def test_non_contiguous_inputs(spec):
    @settings(max_examples=10)
    @given(spec.inputs)
    def check(case):
        arrays, kwargs = case
        strided = [np.asfortranarray(a) if a.ndim > 1 else np.repeat(a, 2)[::2] if a.ndim == 1 else a for a in arrays]
        for a, s in zip(arrays, strided):
            assert np.array_equal(a, s)
        results = []
        for inputs in (arrays, strided):
            xs = [mr.tensor(a, requires_grad=True) for a in inputs]
            out = spec.fn(*xs, **kwargs)
            out.backward(mr.tensor(np.ones(out.shape)))
            results.append((out.numpy(), [x.grad.numpy() for x in xs]))
        np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
        for g1, g2 in zip(results[0][1], results[1][1]):
            np.testing.assert_allclose(g1, g2, rtol=1e-12)
    check()


@pytest.mark.parametrize("spec", [s for s in OPS if s.empty], ids=[s.name for s in OPS if s.empty])
def test_empty_inputs_give_empty_gradients(spec):
    @settings(max_examples=5)
    @given(spec.inputs)
    def check(case):
        arrays, kwargs = case
        if not arrays[0].ndim or spec.name in ("getitem", "reshape", "transpose", "broadcast_to", "pad"):
            return   # these draw their own shape-dependent arguments; empties are covered by min_side=0 there
        empty = [np.zeros((0,) + a.shape[1:]) if a.ndim and a.shape[0] > 0 and i == 0 else a
                 for i, a in enumerate(arrays)]
        try:
            expected = spec.reference(*empty, **kwargs)
        except (ValueError, IndexError):
            return   # not a valid empty case for this op (e.g. broadcast of 0 against 2)
        xs = [mr.tensor(a, requires_grad=True) for a in empty]
        out = spec.fn(*xs, **kwargs)
        assert out.shape == np.shape(expected)
        out.backward(mr.tensor(np.ones(out.shape)))
        for x in xs:
            assert x.grad.shape == x.shape
    check()


def test_subgradient_convention_at_kinks():
    """Minimum-norm subgradients, exactly at the kink."""
    def grad_at(fn, *values):
        xs = [mr.tensor(np.array(v, dtype=np.float64), requires_grad=True) for v in values]
        fn(*xs).sum().backward()
        return [x.grad.numpy() for x in xs]

    assert grad_at(F.abs, [0.0])[0] == [0.0]
    assert grad_at(F.relu, [0.0])[0] == [0.0]
    assert grad_at(lambda x: F.leaky_relu(x, 0.1), [0.0])[0] == pytest.approx([0.1])
    assert grad_at(lambda x: F.clip(x, -1.0, 1.0), [-1.0, 1.0, 0.0])[0].tolist() == [0.0, 0.0, 1.0]
    assert [g.tolist() for g in grad_at(F.maximum, [2.0], [2.0])] == [[0.5], [0.5]]
    assert grad_at(F.max, [1.0, 3.0, 3.0])[0].tolist() == [0.0, 0.5, 0.5]
    assert grad_at(F.sign, [0.0, 2.0])[0].tolist() == [0.0, 0.0]


def test_getitem_duplicate_indices_accumulate_on_every_backend(backend):
    x = mr.tensor(backend.asarray(np.arange(4.0)), requires_grad=True)
    F.getitem(x, backend.asarray(np.array([1, 1, 3, 1]))).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 3.0, 0.0, 1.0])


def test_stable_at_extreme_logits():
    x = mr.tensor(np.array([[1000.0, -1000.0, 0.0]]), requires_grad=True)
    for fn in (F.log_softmax, F.softmax, F.logsumexp, F.sigmoid, F.softplus):
        y = fn(x)
        assert np.all(np.isfinite(y.numpy())), fn.__name__
        y.sum().backward()
        assert np.all(np.isfinite(x.grad.numpy())), fn.__name__


@pytest.mark.parametrize("slope", [0.2, 0.01, 0.0, 1.0, 1.5, -0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaky_relu_has_the_bits_of_its_definition(slope, dtype):
    # LeakyReLU computes max(a, slope a) (min for slope > 1): it must equal where(a > 0, a, slope a)
    # everywhere, signed zeros, infinities and NaN included, and its gradient where(a > 0, 1, slope).
    a = np.concatenate([np.random.default_rng(0).normal(size=200), [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(dtype)
    x = mr.tensor(a, requires_grad=True)
    y = F.leaky_relu(x, slope)
    y.sum().backward()
    with np.errstate(invalid="ignore"):
        expected = np.where(a > 0, a, a * dtype(slope))
    assert y.dtype == dtype
    assert np.array_equal(y.numpy(), expected, equal_nan=True)
    assert np.array_equal(np.signbit(y.numpy()), np.signbit(expected))
    assert np.array_equal(x.grad.numpy(), np.where(a > 0, 1.0, slope).astype(dtype))
