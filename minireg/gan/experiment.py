"""GAN regularization experiments: a registry of named setups, ``run`` and ``compare``.

    python -m minireg gan --reg wgan-gp            # one run: grids, curves, metrics JSON
    python -m minireg gan --compare                # the default set, one table

Every setup trains the same MLP GAN on the same data with the same seed, batch size and number
of generator steps; only the regularization (with the loss, critic schedule and optimizer its
paper prescribes) changes. Models (``minireg.gan.models``): G = noise - 256 - 256 - data,
LeakyReLU(0.2), tanh output; D = data - 256 - 256 - 1, LeakyReLU(0.2). Noise is 32-d for the 8x8
digits and 100-d for 28x28 Fashion-MNIST. Batch 64. ``conditional=True`` feeds the class one-hot
to both networks (concatenation, or ``conditioning="projection"`` for D).

Data (``load_data``): the 1437 training images of ``minireg.datasets.load_digits`` (default; flat
64-d, scaled to [-1, 1]) or 60000 Fashion-MNIST training images (flat 784-d). Evaluation
(``minireg.gan.metrics``): classifier-FID, Inception-style score, and k-NN precision/recall of
``num_eval`` = 1000 generated samples (fixed noise, seed 1234; conditional GANs cycle through the
classes) against 1000 real training images (a fixed random subset), with the cached minireg feature
classifier. FID depends on N, so all numbers here use N = 1000. For scale: two disjoint sets of 797
real digits are at FID 1.8 from each other (IS 9.0-9.3, precision/recall 0.92-0.93).

Each registry entry (``REGISTRY``) records its paper's defaults and what had to change for this
budget (a few thousand generator steps of a small MLP on CPU instead of 100k+ steps of a conv net
on GPU). ``names()`` lists them; ``describe(name)`` prints one.

Outputs of ``run(name, out_dir=...)``: ``samples/step_XXXXXX.png`` (every tenth of the run),
``samples.png`` (the final grid of the fixed evaluation noise; for conditional GANs each column is
one class), ``losses.png``, ``fid.png`` (FID over training, with the untrained generator's FID as a
line), ``metrics.json`` (setup, final metrics, the untrained generator's metrics, history) and the
final checkpoints. ``compare(names, out_dir=...)`` writes every run in ``out_dir/<name>/`` and
``results.md``, ``results.csv``, ``results.json``, ``fid.png`` (all FID curves) and ``samples.png``
(the final grids side by side).
"""
import csv
import dataclasses
import json
import math
import os
import time
from typing import Callable, Optional

import numpy as np

import minireg as mr
from minireg import functional as F
from minireg._threads import blas_threads
from minireg.data import DataLoader, TensorDataset
from minireg.gan.losses import GANLoss, get_loss
from minireg.gan.models import mlp_discriminator, mlp_generator
from minireg.gan.penalties import (DRAGAN, R1, ConsistencyRegularization, FeatureMatching, GradientPenalty,
                                   InstanceNoise, LeCam)
from minireg.gan.trainer import DEFAULT_BETAS, DEFAULT_LR, GANTrainer
from minireg.optim import Adam, RMSprop
from minireg.reg.capacity import CapacityBudget
from minireg.reg.constraints import WeightClip
from minireg.reg.penalties import Orthogonal

DATASETS = ("digits", "fashion-mnist")
DEFAULT_STEPS = 3000
BATCH_SIZE = 64
NUM_EVAL = 1000
EVAL_SEED = 1234          # noise of the evaluation samples (the same for every run)
REFERENCE_SEED = 0        # which real images form the FID reference set
EVAL_POINTS = 10          # evaluations (FID over training) and sample grids per run
# The GAN's matrices are small (batch 64, width 256): one BLAS thread runs them faster than two on
# the 2-core development machine ("none": 12 s against 21 s), and cannot be slowed down 10x by
# another busy process, as spinning BLAS threads can. None leaves the thread pools as they are.
BLAS_THREADS = 1
# The default --compare set: one entry per family (hard constraint, gradient penalties on
# interpolates / real data, normalization, generator-side and output-side penalties, input
# noise): all of them, about 4 minutes at the default steps on the 2-core development machine
# (4m03s for `python -m minireg gan --compare`, WGAN-GP alone 60 s).
DEFAULT_COMPARE = ("none", "wgan-clip", "wgan-gp", "r1", "spectral-norm", "feature-matching", "lecam",
                   "consistency", "orthogonal-g", "instance-noise", "dragan")


# -- data ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class GANData:
    """Training images (flat, in [-1, 1]), labels, the image shape and the FID reference set."""
    name: str
    x: np.ndarray
    y: np.ndarray
    image_shape: tuple
    reference: np.ndarray
    noise_dim: int
    hidden: tuple = (256, 256)

    @property
    def dim(self):
        return int(self.x.shape[1])


def load_data(name="digits", num_eval=NUM_EVAL):
    """``GANData`` for "digits" (sklearn's 8x8 digits, 1437 training images) or "fashion-mnist"."""
    from minireg.gan.metrics import load_real_images
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    x, y = load_real_images(name, "train")              # (N, 1, H, W) in [-1, 1]
    image_shape = tuple(x.shape[1:])
    x = np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=np.float32)
    if num_eval > x.shape[0]:
        raise ValueError(f"num_eval={num_eval} exceeds the {x.shape[0]} training images of {name}")
    reference = x[np.random.default_rng(REFERENCE_SEED).permutation(x.shape[0])[:num_eval]]
    return GANData(name, x, y, image_shape, reference, noise_dim=32 if name == "digits" else 100)


# -- the registry ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Context:
    """What a setup's regularizers may depend on."""
    data: GANData
    steps: int


def _no_regularizers(ctx):
    return {}


@dataclasses.dataclass(frozen=True)
class Setup:
    """One named GAN regularization setup.

    ``regularizers(ctx)`` returns a dict with any of ``penalties``, ``g_penalties`` and
    ``d_constraints`` (see ``GANTrainer``); ``capacity`` (a ``CapacityBudget``) is checked on
    both networks before training, with ``hidden`` their widths; ``g_adversarial=False`` drops
    the adversarial generator loss (feature matching as the whole generator objective).
    """
    name: str
    summary: str
    paper: str
    here: str
    loss: str = "non_saturating"
    n_critic: int = 1
    optimizer: str = "adam"
    lr: float = DEFAULT_LR
    betas: tuple = DEFAULT_BETAS
    spectral_norm: bool = False
    capacity: Optional[CapacityBudget] = None
    hidden: Optional[tuple] = None
    g_adversarial: bool = True
    regularizers: Callable = _no_regularizers

    def describe(self):
        lines = [f"{self.name}: {self.summary}", f"  paper: {self.paper}", f"  here:  {self.here}",
                 f"  loss {self.loss}, n_critic {self.n_critic}, {self._optimizer_text()}"
                 + (", spectral norm on every D layer" if self.spectral_norm else "")
                 + (f", {self.capacity!r} on G and D (hidden {self.hidden})" if self.capacity else "")]
        return "\n".join(lines)

    def _optimizer_text(self):
        if self.optimizer == "rmsprop":
            return f"RMSprop(lr {self.lr:g}) for G and D"
        return f"Adam(lr {self.lr:g}, betas {tuple(self.betas)}) for G and D"


def _translate_flat(ctx):
    """CR's augmentation for flat samples: view them as images, shift by up to 1/8 of the size."""
    shape = ctx.data.image_shape
    shifter = ConsistencyRegularization(augment="translate")

    def translate(x):
        n = x.shape[0]
        return F.reshape(shifter.transform(F.reshape(x, (n,) + shape)), (n, -1))
    return translate


REGISTRY = {s.name: s for s in [
    Setup("none", "non-saturating GAN, unconstrained (the baseline)",
          paper="Goodfellow et al. 2014 (non-saturating G loss); Adam(2e-4, betas (0.5, 0.999)) as DCGAN, "
                "Radford et al. 2016",
          here="as the paper"),
    Setup("wgan-clip", "WGAN: weight clipping c = 0.01, n_critic 5, RMSprop, plus a capacity budget",
          paper="Arjovsky et al. 2017: clip every critic parameter to [-0.01, 0.01] after each update, 5 critic "
                "steps per G step, RMSprop lr 5e-5, batch 64",
          here="as the paper; hard capacity: both nets within CapacityBudget(max_params=30000, max_layers=3) "
               "(hidden 128-128 instead of 256-256)",
          loss="wgan", n_critic=5, optimizer="rmsprop", lr=5e-5,
          capacity=CapacityBudget(max_params=30_000, max_layers=3), hidden=(128, 128),
          regularizers=lambda ctx: {"d_constraints": [WeightClip(0.01, select=lambda p: True)]}),
    Setup("wgan-gp", "WGAN-GP: gradient penalty lambda = 10 on random interpolates, n_critic 5",
          paper="Gulrajani et al. 2017: lambda 10, 5 critic steps, Adam(1e-4, betas (0, 0.9)), no batch norm in "
                "the critic, 200k G steps",
          here="as the paper, with the run's (much smaller) number of G steps",
          loss="wgan", n_critic=5, lr=1e-4, betas=(0.0, 0.9),
          regularizers=lambda ctx: {"penalties": [GradientPenalty(10.0)]}),
    Setup("r1", "non-saturating GAN + R1 gradient penalty on real data",
          paper="Mescheder et al. 2018: gamma/2 E||grad D(x)||^2 on real x, gamma 10 (CelebA/LSUN, conv nets)",
          here="gamma 1: flat 8x8 digits in [-1, 1] have a much smaller input scale than 256x256 images",
          regularizers=lambda ctx: {"penalties": [R1(gamma=1.0)]}),
    Setup("spectral-norm", "hinge loss, spectral normalization of every D layer",
          paper="Miyato et al. 2018: W / sigma(W) on every D layer (one power iteration per step), hinge loss, "
                "Adam(2e-4, betas (0.5, 0.999)), n_dis 1 for the standard CNN",
          here="as the paper",
          loss="hinge", spectral_norm=True),
    Setup("feature-matching", "feature matching: G matches the mean D features of real data",
          paper="Salimans et al. 2016: G minimizes ||E f(x) - E f(G(z))||^2 (f = D's last hidden layer) "
                "instead of the adversarial loss; D keeps the usual loss",
          here="as the paper (weight 1)", g_adversarial=False,
          regularizers=lambda ctx: {"g_penalties": [FeatureMatching(1.0)]}),
    Setup("lecam", "non-saturating GAN + LeCam regularization of D's outputs",
          paper="Tseng et al. 2021: lambda 0.3 (StudioGAN), EMA decay 0.99 of the mean real and fake outputs",
          here="as the paper",
          regularizers=lambda ctx: {"penalties": [LeCam(0.3, 0.99)]}),
    Setup("consistency", "non-saturating GAN + consistency regularization (CR-GAN)",
          paper="Zhang et al. 2020: lambda 10, T = random flip + translation by up to 1/8 of the size, on real "
                "images",
          here="lambda 10, translation only (by up to 1 pixel of the 8x8 image): flipped digits are not digits",
          regularizers=lambda ctx: {"penalties": [ConsistencyRegularization(10.0, augment=_translate_flat(ctx))]}),
    Setup("orthogonal-g", "non-saturating GAN + orthogonal regularization of G's weights",
          paper="Brock et al. 2019 (BigGAN): beta ||W W^T * (1 - I)||_F^2 on every G weight, strength 1e-4 in "
                "BigGAN-PyTorch (= Orthogonal(beta=5e-5))",
          here="beta 5e-5 as BigGAN-PyTorch",
          regularizers=lambda ctx: {"g_penalties": [Orthogonal(beta=5e-5)]}),
    Setup("instance-noise", "non-saturating GAN + instance noise on D's inputs, annealed to 0",
          paper="Sonderby et al. 2017; Arjovsky & Bottou 2017: Gaussian noise on real and fake inputs of D, "
                "annealed linearly to 0",
          here="std 0.2 (data in [-1, 1]), annealed to 0 over the first half of the run",
          regularizers=lambda ctx: {"penalties": [InstanceNoise(0.2, anneal_steps=max(1, ctx.steps // 2))]}),
    Setup("dragan", "non-saturating GAN + DRAGAN penalty around the real data",
          paper="Kodali et al. 2017: lambda 10, perturbations c = 0.5 std(x), ||grad|| pushed to 1",
          here="as the paper",
          regularizers=lambda ctx: {"penalties": [DRAGAN(10.0, c=0.5)]}),
]}


def names():
    """The registered setup names."""
    return list(REGISTRY)


def get_setup(name):
    """The ``Setup`` named ``name``; ValueError listing the valid names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown GAN regularizer {name!r}; valid names: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def describe(name=None):
    """Paper defaults and budget changes of one setup, or of all."""
    return "\n".join(get_setup(n).describe() for n in ([name] if name else names()))


# -- building and evaluating ------------------------------------------------------------------------
def build_models(setup, data, seed, conditional=False, conditioning="concat"):
    """(G, D) of ``setup`` seeded with ``seed``, the capacity budget checked on both."""
    mr.manual_seed(seed)
    hidden = setup.hidden or data.hidden
    condition_dim = 10 if conditional else 0
    G = mlp_generator(noise_dim=data.noise_dim, hidden=hidden, out_dim=data.dim, condition_dim=condition_dim)
    D = mlp_discriminator(in_dim=data.dim, hidden=hidden, condition_dim=condition_dim, conditioning=conditioning,
                          spectral_norm=setup.spectral_norm)
    if setup.capacity is not None:
        setup.capacity.check(G)
        setup.capacity.check(D)
    return G, D


def _optimizer(setup, params):
    if setup.optimizer == "rmsprop":
        return RMSprop(params, lr=setup.lr)
    return Adam(params, lr=setup.lr, betas=setup.betas)


def _loss(setup):
    loss = get_loss(setup.loss)
    if setup.g_adversarial:
        return loss
    return GANLoss(f"{loss.name}_d_only", loss.d_loss, lambda fake_logits: 0.0 * F.mean(fake_logits))


def make_eval_fn(data, num_eval=NUM_EVAL, classifier=None):
    """``eval_fn(trainer)``: FID, IS, precision and recall of ``num_eval`` samples of the fixed
    evaluation noise (seed ``EVAL_SEED``) against the reference images; for a conditional GAN also
    ``label_accuracy``, the share of samples that the classifier assigns to their condition's class
    (0.1 by chance)."""
    from minireg.gan.metrics import evaluate_generator, feature_classifier
    classifier = classifier or feature_classifier(data.name)

    def eval_fn(trainer):
        samples = trainer.generate(num_eval, seed=EVAL_SEED)
        metrics = evaluate_generator(samples, data.reference[:num_eval], classifier, num_samples=num_eval)
        if trainer.condition == "one_hot":
            # how well the condition guides generation: the classifier's label of each sample
            # against the class it was generated for (labels arange(n) % 10, see generate)
            predicted = np.argmax(np.asarray(samples.backend.to_numpy(classifier.probabilities(samples))), axis=1)
            metrics["label_accuracy"] = float(np.mean(predicted == np.arange(num_eval) % trainer.condition_dim))
        return metrics
    return eval_fn


def _plain(value):
    """JSON-ready copy (NaN -> None, NumPy scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path, value):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_plain(value), f, indent=1)
    os.replace(tmp, path)
    return path


def _try_plot(files, key, fn, *args, **kwargs):
    try:
        files[key] = fn(*args, **kwargs)
    except ImportError as exc:        # matplotlib is optional
        files[key] = f"skipped: {exc}"


def run(name, steps=DEFAULT_STEPS, seed=0, out_dir=None, data="digits", conditional=False, conditioning="concat",
        num_eval=NUM_EVAL, batch_size=BATCH_SIZE, eval_points=EVAL_POINTS, verbose=1, classifier=None,
        threads=BLAS_THREADS):
    """Train the setup ``name`` for ``steps`` generator steps and evaluate it.

    Returns a dict: ``name``, ``metrics`` (final fid, inception_score, precision, recall, ...),
    ``untrained`` (the same metrics of the generator before training: same seed, same noise),
    ``seconds`` (training time, evaluation excluded), ``steps``, ``history``, ``setup`` (its
    description), ``capacity`` (parameters and layers of G and D), ``files`` (what was written
    under ``out_dir``; nothing is written without it) and ``trainer`` (the ``GANTrainer``, with the
    trained networks as ``trainer.G`` and ``trainer.D``; not in the JSON). ``threads``: BLAS
    threads during the run (see ``BLAS_THREADS``; None: as configured).
    """
    with blas_threads(threads):
        return _run(name, steps, seed, out_dir, data, conditional, conditioning, num_eval, batch_size, eval_points,
                    verbose, classifier)


def _run(name, steps, seed, out_dir, data, conditional, conditioning, num_eval, batch_size, eval_points, verbose,
         classifier):
    setup = get_setup(name)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    gan_data = data if isinstance(data, GANData) else load_data(data, num_eval)
    G, D = build_models(setup, gan_data, seed, conditional, conditioning)
    ctx = Context(gan_data, steps)
    regs = setup.regularizers(ctx)
    eval_fn = make_eval_fn(gan_data, num_eval, classifier)
    every = max(1, steps // eval_points) if eval_points else None
    trainer = GANTrainer(
        G, D, loss=_loss(setup), g_optimizer=_optimizer(setup, G.parameters()),
        d_optimizer=_optimizer(setup, D.parameters()), n_critic=setup.n_critic,
        penalties=regs.get("penalties", ()), g_penalties=regs.get("g_penalties", ()),
        d_constraints=regs.get("d_constraints", ()), num_eval_samples=80 if conditional else 64,
        sample_every=every if out_dir else None, out_dir=out_dir, eval_every=every, eval_fn=eval_fn,
        verbose=verbose)
    untrained = eval_fn(trainer)
    loader = DataLoader(TensorDataset(gan_data.x, gan_data.y), batch_size=batch_size, shuffle=True, drop_last=True)
    if verbose:
        print(f"[{name}] {setup.summary}; {steps} steps, untrained G: FID {untrained['fid']:.1f}", flush=True)
    start = time.perf_counter()
    trainer.fit(loader, steps)
    wall = time.perf_counter() - start
    metrics = trainer.history["eval"][-1] if trainer.history["eval"] else trainer.evaluate()
    metrics = {k: v for k, v in metrics.items() if k != "step"}
    budget = setup.capacity or CapacityBudget(max_params=10 ** 12)
    result = {"name": name, "data": gan_data.name, "conditional": conditional, "seed": seed, "steps": steps,
              "batch_size": batch_size, "metrics": metrics, "untrained": untrained,
              "seconds": trainer.train_seconds, "wall_seconds": wall, "setup": setup.describe(),
              "capacity": {"generator": budget.usage(G)._asdict(), "discriminator": budget.usage(D)._asdict()},
              "history": trainer.history, "files": {}, "trainer": trainer}
    if out_dir:
        files = result["files"]
        files.update(trainer.files)
        from minireg.gan import plots
        files["samples"] = trainer.save_samples(os.path.join(out_dir, "samples.png"))
        files["checkpoint"] = trainer.save_checkpoint()[1]
        title = f"{name} ({gan_data.name}, {steps} steps, seed {seed})"
        _try_plot(files, "losses", plots.plot_losses, trainer.history, os.path.join(out_dir, "losses.png"), title)
        _try_plot(files, "fid", plots.plot_fid, trainer.history, os.path.join(out_dir, "fid.png"), title,
                  reference={f"untrained G ({untrained['fid']:.0f})": untrained["fid"]})
        files["metrics"] = os.path.join(out_dir, "metrics.json")
        _write_json(files["metrics"], {k: v for k, v in result.items() if k != "trainer"})
    if verbose:
        print(f"[{name}] " + format_metrics(metrics) + f"  ({trainer.train_seconds:.1f} s)", flush=True)
    return result


def format_metrics(m):
    text = (f"FID {m['fid']:.2f}  IS {m['inception_score']:.2f}  precision {m['precision']:.3f}  "
            f"recall {m['recall']:.3f}")
    return text + (f"  label accuracy {m['label_accuracy']:.3f}" if "label_accuracy" in m else "")


# -- comparing -------------------------------------------------------------------------------------
COLUMNS = ("regularizer", "fid", "inception_score", "precision", "recall", "seconds", "fid_gain")
_HEADERS = {"regularizer": "regularizer", "fid": "FID", "inception_score": "IS", "precision": "precision",
            "recall": "recall", "seconds": "seconds", "fid_gain": "untrained FID / FID",
            "label_accuracy": "label accuracy"}


@dataclasses.dataclass
class Comparison:
    """``rows`` (dicts with ``COLUMNS``; the untrained generator first), the Markdown ``table``,
    the per-setup ``runs`` (results of ``run``) and the ``files`` written."""
    rows: list
    table: str
    runs: dict
    files: dict


def _cell(key, value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if key == "regularizer":
        return str(value)
    if key == "fid":
        return f"{value:.1f}" if value >= 100 else f"{value:.2f}"
    if key == "inception_score":
        return f"{value:.2f}"
    if key in ("precision", "recall", "label_accuracy"):
        return f"{value:.3f}"
    if key == "seconds":
        return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    if key == "fid_gain":
        return f"{value:.1f}x"
    return str(value)


def _columns(rows):
    return COLUMNS + (("label_accuracy",) if any("label_accuracy" in row for row in rows) else ())


def markdown_table(rows):
    """The rows as a Markdown table (``COLUMNS``, plus ``label_accuracy`` for conditional GANs)."""
    columns = _columns(rows)
    lines = ["| " + " | ".join(_HEADERS[k] for k in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(k, row.get(k)) for k in columns) + " |" for row in rows]
    return "\n".join(lines)


def _row(label, metrics, seconds, untrained_fid):
    row = {"regularizer": label, "fid": metrics["fid"], "inception_score": metrics["inception_score"],
           "precision": metrics["precision"], "recall": metrics["recall"], "seconds": seconds,
           "fid_gain": untrained_fid / metrics["fid"] if metrics["fid"] > 0 else math.inf}
    if "label_accuracy" in metrics:
        row["label_accuracy"] = metrics["label_accuracy"]
    return row


def compare(names=DEFAULT_COMPARE, steps=DEFAULT_STEPS, seed=0, out_dir=None, data="digits", conditional=False,
            conditioning="concat", num_eval=NUM_EVAL, batch_size=BATCH_SIZE, eval_points=EVAL_POINTS, verbose=1,
            threads=BLAS_THREADS):
    """Train each named setup with the same budget (``steps`` generator steps, same seed and data)
    and tabulate FID, IS, precision, recall and training seconds, with the untrained generator
    (default architecture, same seed) as the first row. Unknown names raise before anything runs.
    Writes ``results.md/.csv/.json``, ``fid.png`` and ``samples.png`` under ``out_dir`` if given.
    ``threads`` as in ``run``.
    """
    names = list(names)
    if not names:
        raise ValueError(f"compare needs at least one name; valid names: {', '.join(REGISTRY)}")
    for n in names:
        get_setup(n)
    if len(set(names)) != len(names):
        raise ValueError(f"compare: names repeat: {names}")
    with blas_threads(threads):
        return _compare(names, steps, seed, out_dir, data, conditional, conditioning, num_eval, batch_size,
                        eval_points, verbose, threads)


def _compare(names, steps, seed, out_dir, data, conditional, conditioning, num_eval, batch_size, eval_points, verbose,
             threads):
    from minireg.gan.metrics import feature_classifier
    gan_data = load_data(data, num_eval)
    classifier = feature_classifier(gan_data.name)
    runs = {}
    for n in names:
        runs[n] = run(n, steps=steps, seed=seed, out_dir=os.path.join(out_dir, n) if out_dir else None,
                      data=gan_data, conditional=conditional, conditioning=conditioning, num_eval=num_eval,
                      batch_size=batch_size, eval_points=eval_points, verbose=verbose, classifier=classifier,
                      threads=threads)
    # The untrained row: the default architecture ("none") at this seed; equal to each run's own
    # untrained metrics except for setups with other widths (their own value is in their JSON).
    reference = runs.get("none") or run_untrained(gan_data, seed, conditional, conditioning, num_eval, classifier)
    untrained = reference["untrained"]
    rows = [_row("untrained generator", untrained, 0.0, untrained["fid"])]
    rows += [_row(n, r["metrics"], r["seconds"], untrained["fid"]) for n, r in runs.items()]
    table = markdown_table(rows)
    files = {}
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        files["markdown"] = os.path.join(out_dir, "results.md")
        settings = (f"{gan_data.name}{' (conditional)' if conditional else ''}, {steps} generator steps, batch "
                    f"{batch_size}, seed {seed}, N = {num_eval} for the metrics")
        with open(files["markdown"], "w") as f:
            f.write(f"GAN regularizers: {settings}\n\n{table}\n")
        files["csv"] = os.path.join(out_dir, "results.csv")
        with open(files["csv"], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_columns(rows))
            writer.writeheader()
            writer.writerows(_plain(rows))
        files["json"] = _write_json(os.path.join(out_dir, "results.json"), {
            "settings": {"data": gan_data.name, "conditional": conditional, "steps": steps, "batch_size": batch_size,
                         "seed": seed, "num_eval": num_eval},
            "rows": rows, "runs": {n: {k: v for k, v in r.items() if k not in ("history", "trainer")}
                                   | {"eval": r["history"]["eval"]} for n, r in runs.items()}})
        from minireg.gan import plots
        _try_plot(files, "fid", plots.plot_fid, {n: r["history"] for n, r in runs.items()},
                  os.path.join(out_dir, "fid.png"), f"classifier-FID over training ({gan_data.name})",
                  reference={"untrained G": untrained["fid"]})
        grids = {n: r["files"]["samples"] for n, r in runs.items() if "samples" in r["files"]}
        _try_plot(files, "samples", plots.plot_sample_panels,
                  {f"{n} (FID {runs[n]['metrics']['fid']:.1f})": p for n, p in grids.items()},
                  os.path.join(out_dir, "samples.png"))
    return Comparison(rows, table, runs, files)


def run_untrained(data, seed=0, conditional=False, conditioning="concat", num_eval=NUM_EVAL, classifier=None):
    """``{"untrained": metrics}`` of the default ("none") generator at ``seed``, without training."""
    gan_data = data if isinstance(data, GANData) else load_data(data, num_eval)
    G, D = build_models(get_setup("none"), gan_data, seed, conditional, conditioning)
    trainer = GANTrainer(G, D, num_eval_samples=80 if conditional else 64, verbose=0)
    return {"untrained": make_eval_fn(gan_data, num_eval, classifier)(trainer)}


__all__ = ["REGISTRY", "DEFAULT_COMPARE", "DEFAULT_STEPS", "Setup", "GANData", "Comparison", "load_data", "names",
           "get_setup", "describe", "build_models", "make_eval_fn", "run", "compare", "run_untrained",
           "markdown_table", "BLAS_THREADS"]
