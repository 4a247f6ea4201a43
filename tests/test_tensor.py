"""Tensor semantics: version counters and in-place methods, elementwise ==, truth values."""
import numpy as np
import pytest

import minireg as mr
from minireg import F
from minireg.function import Function


def t64(values, requires_grad=True, name=None):
    return mr.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad, name=name)


# -- version counters ------------------------------------------------------------------------------
def test_optimizer_step_between_forward_and_backward_raises_naming_the_op_and_tensor():
    # issue 9, item 1: this used to give x.grad == -8 silently
    w = mr.tensor([2.], requires_grad=True, name="w")
    x = mr.tensor([3.], requires_grad=True)
    y = (w * x).sum()
    w.grad = mr.tensor([10.])
    mr.optim.SGD([w], lr=1).step()
    with pytest.raises(mr.GraphError, match=r"Mul: input 0, the tensor 'w' of shape \(1,\).*version 0 when saved, 1 now"):
        y.backward()
    assert x.grad is None


def test_unchanged_tensors_and_ops_that_save_nothing_do_not_raise():
    w, x = t64([2.0]), t64([3.0])
    y = (w + x).sum() - w.sum()        # Add, Sub, Sum read no input values in backward
    with mr.no_grad():
        w.add_(5.0)
        x.mul_(2.0)
    y.backward()
    assert w.grad.tolist() == [0.0] and x.grad.tolist() == [1.0]
    z = (t64([1.0]) * t64([4.0])).sum()
    z.backward()                        # nothing changed: no error


def test_saved_output_changed_in_place_is_detected():
    x = t64([0.5, 1.0])
    y = F.exp(x)                        # exp's backward reads its output
    with mr.no_grad():
        y.fill_(0.0)
    with pytest.raises(mr.GraphError, match="Exp: its output"):
        y.sum().backward()


def test_user_function_saves_everything_by_default():
    class Cube(Function):
        def forward(self, a): return a ** 3
        def backward(self, gy): return (gy * 3 * self.inputs[0] ** 2,)

    x = t64([2.0])
    y = Cube()(x)
    with mr.no_grad():
        x.copy_(mr.tensor([5.0]))
    with pytest.raises(mr.GraphError, match="Cube: input 0"):
        y.backward()


def test_raw_data_writes_stay_untracked():
    x = t64([1.0])
    x.data[...] = 2.0
    assert x._version == 0


# -- in-place methods ------------------------------------------------------------------------------
def test_in_place_methods_write_into_the_same_buffer_and_bump_the_version():
    a = np.arange(4.0)
    x = mr.as_tensor(a) if hasattr(mr, "as_tensor") else mr.Tensor(a)
    buffer = x.data
    x.add_(1.0).mul_(2.0).sub_(mr.tensor(np.ones(4)), alpha=2).div_(2.0)
    assert x.data is buffer and x._version == 4
    np.testing.assert_allclose(x.numpy(), ((a + 1) * 2 - 2) / 2)
    x.fill_(3.0)
    np.testing.assert_array_equal(x.numpy(), [3.0] * 4)
    x.zero_()
    np.testing.assert_array_equal(x.numpy(), [0.0] * 4)
    x.copy_(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0, 3.0, 4.0])
    assert x._version == 7


def test_in_place_on_a_tensor_requiring_grad_needs_no_grad():
    w = t64([1.0, 2.0])
    with pytest.raises(mr.GraphError, match="add_: a leaf that requires grad.*no_grad"):
        w.add_(1.0)
    assert w.tolist() == [1.0, 2.0] and w._version == 0
    with pytest.raises(mr.GraphError, match="a tensor that requires grad"):
        (w * 2.0).zero_()
    with mr.no_grad():
        w.add_(1.0)
    assert w.tolist() == [2.0, 3.0] and w._version == 1


def test_in_place_bad_values_change_nothing():
    x = mr.tensor(np.zeros(3))
    with pytest.raises(mr.ShapeError, match=r"copy_: values of shape \(2,\)"):
        x.copy_(np.ones(2))
    ints = mr.tensor(np.arange(3))
    with pytest.raises(mr.DTypeError, match="div_"):
        ints.div_(2)
    assert x.tolist() == [0.0] * 3 and x._version == 0 and ints.tolist() == [0, 1, 2]


def test_in_place_methods_on_every_backend(backend):
    x = mr.tensor(backend.asarray(np.arange(3.0)))
    x.add_(mr.tensor(backend.asarray(np.ones(3)))).mul_(2.0)
    assert x.backend is backend
    np.testing.assert_array_equal(x.numpy(), [2.0, 4.0, 6.0])
