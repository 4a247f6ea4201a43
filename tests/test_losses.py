"""Losses: values against NumPy formulas, first and second derivatives, stability, errors, modules."""
import numpy as np
import pytest

import minireg as mr
from minireg import F
from minireg import losses as L
from minireg.nn import loss as nn
from minireg.errors import DeviceError, ShapeError
from minireg.testing import gradcheck, gradgradcheck
from minireg.testing.devices import fake_device

rng = np.random.default_rng(0)
N, C = 5, 4
LOGITS = rng.normal(size=(N, C)) * 2
LABELS = np.array([0, 3, 1, 3, 2])
PROBS = rng.dirichlet(np.ones(C), size=N)
PRED, TARGET = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))


# ---- NumPy references, written from the textbook formulas -------------------------------------------
def np_log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_cross_entropy(x, target, eps=0.0):
    q = np.eye(x.shape[1])[target] if target.ndim == 1 else target
    q = (1 - eps) * q + eps / x.shape[1]
    return -(q * np_log_softmax(x)).sum(axis=1)


def np_huber(d, delta):
    return np.where(np.abs(d) < delta, 0.5 * d ** 2, delta * (np.abs(d) - 0.5 * delta))


def np_bce_with_logits(x, t):
    p = 1 / (1 + np.exp(-x))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def np_reduce(values, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": np.asarray}[reduction](values)


REGRESSION = [
    ("mse", L.mse_loss, lambda x, t: (x - t) ** 2),
    ("l1", L.l1_loss, lambda x, t: np.abs(x - t)),
    ("huber", lambda x, t, **kw: L.huber_loss(x, t, delta=0.7, **kw), lambda x, t: np_huber(x - t, 0.7)),
    ("bce_with_logits", L.binary_cross_entropy_with_logits, lambda x, t: np_bce_with_logits(x, 1 / (1 + np.exp(-t)))),
]


def _regression_target(name, t):
    return 1 / (1 + np.exp(-t)) if name == "bce_with_logits" else t   # BCE targets are probabilities


# ---- values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, loss, reference", REGRESSION, ids=[r[0] for r in REGRESSION])
def test_regression_losses_match_numpy(name, loss, reference, reduction, backend):
    target = _regression_target(name, TARGET)
    out = loss(mr.tensor(backend.asarray(PRED)), mr.tensor(backend.asarray(target)), reduction=reduction)
    assert out.backend is backend
    np.testing.assert_allclose(out.numpy(), np_reduce(reference(PRED, TARGET), reduction), rtol=1e-12)


def test_huber_is_quadratic_inside_and_linear_outside():
    d = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 0.99, 1.0, 4.0])
    out = L.huber_loss(mr.tensor(d), mr.tensor(np.zeros_like(d)), reduction="none", delta=1.0)
    np.testing.assert_allclose(out.numpy(), [2.5, 0.5, 0.125, 0.0, 0.125, 0.5 * 0.99 ** 2, 0.5, 3.5])


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_cross_entropy_matches_numpy(kind, reduction, eps, backend):
    target = LABELS if kind == "labels" else PROBS
    out = L.cross_entropy(mr.tensor(backend.asarray(LOGITS)), mr.tensor(backend.asarray(target)),
                          label_smoothing=eps, reduction=reduction)
    assert out.backend is backend
    np.testing.assert_allclose(out.numpy(), np_reduce(np_cross_entropy(LOGITS, target, eps), reduction), rtol=1e-12)


def test_cross_entropy_accepts_host_labels_on_a_device():
    device = fake_device()
    logits = mr.tensor(device.asarray(LOGITS))
    for labels in (LABELS, LABELS.astype(np.uint8), LABELS.tolist()):
        np.testing.assert_allclose(L.cross_entropy(logits, labels).numpy(), np_cross_entropy(LOGITS, LABELS).mean())


def test_cross_entropy_of_one_hot_probabilities_equals_labels():
    logits = mr.tensor(LOGITS)
    one_hot = np.eye(C)[LABELS]
    for eps in (0.0, 0.3):
        np.testing.assert_allclose(L.cross_entropy(logits, one_hot, label_smoothing=eps).numpy(),
                                   L.cross_entropy(logits, LABELS, label_smoothing=eps).numpy(), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_of_log_softmax_is_cross_entropy(reduction, backend):
    log_probs = mr.tensor(backend.asarray(np_log_softmax(LOGITS)))
    out = L.nll_loss(log_probs, mr.tensor(backend.asarray(LABELS)), reduction=reduction)
    np.testing.assert_allclose(out.numpy(), np_reduce(-np_log_softmax(LOGITS)[np.arange(N), LABELS], reduction))


def test_float32_in_float32_out():
    logits = mr.tensor(LOGITS.astype(np.float32))
    assert L.cross_entropy(logits, LABELS).dtype == np.float32
    assert L.mse_loss(mr.tensor(PRED.astype(np.float32)), PRED.astype(np.float32)).dtype == np.float32


# ---- derivatives (float64) ------------------------------------------------------------------------
def _away_from_kinks(name):
    """Inputs whose differences stay clear of |d| = 0 (l1) and |d| = delta (huber)."""
    pred, target = PRED.copy(), TARGET.copy()
    if name in ("l1", "huber"):
        d = np.where(np.abs(np.abs(pred - target) - 0.7) < 0.05, 0.3, pred - target)
        d = np.where(np.abs(d) < 0.05, 0.3, d)
        pred = target + d
    return pred, _regression_target(name, target)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name, loss, reference", REGRESSION, ids=[r[0] for r in REGRESSION])
def test_regression_losses_gradcheck_and_gradgradcheck(name, loss, reference, reduction):
    pred, target = _away_from_kinks(name)
    fn = lambda x, t: loss(x, t, reduction=reduction)
    gradcheck(fn, [mr.tensor(pred), mr.tensor(target)])
    gradgradcheck(fn, [mr.tensor(pred), mr.tensor(target)])


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_cross_entropy_gradcheck_and_gradgradcheck(kind, eps, backend):
    target = mr.tensor(backend.asarray(LABELS if kind == "labels" else PROBS))
    fn = lambda x, t: L.cross_entropy(x, t, label_smoothing=eps, reduction="sum")
    gradcheck(fn, [mr.tensor(backend.asarray(LOGITS)), target])
    gradgradcheck(fn, [mr.tensor(backend.asarray(LOGITS)), target])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_label_cross_entropy_rounds_as_its_composite(reduction):
    # cross_entropy with labels is one op (LabelCrossEntropy); with eps = 0 its value and gradient
    # must have the bits of the composite it replaced, so training runs reproduce across the change.
    logits = np.random.default_rng(3).normal(size=(64, 10)).astype(np.float32) * 3
    labels = np.random.default_rng(4).integers(0, 10, 64)
    mask = mr.tensor(np.eye(10, dtype=bool)[labels])
    fused, composite = mr.tensor(logits, requires_grad=True), mr.tensor(logits, requires_grad=True)
    a = L.cross_entropy(fused, labels, reduction=reduction)
    per_row = -F.where(mask, F.log_softmax(composite, axis=1), 0.0).sum(axis=1)
    b = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    assert a.dtype == np.float32 and np.array_equal(a.numpy(), b.numpy())
    weights = mr.tensor(np.linspace(0.5, 2.0, 64, dtype=np.float32))
    ((a * weights).sum() if reduction == "none" else a).backward()
    ((b * weights).sum() if reduction == "none" else b).backward()
    assert np.array_equal(fused.grad.numpy(), composite.grad.numpy())


def test_nll_loss_gradcheck_and_gradgradcheck():
    fn = lambda x: L.nll_loss(x, LABELS, reduction="none")
    gradcheck(fn, [mr.tensor(LOGITS)])
    gradgradcheck(fn, [mr.tensor(LOGITS)])


def test_cross_entropy_gradient_is_softmax_minus_target():
    x = mr.tensor(LOGITS, requires_grad=True)
    L.cross_entropy(x, LABELS, reduction="sum").backward()
    softmax = np.exp(np_log_softmax(LOGITS))
    np.testing.assert_allclose(x.grad.numpy(), softmax - np.eye(C)[LABELS], atol=1e-12)


# ---- numerical stability --------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_is_finite_at_huge_logits(eps):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]])
    x = mr.tensor(logits, requires_grad=True)
    loss = L.cross_entropy(x, np.array([1, 2]), label_smoothing=eps, reduction="none")
    loss.sum().backward()
    assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(x.grad.numpy()))
    np.testing.assert_allclose(loss.numpy(), np_cross_entropy(logits, np.array([1, 2]), eps))
    if eps == 0:
        np.testing.assert_allclose(loss.numpy(), [2000.0, np.log(2)])


def test_cross_entropy_ignores_minus_inf_logits_of_other_classes():
    x = mr.tensor(np.array([[0.0, -np.inf, 1.0]]), requires_grad=True)
    loss = L.cross_entropy(x, np.array([2]))
    loss.backward()
    assert loss.item() == pytest.approx(np.log1p(np.exp(-1.0)))
    assert np.all(np.isfinite(x.grad.numpy())) and x.grad.numpy()[0, 1] == 0


def test_bce_with_logits_is_finite_at_huge_logits():
    logits = np.array([1000.0, -1000.0, 1000.0, -1000.0, 0.0])
    target = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    x = mr.tensor(logits, requires_grad=True)
    loss = L.binary_cross_entropy_with_logits(x, target, reduction="none")
    loss.sum().backward()
    np.testing.assert_allclose(loss.numpy(), [0.0, 0.0, 1000.0, 1000.0, np.log(2)])
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, 1.0, -1.0, 0.0])


# ---- errors ---------------------------------------------------------------------------------------
def test_label_out_of_range_names_the_label_and_the_class_count(backend):
    logits = mr.tensor(backend.asarray(LOGITS))
    for bad in (C, -1):
        labels = LABELS.copy()
        labels[2] = bad
        for given in (labels, mr.tensor(backend.asarray(labels))):
            # labels on a device are checked when the device is next read (no sync per step)
            with pytest.raises(ValueError, match=rf"label {bad} is out of range \[0, {C}\)"):
                L.cross_entropy(logits, given).numpy()
            with pytest.raises(ValueError, match=rf"label {bad} is out of range"):
                L.nll_loss(logits, given).numpy()


def test_float_labels_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match="must be integers.*probabilities pass a float target of shape"):
        L.cross_entropy(mr.tensor(LOGITS), LABELS.astype(np.float32))
    with pytest.raises(ValueError, match="must be integers"):
        L.nll_loss(mr.tensor(LOGITS), PROBS)


@pytest.mark.parametrize("call, error, message", [
    (lambda: L.cross_entropy(mr.tensor(LOGITS), LABELS[:3]), ShapeError, r"expected 5 labels of shape \(5,\), got shape \(3,\)"),
    (lambda: L.cross_entropy(mr.tensor(LOGITS), PROBS[:, :2]), ShapeError, "probability targets must have"),
    (lambda: L.cross_entropy(mr.tensor(LOGITS[0]), LABELS[:1]), ShapeError, r"scores of shape \(N, C\)"),
    (lambda: L.cross_entropy(mr.tensor(LOGITS[None]), LABELS), ShapeError, r"scores of shape \(N, C\)"),
    (lambda: L.cross_entropy(mr.tensor(LOGITS), LABELS, label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0, 1\]"),
    (lambda: L.cross_entropy(mr.tensor(LOGITS), LABELS, label_smoothing=-0.1), ValueError, "label_smoothing"),
    (lambda: L.cross_entropy(mr.tensor(LOGITS), LABELS, reduction="avg"), ValueError, "reduction must be one of"),
    (lambda: L.mse_loss(mr.tensor(PRED), TARGET, reduction="elementwise"), ValueError, "reduction must be one of"),
    (lambda: L.mse_loss(mr.tensor(PRED[:, :1]), TARGET[:, 0]), ShapeError, r"input shape \(3, 1\) and target shape \(3,\)"),
    (lambda: L.huber_loss(mr.tensor(PRED), TARGET, delta=0.0), ValueError, "delta must be > 0"),
    (lambda: L.binary_cross_entropy_with_logits(mr.tensor(PRED), TARGET.T), ShapeError, "differ"),
])
def test_bad_input_raises_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_labels_on_another_device_are_rejected():
    labels = mr.tensor(fake_device().asarray(LABELS))
    with pytest.raises(DeviceError, match="labels are on fake"):
        L.cross_entropy(mr.tensor(LOGITS), labels)


# ---- modules --------------------------------------------------------------------------------------
MODULES = [
    (nn.MSELoss(), lambda x, t: L.mse_loss(x, t), PRED, TARGET),
    (nn.L1Loss(reduction="sum"), lambda x, t: L.l1_loss(x, t, reduction="sum"), PRED, TARGET),
    (nn.HuberLoss(delta=0.5), lambda x, t: L.huber_loss(x, t, delta=0.5), PRED, TARGET),
    (nn.CrossEntropyLoss(label_smoothing=0.1), lambda x, t: L.cross_entropy(x, t, label_smoothing=0.1), LOGITS, LABELS),
    (nn.NLLLoss(reduction="none"), lambda x, t: L.nll_loss(x, t, reduction="none"), np_log_softmax(LOGITS), LABELS),
    (nn.BCEWithLogitsLoss(), L.binary_cross_entropy_with_logits, PRED, 1 / (1 + np.exp(-TARGET))),
]


@pytest.mark.parametrize("module, functional, x, t", MODULES, ids=[type(m[0]).__name__ for m in MODULES])
def test_loss_modules_call_the_functional_losses(module, functional, x, t):
    np.testing.assert_array_equal(module(mr.tensor(x), t).numpy(), functional(mr.tensor(x), t).numpy())
    assert list(module.parameters()) == []


def test_loss_module_repr_and_early_reduction_check():
    assert repr(nn.CrossEntropyLoss(label_smoothing=0.1)) == "CrossEntropyLoss(reduction='mean', label_smoothing=0.1)"
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.MSELoss(reduction="batchmean")


def test_loss_arguments_raise_minireg_errors_naming_the_argument():
    F = L
    x = mr.tensor(np.zeros((2, 3)))
    with pytest.raises(mr.ArgumentError, match="cross_entropy: label 3 is out of range \\[0, 3\\) for 3 classes"):
        F.cross_entropy(x, np.array([0, 3]))
    with pytest.raises(mr.ArgumentError, match="did you mean 'mean'"):
        F.mse_loss(x, x, reduction="meen")
    with pytest.raises(mr.ArgumentError, match="huber_loss: delta"):
        F.huber_loss(x, x, delta=0.0)
    with pytest.raises(mr.ArgumentError, match="label_smoothing"):
        F.cross_entropy(x, np.array([0, 1]), label_smoothing=1.5)
