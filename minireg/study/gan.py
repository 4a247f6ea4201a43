"""GAN tasks of the study: the regularization setups (with their papers' defaults and strength grids),
one training run as a pure function of its config, and the detailed single run of ``gan --reg``.

    python -m minireg study --task gan-digits          # every setup over seeds (and strengths)
    python -m minireg gan --reg wgan-gp                # one run: grids, curves, metrics JSON

Every setup trains the same MLP GAN on the same data with the same batch size and number of
generator steps; only the regularization (with the loss, critic schedule and optimizer its paper
prescribes) changes. Models (``minireg.gan.models``): G = noise - 256 - 256 - data, LeakyReLU(0.2),
tanh output; D = data - 256 - 256 - 1, LeakyReLU(0.2). Noise is 32-d for the 8x8 digits and 100-d
for 28x28 Fashion-MNIST. Batch 64. ``conditional=True`` feeds the class one-hot to both networks.

Data (``load_data``): the training images of ``minireg.datasets.load_digits`` (1437; flat 64-d in
[-1, 1]) or Fashion-MNIST (60000, flat 784-d). Evaluation (``minireg.gan.metrics``): classifier-FID,
Inception-style score and k-NN precision/recall with the cached minireg feature classifier, of
- *validation*: ``num_eval`` samples of the noise seed ``EVAL_SEED`` against ``num_eval`` real
  training images (a fixed random subset); this chooses a setup's strength;
- *test*: samples of the noise seed ``TEST_SEED`` against the real test images (digits: all 360,
  so N = 360; Fashion-MNIST: ``num_eval`` of the 10000), which neither G nor any choice has seen.
FID depends on N, so validation and test FIDs are not comparable with each other, only across runs.

Each registry entry (``REGISTRY``) records its paper's defaults and what had to change for this
budget (a few thousand generator steps of a small MLP on CPU instead of 100k+ steps of a conv net
on GPU); a setup whose paper strength needs adapting to this scale has a ``grid`` with its source.
``names()`` lists them; ``describe(name)`` prints one.
"""
import base64
import dataclasses
import functools
import json
import math
import os
import time
from typing import Callable, Optional

import numpy as np

import minireg as mr
from minireg import check
from minireg import functional as F
from minireg.data import DataLoader, TensorDataset
from minireg.errors import ArgumentError
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
EVAL_SEED = 1234          # noise of the validation samples (the same for every run)
TEST_SEED = 4321          # noise of the test samples
REFERENCE_SEED = 0        # which real images form the reference sets
EVAL_POINTS = 10          # evaluations (FID over training) per run
# FID fits a covariance to the classifier's 32 (digits) or 64 (Fashion-MNIST) features and k-NN
# precision/recall need k + 1 = 4 points: below 100 samples the metrics are noise or undefined.
MIN_NUM_EVAL = 100
LOSS_POINTS = 200         # the loss curves kept in a run's result (window means)
# The default set: one entry per family (hard constraint, gradient penalties on interpolates / real
# data, normalization, generator-side and output-side penalties, input noise).
DEFAULT_SETUPS = ("none", "wgan-clip", "wgan-gp", "r1", "spectral-norm", "feature-matching", "lecam",
                  "consistency", "orthogonal-g", "instance-noise", "dragan")


# -- data ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class GANData:
    """Training images (flat, in [-1, 1]), labels, the image shape and the two reference sets."""
    name: str
    x: np.ndarray
    y: np.ndarray
    image_shape: tuple
    reference: np.ndarray          # real training images: validation metrics
    test_reference: np.ndarray     # real test images: test metrics
    noise_dim: int
    hidden: tuple = (256, 256)

    @property
    def dim(self):
        return int(self.x.shape[1])


def _flat(x):
    return np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=np.float32)


@functools.lru_cache(maxsize=4)
def load_data(name="digits", num_eval=NUM_EVAL):
    """``GANData`` for "digits" (sklearn's 8x8 digits, 1437 training images) or "fashion-mnist"."""
    from minireg.gan.metrics import load_real_images
    if name not in DATASETS:
        raise ArgumentError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    x, y = load_real_images(name, "train")              # (N, 1, H, W) in [-1, 1]
    image_shape = tuple(x.shape[1:])
    x = _flat(x)
    if num_eval > x.shape[0]:
        raise ArgumentError(f"num_eval={num_eval} exceeds the {x.shape[0]} training images of {name}")
    test = _flat(load_real_images(name, "test")[0])
    rng = np.random.default_rng(REFERENCE_SEED)
    reference = x[rng.permutation(x.shape[0])[:num_eval]]
    test_reference = test[rng.permutation(test.shape[0])[:num_eval]]
    return GANData(name, x, y, image_shape, reference, test_reference, noise_dim=32 if name == "digits" else 100)


# -- the registry ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Context:
    """What a setup's regularizers may depend on."""
    data: GANData
    steps: int


def _no_regularizers(ctx, strength):
    return {}


@dataclasses.dataclass(frozen=True)
class Setup:
    """One named GAN regularization setup.

    ``regularizers(ctx, strength)`` returns a dict with any of ``penalties``, ``g_penalties`` and
    ``d_constraints`` (see ``GANTrainer``), ``strength`` being one of ``grid`` (None for a setup
    without a strength to choose; the paper's value is then fixed); ``capacity`` (a ``CapacityBudget``) is checked on
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
    grid: tuple = (None,)
    grid_source: str = "-"
    full_grid: tuple = None
    default_strength: Optional[float] = None     # what ``train`` uses when no strength is given

    def strengths(self, preset="default"):
        return tuple(self.full_grid or self.grid) if preset == "full" else tuple(self.grid)

    @property
    def tuned(self):
        return self.grid != (None,)

    def describe(self):
        lines = [f"{self.name}: {self.summary}", f"  paper: {self.paper}", f"  here:  {self.here}"]
        if self.tuned:
            lines.append(f"  strength grid {', '.join(f'{a:g}' for a in self.grid)}: {self.grid_source}")
        lines += [
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
          regularizers=lambda ctx, a: {"d_constraints": [WeightClip(0.01, select=lambda p: True)]}),
    Setup("wgan-gp", "WGAN-GP: gradient penalty lambda = 10 on random interpolates, n_critic 5",
          paper="Gulrajani et al. 2017: lambda 10, 5 critic steps, Adam(1e-4, betas (0, 0.9)), no batch norm in "
                "the critic, 200k G steps",
          here="as the paper, with the run's (much smaller) number of G steps; lambda chosen from the grid",
          loss="wgan", n_critic=5, lr=1e-4, betas=(0.0, 0.9),
          regularizers=lambda ctx, a: {"penalties": [GradientPenalty(a)]}, grid=(1.0, 10.0),
          grid_source="Gulrajani et al.'s lambda 10 and a decade below (Kurach et al. 2019 sweep it in decades)",
          full_grid=(0.1, 1.0, 10.0, 100.0), default_strength=10.0),
    Setup("r1", "non-saturating GAN + R1 gradient penalty on real data",
          paper="Mescheder et al. 2018: gamma/2 E||grad D(x)||^2 on real x, gamma 10 (CelebA/LSUN, conv nets)",
          here="gamma chosen from the grid: flat 8x8 digits have a much smaller input scale than 256x256 images",
          regularizers=lambda ctx, a: {"penalties": [R1(gamma=a)]}, grid=(0.1, 1.0, 10.0),
          grid_source="Mescheder et al.'s gamma 10 and two decades below (StyleGAN2-ADA uses 0.01-1 on small data)",
          full_grid=(0.01, 0.1, 1.0, 10.0), default_strength=1.0),
    Setup("spectral-norm", "hinge loss, spectral normalization of every D layer",
          paper="Miyato et al. 2018: W / sigma(W) on every D layer (one power iteration per step), hinge loss, "
                "Adam(2e-4, betas (0.5, 0.999)), n_dis 1 for the standard CNN",
          here="as the paper",
          loss="hinge", spectral_norm=True),
    Setup("feature-matching", "feature matching: G matches the mean D features of real data",
          paper="Salimans et al. 2016: G minimizes ||E f(x) - E f(G(z))||^2 (f = D's last hidden layer) "
                "instead of the adversarial loss; D keeps the usual loss",
          here="as the paper (weight 1)", g_adversarial=False,
          regularizers=lambda ctx, a: {"g_penalties": [FeatureMatching(1.0)]}),
    Setup("lecam", "non-saturating GAN + LeCam regularization of D's outputs",
          paper="Tseng et al. 2021: lambda 0.3 (StudioGAN), EMA decay 0.99 of the mean real and fake outputs",
          here="as the paper",
          regularizers=lambda ctx, a: {"penalties": [LeCam(0.3, 0.99)]}),
    Setup("consistency", "non-saturating GAN + consistency regularization (CR-GAN)",
          paper="Zhang et al. 2020: lambda 10, T = random flip + translation by up to 1/8 of the size, on real "
                "images",
          here="lambda 10, translation only (by up to 1 pixel of the 8x8 image): flipped digits are not digits",
          regularizers=lambda ctx, a: {"penalties": [ConsistencyRegularization(10.0, augment=_translate_flat(ctx))]}),
    Setup("orthogonal-g", "non-saturating GAN + orthogonal regularization of G's weights",
          paper="Brock et al. 2019 (BigGAN): beta ||W W^T * (1 - I)||_F^2 on every G weight, strength 1e-4 in "
                "BigGAN-PyTorch (= Orthogonal(beta=5e-5))",
          here="beta 5e-5 as BigGAN-PyTorch",
          regularizers=lambda ctx, a: {"g_penalties": [Orthogonal(beta=5e-5)]}),
    Setup("instance-noise", "non-saturating GAN + instance noise on D's inputs, annealed to 0",
          paper="Sonderby et al. 2017; Arjovsky & Bottou 2017: Gaussian noise on real and fake inputs of D, "
                "annealed linearly to 0",
          here="std 0.2 (data in [-1, 1]), annealed to 0 over the first half of the run",
          regularizers=lambda ctx, a: {"penalties": [InstanceNoise(0.2, anneal_steps=max(1, ctx.steps // 2))]}),
    Setup("dragan", "non-saturating GAN + DRAGAN penalty around the real data",
          paper="Kodali et al. 2017: lambda 10, perturbations c = 0.5 std(x), ||grad|| pushed to 1",
          here="as the paper",
          regularizers=lambda ctx, a: {"penalties": [DRAGAN(10.0, c=0.5)]}),
]}


def names():
    """The registered setup names."""
    return list(REGISTRY)


def get_setup(name):
    """The ``Setup`` named ``name``; an ArgumentError listing the valid names otherwise."""
    if name not in REGISTRY:
        from minireg.check import suggest
        raise ArgumentError(f"unknown GAN regularizer {name!r}{suggest(name, REGISTRY)}; valid names: "
                            f"{', '.join(REGISTRY)}")
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


def make_eval_fn(data, num_eval=NUM_EVAL, classifier=None, reference=None, noise_seed=EVAL_SEED):
    """``eval_fn(trainer)``: FID, IS, precision and recall of ``num_eval`` samples of the fixed
    evaluation noise (seed ``noise_seed``) against ``reference`` (default: the training reference set); for a conditional GAN also
    ``label_accuracy``, the share of samples that the classifier assigns to their condition's class
    (0.1 by chance)."""
    from minireg.gan.metrics import evaluate_generator, feature_classifier
    classifier = classifier or feature_classifier(data.name)

    def eval_fn(trainer):
        real = data.reference if reference is None else reference
        n = min(num_eval, real.shape[0])
        samples = trainer.generate(n, seed=noise_seed)
        metrics = evaluate_generator(samples, real[:n], classifier, num_samples=n)
        if trainer.condition == "one_hot":
            # how well the condition guides generation: the classifier's label of each sample
            # against the class it was generated for (labels arange(n) % 10, see generate)
            predicted = np.argmax(np.asarray(samples.backend.to_numpy(classifier.probabilities(samples))), axis=1)
            metrics["label_accuracy"] = float(np.mean(predicted == np.arange(n) % trainer.condition_dim))
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


def _trainer(setup, strength, data, seed, steps, conditional=False, conditioning="concat", num_eval=NUM_EVAL,
             eval_points=EVAL_POINTS, classifier=None, out_dir=None, verbose=0):
    """The ``GANTrainer`` of ``setup`` at ``strength`` (models seeded with ``seed``), its validation
    eval function and its data loader."""
    G, D = build_models(setup, data, seed, conditional, conditioning)
    regs = setup.regularizers(Context(data, steps), strength)
    eval_fn = make_eval_fn(data, num_eval, classifier)
    every = max(1, steps // eval_points) if eval_points else None
    trainer = GANTrainer(
        G, D, loss=_loss(setup), g_optimizer=_optimizer(setup, G.parameters()),
        d_optimizer=_optimizer(setup, D.parameters()), n_critic=setup.n_critic,
        penalties=regs.get("penalties", ()), g_penalties=regs.get("g_penalties", ()),
        d_constraints=regs.get("d_constraints", ()), num_eval_samples=80 if conditional else 64,
        sample_every=every if out_dir else None, out_dir=out_dir, eval_every=every, eval_fn=eval_fn,
        verbose=verbose)
    loader = DataLoader(TensorDataset(data.x, data.y), batch_size=BATCH_SIZE, shuffle=True, drop_last=True)
    return trainer, eval_fn, loader


def _strength(setup, strength):
    """The setup's strength: one of its grid, or None for a setup without one."""
    if strength is None and setup.tuned:
        return setup.default_strength
    if strength is not None and not setup.tuned:
        raise ArgumentError(f"the GAN setup {setup.name!r} has no strength to choose; got strength={strength!r}")
    return strength


def _window_means(values, points):
    values = np.asarray(values, dtype=np.float64)
    if values.size <= points:
        return values.tolist()
    return [float(chunk.mean()) for chunk in np.array_split(values, points)]


def _grid_png(trainer):
    """The final sample grid as a base64 PNG (at least 512 pixels wide)."""
    from minireg.gan.plots import image_grid_png
    ncols = trainer.condition_dim if trainer.condition == "one_hot" else None
    return base64.b64encode(image_grid_png(trainer.sample().numpy(), ncols=ncols,
                                           image_shape=getattr(trainer.G, "output_shape", None))).decode("ascii")


def run(config):
    """One study run of a GAN setup: a pure function of ``config`` (family, strength, seed,
    dataset, steps, num_eval, conditional, eval_points, score_test).

    Returns the validation metrics (and the test metrics with ``score_test``) of the final
    generator, the untrained generator's validation metrics, FID over training, window means of
    the losses, the final sample grid (base64 PNG) and the seconds.
    """
    from minireg.gan.metrics import feature_classifier
    start = time.perf_counter()
    setup = get_setup(config["family"])
    data = load_data(config["dataset"], config["num_eval"])
    classifier = feature_classifier(data.name)
    trainer, eval_fn, loader = _trainer(setup, _strength(setup, config["strength"]), data, config["seed"],
                                        config["steps"], config["conditional"], num_eval=config["num_eval"],
                                        eval_points=config["eval_points"], classifier=classifier)
    untrained = eval_fn(trainer)
    trainer.fit(loader, config["steps"])
    validation = eval_fn(trainer)
    test = None
    if config["score_test"]:
        test = make_eval_fn(data, config["num_eval"], classifier, reference=data.test_reference,
                            noise_seed=TEST_SEED)(trainer)
    history = {"eval": [{k: float(v) for k, v in e.items()} for e in trainer.history["eval"]],
               **{k: _window_means(trainer.history[k], LOSS_POINTS) for k in ("d_loss", "g_loss")}}
    return {"validation": validation, "test": test, "untrained": untrained, "history": history,
            "samples_png": _grid_png(trainer), "train_seconds": trainer.train_seconds,
            "seconds": time.perf_counter() - start}


def train(name, strength=None, steps=DEFAULT_STEPS, seed=0, out_dir=None, data="digits", conditional=False,
          conditioning="concat", num_eval=NUM_EVAL, eval_points=EVAL_POINTS, verbose=1, classifier=None):
    """Train the setup ``name`` (at ``strength``, default its ``default_strength``) for ``steps``
    generator steps and evaluate it, writing everything under ``out_dir`` (the ``gan --reg`` command).

    Returns a dict: ``name``, ``strength``, ``metrics`` (final fid, inception_score, precision, recall,
    ...; validation set), ``untrained`` (the same metrics of the generator before training), ``seconds``
    (training time, evaluation excluded), ``steps``, ``history``, ``setup`` (its description),
    ``capacity`` (parameters and layers of G and D), ``files`` (what was written under ``out_dir``;
    nothing is written without it) and ``trainer`` (the ``GANTrainer``; not in the JSON).
    """
    setup = get_setup(name)
    strength = _strength(setup, strength)
    steps = check.positive_int("steps", steps)
    gan_data = data if isinstance(data, GANData) else load_data(data, num_eval)
    trainer, eval_fn, loader = _trainer(setup, strength, gan_data, seed, steps, conditional, conditioning, num_eval,
                                        eval_points, classifier, out_dir, verbose)
    untrained = eval_fn(trainer)
    if verbose:
        print(f"[{name}] {setup.summary}; {steps} steps, untrained G: FID {untrained['fid']:.1f}", flush=True)
    trainer.fit(loader, steps)
    metrics = trainer.history["eval"][-1] if trainer.history["eval"] else eval_fn(trainer)
    metrics = {k: v for k, v in metrics.items() if k != "step"}
    G, D = trainer.G, trainer.D
    budget = setup.capacity or CapacityBudget(max_params=10 ** 12)
    result = {"name": name, "strength": strength, "data": gan_data.name, "conditional": conditional, "seed": seed,
              "steps": steps, "batch_size": BATCH_SIZE, "metrics": metrics, "untrained": untrained,
              "seconds": trainer.train_seconds, "setup": setup.describe(),
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
