"""Issue 12's CPU table: minireg against PyTorch CPU and against NumPy, in the same process, with the
same thread count, minimum over repeats.

    python bench/bench_torch.py --threads 1      (and --threads 2; --rows cnn,gan,mlp,chain,prox,sws)

PyTorch is an optional baseline: when it is not installed its column is skipped (it is never a
dependency of minireg). Every step starts from the same weights on both sides, and the first
losses are checked to agree before timing. Rows and targets (minireg / PyTorch, minimum over
repeats):

- cnn: conv32-pool-conv64-pool-dense128-dense10 (3x3, padding 1, ReLU, 2x2 max pool), 1x28x28,
  batch 64, cross entropy, Adam(1e-3). Target <= 1.0x.
- gan: MLP GAN, G 100-256-256-784 (LeakyReLU 0.2, tanh), D 784-256-256-1, batch 128; one D step
  (non-saturating loss + R1 with gamma 10, a double backward) and one G step (D frozen), both
  Adam(2e-4, (0.5, 0.999)). R1 differentiates a second D pass on the real batch, as minireg's
  GANTrainer does. Target <= 0.8x.
- mlp: MLP 64-256-256-10, ReLU, batch 128, cross entropy, Adam(1e-3). Target <= 0.8x.
- chain: 100 adds y = y + x on 4-element float32 tensors, then sum and backward; time per op
  (101 ops). Target <= 0.75x.
- prox: L1 prox (soft threshold) of 10M float32 in place; the column "copy" is an in-place copy
  of the same array (np.copyto from another array: one read and one write of 40 MB). Target: the
  prox reaches >= 85% of the copy's bandwidth (copy time / prox time >= 0.85).
- sws: the MLP step with the learnable soft weight-sharing prior (16 components, on the weights
  and biases of the three layers) added to the loss, against the same step without it.
  Target <= 2x (minireg with / minireg without; the NumPy column holds the step without the prior).

Timing: many short samples (bench/_common.timeit), the minimum reported; on a busy machine compare
only ratios from one run. With several rows each runs in a fresh process (``--isolate yes``, the
default): after the GAN row, the add chain's minimum in the same process was sometimes 7.7 us per op
instead of 4.7 (a state a row leaves behind, not noise: every sample of the run was slow). With
--threads > 1, OMP_WAIT_POLICY=PASSIVE is set unless already set.
glibc's malloc thresholds are fixed first (--malloc steady, the default; see steady_malloc).
"""
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import parse_args, timeit  # noqa: E402

ROWS = ("cnn", "gan", "mlp", "chain", "prox", "sws")
args = parse_args(__doc__.splitlines()[0], rows=(str, ",".join(ROWS), "comma-separated rows to run"),
                  malloc=(str, "steady", "glibc malloc: 'steady' (fixed thresholds, see steady_malloc) or 'default'"),
                  isolate=(str, "yes", "'yes': with several rows, each in a fresh process; 'no': all in this one"))


def steady_malloc():
    """Fixed glibc malloc thresholds for both libraries: large blocks stay in the heap and freed memory
    is kept for reuse. With glibc's defaults the thresholds move with the allocation history, so
    which library ran first changed the other's timings: minireg's CNN step took 41 ms alone and
    53 ms after a PyTorch conv had run (page faults on fresh memory), 40 ms after it with these
    settings. Returns whether glibc accepted them (False elsewhere)."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30))


MALLOC = (steady_malloc() and "steady") if args.malloc == "steady" else "default"
if args.threads > 1:
    # Idle OpenMP threads sleep instead of spinning (both minireg's and PyTorch's runtime read this):
    # on a small shared VM spinning threads steal the CPU from the thread doing the work.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from _steps import cnn_model, cnn_steps, mlp_steps  # noqa: E402

import minireg as mr  # noqa: E402
from minireg import F  # noqa: E402

try:
    import torch
except ImportError:
    torch = None
else:
    torch.set_num_threads(args.threads)
try:
    from threadpoolctl import threadpool_limits
except ImportError:
    pass
else:
    threadpool_limits(args.threads)


def to_torch(module, params):
    """Copy minireg parameter arrays, in order, into a torch module (same shapes, same layouts)."""
    with torch.no_grad():
        for p, a in zip(module.parameters(), params):
            p.copy_(torch.from_numpy(np.array(a)))
    return module


def torch_step(model, x, y, extra_loss=None, extra_params=()):
    opt = torch.optim.Adam([*model.parameters(), *extra_params], lr=1e-3)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        if extra_loss is not None:
            loss = loss + extra_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def torch_mlp():
    tn = torch.nn
    return tn.Sequential(tn.Linear(64, 256), tn.ReLU(), tn.Linear(256, 256), tn.ReLU(), tn.Linear(256, 10))


# ---- rows: each returns {"minireg": fn, "torch": fn or None, "numpy": fn or None} ------------------
def cnn_row():
    mr_step, np_step = cnn_steps(np.random.default_rng(0))
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 64)
    mr.manual_seed(0)
    params = [p.numpy() for p in cnn_model().parameters()]
    t_step = None
    if torch is not None:
        tn = torch.nn
        model = tn.Sequential(tn.Conv2d(1, 32, 3, padding=1), tn.ReLU(), tn.MaxPool2d(2),
                              tn.Conv2d(32, 64, 3, padding=1), tn.ReLU(), tn.MaxPool2d(2),
                              tn.Flatten(), tn.Linear(64 * 7 * 7, 128), tn.ReLU(), tn.Linear(128, 10))
        t_step = torch_step(to_torch(model, params), x, y)
    return {"minireg": mr_step, "torch": t_step, "numpy": np_step}


def mlp_row():
    mr_step, np_step = mlp_steps(np.random.default_rng(0))
    rng = np.random.default_rng(0)
    x, y = rng.random((128, 64), dtype=np.float32), rng.integers(0, 10, 128)
    t_step = None
    if torch is not None:
        mr.manual_seed(0)
        from minireg import nn
        params = [p.numpy() for p in nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                                   nn.Linear(256, 10)).parameters()]
        t_step = torch_step(to_torch(torch_mlp(), params), x, y)
    return {"minireg": mr_step, "torch": t_step, "numpy": np_step}


def gan_row():
    from minireg.gan import R1, mlp_discriminator, mlp_generator
    from minireg.gan.trainer import GANTrainer
    from minireg.optim import Adam
    import itertools

    batch, noise_dim, gamma = 128, 100, 10.0
    real = np.tanh(np.random.default_rng(0).normal(size=(batch, 784))).astype(np.float32)
    mr.manual_seed(0)
    G, D = mlp_generator(noise_dim=noise_dim), mlp_discriminator(in_dim=784)
    g_params, d_params = [p.numpy().copy() for p in G.parameters()], [p.numpy().copy() for p in D.parameters()]
    trainer = GANTrainer(G, D, g_optimizer=Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999)),
                         d_optimizer=Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999)), penalties=[R1(gamma)],
                         generator_rng=np.random.default_rng(1), verbose=0)
    batches = itertools.repeat((mr.tensor(real),))

    def mr_step():
        logs = trainer.train_step(batches)
        return logs["d_loss"], logs["g_loss"]

    t_step = None
    if torch is not None:
        tn, tf = torch.nn, torch.nn.functional

        def mlp(widths, head):
            layers = []
            for a, b in zip(widths[:-2], widths[1:-1]):
                layers += [tn.Linear(a, b), tn.LeakyReLU(0.2)]
            return tn.Sequential(*layers, tn.Linear(widths[-2], widths[-1]), *head)
        tG = to_torch(mlp([noise_dim, 256, 256, 784], [tn.Tanh()]), g_params)
        tD = to_torch(mlp([784, 256, 256, 1], []), d_params)
        g_opt = torch.optim.Adam(tG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam(tD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        t_real, noise_rng = torch.from_numpy(real), np.random.default_rng(1)

        def noise():   # the same host draws as minireg's trainer, so the losses can be compared
            return torch.from_numpy(noise_rng.normal(0.0, 1.0, size=(batch, noise_dim)).astype(np.float32))

        def t_step():
            with torch.no_grad():
                fake = tG(noise())
            real_logits, fake_logits = tD(t_real), tD(fake)
            d_loss = tf.softplus(-real_logits).mean() + tf.softplus(fake_logits).mean()
            x = t_real.detach().requires_grad_()
            (gx,) = torch.autograd.grad(tD(x).sum(), x, create_graph=True)
            total = d_loss + gamma / 2 * gx.pow(2).sum(1).mean()
            d_opt.zero_grad(set_to_none=True)
            total.backward()
            d_opt.step()
            for p in tD.parameters():
                p.requires_grad_(False)
            g_loss = tf.softplus(-tD(tG(noise()))).mean()
            for p in tD.parameters():
                p.requires_grad_(True)
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
            return d_loss.item(), g_loss.item()
    return {"minireg": mr_step, "torch": t_step, "numpy": None}


N_ADDS = 100


def chain_row():
    x0 = np.random.default_rng(0).normal(size=4).astype(np.float32)

    def mr_chain():
        x = mr.tensor(x0, requires_grad=True)
        y = x
        for _ in range(N_ADDS):
            y = y + x
        y.sum().backward()
        return x.grad.numpy()

    def np_chain():
        y = x0
        for _ in range(N_ADDS):
            y = y + x0
        gy, gx = np.ones_like(x0), np.zeros_like(x0)
        for _ in range(N_ADDS):
            gx = gx + gy
        return gx + gy

    t_chain = None
    if torch is not None:
        def t_chain():
            x = torch.tensor(x0, requires_grad=True)
            y = x
            for _ in range(N_ADDS):
                y = y + x
            y.sum().backward()
            return x.grad.numpy()
    return {"minireg": mr_chain, "torch": t_chain, "numpy": np_chain}


PROX_SIZE, PROX_T = 10_000_000, 1e-4


def prox_row():
    rng = np.random.default_rng(0)
    # Weights near the threshold (|w| ~ 1e-4) so the soft threshold changes most of them while a
    # repeated call keeps shrinking: no call is a no-op.
    w = (rng.standard_normal(PROX_SIZE) * 10).astype(np.float32)
    source = w.copy()
    kernels = mr.get_backend("numpy").kernels

    def mr_prox():
        kernels.prox_l1_(w, PROX_T)

    def copy():
        np.copyto(w, source)

    t_prox = None
    if torch is not None:
        tw = torch.from_numpy(w.copy())

        def t_prox():
            torch._C._nn.softshrink(tw, PROX_T, out=tw)
    return {"minireg": mr_prox, "torch": t_prox, "numpy": copy}


def sws_row():
    from minireg.reg import SoftWeightSharing
    rng = np.random.default_rng(0)
    x, y = rng.random((128, 64), dtype=np.float32), rng.integers(0, 10, 128)
    steps = {}
    for with_prior in (False, True):
        mr.manual_seed(0)
        from minireg import nn
        from minireg.optim import Adam
        model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        prior = SoftWeightSharing(16)
        params = list(model.parameters()) + (list(prior.parameters()) if with_prior else [])
        optimizer, inputs, labels = Adam(params, lr=1e-3), mr.tensor(x), mr.tensor(y)

        def step(model=model, prior=prior, optimizer=optimizer, inputs=inputs, labels=labels, with_prior=with_prior):
            loss = F.cross_entropy(model(inputs), labels)
            if with_prior:
                loss = loss + prior.value(model.parameters())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.item()
        steps[with_prior] = step
    return {"minireg": steps[True], "torch": None, "numpy": steps[False]}


TARGETS = {"cnn": ("<= 1.0x", lambda r: r <= 1.0), "gan": ("<= 0.8x", lambda r: r <= 0.8),
           "mlp": ("<= 0.8x", lambda r: r <= 0.8), "chain": ("<= 0.75x", lambda r: r <= 0.75)}
LABELS = {"cnn": "CNN step conv32-conv64-dense128, 1x28x28, batch 64, Adam",
          "gan": "MLP-GAN step with R1 (1 D + 1 G step), batch 128",
          "mlp": "MLP 64-256-256-10 step, batch 128, Adam",
          "chain": "100-op add chain, 4 elements, fwd+bwd, per op",
          "prox": "L1 prox, 10M float32, in place",
          "sws": "MLP step with soft weight-sharing prior (16 components)"}
BUILDERS = {"cnn": cnn_row, "gan": gan_row, "mlp": mlp_row, "chain": chain_row, "prox": prox_row, "sws": sws_row}


def fmt(t, unit):
    scale = 1e6 / (N_ADDS + 1) if unit == "us/op" else 1e3
    return "-" if t is None else f"{t[0] * scale:.2f} / {t[1] * scale:.2f}"


def main():
    print(f"threads={args.threads} numpy={np.__version__} torch={torch.__version__ if torch else 'not installed'} "
          f"kernels={mr.get_backend('numpy').kernels.name} repeat={args.repeat} malloc={MALLOC}")
    print("| row | threads | minireg min / med | PyTorch min / med | NumPy min / med | ratio | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    rows = args.rows.split(",")
    if len(rows) > 1 and args.isolate == "yes":
        for name in rows:    # the same options, one row: its last line is the row's table line
            argv = [sys.executable, __file__, "--threads", str(args.threads), "--repeat", str(args.repeat),
                    "--malloc", args.malloc, "--rows", name]
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            print(done.stdout.strip().splitlines()[-1], flush=True)
        return
    for name in rows:
        fns = BUILDERS[name]()
        if name in ("cnn", "mlp", "gan"):  # same computation: the first losses agree
            a = np.array([fns["minireg"]() for _ in range(2)], dtype=np.float64)
            for other in ("torch", "numpy"):
                if fns[other] is not None:
                    b = np.array([fns[other]() for _ in range(2)], dtype=np.float64)
                    np.testing.assert_allclose(a, b, rtol=1e-3, err_msg=f"{name}: minireg and {other} disagree")
        times = {k: (timeit(fn, args.repeat) if fn is not None else None) for k, fn in fns.items()}
        unit = "us/op" if name == "chain" else "ms"
        cells = [fmt(times[k], unit) for k in ("minireg", "torch", "numpy")]
        if name == "prox":
            # fraction of the copy's bandwidth: copy time / prox time (the same bytes move)
            fraction = times["numpy"][0] / times["minireg"][0]
            ratio, target, met = f"{fraction:.0%} of copy", ">= 85% of copy", fraction >= 0.85
            if times["torch"] is not None:
                ratio += f" (torch softshrink {times['numpy'][0] / times['torch'][0]:.0%})"
        elif name == "sws":
            r = times["minireg"][0] / times["numpy"][0]
            ratio, target, met = f"{r:.2f}x (with / without)", "<= 2x", r <= 2
        elif times["torch"] is not None:
            r = times["minireg"][0] / times["torch"][0]
            ratio, (target, check) = f"{r:.2f}x", TARGETS[name]
            met = check(r)
        else:
            ratio, target, met = "-", TARGETS[name][0], None
        print(f"| {LABELS[name]} ({unit}) | {args.threads} | {' | '.join(cells)} | {ratio} | {target} "
              f"| {'-' if met is None else ('yes' if met else 'NO')} |", flush=True)


if __name__ == "__main__":
    main()
