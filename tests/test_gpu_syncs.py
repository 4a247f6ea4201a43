"""No host round-trips inside a training step: the counting fake device (minireg.testing.devices)
stands in for a GPU and counts, by CuPy's rules, every device-to-host read (sync), every copy of
host data to the device and every refused implicit conversion.

Each step runs once to warm up (lazy optimizer state, first-call work), then once counted. The
budget of a step is zero copies, zero implicit conversions and one sync per optimizer step: its
check that every gradient is finite before any weight changes (one fused flag, one read). Losses
stay on the device until the caller reads them (at logging time), random numbers come from the
device's own stream, and label checks travel with the next read.
"""
import itertools

import numpy as np
import pytest

import minireg as mr
from minireg import F, nn
from minireg.gan import GANTrainer, dcgan_discriminator, dcgan_generator
from minireg.gan.penalties import R1
from minireg.testing.devices import fake_device

def counted_step(device, step):
    """Warm up, then count one call of ``step``; returns (counts, step's result)."""
    step()
    with device.counting() as counts:
        result = step()
    return counts, result


def assert_within_budget(counts, optimizer_steps):
    got = (counts.syncs, counts.copies_to_device, counts.implicit)
    assert got == (optimizer_steps, 0, 0), counts.report()
    assert all("minireg/optim/optimizer.py" in where for kind, _, where in counts.events), counts.report()


def device_batch(device, rng, shape, classes):
    return (mr.tensor(device.asarray(rng.normal(size=shape).astype(np.float32))),
            mr.tensor(device.asarray(rng.integers(0, classes, size=shape[0]))))


@pytest.fixture
def device():
    mr.manual_seed(0)
    with fake_device() as device:
        yield device


def supervised_step(model, optimizer, x, y):
    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss
    return step


def test_mlp_step_with_dropout_makes_no_host_round_trip(device):
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 256), nn.ReLU(),
                          nn.Dropout(0.5), nn.Linear(256, 10))
    x, y = device_batch(device, np.random.default_rng(0), (128, 64), 10)
    optimizer = mr.optim.AdamW(model.parameters(), lr=1e-3)
    counts, loss = counted_step(device, supervised_step(model, optimizer, x, y))
    assert_within_budget(counts, optimizer_steps=1)
    assert model[0].weight.backend is device and loss.backend is device
    with device.counting() as read:
        value = loss.item()                # logging: one read
    assert np.isfinite(value) and read.syncs == 1 and read.implicit == 0, read.report()


def test_cnn_step_makes_no_host_round_trip(device):
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    x, y = device_batch(device, np.random.default_rng(1), (4, 1, 28, 28), 10)
    optimizer = mr.optim.Adam(model.parameters(), lr=1e-3)
    counts, _ = counted_step(device, supervised_step(model, optimizer, x, y))
    assert_within_budget(counts, optimizer_steps=1)


def test_dcgan_step_with_r1_makes_no_host_round_trip(device):
    G = dcgan_generator(noise_dim=16, image_size=16, channels=1, base_width=8)
    D = dcgan_discriminator(image_size=16, channels=1, base_width=8)
    g_opt = mr.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = mr.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    r1 = R1(gamma=10.0)
    real = mr.tensor(device.asarray(np.random.default_rng(2).uniform(-1, 1, size=(8, 1, 16, 16)).astype(np.float32)))

    def noise():
        return mr.randn(8, 16)                     # drawn from the device's stream

    def step():
        with mr.no_grad():
            fake = G(noise())
        d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean() + r1(D, real)
        d_opt.zero_grad()
        d_loss.backward()                          # R1: double backward through the convolutions
        d_opt.step()
        g_loss = F.softplus(-D(G(noise()))).mean()
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
        return d_loss, g_loss

    counts, (d_loss, g_loss) = counted_step(device, step)
    assert_within_budget(counts, optimizer_steps=2)
    assert np.isfinite(d_loss.item()) and np.isfinite(g_loss.item())


def test_gan_trainer_step_with_r1_makes_no_host_round_trip(device):
    G = dcgan_generator(noise_dim=16, image_size=16, channels=1, base_width=8)
    D = dcgan_discriminator(image_size=16, channels=1, base_width=8)
    real = mr.tensor(device.asarray(np.random.default_rng(3).uniform(-1, 1, size=(8, 1, 16, 16)).astype(np.float32)))
    trainer = GANTrainer(G, D, penalties=[R1(gamma=10.0)], num_eval_samples=8)
    batches = itertools.repeat((real,))
    counts, logs = counted_step(device, lambda: trainer.train_step(batches))
    assert_within_budget(counts, optimizer_steps=2)
    assert all(device.owns(value) for value in logs.values())     # read later, at logging time


def test_fit_reads_the_losses_once_per_epoch(device):
    from minireg.data import DataLoader, TensorDataset
    from minireg.training import Trainer
    x, y = device_batch(device, np.random.default_rng(4), (512, 64), 10)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10))
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)
    trainer = Trainer(model, mr.optim.AdamW(model.parameters(), lr=1e-3), F.cross_entropy, verbose=0)
    trainer.fit(loader, 1)
    with device.counting() as counts:
        trainer.fit(loader, 1)
    steps = len(loader)
    # per step: the optimizer's gradient check and one upload of the batch's (host-shuffled) indices;
    # per epoch: one read of the summed losses
    assert (counts.syncs, counts.copies_to_device, counts.implicit) == (steps + 1, steps, 0), counts.report()


def test_dropout_masks_and_noise_come_from_the_device_stream(device):
    x = mr.tensor(device.asarray(np.ones((64, 64), dtype=np.float32)))
    with device.counting() as counts:
        masked = F.dropout(x, 0.5)
        z = mr.randn(4, 3)
    assert counts.copies_to_device == 0 and counts.syncs == 0, counts.report()
    assert z.backend is device and masked.backend is device
    kept = masked.numpy()
    assert set(np.unique(kept)) <= {0.0, 2.0} and 0.3 < (kept > 0).mean() < 0.7


def test_the_counter_sees_each_kind_of_round_trip(device):
    x = mr.tensor(device.asarray(np.array([1.0, -2.0, 3.0])))
    with device.counting() as counts:
        x.numpy()
        float(x.data[0])
        bool(x.data[1] > 0)
        x.data[x.data > 0]                         # boolean mask: CuPy reads the count back
        device.asarray(np.zeros(3))
        with pytest.raises(RuntimeError):
            np.asarray(x.data)
    assert (counts.syncs, counts.copies_to_device, counts.implicit) == (4, 1, 1), counts.report()
    assert "tests/test_gpu_syncs.py" in counts.report()
