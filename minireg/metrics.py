"""Classification metrics on scores of shape (N, C) (logits or probabilities: only their order matters).

Scores and labels may be Tensors or arrays; the work runs on the scores' backend and only the
final number comes back to the host.
"""
from minireg import check
from minireg.errors import ShapeError
from minireg.losses import class_labels, label_mask
from minireg.tensor import Tensor, tensor


def _scores_and_labels(scores, labels, name):
    scores = scores if isinstance(scores, Tensor) else tensor(scores)
    if scores.ndim != 2:
        raise ShapeError(f"{name}: expected scores of shape (N, C), got shape {scores.shape}")
    n, c = scores.shape
    if n == 0:
        raise ShapeError(f"{name}: no samples (scores of shape {scores.shape})")
    return scores, class_labels(labels, n, c, scores.backend, name)


def _mean(hits, backend):
    xp = backend.xp
    return float(backend.to_numpy(xp.mean(xp.astype(hits, xp.float64))))


def accuracy(scores, labels):
    """Share of rows whose highest score is at the label; ties go to the lowest class index (argmax)."""
    scores, labels = _scores_and_labels(scores, labels, "accuracy")
    xp = scores.backend.xp
    return _mean(xp.argmax(scores.data, axis=1) == xp.astype(labels, xp.int64), scores.backend)


def top_k_accuracy(scores, labels, k=5):
    """Share of rows whose label's score is among the k largest.

    Ties count in the label's favour: a row is correct when fewer than ``k`` classes score strictly
    higher than the label, so equal scores never push the label out of the top k.
    """
    scores, labels = _scores_and_labels(scores, labels, "top_k_accuracy")
    c = scores.shape[1]
    k = check.integer(f"top_k_accuracy: k (for {c} classes)", k, low=1, high=c)
    xp, data = scores.backend.xp, scores.data
    mask = label_mask(labels, c, scores.backend)
    label_score = xp.max(xp.where(mask, data, xp.full_like(data, -xp.inf)), axis=1, keepdims=True)
    higher = xp.sum(xp.astype(data > label_score, xp.int64), axis=1)
    return _mean(higher < k, scores.backend)
