"""Small networks learn on the real data sets within seconds, and a conv + batch-norm network is
twice differentiable (what gradient penalties need)."""
import os

import numpy as np
import pytest

import minireg as mr
from minireg import nn
from minireg.data import DataLoader, TensorDataset
from minireg.datasets import load_digits, load_fashion_mnist
from minireg.losses import cross_entropy
from minireg.metrics import accuracy
from minireg.optim import Adam
from minireg.testing import gradgradcheck
from minireg.training import fit

FASHION = "/usr/share/datasets/fashion-mnist"


def small_cnn(size):
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * (size // 2) ** 2, 10))


def test_cnn_learns_digits():
    mr.manual_seed(0)
    (x_train, y_train), (x_test, y_test) = load_digits(flatten=False)
    model = small_cnn(8)
    history = fit(model, Adam(model.parameters(), lr=3e-3), cross_entropy,
                  DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True), epochs=3,
                  val_loader=DataLoader(TensorDataset(x_test, y_test), batch_size=360),
                  metrics={"accuracy": accuracy}, verbose=0)
    assert history["val_accuracy"][-1] > 0.85


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="needs the Debian package dataset-fashion-mnist")
def test_cnn_learns_fashion_mnist_on_a_subset():
    mr.manual_seed(0)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    model = small_cnn(28)
    history = fit(model, Adam(model.parameters(), lr=3e-3), cross_entropy,
                  DataLoader(TensorDataset(x_train[:3000], y_train[:3000]), batch_size=64, shuffle=True),
                  epochs=1, val_loader=DataLoader(TensorDataset(x_test[:1000], y_test[:1000]), batch_size=500),
                  metrics={"accuracy": accuracy}, verbose=0)
    assert history["val_accuracy"][-1] > 0.6          # chance is 0.1


def test_double_backward_through_conv_discriminator_with_batch_norm():
    mr.manual_seed(1)
    disc = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype="float64"), nn.BatchNorm2d(2, dtype="float64"),
                         nn.LeakyReLU(negative_slope=0.2), nn.Flatten(), nn.Linear(2 * 4 * 4, 1, dtype="float64"))
    x = mr.tensor(np.random.default_rng(0).normal(size=(3, 1, 4, 4)))
    gradgradcheck(lambda x: disc(x), [x], atol=1e-4, rtol=1e-3)
    # the gradient penalty itself is differentiable w.r.t. the discriminator's weights
    x.requires_grad_()
    g, = mr.grad(disc(x).sum(), x, create_graph=True)
    penalty = ((g * g).sum() - 1.0) ** 2
    penalty.backward()
    weights = [disc[0].weight, disc[1].weight, disc[4].weight]
    assert all(w.grad is not None and np.all(np.isfinite(w.grad.numpy())) and np.any(w.grad.numpy()) for w in weights)
    assert disc[4].bias.grad is None      # d(dD/dx)/d(last bias) = 0: no path, as in PyTorch
