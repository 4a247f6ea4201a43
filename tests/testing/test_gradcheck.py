"""minireg.testing.gradcheck: passes on correct ops, fails loudly and precisely on wrong ones."""
import re

import numpy as np
import pytest
from hypothesis import given, settings

import minireg
from minireg.errors import GradcheckError, NonFiniteError
from minireg.function import Function
from minireg.testing import GradcheckResult, gradcheck, gradgradcheck, numerical_grad
from minireg.testing import strategies as mst

rng = np.random.default_rng(1234)


def on(backend, array):
    return minireg.tensor(backend.asarray(np.asarray(array)))


# -- deliberately wrong ops -----------------------------------------------------------------------
class WrongSquare(Function):
    """y = x**2 with backward 3*gy (should be 2*x*gy)."""

    def forward(self, x):
        return x * x

    def backward(self, gy):
        return (gy * 3.0,)


class CubeConstBackward(Function):
    """y = x**3 with a correct first derivative written through a constant: 3x^2 is detached, so
    the second derivative (6x) is lost."""

    def forward(self, x):
        return x * x * x

    def backward(self, gy):
        x = self.inputs[0]
        return (gy * self.const(3.0 * x.data * x.data),)


class NoisyBackward(Function):
    """Correct gradient of 2x plus tiny random noise: a nondeterministic backward."""

    def forward(self, x):
        return 2.0 * x

    def backward(self, gy):
        noise = np.random.default_rng().standard_normal(gy.shape) * 1e-9
        return (gy * 2.0 + self.const(self.backend.asarray(noise.astype(np.dtype(str(gy.dtype))))),)


# -- correct functions pass -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["full", "directional"])
def test_passes_on_engine_ops(backend, mode):
    x, y = on(backend, rng.normal(size=(3, 4))), on(backend, rng.normal(size=(3, 4)))
    a, b = on(backend, rng.normal(size=(2, 3, 4))), on(backend, rng.normal(size=(4, 2)))
    bias = on(backend, rng.normal(size=(4,)))
    for fn, inputs in [(lambda x, y: x * y + x.exp(), [x, y]),
                       (lambda a, b: a @ b, [a, b]),
                       (lambda x, bias: (x + bias).tanh(), [x, bias])]:
        result = gradcheck(fn, inputs, mode=mode)
        assert isinstance(result, GradcheckResult) and result.ok and bool(result)
        assert result.mode == mode and result.max_abs_err < 1e-6


def test_auto_mode_picks_by_size():
    small, big = minireg.tensor(rng.normal(size=(4, 4))), minireg.tensor(rng.normal(size=(9, 9)))
    assert gradcheck(lambda x: x.sigmoid(), [small]).mode == "full"
    assert gradcheck(lambda x: x.sigmoid(), [big]).mode == "directional"
    assert gradcheck(lambda x: x.sigmoid(), [big], max_full_size=100).mode == "full"


def test_multiple_outputs_unused_inputs_and_constant_inputs():
    x, z = minireg.tensor(rng.normal(size=(3,))), minireg.tensor(rng.normal(size=(2,)))
    index = np.array([0, 2, 2, 1, 0])          # integer input: a constant, duplicates exercise scatter-add
    result = gradcheck(lambda x, z, idx: (x[idx] * 2.0, x.exp().sum()), [x, z, index])
    assert result.ok


def test_float32_inputs_are_checked_in_float64():
    x = minireg.tensor(rng.normal(size=(2, 3)).astype(np.float32))
    w = minireg.tensor(rng.normal(size=(3,)).astype(np.float32))
    result = gradcheck(lambda x, w: minireg.F.softplus(x * w), [x, w])
    assert result.ok and result.max_abs_err < 1e-8          # float32 finite differences could not do this
    assert x.dtype == np.float32 and x.requires_grad is False   # the caller's tensors are untouched


def test_numerical_grad_matches_closed_form():
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    v = np.array([[1.0, -2.0], [0.5, 3.0]])
    (g,) = numerical_grad(lambda x: x * x * x, [x], v)
    np.testing.assert_allclose(g, 3 * x ** 2 * v, rtol=1e-8)
    gx, gi = numerical_grad(lambda x, i: x[i], [x, np.array([0, 0])], np.ones((2, 2)))
    assert gi is None
    np.testing.assert_allclose(gx, [[2.0, 2.0], [0.0, 0.0]], atol=1e-8)


@settings(derandomize=True, deadline=None, database=None, max_examples=10)
@given(mst.arrays_for(mst.broadcastable_shapes(2, max_dims=2, max_side=3)))
def test_passes_on_broadcasting_ops_property(arrays):
    a, b = arrays
    assert gradcheck(lambda a, b: a * b + a.exp() - b / (a * a + 1.0), [a, b]).ok


# -- wrong gradients fail with the element named --------------------------------------------------
def test_wrong_backward_names_worst_element(backend):
    x_host = np.array([[0.5, -1.0, 2.0], [1.25, 3.0, 1.75]])
    ones = np.ones_like(x_host)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x: WrongSquare()(x), [on(backend, x_host)], grad_outputs=ones)
    message = str(info.value)
    # expected worst: largest |3 - 2x| / (atol + rtol*|2x|): x = -1.0 at (0, 1)
    assert "input 0, element (0, 1)" in message
    assert "analytic 3 vs numeric -" in message
    assert "atol=1e-05" in message and "rtol=0.0001" in message

    result = gradcheck(lambda x: WrongSquare()(x), [on(backend, x_host)], grad_outputs=ones,
                       raise_exception=False)
    assert not result.ok and result.worst.input_index == 0 and result.worst.index == (0, 1)
    assert result.worst.analytic == pytest.approx(3.0) and result.worst.numeric == pytest.approx(-2.0, abs=1e-6)
    assert result.max_abs_err == pytest.approx(5.0, abs=1e-6)
    assert "FAILED" in str(result)


def test_wrong_backward_fails_in_directional_mode_and_is_located():
    x_host = rng.uniform(1.4, 1.6, size=(10, 10))
    x_host[4, 7] = -3.0
    with pytest.raises(GradcheckError, match=re.escape("input 1, element (4, 7)")):
        gradcheck(lambda y, x: (y * 2.0).sum() + WrongSquare()(x), [np.ones(3), x_host], mode="directional")
    result = gradcheck(lambda x: WrongSquare()(x), [x_host], mode="directional", raise_exception=False)
    assert not result.ok and result.mode.startswith("directional") and result.worst.input_index == 0


def test_wrong_gradient_only_in_one_of_two_inputs():
    x, y = rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
    result = gradcheck(lambda x, y: x * y + WrongSquare()(y), [x, y], raise_exception=False)
    assert not result.ok and result.worst.input_index == 1


def test_random_cotangent_catches_errors_invisible_to_ones():
    # backward multiplies the *transposed* gy by the constant: right for gy = ones, wrong otherwise
    class WrongTranspose(Function):
        def forward(self, x):
            return x * self.backend.asarray(np.array([[1.0, 2.0], [3.0, 4.0]]))

        def backward(self, gy):
            return (minireg.transpose(gy) * self.const(self.backend.asarray(np.array([[1.0, 2.0], [3.0, 4.0]]))),)

    x = np.zeros((2, 2))
    assert gradcheck(lambda x: WrongTranspose()(x), [x], grad_outputs=np.ones((2, 2))).ok
    assert not gradcheck(lambda x: WrongTranspose()(x), [x], raise_exception=False).ok


# -- the extra checks -----------------------------------------------------------------------------
def test_nan_output_raises_nonfinite():
    x = np.array([1.0, 2.0])
    with pytest.raises(NonFiniteError, match="output 0"):
        gradcheck(lambda x: x * float("nan"), [x])


def test_infinite_gradient_raises_nonfinite():
    x = np.array([0.0, 1.0])
    with np.errstate(all="ignore"), pytest.raises(NonFiniteError, match="gradient of input 0"):
        gradcheck(lambda x: x.sqrt(), [x])


def test_fn_mutating_its_input_is_caught():
    def mutating(x):
        x.data[0] += 1.0
        return x * 2.0
    with pytest.raises(GradcheckError, match="input 0 was modified in place"):
        gradcheck(mutating, [np.array([1.0, 2.0])])


def test_wrong_gradient_dtype_and_shape_are_caught(monkeypatch):
    real_grad = minireg.grad
    x = minireg.tensor(np.array([1.0, 2.0]))

    monkeypatch.setattr(minireg, "grad", lambda *a, **k: [g.astype("float32") for g in real_grad(*a, **k)])
    with pytest.raises(GradcheckError, match="dtype float32.*dtype float64"):
        gradcheck(lambda x: x * x, [x])

    monkeypatch.setattr(minireg, "grad", lambda *a, **k: [g.reshape(2, 1) for g in real_grad(*a, **k)])
    with pytest.raises(GradcheckError, match=re.escape("shape (2, 1)")):
        gradcheck(lambda x: x * x, [x])


def test_wrong_dtype_on_original_float32_inputs_is_caught(monkeypatch):
    # the float64 pass is fine; only the extra pass on the caller's float32 inputs sees float64 grads
    real_grad = minireg.grad
    monkeypatch.setattr(minireg, "grad", lambda *a, **k: [g.astype("float64") for g in real_grad(*a, **k)])
    x = minireg.tensor(np.array([1.0, 2.0], dtype=np.float32))
    with pytest.raises(GradcheckError, match="dtype float64.*dtype float32"):
        gradcheck(lambda x: x * x, [x])


def test_nondeterministic_backward():
    x = np.array([1.0, -2.0, 0.5])
    with pytest.raises(GradcheckError, match="not deterministic"):
        gradcheck(lambda x: NoisyBackward()(x), [x])
    assert gradcheck(lambda x: NoisyBackward()(x), [x], nondet_tol=1e-6).ok


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        gradcheck(lambda x: x, [np.ones(2)], mode="fast")
    with pytest.raises(minireg.ShapeError):
        gradcheck(lambda x: x * 2.0, [np.ones(2)], grad_outputs=np.ones(3))


# -- second derivatives ---------------------------------------------------------------------------
def test_gradgradcheck_passes_on_smooth_compositions(backend):
    x, w = on(backend, rng.normal(size=(2, 3))), on(backend, rng.normal(size=(3,)))
    assert gradgradcheck(lambda x, w: (x * w).tanh().sigmoid(), [x, w]).ok
    assert gradgradcheck(lambda x: (x.sigmoid() * x).exp(), [x]).ok
    assert gradgradcheck(lambda x, w: x @ w.tanh(), [x, w], mode="directional").ok


def test_gradgradcheck_catches_wrong_second_derivative(backend):
    x = on(backend, np.array([0.5, -1.5, 2.0]))
    assert gradcheck(lambda x: CubeConstBackward()(x), [x]).ok          # first derivative is right
    with pytest.raises(GradcheckError, match="input 0, element") as info:
        gradgradcheck(lambda x: CubeConstBackward()(x), [x])             # second is not
    assert "analytic" in str(info.value) and "numeric" in str(info.value)
