"""Plain NumPy references for ops NumPy lacks (written independently of minireg's code)."""
import numpy as np


def logsumexp_ref(a, axis=None, keepdims=False):
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def softmax_ref(a, axis=-1):
    e = np.exp(a - np.max(a, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax_ref(a, axis=-1):
    return np.log(softmax_ref(a, axis))


def softplus_ref(a):
    return np.log1p(np.exp(-np.abs(a))) + np.maximum(a, 0)


def sigmoid_ref(a):
    return 1.0 / (1.0 + np.exp(-a))


def elu_ref(a, alpha):
    return np.where(a > 0, a, alpha * (np.exp(a) - 1))
