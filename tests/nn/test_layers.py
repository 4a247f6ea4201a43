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


# -- the dtype rule (minireg.nn docstring): input dtype == parameter dtype, no silent promotion ------

def float32_layers():
    """(layer, a valid float32 input shape) for every layer that owns parameters or buffers."""
    return [
        (nn.Linear(3, 2), (4, 3)),
        (nn.Conv2d(2, 3, 3), (1, 2, 5, 5)),
        (nn.ConvTranspose2d(2, 3, 3), (1, 2, 4, 4)),
        (nn.BatchNorm1d(3), (4, 3)),
        (nn.BatchNorm2d(2, affine=False), (2, 2, 3, 3)),
        (nn.LayerNorm(3), (2, 3)),
        (nn.SpectralNorm(nn.Linear(3, 2)), (4, 3)),
        (nn.DropConnect(nn.Linear(3, 2)), (4, 3)),
    ]


@pytest.mark.parametrize("layer, shape", float32_layers(), ids=lambda v: type(v).__name__ if isinstance(v, nn.Module)
                         else None)
@pytest.mark.parametrize("dtype", ["float64", "float16", "int64", "int32", "bool"])
def test_an_input_of_another_dtype_is_refused_naming_layer_dtypes_and_fix(layer, shape, dtype):
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    with pytest.raises(mr.DTypeError) as info:
        layer(np.ones(shape, dtype=dtype))
    message = str(info.value)
    inner = layer.module if isinstance(layer, (nn.SpectralNorm, nn.DropConnect)) else layer
    assert message.startswith(type(inner).__name__ + "(")
    assert f"input dtype {dtype}" in message and "parameter dtype float32" in message
    assert "x.astype('float32')" in message
    assert ("model.astype('float64')" in message) == (dtype == "float64")
    for key, value in layer.state_dict().items():   # running statistics untouched
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("layer, shape",
                         float32_layers() + [(nn.Dropout(0.5), (2, 3)), (nn.GaussianNoise(0.1), (2, 3))],
                         ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None)
def test_complex_input_is_refused_and_the_layers_own_dtype_passes(layer, shape):
    with pytest.raises(mr.DTypeError, match=r"complex input \(complex64\) is not supported"):
        layer(np.ones(shape, dtype=np.complex64))
    assert layer(np.ones(shape, dtype=np.float32)).dtype == np.float32


@pytest.mark.parametrize("layer", [nn.Dropout(0.5), nn.SpatialDropout2d(0.5), nn.GaussianNoise(0.1),
                                   nn.GaussianDropout(0.2), nn.BatchNorm2d(2, affine=False, track_running_stats=False)],
                         ids=lambda m: type(m).__name__)
def test_parameter_free_noise_layers_need_floating_input_of_any_precision(layer):
    x = np.ones((3, 2, 2, 2))
    with pytest.raises(mr.DTypeError, match="expected floating input, got dtype int64"):
        layer(x.astype(np.int64))
    for dtype in (np.float32, np.float64):
        assert layer(x.astype(dtype)).dtype == dtype


def test_python_lists_take_the_layers_dtype_and_astype_converts_the_model():
    mr.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    assert model([[1, 2], [3, 4]]).dtype == np.float32          # Python ints: no dtype of their own
    weight = model[0].weight
    data_before, version = weight.numpy().copy(), weight._version
    assert model.astype("float64") is model
    assert model[0].weight is weight and weight.dtype == np.float64 and weight._version == version + 1
    np.testing.assert_array_equal(weight.numpy(), data_before.astype(np.float64))
    assert all(t.dtype == np.float64 for t in list(model.parameters()) + list(model.buffers()))
    assert model(np.ones((2, 2))).dtype == np.float64
    with pytest.raises(mr.DTypeError, match="input dtype float32 does not match the layer's parameter dtype float64"):
        model(np.ones((2, 2), np.float32))


def test_embedding_indices_must_be_integers():
    emb = nn.Embedding(4, 2)
    assert emb(np.array([0, 3], dtype=np.int32)).shape == (2, 2)
    for bad in (np.array([1.0]), np.array([True]), mr.tensor([1.0])):
        with pytest.raises(mr.DTypeError, match=r"Embedding\(4, 2\): indices must be integers"):
            emb(bad)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_running_statistics_keep_the_layers_dtype(dtype, affine):
    bn = nn.BatchNorm1d(3, affine=affine, dtype=dtype)
    assert bn.running_mean.dtype == dtype and bn.running_var.dtype == dtype
    versions = (bn.running_mean._version, bn.running_var._version)
    bn(rng.normal(size=(5, 3)).astype(dtype))
    assert bn.running_mean.dtype == dtype and bn.running_var.dtype == dtype
    assert (bn.running_mean._version, bn.running_var._version) == (versions[0] + 1, versions[1] + 1)


@pytest.mark.parametrize("momentum", [0.0, 1.0])
def test_batch_norm_momentum_bounds_are_allowed(momentum):
    bn = nn.BatchNorm1d(2, momentum=momentum, dtype="float64")
    x = rng.normal(size=(6, 2))
    bn(x)
    expected = x.mean(axis=0) if momentum == 1.0 else np.zeros(2)
    np.testing.assert_allclose(bn.running_mean.numpy(), expected, atol=1e-15)


def test_layer_forwards_on_a_device_make_no_reads_or_copies():
    from minireg.testing.devices import fake_device
    with fake_device() as device:
        mr.manual_seed(0)
        layers = [nn.Linear(3, 4), nn.BatchNorm1d(4), nn.LayerNorm(4), nn.Dropout(0.3), nn.GaussianNoise(0.1),
                  nn.GaussianDropout(0.2), nn.SpectralNorm(nn.Linear(4, 4)), nn.DropConnect(nn.Linear(4, 2))]
        model = nn.Sequential(*layers)
        x = mr.tensor(device.asarray(rng.normal(size=(5, 3)).astype(np.float32)))
        model(x)                                                   # warm-up
        with device.counting() as counts:
            model(x).sum().backward()
    assert counts.syncs == counts.implicit == counts.copies_to_device == 0, counts.report()
