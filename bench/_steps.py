"""Training-step pieces shared by the bench scripts: the NumPy Adam baseline, a minireg step factory,
and the MLP and CNN steps in both forms. Import after ``_common.parse_args`` (thread settings come first)."""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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


# ---- the CNN: conv32-pool-conv64-pool-dense128-dense10, 3x3 convs with padding 1, 28x28 inputs ------
def _im2col(x, pad):
    """(N, C, H, W) -> (N*H*W, C*9) columns of 3x3 windows with ``pad`` zero padding."""
    n, c, h, w = x.shape
    windows = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))), (3, 3), axis=(2, 3))
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)


def _conv_forward(x, w, b):
    n, _, h, wd = x.shape
    cols = _im2col(x, 1)
    out = cols @ w.reshape(w.shape[0], -1).T + b
    return out.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def _conv_backward(gout, cols, w, need_dx):
    n, o, h, wd = gout.shape
    g2 = gout.transpose(0, 2, 3, 1).reshape(-1, o)
    gw, gb = (g2.T @ cols).reshape(w.shape), g2.sum(0)
    if not need_dx:
        return None, gw, gb
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)              # full convolution with the flipped kernel
    dx = _im2col(gout, 1) @ flipped.reshape(flipped.shape[0], -1).T
    return dx.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), gw, gb


def _pool_forward(x):
    n, c, h, w = x.shape
    r = x.reshape(n, c, h // 2, 2, w // 2, 2)
    out = r.max(axis=(3, 5))
    return out, r == out[:, :, :, None, :, None]


def _pool_backward(gout, mask):
    n, c, h, _, w, _ = mask.shape
    return (mask * gout[:, :, :, None, :, None]).reshape(n, c, h * 2, w * 2)


def cnn_model():
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn_steps(rng):
    """(minireg step, NumPy step) for the CNN on a batch of 64, Adam(1e-3), from the same weights. The
    NumPy step is im2col (sliding_window_view) + matmul; dx is a full convolution of the padded dout
    with the flipped kernel; max-pool by reshape and max, backward by an equality mask."""
    mr.manual_seed(0)
    cnn = cnn_model()
    params = [p.numpy().copy() for p in cnn.parameters()]
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    numpy_adam = NumpyAdam(params)

    def numpy_step():
        c1w, c1b, c2w, c2b, d1w, d1b, d2w, d2b = params
        a1, cols1 = _conv_forward(x, c1w, c1b)
        p1, m1 = _pool_forward(np.maximum(a1, 0))
        a2, cols2 = _conv_forward(p1, c2w, c2b)
        p2, m2 = _pool_forward(np.maximum(a2, 0))
        flat = p2.reshape(len(x), -1)
        h = np.maximum(flat @ d1w.T + d1b, 0)
        loss, g = softmax_ce_grad(h @ d2w.T + d2b, y)
        gd2w, gd2b = g.T @ h, g.sum(0)
        g = (g @ d2w) * (h > 0)
        gd1w, gd1b = g.T @ flat, g.sum(0)
        g = (g @ d1w).reshape(p2.shape)
        g = _pool_backward(g, m2) * (a2 > 0)
        g, gc2w, gc2b = _conv_backward(g, cols2, c2w, need_dx=True)
        g = _pool_backward(g, m1) * (a1 > 0)
        _, gc1w, gc1b = _conv_backward(g, cols1, c1w, need_dx=False)
        numpy_adam.step([gc1w, gc1b, gc2w, gc2b, gd1w, gd1b, gd2w, gd2b])
        return loss
    return engine_step(cnn, x, y), numpy_step
