"""Training-step pieces shared by the bench scripts: the NumPy Adam baseline, a minireg step factory,
and the MLP step in both forms. Import after ``_common.parse_args`` (thread settings come first)."""
import numpy as np

import minireg as mr
from minireg import F, nn
from minireg.optim import Adam


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


def softmax_ce_grad(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(labels)), labels]).mean()
    p[np.arange(len(labels)), labels] -= 1
    return loss, p / len(labels)


def engine_step(model, x, y):
    """One minireg training step (forward, cross entropy, backward, Adam) on fixed data, as a closure."""
    optimizer, inputs, labels = Adam(model.parameters(), lr=1e-3), mr.tensor(x), mr.tensor(y)

    def step():
        loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def mlp_steps(rng):
    """(minireg step, NumPy step) for the MLP 64-256-256-10, batch 128, Adam(1e-3), from the same weights."""
    mr.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    params = [p.numpy().copy() for p in mlp.parameters()]        # W1 b1 W2 b2 W3 b3, same start
    x = rng.random((128, 64), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    numpy_adam = NumpyAdam(params)

    def numpy_step():
        w1, b1, w2, b2, w3, b3 = params
        h1 = np.maximum(x @ w1.T + b1, 0)
        h2 = np.maximum(h1 @ w2.T + b2, 0)
        loss, g = softmax_ce_grad(h2 @ w3.T + b3, y)
        gw3, gb3 = g.T @ h2, g.sum(0)
        g = (g @ w3) * (h2 > 0)
        gw2, gb2 = g.T @ h1, g.sum(0)
        g = (g @ w2) * (h1 > 0)
        numpy_adam.step([g.T @ x, g.sum(0), gw2, gb2, gw3, gb3])
        return loss
    return engine_step(mlp, x, y), numpy_step
