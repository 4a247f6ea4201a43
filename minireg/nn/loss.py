"""Loss modules: thin Modules around the functional losses of ``minireg.losses`` (PyTorch's names).

    criterion = CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(model(x), y)
"""
from minireg import check, losses
from minireg.nn.module import Module


class _Loss(Module):
    """Calls ``function(input, target, reduction=..., **options)``; options are stored as attributes."""
    function = None

    def __init__(self, reduction="mean", **options):
        super().__init__()
        losses._check_reduction(reduction)
        self.reduction = reduction
        self._options = tuple(options)
        for name, value in options.items():
            setattr(self, name, value)

    def forward(self, input, target):
        options = {name: getattr(self, name) for name in self._options}
        return type(self).function(input, target, reduction=self.reduction, **options)

    def extra_repr(self):
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in ("reduction",) + self._options)


class MSELoss(_Loss):
    """Squared error, ``minireg.losses.mse_loss``."""
    function = staticmethod(losses.mse_loss)


class L1Loss(_Loss):
    """Absolute error, ``minireg.losses.l1_loss``."""
    function = staticmethod(losses.l1_loss)


class HuberLoss(_Loss):
    """Huber loss with threshold ``delta``, ``minireg.losses.huber_loss``."""
    function = staticmethod(losses.huber_loss)

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction, delta=check.positive("HuberLoss: delta", delta))


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against labels or class probabilities, ``minireg.losses.cross_entropy``."""
    function = staticmethod(losses.cross_entropy)

    def __init__(self, reduction="mean", label_smoothing=0.0):
        label_smoothing = check.probability("CrossEntropyLoss: label_smoothing", label_smoothing, allow_one=True)
        super().__init__(reduction, label_smoothing=label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities, ``minireg.losses.nll_loss``."""
    function = staticmethod(losses.nll_loss)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid binary cross-entropy of logits, ``minireg.losses.binary_cross_entropy_with_logits``."""
    function = staticmethod(losses.binary_cross_entropy_with_logits)
