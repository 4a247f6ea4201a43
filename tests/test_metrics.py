"""accuracy and top_k_accuracy against NumPy, tie rules, inputs of every kind, errors."""
import numpy as np
import pytest

import minireg as mr
from minireg.metrics import accuracy, top_k_accuracy

rng = np.random.default_rng(1)
SCORES = rng.normal(size=(200, 7))
LABELS = rng.integers(0, 7, size=200)


def np_top_k(scores, labels, k):
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == labels[:, None]).any(axis=1)))


def test_accuracy_matches_numpy(backend):
    expected = float(np.mean(SCORES.argmax(axis=1) == LABELS))
    assert accuracy(mr.tensor(backend.asarray(SCORES)), mr.tensor(backend.asarray(LABELS))) == pytest.approx(expected)
    assert accuracy(mr.tensor(backend.asarray(SCORES)), LABELS) == pytest.approx(expected)


@pytest.mark.parametrize("k", [1, 2, 5, 7])
def test_top_k_accuracy_matches_numpy(k, backend):
    result = top_k_accuracy(mr.tensor(backend.asarray(SCORES)), mr.tensor(backend.asarray(LABELS)), k=k)
    assert result == pytest.approx(np_top_k(SCORES, LABELS, k))
    assert isinstance(result, float)


def test_plain_arrays_probabilities_and_float32_are_accepted():
    probs = np.exp(SCORES) / np.exp(SCORES).sum(axis=1, keepdims=True)
    assert accuracy(probs.astype(np.float32), LABELS.astype(np.int32)) == accuracy(SCORES, LABELS)
    assert top_k_accuracy(probs, LABELS.tolist(), k=3) == pytest.approx(np_top_k(SCORES, LABELS, 3))


def test_top_1_equals_accuracy_without_ties():
    assert top_k_accuracy(SCORES, LABELS, k=1) == accuracy(SCORES, LABELS)


def test_ties():
    scores = np.array([[1.0, 1.0, 0.0],    # label 1 ties with class 0 for the top score
                       [2.0, 1.0, 1.0],    # label 2 ties with class 1 for second place
                       [0.0, 0.0, 0.0]])   # all equal
    labels = np.array([1, 2, 2])
    assert accuracy(scores, labels) == 0.0                   # argmax picks the lowest index
    assert top_k_accuracy(scores, labels, k=1) == pytest.approx(2 / 3)   # ties count for the label
    assert top_k_accuracy(scores, labels, k=2) == 1.0


def test_minus_inf_scores():
    scores = np.array([[0.0, -np.inf, -np.inf], [-np.inf, -np.inf, 1.0]])
    assert top_k_accuracy(scores, np.array([1, 2]), k=2) == 1.0
    assert top_k_accuracy(scores, np.array([1, 2]), k=1) == 0.5
