"""The familiar tensor API: factories, copies vs shared memory, DLPack, shape helpers, new ops and losses."""
import numpy as np
import pytest

import minireg as mr
from minireg import F
from minireg.testing import gradcheck, gradgradcheck


# -- factories -------------------------------------------------------------------------------------
def test_factories_match_numpy_and_take_dtype_and_requires_grad():
    assert mr.zeros(2, 3).shape == (2, 3) and mr.zeros((2, 3)).dtype == np.float32
    np.testing.assert_array_equal(mr.ones(2, dtype="float64").numpy(), np.ones(2))
    assert mr.ones(2, dtype="float64").dtype == np.float64
    np.testing.assert_array_equal(mr.full((2,), 1.5).numpy(), [1.5, 1.5])
    assert mr.full((2,), 3).dtype == np.int64 and mr.full((1,), True).dtype == np.bool_
    assert mr.empty(4, 2).shape == (4, 2)
    np.testing.assert_array_equal(mr.arange(5).numpy(), np.arange(5))
    assert mr.arange(5).dtype == np.int64 and mr.arange(0.0, 1.0, 0.25).dtype == np.float32
    np.testing.assert_allclose(mr.arange(1, 2, 0.25).numpy(), np.arange(1, 2, 0.25))
    np.testing.assert_allclose(mr.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5))
    np.testing.assert_array_equal(mr.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(mr.eye(2, 3).numpy(), np.eye(2, 3))
    w = mr.zeros(3, requires_grad=True)
    assert w.requires_grad and w.is_leaf
    like = mr.tensor(np.ones((2, 2), np.float64))
    assert mr.zeros_like(like).dtype == np.float64 and mr.ones_like(like).numpy().sum() == 4
    assert mr.zeros_like(like, dtype="float32").dtype == np.float32


def test_factories_live_on_the_active_backend(backend):
    with mr.using_backend(backend):
        for t in (mr.zeros(2), mr.ones(2), mr.full((2,), 2.0), mr.arange(3), mr.linspace(0, 1, 3), mr.eye(2),
                  mr.zeros_like(mr.zeros(2))):
            assert t.backend is backend


def test_factory_arguments_are_checked():
    with pytest.raises(mr.ArgumentError, match="zeros: size must be an integer >= 0, got -1"):
        mr.zeros(-1, 2)
    with pytest.raises(mr.ArgumentTypeError, match="size"):
        mr.ones(2.5)
    with pytest.raises(mr.ArgumentError, match="step must not be 0"):
        mr.arange(0, 3, 0)
    with pytest.raises(mr.DTypeError, match="floating"):
        mr.zeros(2, dtype="int64", requires_grad=True)
    with pytest.raises(mr.DTypeError, match="complex"):
        mr.zeros(2, dtype="complex64")


# -- copies, shared memory, DLPack -----------------------------------------------------------------
def test_tensor_copies_as_tensor_and_from_numpy_share():
    a = np.zeros(3)
    copied, shared, from_np = mr.tensor(a), mr.as_tensor(a), mr.from_numpy(a)
    a[0] = 5.0
    assert copied.tolist() == [0.0, 0.0, 0.0]
    assert shared.tolist()[0] == 5.0 and from_np.tolist()[0] == 5.0
    t = mr.tensor([1.0, 2.0])
    assert mr.as_tensor(t) is t and mr.tensor(t).data is not t.data
    assert mr.as_tensor(t, dtype="float64").dtype == np.float64
    with pytest.raises(mr.ArgumentTypeError, match="NumPy array"):
        mr.from_numpy([1.0])


def test_dlpack_round_trip_with_numpy_shares_memory():
    t = mr.tensor(np.arange(4.0))
    view = np.from_dlpack(t)
    view[0] = 7.0
    assert t.tolist()[0] == 7.0
    back = mr.from_dlpack(view)
    back.data[1] = 8.0
    assert t.tolist()[1] == 8.0 and back.backend.name == "numpy"
    assert t.__dlpack_device__() == view.__dlpack_device__()
    with pytest.raises(mr.ArgumentTypeError, match="__dlpack__"):
        mr.from_dlpack([1.0])


# -- shape helpers ---------------------------------------------------------------------------------
def test_shape_helpers_match_numpy():
    a = np.arange(6.0).reshape(2, 3)
    x = mr.tensor(a)
    np.testing.assert_array_equal(mr.cat([x, x], axis=1).numpy(), np.concatenate([a, a], axis=1))
    assert mr.cat is F.concatenate
    assert x.unsqueeze(0).shape == (1, 2, 3) and mr.unsqueeze(x, -1).shape == (2, 3, 1)
    assert mr.squeeze(x.unsqueeze(1), 1).shape == (2, 3)
    np.testing.assert_array_equal(x.view(3, 2).numpy(), a.reshape(3, 2))
    np.testing.assert_array_equal(x.view(-1).numpy(), a.ravel())
    np.testing.assert_array_equal(F.neg(x).numpy(), -a)
    z = mr.tensor(a)
    assert z.zero_() is z and z.tolist() == [[0.0] * 3] * 2


# -- GELU, SiLU and their modules ------------------------------------------------------------------
def test_gelu_and_silu_values_gradients_and_second_gradients():
    x = mr.tensor(np.array([-2.0, -0.5, 0.0, 0.7, 3.0]), requires_grad=True)
    # exact GELU values: x * Phi(x), Phi from the erf in the math module
    import math
    expected = [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.tolist()]
    np.testing.assert_allclose(F.gelu(x).numpy(), expected, rtol=1e-14)
    np.testing.assert_allclose(F.silu(x).numpy(), x.numpy() / (1 + np.exp(-x.numpy())), rtol=1e-14)
    for fn in (F.gelu, F.silu, F.erf):
        gradcheck(fn, [x])
        gradgradcheck(fn, [x])
    assert np.allclose(mr.nn.GELU()(x).numpy(), F.gelu(x).numpy())
    assert np.allclose(mr.nn.SiLU()(x).numpy(), F.silu(x).numpy())


def test_erf_is_accurate_over_the_whole_line():
    import math
    values = np.linspace(-7, 7, 2001)
    np.testing.assert_allclose(F.erf(mr.tensor(values)).numpy(), [math.erf(v) for v in values], rtol=0, atol=3e-15)
    assert F.erf(mr.tensor(np.array([np.inf, -np.inf]))).tolist() == [1.0, -1.0]


# -- smooth L1 and pos_weight ----------------------------------------------------------------------
def _smooth_l1_ref(d, beta):
    return np.where(np.abs(d) < beta, 0.5 * d * d / beta, np.abs(d) - 0.5 * beta)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
def test_smooth_l1_loss_matches_pytorchs_formula(beta):
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(4, 3)) * 2, rng.normal(size=(4, 3))
    ref = np.abs(pred - target) if beta == 0 else _smooth_l1_ref(pred - target, beta)
    np.testing.assert_allclose(F.smooth_l1_loss(mr.tensor(pred), target, beta=beta, reduction="none").numpy(), ref)
    np.testing.assert_allclose(F.smooth_l1_loss(mr.tensor(pred), target, beta=beta).item(), ref.mean())
    if beta:   # Huber with delta = beta is beta times smooth L1
        np.testing.assert_allclose(F.huber_loss(mr.tensor(pred), target, delta=beta).item(), beta * ref.mean())
        keep = np.abs(np.abs(pred - target) - beta) > 1e-3     # away from the kink
        gradcheck(lambda p: F.smooth_l1_loss(p, target, beta=beta, reduction="none") * mr.tensor(keep * 1.0),
                  [mr.tensor(pred, requires_grad=True)])
    with pytest.raises(mr.ArgumentError, match="beta"):
        F.smooth_l1_loss(mr.tensor(pred), target, beta=-1.0)


def test_pos_weight_weighs_the_positive_term():
    rng = np.random.default_rng(1)
    logits, target = rng.normal(size=(5, 3)) * 3, (rng.uniform(size=(5, 3)) > 0.5) * 1.0
    pos_weight = np.array([1.0, 2.0, 0.5])
    sig = 1 / (1 + np.exp(-logits))
    ref = -(pos_weight * target * np.log(sig) + (1 - target) * np.log(1 - sig))
    got = F.binary_cross_entropy_with_logits(mr.tensor(logits), target, reduction="none", pos_weight=pos_weight)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    unweighted = F.binary_cross_entropy_with_logits(mr.tensor(logits), target, pos_weight=1.0).item()
    np.testing.assert_allclose(unweighted, F.binary_cross_entropy_with_logits(mr.tensor(logits), target).item())
    weight = mr.tensor(pos_weight)
    fn = lambda x: F.binary_cross_entropy_with_logits(x, target, pos_weight=weight)   # noqa: E731
    gradcheck(fn, [mr.tensor(logits, requires_grad=True)])
    gradgradcheck(fn, [mr.tensor(logits, requires_grad=True)])
    with pytest.raises(mr.ShapeError, match="pos_weight of shape \\(2,\\)"):
        F.binary_cross_entropy_with_logits(mr.tensor(logits), target, pos_weight=np.ones(2))
