"""GANTrainer on real digits: grids and checkpoints, the n_critic schedule, weight clipping, every
penalty in its place, conditional GANs, the NaN guard, and bad input refused before training; the
PNG grid writer."""
import math
import re

import numpy as np
import pytest

import minireg as mr
from minireg.data import DataLoader, TensorDataset
from minireg.datasets import load_digits
from minireg.errors import NonFiniteError, ShapeError
from minireg.gan import (DRAGAN, R1, R2, ConsistencyRegularization, FeatureMatching, GradientPenalty, InstanceNoise,
                         LeCam, mlp_discriminator, mlp_generator)
from minireg.gan.plots import image_grid, read_png, save_image_grid, write_png
from minireg.gan.trainer import GANTrainer
from minireg.optim import RMSprop
from minireg.reg import WeightClip
from minireg.reg.penalties import Orthogonal


@pytest.fixture(scope="module")
def digits():
    (x, y), _ = load_digits()
    return (x * 2 - 1).astype(np.float32), y


def loader(digits, batch_size=32, labels=True):
    x, y = digits
    arrays = (x, y) if labels else (x,)
    return DataLoader(TensorDataset(*arrays), batch_size=batch_size, shuffle=True, drop_last=True,
                      generator=np.random.default_rng(0))


def small_gan(condition_dim=0, noise_dim=8, hidden=(32,), **d_options):
    mr.manual_seed(0)
    G = mlp_generator(noise_dim=noise_dim, hidden=hidden, out_dim=64, condition_dim=condition_dim)
    D = mlp_discriminator(in_dim=64, hidden=hidden, condition_dim=condition_dim, **d_options)
    return G, D


def assert_grid(shape, rows, cols, size=8):
    """A grid of rows x cols images of size x size pixels, each enlarged by one integer factor, 1 px padding."""
    cell = (shape[0] - 1) // rows
    assert (cell - 1) % size == 0 and cell > size, shape
    assert shape[:2] == (rows * cell + 1, cols * cell + 1), shape


def state(*modules):
    return [{k: np.array(v) for k, v in m.state_dict().items()} for m in modules]


def assert_same_state(a, b):
    for sa, sb in zip(a, b):
        assert sa.keys() == sb.keys()
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


class CountingSteps:
    """Wraps an optimizer's step to count the calls."""

    def __init__(self, optimizer):
        self.count, self._step = 0, optimizer.step
        optimizer.step = self

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self._step(*args, **kwargs)


def test_trainer_writes_grids_and_checkpoints_and_resumes(digits, tmp_path):
    G, D = small_gan()
    trainer = GANTrainer(G, D, out_dir=str(tmp_path), sample_every=3, checkpoint_every=3, verbose=0)
    history = trainer.fit(loader(digits), 6)
    assert trainer.step == 6 and len(history["d_loss"]) == len(history["g_loss"]) == 6
    assert all(math.isfinite(v) for v in history["d_loss"] + history["g_loss"])
    for step in (3, 6):
        grid = read_png(tmp_path / "samples" / f"step_{step:06d}.png")
        assert_grid(grid.shape, 8, 8)                         # 64 samples of 8x8 pixels
        assert grid.std() > 0
    # the checkpoint restores both networks, both optimizers, the step and the history
    G2, D2 = small_gan()
    resumed = GANTrainer(G2, D2, verbose=0)
    assert resumed.load_checkpoint(str(tmp_path)) == 6
    assert_same_state(state(G, D), state(G2, D2))
    assert resumed.history["g_loss"] == pytest.approx(history["g_loss"])
    assert resumed.g_optimizer.state_dict()["state"].keys() == trainer.g_optimizer.state_dict()["state"].keys()
    resumed.fit(loader(digits), 1)
    assert resumed.step == 7


def test_fixed_evaluation_noise_gives_the_same_samples(digits):
    G, D = small_gan()
    trainer = GANTrainer(G, D, eval_noise_seed=3, verbose=0)
    a, b = trainer.sample(16).numpy(), trainer.sample(16).numpy()
    np.testing.assert_array_equal(a, b)
    other = GANTrainer(G, D, eval_noise_seed=3, verbose=0)
    np.testing.assert_array_equal(other.eval_noise.numpy(), trainer.eval_noise.numpy())
    assert trainer.generate(50, seed=1).shape == (50, 64)


@pytest.mark.parametrize("n_critic", [1, 3])
def test_n_critic_discriminator_steps_per_generator_step(digits, n_critic):
    G, D = small_gan()
    trainer = GANTrainer(G, D, loss="wgan", n_critic=n_critic, verbose=0)
    d_steps, g_steps = CountingSteps(trainer.d_optimizer), CountingSteps(trainer.g_optimizer)
    trainer.fit(loader(digits), 4)
    assert (d_steps.count, g_steps.count) == (4 * n_critic, 4)
    d_param = next(iter(D.parameters()))
    g_param = next(iter(G.parameters()))
    assert trainer.d_optimizer.state[d_param]["step"] == 4 * n_critic
    assert trainer.g_optimizer.state[g_param]["step"] == 4
    assert all(p.requires_grad for p in D.parameters())          # D is unfrozen after each G step


def test_weight_clipping_keeps_every_critic_parameter_in_the_box(digits):
    c = 0.01
    G, D = small_gan()
    free = GANTrainer(G, D, loss="wgan", n_critic=2, d_optimizer=RMSprop(D.parameters(), lr=5e-3), verbose=0)
    free.fit(loader(digits), 5)
    assert max(float(np.abs(p.numpy()).max()) for p in D.parameters()) > 2 * c      # it would leave the box
    G, D = small_gan()
    trainer = GANTrainer(G, D, loss="wgan", n_critic=2, d_optimizer=RMSprop(D.parameters(), lr=5e-3),
                         d_constraints=[WeightClip(c, select=lambda p: True)], verbose=0)
    trainer.fit(loader(digits), 5)
    for name, p in D.named_parameters():
        assert np.abs(p.numpy()).max() <= c * (1 + 1e-6), name
    assert any(np.isclose(np.abs(p.numpy()).max(), c) for p in D.parameters())


def test_every_penalty_goes_to_its_place(digits):
    G, D = small_gan()
    noise = InstanceNoise(0.1, anneal_steps=10)
    lazy = R1(gamma=1.0, lazy_interval=2)
    translate = ConsistencyRegularization(1.0, augment=lambda x: x * 0.9)
    trainer = GANTrainer(G, D, penalties=[GradientPenalty(1.0), DRAGAN(1.0), lazy, R2(1.0), translate, LeCam(0.3),
                                          noise, FeatureMatching(1.0)],
                         g_penalties=[Orthogonal(1e-4)], verbose=0)
    history = trainer.fit(loader(digits), 3)
    for key in ("d/GradientPenalty", "d/DRAGAN", "d/R2", "d/ConsistencyRegularization", "d/LeCam",
                "g/Orthogonal", "g/FeatureMatching"):
        assert len(history[key]) == 3 and all(math.isfinite(v) and v >= 0 for v in history[key]), key
    assert [math.isfinite(v) for v in history["d/R1"]] == [True, False, True]     # lazy: steps 0 and 2 only
    assert noise.steps == 3 and trainer.noise_layers == [noise]
    assert "d/FeatureMatching" not in history and "d/InstanceNoise" not in history


def test_conditional_gan_feeds_one_hot_labels_to_both_networks(digits, tmp_path):
    G, D = small_gan(condition_dim=10, conditioning="projection")
    seen = []
    trainer = GANTrainer(G, D, penalties=[lambda D_, real, fake, c: seen.append(c.numpy()) or None],
                         num_eval_samples=20, out_dir=str(tmp_path), sample_every=2, verbose=0)
    trainer.fit(loader(digits), 2)
    c = seen[0]
    assert c.shape == (32, 10) and np.all(c.sum(axis=1) == 1) and set(np.unique(c)) == {0.0, 1.0}
    np.testing.assert_array_equal(trainer.eval_labels, np.arange(20) % 10)
    grid = read_png(tmp_path / "samples" / "step_000002.png")
    assert_grid(grid.shape, 2, 10)                       # one column per class
    samples = trainer.generate(30, labels=np.full(30, 7), seed=0)
    assert samples.shape == (30, 64)


def test_a_custom_condition_function(digits):
    G, D = small_gan(condition_dim=2)
    parity = lambda labels: np.stack([labels.numpy() % 2, labels.numpy() >= 5], axis=1).astype(np.float32)
    trainer = GANTrainer(G, D, condition=parity, num_eval_samples=8, verbose=0)
    with pytest.raises(ValueError, match="pass labels"):
        trainer.generate(4)
    trainer.fit(loader(digits), 2)
    assert trainer.eval_labels.shape == (8,) and trainer.sample().shape == (8, 64)
    assert trainer.generate(5, labels=np.arange(5)).shape == (5, 64)
    bad = GANTrainer(*small_gan(condition_dim=3), condition=parity, verbose=0)
    with pytest.raises(ShapeError, match=r"conditions of shape \(32, 2\).*\(N, 3\)"):
        bad.fit(loader(digits), 1)


def test_nan_guard_names_the_step_and_keeps_the_weights_finite(digits):
    G, D = small_gan()

    def poison(trainer):
        bias = trainer.D.head.bias
        bias.data[...] = np.nan                 # D outputs NaN from now on
        return {}
    trainer = GANTrainer(G, D, eval_every=2, eval_fn=poison, n_critic=2, verbose=0)
    with pytest.raises(NonFiniteError, match=r"discriminator loss became nan at step 3, critic iteration 1/2"):
        trainer.fit(loader(digits), 5)
    assert trainer.step == 2
    assert all(np.isfinite(p.numpy()).all() for p in G.parameters())

    G, D = small_gan()
    trainer = GANTrainer(G, D, g_penalties=[lambda G_, D_, real, fake, c: (
        mr.tensor(float("inf")) if trainer.step == 1 else None)], verbose=0)
    with pytest.raises(NonFiniteError, match=r"generator penalty <lambda> became inf at step 2"):
        trainer.fit(loader(digits), 3)


def test_bad_input_is_refused_before_any_parameter_changes(digits):
    G, D = small_gan(noise_dim=8)
    before = state(G, D)
    with pytest.raises(ShapeError, match=r"noise_dim=10.*noise of dimension 8"):
        GANTrainer(G, D, noise_dim=10)
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        GANTrainer(G, D, penalties=[GradientPenalty(-1.0)])
    with pytest.raises(ValueError, match="n_critic must be an integer >= 1"):
        GANTrainer(G, D, n_critic=0)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        GANTrainer(G, D, loss="wasserstein")
    # images whose shape is not the generator's output
    x, y = digits
    trainer = GANTrainer(G, D, verbose=0)
    d_steps = CountingSteps(trainer.d_optimizer)
    images = DataLoader(TensorDataset(x.reshape(-1, 1, 8, 8), y), batch_size=32)
    with pytest.raises(ShapeError, match=re.escape("images of shape (1, 8, 8) per sample, but the generator "
                                                   "produces (64,)")):
        trainer.fit(images, 2)
    cropped = DataLoader(TensorDataset(x[:, :49], y), batch_size=32)
    with pytest.raises(ShapeError, match=r"\(49,\).*\(64,\)"):
        trainer.fit(cropped, 2)
    unscaled = DataLoader(TensorDataset(x * 8 + 8, y), batch_size=32)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        trainer.fit(unscaled, 2)
    assert d_steps.count == 0 and trainer.step == 0
    assert_same_state(before, state(G, D))


def test_bad_conditions_are_refused_before_training(digits):
    G, D = small_gan(condition_dim=5)
    before = state(G, D)
    with pytest.raises(ShapeError, match=r"num_classes=10 have size 10.*condition of size 5"):
        GANTrainer(G, D, num_classes=10)
    trainer = GANTrainer(G, D, verbose=0)
    with pytest.raises(ShapeError, match=r"labels span 0\.\.9.*size 5"):
        trainer.fit(loader(digits), 1)
    with pytest.raises(ValueError, match="needs labels"):
        trainer.fit(loader(digits, labels=False), 1)
    assert_same_state(before, state(G, D))
    unconditional_d = mlp_discriminator(in_dim=64, hidden=(32,))
    with pytest.raises(ShapeError, match="condition of size 5 but the discriminator one of size 0"):
        GANTrainer(G, unconditional_d)
    with pytest.raises(ShapeError, match="unconditional"):
        GANTrainer(*small_gan(), condition="one_hot")


def test_verbose_levels(digits, capsys):
    G, D = small_gan()
    GANTrainer(G, D, verbose=2, log_every=2).fit(loader(digits), 4)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    GANTrainer(G, D, verbose=0).fit(loader(digits), 2)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbose"):
        GANTrainer(G, D, verbose=3)


def test_image_grid_layout_and_png_round_trip(tmp_path):
    images = np.linspace(-1, 1, 5 * 4).reshape(5, 1, 2, 2)
    grid = image_grid(images, ncols=2, padding=1)
    assert grid.shape == (3 * 3 + 1, 2 * 3 + 1) and grid.dtype == np.uint8
    assert grid[1, 1] == 0 and grid[0, 0] == 255                # -1 -> black, padding white
    np.testing.assert_array_equal(grid[1:3, 1:3], np.round((images[0, 0] + 1) * 127.5))
    path = write_png(str(tmp_path / "g.png"), grid)
    np.testing.assert_array_equal(read_png(path), grid)
    rgb = image_grid(np.zeros((3, 3, 4, 4)), scale=2)
    assert rgb.shape == (2 * 9 + 1, 2 * 9 + 1, 3)
    np.testing.assert_array_equal(read_png(write_png(str(tmp_path / "c.png"), rgb)), rgb)
    flat = save_image_grid(np.zeros((4, 64)), str(tmp_path / "flat.png"))
    assert_grid(read_png(flat).shape, 2, 2)
    with pytest.raises(ValueError, match="not square"):
        image_grid(np.zeros((2, 10)))


# -- exact resume in a fresh process, and all-or-nothing loading (issue 9, item 18) ----------------
GAN_RESUME_SCRIPT = r"""
import json, sys
import numpy as np
import minireg as mr
from minireg import nn
from minireg.data import DataLoader, TensorDataset
from minireg.datasets import load_digits
from minireg.gan import R1, InstanceNoise, mlp_generator
from minireg.gan.models import Discriminator
from minireg.gan.trainer import GANTrainer

mode, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
mr.manual_seed(0 if mode != "resume" else 321)
(x, _), _ = load_digits()
data = DataLoader(TensorDataset((x[:200] * 2 - 1).astype(np.float32)), batch_size=32, shuffle=True, drop_last=True)
G = mlp_generator(noise_dim=8, hidden=(32,), out_dim=64)
D = Discriminator(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3)), nn.Linear(32, 1), (64,))
trainer = GANTrainer(G, D, n_critic=2, penalties=[R1(1.0, lazy_interval=2), InstanceNoise(0.1, anneal_steps=20)],
                     out_dir=out, checkpoint_every=3, verbose=0)
if mode == "resume":
    trainer.load_checkpoint()
history = trainer.fit(data, steps)
print(json.dumps({k: [repr(v) for v in history[k]] for k in ("d_loss", "g_loss", "d_real", "d/R1")}))
"""


def test_gan_trainer_resumed_in_a_fresh_process_repeats_the_uninterrupted_run_bitwise(tmp_path):
    import json
    import os
    import subprocess
    import sys

    def run(*args):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", GAN_RESUME_SCRIPT, *map(str, args)], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])
    # 6 batches per epoch, 2 per step: the checkpoint at step 4 is in the middle of the second epoch
    straight = run("full", tmp_path / "straight", 8)
    first = run("part", tmp_path / "run", 4)
    resumed = run("resume", tmp_path / "run", 4)
    assert first["d_loss"] == straight["d_loss"][:4]
    assert resumed == straight
    assert len(set(straight["g_loss"])) == 8


def test_a_bad_discriminator_checkpoint_leaves_both_networks_untouched(digits, tmp_path):
    G, D = small_gan()
    trainer = GANTrainer(G, D, out_dir=str(tmp_path), verbose=0)
    trainer.fit(loader(digits), 2)
    trainer.save_checkpoint()
    _, d_path = trainer.checkpoint_paths()
    with open(d_path, "r+b") as f:             # truncate the discriminator's file
        f.truncate(300)
    G2, D2 = small_gan(hidden=(16,))
    other = GANTrainer(G2, D2, verbose=0)
    before = state(G2, D2)
    with pytest.raises(mr.errors.CheckpointError, match="truncated or corrupt"):
        other.load_checkpoint(str(tmp_path))
    assert_same_state(before, state(G2, D2))
    assert other.step == 0 and other.history["d_loss"] == []


def test_a_generator_of_another_shape_is_refused_and_nothing_changes(digits, tmp_path):
    G, D = small_gan()
    trainer = GANTrainer(G, D, out_dir=str(tmp_path), verbose=0)
    trainer.fit(loader(digits), 1)
    trainer.save_checkpoint()
    G2, _ = small_gan(hidden=(16,))
    _, D2 = small_gan()
    other = GANTrainer(G2, D2, verbose=0)
    before = state(G2, D2)
    with pytest.raises(mr.errors.CheckpointError, match="generator"):
        other.load_checkpoint(str(tmp_path))
    assert_same_state(before, state(G2, D2))


def test_outputs_take_device_arrays_without_host_round_trips(digits):
    from minireg.testing.devices import fake_device
    device = fake_device()
    G, D = small_gan(condition_dim=10)
    G.to(device)
    D.to(device)
    trainer = GANTrainer(G, D, num_eval_samples=10, verbose=0)
    noise = device.asarray(np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))
    condition = device.asarray(np.eye(10, dtype=np.float32)[:3])
    assert trainer.sample(noise=noise, condition=condition).backend is device
    labels = device.asarray(np.arange(12) % 10)
    assert trainer.generate(12, labels=labels, seed=0, batch_size=5).shape == (12, 64)
    cpu_G, cpu_D = small_gan()
    with pytest.raises(mr.errors.DeviceError, match="got data on fake:device1, but the generator is on cpu"):
        GANTrainer(cpu_G, cpu_D, verbose=0).sample(noise=noise)


def test_per_step_values_are_read_in_bulk_and_match(digits, monkeypatch):
    G, D = small_gan()
    trainer = GANTrainer(G, D, verbose=0)
    backend = next(iter(G.parameters())).backend
    reads = []
    original = type(backend).to_numpy
    monkeypatch.setattr(type(backend), "to_numpy", lambda self, a: reads.append(np.shape(a)) or original(self, a))
    history = trainer.fit(loader(digits), 5)
    stacked = [shape for shape in reads if shape != ()]
    assert stacked == [(5 * 4,)]            # d_loss, g_loss, d_real, d_fake of 5 steps in one read
    assert all(isinstance(v, float) for v in history["d_loss"] + history["g_loss"])
