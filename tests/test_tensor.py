"""Tensor semantics: version counters and in-place methods, elementwise ==, truth values."""
import contextlib

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


# -- == and !=, truth values, hashing --------------------------------------------------------------
def test_eq_and_ne_are_elementwise_boolean_constants(backend):
    a = np.array([0.0, 1.0, 2.0])
    x = mr.tensor(backend.asarray(a), requires_grad=True)
    for got, expected in ((x == 1.0, a == 1.0), (x != 1.0, a != 1.0), (1.0 == x, a == 1.0),
                          (x == x, a == a), (x != mr.tensor(backend.asarray(a[::-1])), a != a[::-1])):
        assert isinstance(got, mr.Tensor) and not got.requires_grad and got.backend is backend
        np.testing.assert_array_equal(got.numpy(), expected)


def test_where_with_an_equality_mask_takes_the_first_branch():
    # issue 9, item 3: F.where(x == 0, a, x) never took a
    x = mr.tensor([0.0, 2.0, 0.0])
    np.testing.assert_array_equal(F.where(x == 0, 5.0, x).numpy(), [5.0, 2.0, 5.0])


def test_tensors_stay_hashable_by_identity_and_unequal_to_non_numbers():
    x, y = mr.tensor([1.0, 2.0]), mr.tensor([1.0, 2.0])
    table = {x: "x", y: "y"}
    assert table[x] == "x" and table[y] == "y" and len({x, y, x}) == 2
    assert (x == None) is False and (x != "abc") is True   # noqa: E711  (not values: plain inequality)


def test_truth_value_of_several_elements_is_an_error():
    x, y = mr.tensor([1.0, 2.0]), mr.tensor([1.0, 3.0])
    with pytest.raises(mr.ShapeError, match=r"truth value of a tensor with 2 elements.*\.any\(\) or \.all\(\)"):
        if x == y:
            pass
    assert bool(mr.tensor([3.0]) == 3.0) is True and bool(mr.tensor(0.0)) is False
    assert (x == y).any().item() is True and (x == y).all().item() is False
    np.testing.assert_array_equal((mr.tensor(np.eye(2)) == 0).all(axis=1).numpy(), [False, False])


# -- boolean masks and index bounds ----------------------------------------------------------------
def test_boolean_mask_selects_rows_like_numpy():
    # issue 9, item 2: x[x[:, 0] > 2] returned rows 0, 1, 1
    a = np.arange(12.0).reshape(4, 3)
    x = t64(a)
    rows = x[x[:, 0] > 2]
    np.testing.assert_array_equal(rows.numpy(), a[a[:, 0] > 2])
    rows.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.repeat((a[:, 0] > 2)[:, None], 3, axis=1).astype(float))


@pytest.mark.parametrize("make_index", [
    lambda a: (slice(None), a[0, :, 0] > 0),                 # mask after a slice
    lambda a: (Ellipsis, a[0, 0] > 0),                       # mask after Ellipsis
    lambda a: (None, a[:, :, 0] > 0),                        # 2-d mask, new axis first
    lambda a: (0, slice(1, 3), a[0, 0] > 0),                 # integer and mask apart: their axes go first
    lambda a: (1, a[0] > 0),                                 # integer next to a 2-d mask
    lambda a: (slice(None), np.array([[3, 0], [1, 1]])),     # 2-d integer array after a slice
    lambda a: (1, Ellipsis, np.array([4, -1])),               # negative indices
])
def test_masks_and_index_arrays_mixed_with_basic_indices_match_numpy(make_index, backend):
    a = np.random.default_rng(0).normal(size=(3, 4, 5))
    index = make_index(a)
    on_device = tuple(backend.asarray(i) if isinstance(i, np.ndarray) else i for i in index)
    got = mr.tensor(backend.asarray(a))[on_device]
    np.testing.assert_array_equal(got.numpy(), a[index])
    from minireg.testing import gradcheck, gradgradcheck
    gradcheck(lambda t: t[on_device], [mr.tensor(backend.asarray(a), requires_grad=True)])
    gradgradcheck(lambda t: t[on_device], [mr.tensor(backend.asarray(a), requires_grad=True)])


def test_several_index_arrays_and_masks_index_like_numpy():
    a = np.arange(24.0).reshape(2, 3, 4)
    for index in [(np.array([0, 1]), np.array([2, 0])), (np.array([True, False]), slice(None), np.array([1, 3]))]:
        np.testing.assert_array_equal(mr.tensor(a)[index].numpy(), a[index])


@pytest.mark.parametrize("index, message", [
    (np.array([True, False]), r"boolean index of shape \(2,\) does not match the indexed axes \(4,\)"),
    (np.array([4]), "index 4 is out of bounds for axis 0 with size 4"),
    (np.array([-5]), "out of bounds"),
    ((0, 0, 0), "too many indices"),
    (True, "0-d boolean index"),
])
def test_bad_indices_raise_index_out_of_range_error(index, message):
    with pytest.raises(mr.IndexOutOfRangeError, match=message):
        mr.tensor(np.zeros((4, 3)))[index]
    assert issubclass(mr.IndexOutOfRangeError, IndexError)
    with pytest.raises(mr.DTypeError, match="integer or boolean"):
        mr.tensor(np.zeros(3))[np.array([0.0])]


def test_out_of_range_integer_indices_raise_on_every_backend(backend):
    x = mr.tensor(backend.asarray(np.zeros((4, 3))), requires_grad=True)
    for index in (backend.asarray(np.array([1, 4])), (slice(None), backend.asarray(np.array([3])))):
        with pytest.raises(mr.IndexOutOfRangeError, match="out of bounds"):
            x[index].numpy()   # device backends check at the next read
        with contextlib.suppress(mr.IndexOutOfRangeError):
            backend.raise_deferred_checks()   # where the library raised first, its check is still queued


# -- axes never wrap -------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda x: F.concatenate([x, x], axis=5),
    lambda x: F.stack([x, x], axis=5),
    lambda x: F.expand_dims(x, 5),
    lambda x: x.flatten(2, 1),
    lambda x: x.flatten(0, 3),
    lambda x: x.sum(axis=2),
    lambda x: x.mean(axis=(0, -3)),
    lambda x: x.max(axis=-3),
    lambda x: F.squeeze(x, 4),
    lambda x: F.softmax(x, axis=2),
    lambda x: x.transpose(0, 5),
    lambda x: x.swapaxes(0, 2),
    lambda x: x.argmax(axis=2),
    lambda x: F.logsumexp(x, axis=7),
    lambda x: x.any(axis=3),
])
def test_out_of_range_axes_raise_shape_error(call):
    with pytest.raises(mr.ShapeError, match="out of range|comes after"):
        call(mr.tensor(np.ones((2, 3))))


def test_flatten_start_after_end_is_an_error():
    with pytest.raises(mr.ShapeError, match="start_axis=2 comes after end_axis=1"):
        mr.tensor(np.ones((2, 3, 4))).flatten(2, 1)
    assert mr.tensor(np.ones((2, 3, 4))).flatten(1, 2).shape == (2, 12)


# -- the dtype rule and error classes --------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: mr.tensor(1j), lambda: mr.tensor([1 + 2j]), lambda: mr.tensor(np.array([1j])),
    lambda: mr.tensor([1.0]) + 1j, lambda: mr.tensor([1.0]) * np.array([1j]), lambda: mr.tensor([1.0]).astype("complex64"),
    lambda: mr.tensor(np.array(["a"])), lambda: mr.tensor(["a"]),
])
def test_complex_strings_and_objects_are_refused_at_creation(make):
    with pytest.raises(mr.DTypeError, match="real floating|complex"):
        make()


def test_bad_creation_and_operands_raise_minireg_errors():
    with pytest.raises(mr.ArgumentTypeError, match="cannot combine a str"):
        mr.tensor([1.0]) + "a"
    with pytest.raises(mr.ArgumentTypeError, match="from a dict"):
        mr.tensor({})
    with pytest.raises(mr.ArgumentTypeError, match="list"):
        mr.tensor([[1.0], [1.0, 2.0]])
    with pytest.raises(mr.ShapeError, match="one element"):
        mr.tensor([1.0, 2.0]).item()
    with pytest.raises(mr.ArgumentTypeError, match="0-d"):
        len(mr.tensor(1.0))
    with pytest.raises(mr.ArgumentError, match="min"):
        F.clip(mr.tensor([1.0]), 2.0, 1.0)
    with pytest.raises(mr.ArgumentError, match="at least one tensor"):
        F.concatenate([])


def test_layer_op_arguments_are_checked():
    w = mr.tensor(np.ones((5, 2)))
    with pytest.raises(mr.ArgumentError, match=r"dropout: p must be in \[0, 1\], got 1.5"):
        F.dropout(w, 1.5)
    with pytest.raises(mr.IndexOutOfRangeError, match=r"embedding: index 5 is out of range \[0, 5\)"):
        F.embedding(np.array([0, 5]), w)
    with pytest.raises(mr.DTypeError, match="integers"):
        F.embedding(np.array([0.0]), w)
    x = mr.tensor(np.ones((4, 2)))
    with pytest.raises(mr.ArgumentError, match="momentum"):
        F.batch_norm(x, None, None, momentum=1.5)
    with pytest.raises(mr.ArgumentError, match="eps"):
        F.batch_norm(x, None, None, eps=0.0)
