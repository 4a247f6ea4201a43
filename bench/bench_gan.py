"""MLP-GAN training step of minireg's GANTrainer against the same step hand-written in NumPy.

    python bench/bench_gan.py --threads 1      (and --threads 2, with OMP_WAIT_POLICY=PASSIVE)

One step = one discriminator step + one generator step of the MLP GAN of the GAN literature:
G 100-256-256-784 (LeakyReLU 0.2, tanh), D 784-256-256-1 (LeakyReLU 0.2), batch 128, Adam(2e-4,
betas (0.5, 0.999)) for both, non-saturating loss, fresh noise for each of the two updates, D
frozen during the generator update. Target: within 1.3x of NumPy. A second row times the same
step without the optimizer updates (forward + backward only), where minireg's fused compiled Adam
has no part. Both sides run float32 from the
same initial weights on the same real batch and the same noise, and their first losses are checked
to agree before timing. The MLP classifier step of ``bench_training.py`` (64-256-256-10, batch 128,
Adam) is re-measured in the same run for reference.
"""
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import parse_args, row, timeit  # noqa: E402

args = parse_args(__doc__.splitlines()[0])

import numpy as np  # noqa: E402
from _steps import NumpyAdam, mlp_steps  # noqa: E402

import minireg as mr  # noqa: E402
from minireg.gan import mlp_discriminator, mlp_generator  # noqa: E402
from minireg.gan.trainer import GANTrainer  # noqa: E402
from minireg.optim import Adam  # noqa: E402

BATCH, NOISE, SLOPE = 128, 100, 0.2
rng = np.random.default_rng(0)


# ---- the MLP GAN in NumPy -------------------------------------------------------------------------
def leaky(a):
    return np.maximum(a, SLOPE * a)          # slope < 1


def leaky_grad(g, a):
    return np.where(a > 0, g, SLOPE * g)


def sigmoid(a):
    return 0.5 * (np.tanh(0.5 * a) + 1)


def softplus(a):
    return np.logaddexp(0, a)


def mlp_forward(params, x):
    """Linear-LeakyReLU-Linear-LeakyReLU-Linear (G and D have this shape); returns the output and a cache."""
    w1, b1, w2, b2, w3, b3 = params
    a1 = x @ w1.T + b1
    h1 = leaky(a1)
    a2 = h1 @ w2.T + b2
    h2 = leaky(a2)
    return h2 @ w3.T + b3, (x, a1, h1, a2, h2)


def mlp_backward(params, cache, gout, weights=True, need_dx=False):
    """Gradients of the parameters (``weights``) and of the input (``need_dx``) from dL/doutput."""
    w1, _, w2, _, w3, _ = params
    x, a1, h1, a2, h2 = cache
    g = gout
    grads = [g.T @ h2, g.sum(0)] if weights else None
    g = leaky_grad(g @ w3, a2)
    if weights:
        grads = [g.T @ h1, g.sum(0)] + grads
    g = leaky_grad(g @ w2, a1)
    if weights:
        grads = [g.T @ x, g.sum(0)] + grads
    return grads, (g @ w1 if need_dx else None)


def g_forward(params, z):
    pre, cache = mlp_forward(params, z)
    x = np.tanh(pre)
    return x, (cache, x)


def g_backward(params, cache, gx):
    cache, x = cache
    return mlp_backward(params, cache, gx * (1 - x * x))[0]


def d_forward(params, x):
    logits, cache = mlp_forward(params, x)
    return logits[:, 0], cache


def d_backward(params, cache, glogit, weights=True, need_dx=False):
    """Gradients of the D parameters and/or the input x, from dL/dlogit (N,)."""
    return mlp_backward(params, cache, glogit[:, None], weights, need_dx)


class NumpyGAN:
    def __init__(self, g_params, d_params, real, noise_rng):
        self.g, self.d, self.real, self.rng = g_params, d_params, real, noise_rng
        self.g_opt = NumpyAdam(g_params, lr=2e-4, b1=0.5)
        self.d_opt = NumpyAdam(d_params, lr=2e-4, b1=0.5)

    def noise(self):
        return self.rng.normal(0.0, 1.0, size=(BATCH, NOISE)).astype(np.float32)

    def step(self):
        n = BATCH
        # discriminator: L_D = mean softplus(-D(x)) + mean softplus(D(G(z)))
        fake, _ = g_forward(self.g, self.noise())
        real_logits, real_cache = d_forward(self.d, self.real)
        fake_logits, fake_cache = d_forward(self.d, fake)
        d_loss = softplus(-real_logits).mean() + softplus(fake_logits).mean()
        gr, _ = d_backward(self.d, real_cache, -sigmoid(-real_logits) / n)
        gf, _ = d_backward(self.d, fake_cache, sigmoid(fake_logits) / n)
        self.d_opt.step([a + b for a, b in zip(gr, gf)])
        # generator: L_G = mean softplus(-D(G(z))), D frozen
        fake, g_cache = g_forward(self.g, self.noise())
        fake_logits, fake_cache = d_forward(self.d, fake)
        g_loss = softplus(-fake_logits).mean()
        _, gx = d_backward(self.d, fake_cache, -sigmoid(-fake_logits) / n, weights=False, need_dx=True)
        self.g_opt.step(g_backward(self.g, g_cache, gx))
        return d_loss, g_loss


# ---- the same in minireg ---------------------------------------------------------------------------
mr.manual_seed(0)
G = mlp_generator(noise_dim=NOISE, hidden=(256, 256), out_dim=784)
D = mlp_discriminator(in_dim=784, hidden=(256, 256))
real = np.tanh(rng.normal(size=(BATCH, 784))).astype(np.float32)      # a batch in [-1, 1]
numpy_gan = NumpyGAN([p.numpy().copy() for p in G.parameters()], [p.numpy().copy() for p in D.parameters()], real,
                     np.random.default_rng(1))
trainer = GANTrainer(G, D, g_optimizer=Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999)),
                     d_optimizer=Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999)),
                     generator_rng=np.random.default_rng(1), verbose=0)
batches = itertools.repeat((mr.tensor(real),))


def minireg_gan_step():
    logs = trainer.train_step(batches)
    return logs["d_loss"], logs["g_loss"]


# ---- the MLP classifier step of bench_training.py ----------------------------------------------------
minireg_mlp_step, numpy_mlp_step = mlp_steps(rng)


# Both implementations compute the same thing: compare the first three steps' losses.
for engine_step, numpy_step, name in ((minireg_gan_step, numpy_gan.step, "MLP GAN"),
                                      (minireg_mlp_step, numpy_mlp_step, "MLP")):
    a = np.array([engine_step() for _ in range(3)], dtype=np.float64)
    b = np.array([numpy_step() for _ in range(3)], dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=2e-4, err_msg=f"{name}: minireg and NumPy steps disagree")

print(f"threads={args.threads} numpy={np.__version__} kernels={mr.get_backend('numpy').kernels.name}")
print("| training step | minireg min / median | NumPy min / median | ratio | target |")
print("|---|---|---|---|---|")
gan = timeit(minireg_gan_step, args.repeat), timeit(numpy_gan.step, args.repeat)
print(row("MLP GAN 1 D + 1 G step, G 100-256-256-784, D 784-256-256-1, batch 128, Adam", *gan, unit="ms",
          scale=1e3) + " <= 1.3x |")
# The same GAN step without the optimizer updates (forward + backward only): minireg's Adam is one
# fused compiled pass per parameter, NumPy's several passes, so this row isolates the engine.
for optimizer in (trainer.d_optimizer, trainer.g_optimizer, numpy_gan.d_opt, numpy_gan.g_opt):
    optimizer.step = lambda *_: None
no_update = timeit(minireg_gan_step, args.repeat), timeit(numpy_gan.step, args.repeat)
print(row("same GAN step, forward + backward only (no optimizer update)", *no_update, unit="ms", scale=1e3)
      + " - |")
mlp_times = timeit(minireg_mlp_step, args.repeat), timeit(numpy_mlp_step, args.repeat)
print(row("MLP 64-256-256-10, batch 128, Adam (bench_training)", *mlp_times, unit="ms", scale=1e3) + " <= 1.3x |")
print("(torch 2.13 eager, same GAN step, ../shared/notes/performance.md section 3: 33.6 / 34.1 ms at 1 thread, "
      "20.9 / 24.3 ms at 2 threads)")
