"""Dense, normalization, dropout and embedding layers: forward vs NumPy, gradients, modes."""
import numpy as np
import pytest

import minireg as mr
from minireg import F, nn
from minireg.testing import gradcheck, gradgradcheck

rng = np.random.default_rng(0)


def params_of(module):
    return [p for p in module.parameters()]


def test_linear_forward_and_default_init_bounds():
    mr.manual_seed(1)
    layer = nn.Linear(5, 3, dtype="float64")
    x = rng.normal(size=(4, 5))
    expected = x @ layer.weight.numpy().T + layer.bias.numpy()
    np.testing.assert_allclose(layer(mr.tensor(x)).numpy(), expected)
    bound = 1 / np.sqrt(5)
    assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.bias.numpy()).max() <= bound


def test_linear_gradients_and_double_backward():
    layer = nn.Linear(3, 2, dtype="float64")
    x = mr.tensor(rng.normal(size=(4, 3)))
    gradcheck(lambda x, w, b: F.linear(x, w, b), [x, layer.weight, layer.bias])
    gradgradcheck(lambda x, w, b: F.tanh(F.linear(x, w, b)), [x, layer.weight, layer.bias])
    batched = mr.tensor(rng.normal(size=(2, 2, 3)))     # leading batch axes
    gradcheck(lambda x, w, b: F.linear(x, w, b), [batched, layer.weight, layer.bias])
    gradgradcheck(lambda x, w: F.tanh(F.linear(x, w)), [batched, layer.weight])


def numpy_batch_norm(x, gamma, beta, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("shape, cls", [((6, 3), nn.BatchNorm1d), ((4, 3, 5), nn.BatchNorm1d),
                                        ((2, 3, 4, 4), nn.BatchNorm2d)])
def test_batch_norm_train_eval_train(shape, cls):
    bn = cls(3, momentum=0.3, dtype="float64")
    bn.weight.data = rng.normal(size=3)
    bn.bias.data = rng.normal(size=3)
    x = rng.normal(size=shape) * 2 + 1
    # eval before any training: running stats (0, 1) make it the affine map, never NaN
    bn.eval()
    np.testing.assert_allclose(bn(mr.tensor(x)).numpy(),
                               x / np.sqrt(1 + 1e-5) * bn.weight.numpy().reshape((1, -1) + (1,) * (x.ndim - 2))
                               + bn.bias.numpy().reshape((1, -1) + (1,) * (x.ndim - 2)))
    bn.train()
    y = bn(mr.tensor(x))
    np.testing.assert_allclose(y.numpy(), numpy_batch_norm(x, bn.weight.numpy(), bn.bias.numpy(), 1e-5), atol=1e-12)
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.3 * x.mean(axis=axes))
    np.testing.assert_allclose(bn.running_var.numpy(), 0.7 + 0.3 * x.var(axis=axes, ddof=1))
    bn.eval()
    shape_c = (1, -1) + (1,) * (x.ndim - 2)
    expected = ((x - bn.running_mean.numpy().reshape(shape_c)) / np.sqrt(bn.running_var.numpy().reshape(shape_c) + 1e-5)
                * bn.weight.numpy().reshape(shape_c) + bn.bias.numpy().reshape(shape_c))
    np.testing.assert_allclose(bn(mr.tensor(x)).numpy(), expected)
    running = bn.running_mean.numpy().copy()
    bn(mr.tensor(x))
    np.testing.assert_array_equal(bn.running_mean.numpy(), running)   # eval never updates statistics
    bn.train()
    bn(mr.tensor(x))
    assert not np.array_equal(bn.running_mean.numpy(), running)


def test_batch_norm_double_backward():
    bn = nn.BatchNorm2d(2, dtype="float64")
    x = mr.tensor(rng.normal(size=(3, 2, 2, 2)))
    fn = lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True) ** 2   # noqa: E731
    gradcheck(fn, [x, bn.weight, bn.bias])
    gradgradcheck(fn, [x, bn.weight, bn.bias])


def test_batch_norm_bad_input():
    with pytest.raises(mr.ShapeError, match=r"BatchNorm2d\(3.*expected input of shape \(N, 3, H, W\), got \(2, 4, 5, 5\)"):
        nn.BatchNorm2d(3)(mr.tensor(np.ones((2, 4, 5, 5), np.float32)))
    with pytest.raises(mr.ShapeError, match="more than one value per channel"):
        nn.BatchNorm1d(3)(mr.tensor(np.ones((1, 3), np.float32)))


def test_layer_norm_forward_and_gradients():
    ln = nn.LayerNorm(4, dtype="float64")
    x = rng.normal(size=(3, 4))
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln(mr.tensor(x)).numpy(), expected, atol=1e-12)
    gradcheck(lambda x, w, b: F.layer_norm(x, 4, w, b), [mr.tensor(x), ln.weight, ln.bias])
    gradgradcheck(lambda x: F.layer_norm(x, 4) ** 2, [mr.tensor(x)])


def test_dropout_is_unbiased_and_identity_in_eval():
    mr.manual_seed(3)
    layer = nn.Dropout(0.3)
    x = mr.tensor(np.ones((200, 500)))
    y = layer(x).numpy()
    assert abs(y.mean() - 1.0) < 0.01                  # expected activation equals the input
    assert abs((y == 0).mean() - 0.3) < 0.01
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7])
    layer.eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nn.Dropout(1.5)


def test_dropout_is_reproducible_under_manual_seed():
    x = mr.tensor(np.ones(50))
    mr.manual_seed(7)
    a = F.dropout(x, 0.5).numpy()
    mr.manual_seed(7)
    b = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)


def test_embedding_lookup_gradient_accumulates_repeated_rows():
    emb = nn.Embedding(5, 3, dtype="float64")
    idx = np.array([[1, 4], [1, 1]])
    out = emb(idx)
    np.testing.assert_array_equal(out.numpy(), emb.weight.numpy()[idx])
    out.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy()[:, 0], [0, 3, 0, 0, 1])
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        emb(np.array([5]))
    with pytest.raises(TypeError, match="integers"):
        emb(np.array([1.0]))


@pytest.mark.parametrize("module, fn", [(nn.ReLU(), F.relu), (nn.Tanh(), F.tanh), (nn.Sigmoid(), F.sigmoid),
                                        (nn.LeakyReLU(negative_slope=0.2), lambda x: F.leaky_relu(x, 0.2)),
                                        (nn.Softmax(axis=1), lambda x: F.softmax(x, 1))])
def test_activation_modules_apply_their_function(module, fn):
    x = mr.tensor(rng.normal(size=(3, 4)))
    np.testing.assert_allclose(module(x).numpy(), fn(x).numpy())


def test_initialisers_have_the_documented_statistics():
    mr.manual_seed(0)
    w = nn.Parameter(np.zeros((400, 300)))
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(np.sqrt(2 / 300), rel=0.02)
    nn.init.xavier_uniform_(w)
    assert np.abs(w.numpy()).max() <= np.sqrt(6 / 700)
    nn.init.orthogonal_(w)
    np.testing.assert_allclose(w.numpy().T @ w.numpy(), np.eye(300), atol=1e-10)
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.init.calculate_gain("swish")
