"""Autograd mechanics: graph walk order, accumulation, freeing, higher-order gradients, bad input."""
import gc
import tracemalloc

import numpy as np
import pytest

import minireg as mr
from minireg import F


def t64(values, requires_grad=True):
    return mr.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def test_reused_node_accumulates_from_every_path():
    # micrograd's classic bug: a node used twice must receive both contributions
    x = t64([2.0])
    a = x * 3.0
    y = a * a + a           # dy/dx = (2a + 1) * 3 = 39
    y.backward()
    assert x.grad.numpy() == pytest.approx([39.0])


def test_diamond_graph_visits_each_op_once_in_topological_order():
    x = t64([1.5])
    left, right = F.exp(x), F.sin(x) if hasattr(F, "sin") else x * x
    y = (left * right).sum()
    y.backward()
    expected = np.exp(1.5) * 1.5 ** 2 + np.exp(1.5) * 2 * 1.5
    assert x.grad.numpy() == pytest.approx([expected])


def test_leaf_grads_accumulate_across_backward_calls():
    x = t64([1.0, 2.0])
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_deep_chain_has_no_recursion_limit():
    x = t64([0.5])
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    assert x.grad.numpy() == pytest.approx([1.0001 ** 10_000])


def test_graph_is_freed_unless_retained():
    x = t64([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(mr.GraphError, match="retain_graph"):
        y.backward()
    z = (x * x).sum()
    z.backward(retain_graph=True)
    z.backward()                        # second pass allowed once retained
    np.testing.assert_allclose(x.grad.numpy(), 3 * 2 * np.array([1.0, 2.0]))  # y once, z twice


def test_memory_stays_flat_over_many_training_like_iterations():
    rng = np.random.default_rng(0)
    w = mr.tensor(rng.normal(size=(32, 16)), requires_grad=True)
    data = mr.tensor(rng.normal(size=(64, 32)))

    def step():
        loss = F.relu(data @ w).mean()
        loss.backward()
        with mr.no_grad():
            w.data -= 0.01 * w.grad.data
        w.grad = None

    for _ in range(200):
        step()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(10_000):
        step()
    gc.collect()   # also empties the interpreter's free lists (reusable small tuples), which are no leak
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 200_000, f"memory grew by {grown} bytes over 10,000 iterations"


def test_no_grad_records_nothing():
    x = t64([1.0])
    with mr.no_grad():
        y = x * 2.0
        assert mr.is_grad_enabled() is False
        with mr.enable_grad():
            z = x * 2.0
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad
    assert mr.is_grad_enabled()


def test_grad_returns_without_touching_dot_grad():
    x, w = t64([1.0, -2.0]), t64([0.5, 0.25])
    gx, gw = mr.grad((x * w).sum(), [x, w])
    np.testing.assert_allclose(gx.numpy(), [0.5, 0.25])
    np.testing.assert_allclose(gw.numpy(), [1.0, -2.0])
    assert x.grad is None and w.grad is None
    assert not gx.requires_grad


def test_grad_with_respect_to_an_intermediate_tensor():
    x = t64([1.0, 2.0])
    h = x * 3.0
    y = (h * h).sum()
    gh, = mr.grad(y, h)
    np.testing.assert_allclose(gh.numpy(), 2 * 3.0 * np.array([1.0, 2.0]))


def test_grad_unused_input():
    x, unused = t64([1.0]), t64([2.0])
    with pytest.raises(mr.GraphError, match="allow_unused"):
        mr.grad((x * x).sum(), [x, unused])
    gx, gu = mr.grad((x * x).sum(), [x, unused], allow_unused=True)
    assert gu is None and gx.numpy() == pytest.approx([2.0])


def test_second_and_third_derivatives():
    x = t64([0.3, -1.2])
    y = (x ** 4).sum()
    g1, = mr.grad(y, x, create_graph=True)
    g2, = mr.grad(g1.sum(), x, create_graph=True)
    g3, = mr.grad(g2.sum(), x)
    v = np.array([0.3, -1.2])
    np.testing.assert_allclose(g1.numpy(), 4 * v ** 3)
    np.testing.assert_allclose(g2.numpy(), 12 * v ** 2)
    np.testing.assert_allclose(g3.numpy(), 24 * v)


def test_gradient_penalty_is_differentiable_in_the_weights():
    # || d(sum tanh(x W))/dx ||^2 differentiated w.r.t. W: the WGAN-GP pattern, checked by finite differences
    rng = np.random.default_rng(1)
    x0, w0 = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))

    def penalty(w_values, create_graph):
        x, w = mr.tensor(x0, requires_grad=True), mr.tensor(w_values, requires_grad=True)
        gx, = mr.grad(F.tanh(x @ w).sum(), x, create_graph=create_graph)
        return (gx * gx).sum(), w

    p, w = penalty(w0, True)
    p.backward()
    eps, numeric = 1e-6, np.zeros_like(w0)
    for idx in np.ndindex(w0.shape):
        plus, minus = w0.copy(), w0.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (penalty(plus, False)[0].item() - penalty(minus, False)[0].item()) / (2 * eps)
    np.testing.assert_allclose(w.grad.numpy(), numeric, rtol=1e-6, atol=1e-8)


def test_broadcast_gradients_are_reduced_to_input_shapes():
    a = t64(np.ones((3, 1)))
    b = t64(np.arange(4.0))
    (a * b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.full((3, 1), 6.0))
    np.testing.assert_allclose(b.grad.numpy(), np.full(4, 3.0))


def test_dtype_promotion_gradient_keeps_input_dtype():
    a = mr.tensor(np.ones(3, np.float32), requires_grad=True)
    b = mr.tensor(np.ones(3, np.float64), requires_grad=True)
    y = a * b
    assert y.dtype == np.float64
    y.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_tensor_creation_dtypes():
    assert mr.tensor([1, 2, 3]).dtype == np.float32          # lists -> default dtype
    assert mr.tensor(2.5).dtype == np.float32
    assert mr.tensor(np.ones(2, np.float64)).dtype == np.float64
    assert mr.tensor(np.arange(3)).dtype == np.int64           # integer arrays stay integer (labels)
    assert mr.tensor([1, 2], dtype="float64").dtype == np.float64
    assert (mr.tensor(np.ones(2, np.float32)) * 2.0).dtype == np.float32   # Python scalars are weak
    mr.set_default_dtype("float64")
    try:
        assert mr.tensor([1.0]).dtype == np.float64
    finally:
        mr.set_default_dtype("float32")
    with pytest.raises(mr.DTypeError):
        mr.set_default_dtype("int32")


def test_bad_input_errors_are_clear():
    with pytest.raises(mr.DTypeError, match="floating"):
        mr.tensor(np.arange(3), requires_grad=True)
    with pytest.raises(mr.GraphError, match="non-scalar"):
        mr.tensor([1.0, 2.0], requires_grad=True).__mul__(2.0).backward()
    with pytest.raises(mr.ShapeError, match=r"\(2, 3\) and \(4,\)"):
        mr.tensor(np.ones((2, 3))) + mr.tensor(np.ones(4))
    with pytest.raises(mr.ShapeError, match="not aligned"):
        F.matmul(mr.tensor(np.ones((2, 3))), mr.tensor(np.ones((2, 3))))
    with pytest.raises(mr.GraphError, match="does not require grad"):
        mr.tensor([1.0]).backward()
    assert issubclass(mr.ShapeError, ValueError) and issubclass(mr.DTypeError, TypeError)


def test_tensor_methods_mirror_numpy():
    a = np.arange(6.0).reshape(2, 3)
    x = mr.tensor(a)
    np.testing.assert_allclose(x.sum(axis=1, keepdims=True).numpy(), a.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(x.T.numpy(), a.T)
    np.testing.assert_allclose(x.reshape(3, 2).numpy(), a.reshape(3, 2))
    np.testing.assert_allclose(x.max(axis=0).numpy(), a.max(axis=0))
    np.testing.assert_allclose(x.mean().numpy(), a.mean())
    np.testing.assert_allclose(x.var(axis=0).numpy(), a.var(axis=0))
    np.testing.assert_allclose(x.flatten().numpy(), a.flatten())
    np.testing.assert_array_equal(x.argmax(axis=1).numpy(), a.argmax(axis=1))
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert mr.tensor([3.5]).item() == 3.5
    np.testing.assert_array_equal((x > 2.0).numpy(), a > 2.0)


def test_numpy_array_on_the_left_defers_to_tensor():
    y = np.ones(3) + mr.tensor(np.ones(3), requires_grad=True)
    assert isinstance(y, mr.Tensor) and y.requires_grad


def test_detach_cuts_the_graph():
    x = t64([2.0])
    y = (x * x).detach() * x
    y.backward()
    assert x.grad.numpy() == pytest.approx([4.0])


def test_each_leaf_owns_a_writable_gradient():
    # Add hands one gradient to both inputs and sum's backward is a read-only broadcast view;
    # leaves must still get private, writable buffers (regularizer hooks update grads in place).
    w, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    (w + b).sum().backward()
    assert w.grad is not b.grad
    assert w.grad.data.flags.writeable and b.grad.data.flags.owndata
    w.grad.data += 1.0
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])


def test_leaf_gradients_stay_private_under_create_graph():
    w, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    (w * w + b).sum().backward(create_graph=True)
    assert w.grad is not b.grad and b.grad.data.flags.writeable
    assert w.grad.requires_grad                       # still differentiable: d/dw sum(2w) = 2
    w.grad.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0 + 2.0, 4.0 + 2.0])


@pytest.mark.parametrize("returned, got", [
    (lambda self, gy: gy * 2.0, "a Tensor"),                          # a bare Tensor for a one-input op
    (lambda self, gy: (gy, gy), "2 items"),                            # too many
    (lambda self, gy: (gy.data * 2.0,), "ndarray"),                    # a raw array
])
def test_backward_must_return_one_tensor_or_none_per_input(returned, got):
    class Double(mr.Function):
        def forward(self, a): return a * 2.0
        backward = returned

    x = t64([1.0, 2.0])
    with pytest.raises(mr.GraphError, match=rf"Double.backward must return a tuple with one Tensor or None per input \(1 here.*got.*{got}"):
        Double()(x).sum().backward()
    assert x.grad is None


def test_an_op_that_reads_its_output_must_declare_it():
    # Ops keep a reference to their output only when ``saves`` names it (a cost on every op otherwise).
    class Square(mr.Function):
        saves = (0,)
        def forward(self, a): return a * a
        def backward(self, gy): return (gy * 2.0 * self.output / self.inputs[0],)

    class DeclaredSquare(Square):
        saves = (0, "output")

    assert (Square._keeps_output, DeclaredSquare._keeps_output, F.Add._keeps_output) == (False, True, False)
    x = t64([1.0, 2.0])
    with pytest.raises(mr.GraphError, match=r"Square.backward reads self.output, but its saves = \(0,\) does not name"):
        Square()(x).sum().backward()
    DeclaredSquare()(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_grad_computes_only_the_gradients_it_returns():
    # grad(outputs, inputs) tells each op which inputs lead to ``inputs`` (needs_input_grad), so an
    # R1 penalty's image gradient skips the discriminator's weight products; a retained graph
    # used again by backward() gets every gradient.
    seen = []

    class Probe(mr.Function):
        saves = ()
        def forward(self, a, b): return a + b
        def backward(self, gy):
            seen.append(self.needs_input_grad)
            return gy, gy

    x, w = t64([1.0, 2.0]), t64([3.0, 4.0])
    y = F.tanh(Probe()(x, w))
    (gx,) = mr.grad(y.sum(), x, retain_graph=True)
    assert seen == [(True, False)]
    np.testing.assert_allclose(gx.numpy(), 1 - np.tanh([4.0, 6.0]) ** 2)
    assert w.grad is None
    y.sum().backward()
    assert seen[-1] == (True, True)
    np.testing.assert_allclose(w.grad.numpy(), gx.numpy())


def test_pruned_linear_gradients_equal_the_full_ones():
    rng = np.random.default_rng(0)
    x, w, b = t64(rng.normal(size=(5, 3))), t64(rng.normal(size=(4, 3))), t64(rng.normal(size=4))
    out = lambda: (F.leaky_relu(F.linear(x, w, b), 0.2) ** 2).sum()
    (gx,) = mr.grad(out(), x)
    gx_all, gw_all, gb_all = mr.grad(out(), [x, w, b])
    np.testing.assert_array_equal(gx.numpy(), gx_all.numpy())
    assert w.grad is None and b.grad is None
