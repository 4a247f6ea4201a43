"""GPU benchmark: the CNN step at batch 256 and the DCGAN + R1 step, minireg on the GPU (CuPy) against
minireg on the CPU (``--threads`` BLAS/OpenMP threads, default 2: the 2-core machine of the README
tables) and against PyTorch CUDA when it is installed. All in one process, float32, Adam.

    python bench/bench_gpu.py [--threads 2] [--repeat 7] [--gpu-steps 20] [--cpu-repeat 3] [--cpu-steps 2]
                              [--json out.json]

- CNN step: conv32-conv64-dense128 with ReLU and 2x2 max-pool, 1x28x28 inputs, batch 256,
  cross entropy, Adam(1e-3).
- DCGAN + R1 step: minireg.gan's dcgan_generator/dcgan_discriminator at 32x32x1 (base width 64,
  noise 100), batch 64; one D step (non-saturating loss + R1 gamma=10, double backward through the
  convolutions) and one G step, Adam(2e-4, (0.5, 0.999)).

Each time is the minimum over ``--repeat`` (CPU: ``--cpu-repeat``) samples of the mean step time; a
sample runs several steps and waits for the GPU (synchronize) before the clock is read. Ratios are printed against the
same-process CPU run (the issue's target: at least 10x on the CNN step) and against PyTorch CUDA.
Needs a CUDA GPU with CuPy and array-api-compat; bench/gpu/run_gpu.sh runs it after the GPU tests.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_args  # noqa: E402  (sets thread variables before NumPy loads)

if not any(a.startswith("--threads") for a in sys.argv):
    sys.argv += ["--threads", "2"]      # the CPU side defaults to the README's 2-core machine
args = parse_args(__doc__.splitlines()[0], cpu_steps=(int, 2, "CPU steps per sample (they take seconds)"),
                  cpu_repeat=(int, 3, "CPU samples"), gpu_steps=(int, 20, "GPU steps per sample"),
                  json=(str, "", "also write the results here"))


import minireg as mr  # noqa: E402
from minireg import F, nn  # noqa: E402
from minireg.gan import R1, dcgan_discriminator, dcgan_generator, get_loss  # noqa: E402
from minireg.optim import Adam  # noqa: E402


def time_steps(step, synchronize, steps_per_sample, repeat):
    """Minimum over ``repeat`` samples of the mean time of ``steps_per_sample`` steps (after 2 warm-ups)."""
    for _ in range(2):
        step()
    synchronize()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(steps_per_sample):
            step()
        synchronize()
        best = min(best, (time.perf_counter() - start) / steps_per_sample)
    return best


# ---- minireg ----------------------------------------------------------------------------------------
def cnn_model():
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def minireg_cnn_step(batch):
    mr.manual_seed(0)
    model = cnn_model()
    optimizer = Adam(model.parameters(), lr=1e-3)
    x, y = mr.randn(batch, 1, 28, 28), mr.randint(0, 10, (batch,))

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def minireg_dcgan_step(batch, gamma=10.0):
    mr.manual_seed(0)
    G, D = dcgan_generator(noise_dim=100, image_size=32, channels=1), dcgan_discriminator(image_size=32, channels=1)
    g_opt = Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loss, r1 = get_loss("non_saturating"), R1(gamma=gamma)
    real = mr.rand(batch, 1, 32, 32) * 2 - 1

    def step():
        with mr.no_grad():
            fake = G(mr.randn(batch, 100))
        d_loss = loss.d_loss(D(real), D(fake)) + r1(D, real)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        g_loss = loss.g_loss(D(G(mr.randn(batch, 100))))
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
    return step, G, D


def minireg_times(backend, steps_per_sample, repeat, batches):
    with mr.using_backend(backend):
        synchronize = mr.current_backend().synchronize
        cnn = time_steps(minireg_cnn_step(batches["cnn"]), synchronize, steps_per_sample, repeat)
        gan_step, G, D = minireg_dcgan_step(batches["gan"])
        gan = time_steps(gan_step, synchronize, steps_per_sample, repeat)
    sizes = (sum(p.size for p in G.parameters()), sum(p.size for p in D.parameters()))
    return {"cnn": cnn, "gan": gan}, sizes


# ---- PyTorch CUDA (optional) -----------------------------------------------------------------------
def torch_times(steps_per_sample, repeat, batches, sizes):
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return None, "PyTorch sees no CUDA GPU"
    tnn, device = torch.nn, torch.device("cuda")
    torch.manual_seed(0)
    cnn = tnn.Sequential(tnn.Conv2d(1, 32, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
                         tnn.Conv2d(32, 64, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
                         tnn.Flatten(), tnn.Linear(64 * 7 * 7, 128), tnn.ReLU(), tnn.Linear(128, 10)).to(device)
    cnn_opt = torch.optim.Adam(cnn.parameters(), lr=1e-3)
    x = torch.randn(batches["cnn"], 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batches["cnn"],), device=device)

    def cnn_step():
        loss = tnn.functional.cross_entropy(cnn(x), y)
        cnn_opt.zero_grad()
        loss.backward()
        cnn_opt.step()

    # the same architecture as minireg.gan.dcgan_generator / dcgan_discriminator at 32x32x1
    G = tnn.Sequential(tnn.Unflatten(1, (100, 1, 1)), tnn.ConvTranspose2d(100, 256, 4),
                       tnn.BatchNorm2d(256), tnn.ReLU(), tnn.ConvTranspose2d(256, 128, 4, 2, 1),
                       tnn.BatchNorm2d(128), tnn.ReLU(), tnn.ConvTranspose2d(128, 64, 4, 2, 1),
                       tnn.BatchNorm2d(64), tnn.ReLU(), tnn.ConvTranspose2d(64, 1, 4, 2, 1), tnn.Tanh()).to(device)
    D = tnn.Sequential(tnn.Conv2d(1, 64, 4, 2, 1), tnn.LeakyReLU(0.2), tnn.Conv2d(64, 128, 4, 2, 1),
                       tnn.LeakyReLU(0.2), tnn.Conv2d(128, 256, 4, 2, 1), tnn.LeakyReLU(0.2), tnn.Flatten(),
                       tnn.Linear(256 * 4 * 4, 1), tnn.Flatten(0)).to(device)
    torch_sizes = tuple(sum(p.numel() for p in m.parameters()) for m in (G, D))
    if torch_sizes != sizes:
        return None, f"the PyTorch DCGAN has {torch_sizes} parameters, minireg's {sizes}: not the same model"
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    softplus, n = tnn.functional.softplus, batches["gan"]
    real = torch.rand(n, 1, 32, 32, device=device) * 2 - 1

    def gan_step():
        with torch.no_grad():
            fake = G(torch.randn(n, 100, device=device))
        real_in = real.detach().requires_grad_(True)
        real_logits = D(real_in)
        grad, = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
        r1 = 10.0 / 2 * grad.pow(2).flatten(1).sum(1).mean()
        d_loss = softplus(-real_logits).mean() + softplus(D(fake)).mean() + r1
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        g_loss = softplus(-D(G(torch.randn(n, 100, device=device)))).mean()
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()

    synchronize = torch.cuda.synchronize
    return {"cnn": time_steps(cnn_step, synchronize, steps_per_sample, repeat),
            "gan": time_steps(gan_step, synchronize, steps_per_sample, repeat)}, torch.__version__


def main():
    if "cupy" not in mr.available_backends():
        from minireg.backend import cupy_status
        sys.exit(f"bench_gpu: no GPU backend: {cupy_status()[1]}")
    batches = {"cnn": 256, "gan": 64}
    gpu, sizes = minireg_times("cupy", args.gpu_steps, args.repeat, batches)
    cpu, _ = minireg_times("numpy", args.cpu_steps, args.cpu_repeat, batches)
    torch_gpu, torch_note = torch_times(args.gpu_steps, args.repeat, batches, sizes)
    import cupy
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"GPU: {name}, CuPy {cupy.__version__}; CPU: {args.threads} threads; "
          f"PyTorch: {torch_note if torch_gpu is None else torch_note + ' CUDA'}")
    print("| step | minireg GPU | minireg CPU | GPU speed-up | PyTorch CUDA | minireg GPU / PyTorch CUDA |")
    print("|---|---|---|---|---|---|")
    labels = {"cnn": f"CNN, batch {batches['cnn']}", "gan": f"DCGAN 32x32 + R1, batch {batches['gan']}"}
    for job, label in labels.items():
        torch_cells = ("n/a", "n/a") if torch_gpu is None else \
            (f"{torch_gpu[job] * 1e3:.2f} ms", f"{gpu[job] / torch_gpu[job]:.2f}x")
        print(f"| {label} | {gpu[job] * 1e3:.2f} ms | {cpu[job] * 1e3:.1f} ms | {cpu[job] / gpu[job]:.1f}x | "
              f"{torch_cells[0]} | {torch_cells[1]} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": name, "cpu_threads": args.threads, "minireg_gpu_s": gpu, "minireg_cpu_s": cpu,
                       "torch_cuda_s": torch_gpu, "torch": torch_note, "batches": batches}, f, indent=2)


if __name__ == "__main__":
    main()
