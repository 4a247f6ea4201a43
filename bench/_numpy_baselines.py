"""NumPy baselines shared by the bench scripts. Import after ``_common.parse_args`` (thread settings)."""
import numpy as np


class NumpyAdam:
    """Adam with in-place updates, as a careful NumPy programmer writes it."""

    def __init__(self, params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.params, self.lr, self.b1, self.b2, self.eps, self.t = params, lr, b1, b2, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        step = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= step * m / (np.sqrt(v) + self.eps * np.sqrt(1 - self.b2 ** self.t))
