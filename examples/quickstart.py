"""A first look at minireg: autograd, a gradient check, and a tiny MLP trained by hand.

    python examples/quickstart.py

Everything here is plain minireg: tensors that record their history, ``backward()``, a finite-
difference gradient check, and a training loop of a few lines (no framework needed).
"""
import numpy as np

import minireg as mr
from minireg import F, nn
from minireg.testing import gradcheck

mr.manual_seed(0)
rng = np.random.default_rng(0)

# 1. Autograd: d/dx sum(tanh(x) * w) = (1 - tanh(x)^2) * w
x = mr.tensor([0.5, -1.0, 2.0], requires_grad=True)
w = mr.tensor([1.0, 2.0, 3.0])
(F.tanh(x) * w).sum().backward()
print("x.grad           =", x.grad.numpy())
print("by hand          =", (1 - np.tanh([0.5, -1.0, 2.0]) ** 2) * [1.0, 2.0, 3.0])

# 2. A gradient check of a small network against central finite differences (float64)
layer = nn.Linear(3, 2, dtype="float64")
inputs = mr.tensor(rng.normal(size=(4, 3)))
result = gradcheck(lambda x, w, b: F.log_softmax(F.linear(x, w, b), axis=1), [inputs, layer.weight, layer.bias])
print("gradcheck        :", result)

# 3. A tiny MLP learns XOR-like data (two interleaved half-moons of points), with a hand-written loop
n = 400
angle = rng.uniform(0, np.pi, n)
label = rng.integers(0, 2, n)
points = np.stack([np.cos(angle) + label, np.sin(angle) * (1 - 2 * label) + 0.5 * label], axis=1)
points = (points + rng.normal(scale=0.1, size=points.shape)).astype(np.float32)
data, targets = mr.tensor(points), mr.tensor(label)

model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2))
learning_rate = 0.5
for step in range(301):
    logits = model(data)
    log_probs = F.log_softmax(logits, axis=1)
    loss = -(log_probs[np.arange(n), label]).mean()      # cross entropy, written out
    model.zero_grad()
    loss.backward()
    with mr.no_grad():
        for p in model.parameters():
            p.data = p.data - learning_rate * p.grad.data
    if step % 100 == 0:
        accuracy = (logits.numpy().argmax(axis=1) == label).mean()
        print(f"step {step:3d}  loss {loss.item():.4f}  accuracy {accuracy:.3f}")
