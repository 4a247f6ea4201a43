"""Gradient clipping: argument validation and reprs (the formulas are tested in test_hooks.py)."""
import math

import numpy as np
import pytest

import minireg as mr
from minireg.errors import ArgumentError, ArgumentTypeError
from minireg.nn import Parameter
from minireg.optim import ClipGradNorm, ClipGradValue, clip_grad_norm_, clip_grad_value_


@pytest.mark.parametrize("call, error, match", [
    (lambda p: clip_grad_norm_(p, -1.0), ArgumentError, "clip_grad_norm_: max_norm must be >= 0, got -1.0"),
    (lambda p: clip_grad_norm_(p, "1"), ArgumentTypeError, "max_norm must be a real number"),
    (lambda p: clip_grad_norm_(p, 1.0, norm_type=0), ArgumentError, "norm_type must be > 0"),
    (lambda p: clip_grad_norm_(p, 1.0, norm_type=math.nan), ArgumentError, "norm_type must be > 0"),
    (lambda p: clip_grad_value_(p, -0.5), ArgumentError, "clip_grad_value_: clip_value must be >= 0"),
    (lambda p: ClipGradNorm(math.inf), ArgumentError, "ClipGradNorm: max_norm must be finite"),
    (lambda p: ClipGradValue(None), ArgumentTypeError, "ClipGradValue: clip_value must be a real number"),
])
def test_bad_clipping_arguments_raise_before_touching_gradients(call, error, match):
    p = Parameter(np.array([3.0, 4.0]))
    p.grad = mr.tensor(np.array([3.0, 4.0]))
    grad = p.grad
    with pytest.raises(error, match=match):
        call([p])
    assert p.grad is grad
    np.testing.assert_array_equal(grad.numpy(), [3.0, 4.0])


def test_numpy_scalars_and_infinity_are_accepted():
    p = Parameter(np.array([3.0, 4.0]))
    p.grad = mr.tensor(np.array([3.0, 4.0]))
    assert clip_grad_norm_([p], np.float32(1.0), norm_type=math.inf) == 4.0
    np.testing.assert_allclose(p.grad.numpy(), [0.75, 1.0], rtol=1e-5)


def test_clip_hook_reprs():
    assert repr(ClipGradNorm(1.0)) == "ClipGradNorm(max_norm=1.0, norm_type=2.0)"
    assert repr(ClipGradValue(np.float64(0.5))) == "ClipGradValue(clip_value=0.5)"
