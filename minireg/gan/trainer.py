"""``GANTrainer``: the GAN loop with its bookkeeping (a convenience, not a framework).

One training *step* is ``n_critic`` discriminator steps followed by one generator step::

    for _ in range(n_critic):                           # discriminator (critic) steps
        real, labels = next batch;  c = condition(labels)
        fake = G(z, c)                                  # fresh noise, no graph
        L_D = d_loss(D(real, c), D(fake, c)) + penalties(D, real, fake, ...)
        d_optimizer: zero_grad, backward, step          # constraints (weight clipping) run here
    fake = G(z', c)                                     # fresh noise, same conditions
    L_G = g_loss(D(fake, c)) + generator penalties      # D's parameters are frozen for this step
    g_optimizer: zero_grad, backward, step

A hand-written loop is just as possible (``examples/gan_loop.py``); the trainer adds fixed
evaluation noise, sample grids, checkpoints, a progress bar, a history, periodic evaluation and
the checks below.

Regularizers
------------
- ``penalties``: the objects of ``minireg.gan.penalties``; each goes where its paper puts it:
  ``GradientPenalty(D, real, fake, c)``, ``DRAGAN(D, real, c)``, ``R1(D, real, c)``,
  ``R2(D, fake, c)``, ``ConsistencyRegularization(D, real, c)`` and ``LeCam(D(real), D(fake))``
  are added to the discriminator loss; ``FeatureMatching(D, real, fake, c, c)`` to the generator
  loss; ``InstanceNoise`` perturbs every input of D (real and fake, in both steps) and its
  annealing advances once per step. Any other callable is called as ``fn(D, real, fake, c)`` and
  its result (a scalar Tensor, or None to skip) is added to the discriminator loss.
- ``g_penalties``: terms of the generator loss: ``minireg.reg`` penalties (e.g.
  ``reg.Orthogonal``, BigGAN's orthogonal regularization) as ``penalty.value(G.parameters())``,
  ``FeatureMatching`` as above, or any callable ``fn(G, D, real, fake, c)``.
- ``d_constraints``: ``minireg.reg`` constraints attached to the discriminator's optimizer
  (``minireg.reg.attach``), so they run after every critic update: ``WeightClip(0.01)`` is
  WGAN's clipping. ``WeightClip``'s default selection leaves biases alone; WGAN clips every
  parameter: ``WeightClip(0.01, select=lambda p: True)``.
- Spectral normalization is part of the model (``mlp_discriminator(spectral_norm=True)``).

Conditional GANs: when the generator takes a condition (``condition_dim > 0``) the loader must
yield ``(images, labels)``; each batch's labels become its condition (``condition="one_hot"``:
a one-hot vector of ``num_classes = condition_dim``; or any callable ``labels -> (N, k)`` array,
e.g. attribute vectors; it gets the labels as a Tensor). Real and generated samples of a batch
share the conditions, so D judges the pair (sample, condition), and the generator step reuses the
last critic batch's conditions. The fixed evaluation samples cycle through the classes,
``eval_labels = arange(n) % classes`` (with a condition function: the first batch's labels).

Checked before anything trains (``ShapeError``/``ValueError`` naming both sides): a noise
dimension other than the generator's, a condition of the wrong size (or labels outside
``num_classes``), a discriminator conditioned differently from the generator, images whose shape
differs from the generator's output, images outside [-1, 1], a conditional GAN fed without
labels. Penalty strengths < 0 are refused by the penalty constructors. During training a NaN or
infinite loss raises ``NonFiniteError`` naming the step (and the critic iteration), before the
bad gradient reaches the weights.

History (``trainer.history``, one entry per step): ``d_loss`` and ``g_loss`` (the adversarial
losses, mean over the critic iterations for D), ``d_real`` / ``d_fake`` (mean D output on real
and generated samples), one ``d/<Penalty>`` or ``g/<Penalty>`` list per regularizer (NaN on
steps where a lazy penalty was skipped), ``seconds`` (cumulative training time), and ``eval``: a
list of ``{"step": s, **eval_fn(trainer)}``.

Outputs under ``out_dir``: ``samples/step_000500.png`` every ``sample_every`` steps (and at the
end), ``checkpoint_generator.npz`` / ``checkpoint_discriminator.npz`` every ``checkpoint_every``
steps (and at the end): ``minireg.save`` of each network with its optimizer, written atomically,
the step and history in the metadata; ``GANTrainer.load_checkpoint`` resumes.
"""
import itertools
import math
import os
import time
import warnings

import numpy as np

from minireg import functional as F
from minireg._config import no_grad
from minireg.checkpoint import load, save
from minireg.errors import NonFiniteError, ShapeError
from minireg.gan.losses import GANLoss, get_loss
from minireg.gan.penalties import (DRAGAN, R1, R2, ConsistencyRegularization, FeatureMatching, GradientPenalty,
                                   InstanceNoise, LeCam)
from minireg.optim import Adam
from minireg.random import default_generator
from minireg.reg.attach import attach
from minireg.reg.base import Constraint, Penalty
from minireg.tensor import Tensor

_QUIET_METRICS = ("step", "num_samples", "inception_score_std")    # left out of the progress lines
DEFAULT_LR = 2e-4
DEFAULT_BETAS = (0.5, 0.999)


def _positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _penalty_names(objects, prefix):
    """'d/GradientPenalty', 'd/R1', ... with a counter for repeated types."""
    names, seen = [], {}
    for obj in objects:
        base = type(obj).__name__ if not hasattr(obj, "__name__") else obj.__name__
        seen[base] = seen.get(base, 0) + 1
        names.append(f"{prefix}/{base}" + (f"_{seen[base]}" if seen[base] > 1 else ""))
    return names


def _mean_or_nan(values):
    return sum(values) / len(values) if values else math.nan


class GANTrainer:
    """Train ``generator`` against ``discriminator``; see the module docstring.

    Arguments: ``loss`` a name of ``minireg.gan.GAN_LOSSES`` or a ``GANLoss``; ``g_optimizer`` /
    ``d_optimizer`` default to Adam(lr 2e-4, betas (0.5, 0.999)) (Radford et al. 2016);
    ``n_critic`` discriminator steps per generator step; ``penalties`` / ``g_penalties`` /
    ``d_constraints`` the regularizers; ``noise_dim`` (default: the generator's); ``condition``
    None, "one_hot" or a callable, with ``num_classes`` (default: the generator's condition_dim);
    ``eval_noise_seed`` and ``num_eval_samples`` fix the evaluation noise (and labels);
    ``sample_every`` / ``checkpoint_every`` / ``eval_every`` in steps, with ``out_dir`` for files
    and ``eval_fn(trainer) -> dict`` for evaluation (e.g. FID); ``generator_rng`` a NumPy Generator
    for the training noise (default: ``minireg.random.default_generator()`` at each draw, so
    ``minireg.manual_seed`` makes a run reproducible); ``verbose`` 0 silent, 1 tqdm bar, 2 lines
    every ``log_every`` steps.
    """

    def __init__(self, generator, discriminator, loss="non_saturating", g_optimizer=None, d_optimizer=None,
                 n_critic=1, penalties=(), d_constraints=(), g_penalties=(), noise_dim=None, condition=None,
                 num_classes=None, eval_noise_seed=0, num_eval_samples=64, sample_every=None, out_dir=None,
                 checkpoint_every=None, eval_every=None, eval_fn=None, log_every=None, generator_rng=None,
                 verbose=1):
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0 (silent), 1 (progress bar) or 2 (lines), got {verbose!r}")
        self.G, self.D = generator, discriminator
        self.loss = loss if isinstance(loss, GANLoss) else get_loss(loss)
        self.n_critic = _positive_int("n_critic", n_critic)
        self.sample_every = _positive_int("sample_every", sample_every, allow_none=True)
        self.checkpoint_every = _positive_int("checkpoint_every", checkpoint_every, allow_none=True)
        self.eval_every = _positive_int("eval_every", eval_every, allow_none=True)
        self.log_every = _positive_int("log_every", log_every, allow_none=True)
        self.num_eval_samples = _positive_int("num_eval_samples", num_eval_samples)
        if (self.sample_every or self.checkpoint_every) and out_dir is None:
            raise ValueError("sample_every and checkpoint_every write files: give out_dir")
        if self.eval_every and eval_fn is None:
            raise ValueError("eval_every needs an eval_fn(trainer) -> dict of metrics")
        if eval_fn is not None and not callable(eval_fn):
            raise TypeError(f"eval_fn must be callable, got {type(eval_fn).__name__}")
        self.out_dir, self.eval_fn, self.verbose, self.generator_rng = out_dir, eval_fn, verbose, generator_rng

        self.noise_dim = self._check_noise_dim(noise_dim)
        self.condition, self.condition_dim = self._check_condition(condition, num_classes)

        self.penalties, self.noise_layers = [], []
        for p in penalties:
            if isinstance(p, InstanceNoise):
                self.noise_layers.append(p)
            elif isinstance(p, FeatureMatching):
                g_penalties = (*g_penalties, p)          # a generator loss, wherever it was given
            elif isinstance(p, (GradientPenalty, DRAGAN, R1, ConsistencyRegularization, LeCam)) or callable(p):
                self.penalties.append(p)
            else:
                raise TypeError(f"penalties: {type(p).__name__} is not a GAN penalty or a callable")
        for p in g_penalties:
            if not (isinstance(p, (Penalty, FeatureMatching)) or callable(p)):
                raise TypeError(f"g_penalties: {type(p).__name__} is neither a minireg.reg Penalty, FeatureMatching "
                                f"nor a callable")
        self.g_penalties = list(g_penalties)
        self.d_penalty_names = _penalty_names(self.penalties, "d")
        self.g_penalty_names = _penalty_names(self.g_penalties, "g")

        self.g_optimizer = g_optimizer or Adam(self.G.parameters(), lr=DEFAULT_LR, betas=DEFAULT_BETAS)
        self.d_optimizer = d_optimizer or Adam(self.D.parameters(), lr=DEFAULT_LR, betas=DEFAULT_BETAS)
        self.d_constraints = list(d_constraints)
        for c in self.d_constraints:
            if not isinstance(c, Constraint):
                raise TypeError(f"d_constraints: expected minireg.reg constraints, got {type(c).__name__}")
            attach(self.d_optimizer, c)

        self._param = next(iter(self.G.parameters()), None)
        if self._param is None:
            raise ValueError("the generator has no parameters")
        self.eval_noise = self._tensor(np.random.default_rng(eval_noise_seed).standard_normal(
            (self.num_eval_samples, self.noise_dim)))
        self.eval_labels = self.eval_condition = None
        if self.condition == "one_hot":
            self._set_eval_labels(np.arange(self.num_eval_samples) % self.condition_dim)
        self.step = 0
        self.train_seconds = 0.0
        self.history = {"d_loss": [], "g_loss": [], "d_real": [], "d_fake": [], "seconds": [], "eval": []}
        for name in self.d_penalty_names + self.g_penalty_names:
            self.history[name] = []
        self.files = {}

    # -- checks -------------------------------------------------------------------------------------
    def _check_noise_dim(self, noise_dim):
        expected = getattr(self.G, "noise_dim", None)
        if noise_dim is None:
            if expected is None:
                raise ValueError(f"{type(self.G).__name__} has no noise_dim attribute: pass noise_dim=")
            return int(expected)
        noise_dim = _positive_int("noise_dim", noise_dim)
        if expected is not None and noise_dim != expected:
            raise ShapeError(f"GANTrainer: noise_dim={noise_dim}, but the generator takes noise of dimension "
                             f"{expected} (its noise_dim)")
        return noise_dim

    def _check_condition(self, condition, num_classes):
        g_dim = getattr(self.G, "condition_dim", 0) or 0
        d_dim = getattr(self.D, "condition_dim", 0) or 0
        if g_dim != d_dim:
            raise ShapeError(f"GANTrainer: the generator takes a condition of size {g_dim} but the discriminator "
                             f"one of size {d_dim}; build both with the same condition_dim")
        if condition is None and num_classes is None:
            return (None, 0) if g_dim == 0 else ("one_hot", g_dim)
        if g_dim == 0:
            raise ShapeError(f"GANTrainer: condition={condition!r} (num_classes={num_classes!r}) given, but the "
                             f"generator is unconditional (condition_dim=0); build it with condition_dim=")
        if condition is None or condition == "one_hot":
            num_classes = g_dim if num_classes is None else _positive_int("num_classes", num_classes)
            if num_classes != g_dim:
                raise ShapeError(f"GANTrainer: one-hot conditions of num_classes={num_classes} have size "
                                 f"{num_classes}, but the generator and discriminator take a condition of size "
                                 f"{g_dim} (condition_dim)")
            return "one_hot", g_dim
        if not callable(condition):
            raise ValueError(f"condition must be None, 'one_hot' or a callable labels -> (N, k) array, "
                             f"got {condition!r}")
        return condition, g_dim

    def _check_batch(self, batch):
        """Validate the first batch (shape, range, labels, condition size) before any update."""
        if not isinstance(batch, (tuple, list)):
            batch = (batch,)
        x = batch[0]
        expected = getattr(self.G, "output_shape", None)
        if expected is None:
            was = self.G.training
            self.G.eval()
            with no_grad():
                expected = tuple(self.G(self.eval_noise[:1], self._eval_condition(1)).shape[1:])
            self.G.train(was)
        if tuple(x.shape[1:]) != tuple(expected):
            hint = ""
            if math.prod(x.shape[1:]) == math.prod(expected):
                hint = f" (same number of values: reshape the images to (N, {', '.join(map(str, expected))}))"
            raise ShapeError(f"GANTrainer: the data holds images of shape {tuple(x.shape[1:])} per sample, but the "
                             f"generator produces {tuple(expected)}{hint}")
        d_shape = getattr(self.D, "input_shape", None)
        if d_shape is not None and tuple(d_shape) != tuple(expected):
            raise ShapeError(f"GANTrainer: the generator produces samples of shape {tuple(expected)}, but the "
                             f"discriminator takes {tuple(d_shape)}")
        xp = x.backend.xp
        lo, hi = float(x.backend.to_numpy(xp.min(x.data))), float(x.backend.to_numpy(xp.max(x.data)))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"GANTrainer: the first batch of images holds NaN or infinite values "
                             f"(range [{lo}, {hi}])")
        if lo < -1.01 or hi > 1.01:
            raise ValueError(f"GANTrainer: images must lie in [-1, 1] (the generator's tanh range), the first batch "
                             f"spans [{lo:.3g}, {hi:.3g}]; map [0, 1] data with 2x - 1")
        if lo >= 0 and hi > 0:
            warnings.warn(f"GANTrainer: the first batch has no negative values (range [{lo:.3g}, {hi:.3g}]); images "
                          f"should span [-1, 1] (map [0, 1] data with 2x - 1)", stacklevel=3)
        if self.condition is None:
            return
        if len(batch) < 2:
            raise ValueError("GANTrainer: a conditional GAN needs labels: the data loader must yield (images, labels)")
        labels = batch[1]
        if self.condition == "one_hot":
            values = labels.numpy()
            if values.dtype.kind not in "iu" or values.ndim != 1:
                raise ValueError(f"GANTrainer: one-hot conditions need integer class labels of shape (N,), got "
                                 f"{values.dtype} {values.shape}")
            if values.min() < 0 or values.max() >= self.condition_dim:
                raise ShapeError(f"GANTrainer: labels span {values.min()}..{values.max()}, but the condition has "
                                 f"size {self.condition_dim} (one-hot of {self.condition_dim} classes)")
        c = self._condition(labels)
        if tuple(c.shape) != (x.shape[0], self.condition_dim):
            raise ShapeError(f"GANTrainer: the condition function gives conditions of shape {tuple(c.shape)}, but "
                             f"the generator and discriminator take (N, {self.condition_dim}) "
                             f"(N = {x.shape[0]})")

    def _set_eval_labels(self, labels):
        """Fix the labels (and conditions) of the evaluation samples."""
        self.eval_labels = np.resize(np.asarray(labels), self.num_eval_samples)
        self.eval_condition = self._condition(self._labels_tensor(self.eval_labels))

    def _check_labels(self, loader):
        """All labels of a TensorDataset within the one-hot range (cheap, on the host)."""
        arrays = getattr(getattr(loader, "dataset", None), "arrays", None)
        if self.condition != "one_hot" or arrays is None or len(arrays) < 2:
            return
        labels = arrays[1]
        labels = labels if isinstance(labels, np.ndarray) else self._param.backend.to_numpy(labels)
        if labels.size and (labels.min() < 0 or labels.max() >= self.condition_dim):
            raise ShapeError(f"GANTrainer: the data set's labels span {labels.min()}..{labels.max()}, but the "
                             f"condition has size {self.condition_dim} (one-hot of {self.condition_dim} classes)")

    # -- tensors ------------------------------------------------------------------------------------
    def _tensor(self, array):
        p = self._param
        backend = p.backend
        return Tensor._make(backend.asarray(np.asarray(array).astype(backend.numpy_dtype(p.dtype))), backend)

    def noise(self, n):
        """Training noise z ~ N(0, I), shape (n, noise_dim), on the generator's device and dtype."""
        p = self._param
        rng = self.generator_rng or default_generator()
        return Tensor._make(p.backend.random_normal(rng, (n, self.noise_dim), p.dtype), p.backend)

    def _labels_tensor(self, labels):
        backend = self._param.backend
        return Tensor._make(backend.asarray(np.asarray(labels)), backend)

    def _one_hot(self, labels):
        backend = self._param.backend
        xp = backend.xp
        labels = labels.data if isinstance(labels, Tensor) else labels
        classes = xp.arange(self.condition_dim, dtype=labels.dtype, device=backend.device)
        return Tensor._make(xp.astype(labels[:, None] == classes[None, :], self._param.dtype), backend)

    def _condition(self, labels):
        if self.condition is None:
            return None
        if self.condition == "one_hot":
            return self._one_hot(labels)
        c = self.condition(labels)
        c = c if isinstance(c, Tensor) else self._tensor(c)
        return c.detach()

    def _eval_condition(self, n):
        return None if self.eval_condition is None else self.eval_condition[:n]

    def _d_input(self, x):
        for layer in self.noise_layers:
            x = layer(x)
        return x

    # -- one step -----------------------------------------------------------------------------------
    def _check_finite(self, what, value, critic=None):
        if not math.isfinite(value):
            where = f"step {self.step + 1}" + (f", critic iteration {critic + 1}/{self.n_critic}" if critic is not None
                                               else "")
            raise NonFiniteError(f"GANTrainer: the {what} became {value} at {where}; lower the learning rates, add a "
                                 f"regularizer (gradient penalty, spectral norm), or check the data for NaN/inf")

    def _d_penalty(self, p, real, fake, real_logits, fake_logits, c):
        if isinstance(p, GradientPenalty):
            return p(self.D, real, fake, c)
        if isinstance(p, R2):
            return p(self.D, fake, c)
        if isinstance(p, (DRAGAN, R1, ConsistencyRegularization)):
            return p(self.D, real, c)
        if isinstance(p, LeCam):
            return p(real_logits, fake_logits)
        return p(self.D, real, fake, c)

    def _g_penalty(self, p, real, fake, c):
        if isinstance(p, FeatureMatching):
            return p(self.D, real, fake, c, c)
        if isinstance(p, Penalty):
            return p.value(list(self.G.parameters()))
        return p(self.G, self.D, real, fake, c)

    def d_step(self, real, labels, critic=None):
        """One discriminator update on a real batch; returns (d_loss, mean D(real), mean D(fake), {penalty: value})."""
        c = self._condition(labels)
        with no_grad():
            fake = self.G(self.noise(real.shape[0]), c)
        real_in, fake_in = self._d_input(real), self._d_input(fake)
        real_logits, fake_logits = self.D(real_in, c), self.D(fake_in, c)
        d_loss = self.loss.d_loss(real_logits, fake_logits)
        value = d_loss.item()
        self._check_finite("discriminator loss", value, critic)
        total, terms = d_loss, {}
        for name, p in zip(self.d_penalty_names, self.penalties):
            term = self._d_penalty(p, real_in, fake_in, real_logits, fake_logits, c)
            if term is None:
                continue
            terms[name] = term.item()
            self._check_finite(f"discriminator penalty {name[2:]}", terms[name], critic)
            total = total + term
        self.d_optimizer.zero_grad()
        total.backward()
        self.d_optimizer.step()
        return value, F.mean(real_logits).item(), F.mean(fake_logits).item(), terms

    def g_step(self, real, labels):
        """One generator update (D frozen); ``real``/``labels`` feed feature matching and the conditions."""
        c = self._condition(labels)
        d_params = [p for p in self.D.parameters() if p.requires_grad]
        for p in d_params:
            p.requires_grad_(False)
        try:
            fake = self.G(self.noise(real.shape[0]), c)
            g_loss = self.loss.g_loss(self.D(self._d_input(fake), c))
            value = g_loss.item()
            self._check_finite("generator loss", value)
            total, terms = g_loss, {}
            for name, p in zip(self.g_penalty_names, self.g_penalties):
                term = self._g_penalty(p, real, fake, c)
                if term is None:
                    continue
                terms[name] = term.item()
                self._check_finite(f"generator penalty {name[2:]}", terms[name])
                total = total + term
        finally:
            for p in d_params:
                p.requires_grad_(True)
        self.g_optimizer.zero_grad()
        total.backward()
        self.g_optimizer.step()
        return value, terms

    def train_step(self, batches):
        """One step: ``n_critic`` discriminator updates (one batch each from the iterator ``batches``)
        and one generator update; returns the step's logs."""
        self.G.train()
        self.D.train()
        d_losses, d_real, d_fake, d_terms = [], [], [], {name: [] for name in self.d_penalty_names}
        for k in range(self.n_critic):
            batch = next(batches)
            real, labels = batch[0], (batch[1] if len(batch) > 1 else None)
            loss, r, f, terms = self.d_step(real, labels, critic=k)
            d_losses.append(loss)
            d_real.append(r)
            d_fake.append(f)
            for name, v in terms.items():
                d_terms[name].append(v)
        g_loss, g_terms = self.g_step(real, labels)
        for layer in self.noise_layers:
            layer.step()
        logs = {"d_loss": _mean_or_nan(d_losses), "g_loss": g_loss, "d_real": _mean_or_nan(d_real),
                "d_fake": _mean_or_nan(d_fake)}
        logs.update({name: _mean_or_nan(v) for name, v in d_terms.items()})
        logs.update({name: g_terms.get(name, math.nan) for name in self.g_penalty_names})
        return logs

    # -- outputs ------------------------------------------------------------------------------------
    def sample(self, n=None, noise=None, condition=None):
        """Generated samples (a Tensor without history) from the fixed evaluation noise (first ``n``
        rows) or from ``noise``, in eval mode; the modules' modes are restored."""
        if noise is None:
            n = self.num_eval_samples if n is None else n
            if n > self.num_eval_samples:
                raise ValueError(f"sample: n={n} exceeds num_eval_samples={self.num_eval_samples}; pass noise=")
            noise, condition = self.eval_noise[:n], (self._eval_condition(n) if condition is None else condition)
        elif not isinstance(noise, Tensor):
            noise = self._tensor(noise)
        if condition is not None and not isinstance(condition, Tensor):
            condition = self._tensor(condition)
        was = self.G.training
        self.G.eval()
        try:
            with no_grad():
                return self.G(noise, condition)
        finally:
            self.G.train(was)

    def generate(self, n, labels=None, seed=None, batch_size=1000):
        """``n`` fresh samples (a Tensor on the generator's device), drawn in batches in eval mode from
        noise seeded by ``seed`` (conditional GANs: ``labels`` (n,), default ``arange(n) % classes``)."""
        rng = np.random.default_rng(seed)
        if self.condition_dim and labels is None:
            if self.condition == "one_hot":
                labels = np.arange(n) % self.condition_dim
            elif self.eval_labels is not None:
                labels = np.resize(self.eval_labels, n)
            else:
                raise ValueError("generate: pass labels (the condition function sees no data before fit)")
        parts = []
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            z = self._tensor(rng.standard_normal((stop - start, self.noise_dim)))
            c = None
            if self.condition_dim:
                c = self._condition(self._labels_tensor(np.asarray(labels)[start:stop]))
            parts.append(self.sample(noise=z, condition=c).data)
        return Tensor._make(self._param.backend.xp.concat(parts), self._param.backend)

    def save_samples(self, path=None):
        """Write the grid of the fixed evaluation samples as a PNG (default: ``out_dir/samples/step_XXXXXX.png``)."""
        from minireg.gan.plots import save_image_grid
        if path is None:
            if self.out_dir is None:
                raise ValueError("save_samples: give a path or out_dir")
            path = os.path.join(self.out_dir, "samples", f"step_{self.step:06d}.png")
        ncols = self.condition_dim if self.condition == "one_hot" else None
        save_image_grid(self.sample().numpy(), path, ncols=ncols, image_shape=getattr(self.G, "output_shape", None))
        self.files["samples"] = path
        return path

    def checkpoint_paths(self, directory=None):
        directory = directory or self.out_dir
        return (os.path.join(directory, "checkpoint_generator.npz"),
                os.path.join(directory, "checkpoint_discriminator.npz"))

    def save_checkpoint(self, directory=None):
        """``minireg.save`` both networks with their optimizers (each file atomic); returns the paths."""
        g_path, d_path = self.checkpoint_paths(directory)
        history = {k: ([None if isinstance(x, float) and math.isnan(x) else x for x in v] if k != "eval" else v)
                   for k, v in self.history.items()}
        save(g_path, self.G, self.g_optimizer, step=self.step, role="generator")
        save(d_path, self.D, self.d_optimizer, step=self.step, role="discriminator", history=history,
             train_seconds=self.train_seconds)
        self.files["checkpoint"] = d_path
        return g_path, d_path

    def load_checkpoint(self, directory=None):
        """Load both networks, optimizers, the step count and the history; returns the step."""
        g_path, d_path = self.checkpoint_paths(directory)
        g_meta = load(g_path, self.G, self.g_optimizer)
        d_meta = load(d_path, self.D, self.d_optimizer)
        if g_meta["step"] != d_meta["step"]:
            raise ValueError(f"checkpoints of different steps: generator {g_meta['step']}, discriminator "
                             f"{d_meta['step']}")
        self.step, self.train_seconds = int(d_meta["step"]), float(d_meta.get("train_seconds", 0.0))
        history = d_meta.get("history") or {}
        self.history = {k: ([math.nan if x is None else x for x in v] if k != "eval" else list(v))
                        for k, v in history.items()} or self.history
        return self.step

    def evaluate(self):
        """Run ``eval_fn`` now; the metrics are appended to ``history["eval"]`` with the step."""
        metrics = {"step": self.step, **self.eval_fn(self)}
        self.history["eval"].append(metrics)
        return metrics

    # -- the loop -----------------------------------------------------------------------------------
    def _batches(self, loader):
        while True:
            empty = True
            for batch in loader:
                empty = False
                yield batch if isinstance(batch, (tuple, list)) else (batch,)
            if empty:
                raise ValueError("GANTrainer: the data loader produced no batches")

    def _report(self, bar, logs, metrics, total):
        if self.verbose == 0:
            return
        text = f"d_loss {logs['d_loss']:.4g}  g_loss {logs['g_loss']:.4g}"
        line = f"step {self.step}/{total}  {text}"
        if metrics:
            line += "  " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in _QUIET_METRICS
                                     and isinstance(v, (int, float)) and not isinstance(v, bool))
        line += f"  {self.train_seconds:.1f} s"
        if bar is not None:
            bar.set_postfix_str(text, refresh=False)
            if metrics:
                bar.write(line)
        elif self.verbose == 2 and (metrics or self.step % (self.log_every or max(1, total // 10)) == 0
                                    or self.step == total):
            print(line, flush=True)

    def _progress(self, steps):
        if self.verbose != 1:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(total=steps, desc="GAN", leave=False, dynamic_ncols=True)

    def fit(self, loader, steps):
        """Train for ``steps`` more steps on ``loader`` (cycled over epochs); returns the history.

        Everything is checked on the first batch before any parameter changes.
        """
        steps = _positive_int("steps", steps)
        self._check_labels(loader)
        batches = self._batches(loader)
        first = next(batches)
        self._check_batch(first)
        if self.condition is not None and self.eval_labels is None:    # a condition function: first batch's labels
            self._set_eval_labels(first[1].numpy())
        batches = itertools.chain([first], batches)
        total = self.step + steps
        bar = self._progress(steps)
        try:
            for _ in range(steps):
                start = time.perf_counter()
                logs = self.train_step(batches)
                self.train_seconds += time.perf_counter() - start
                self.step += 1
                logs["seconds"] = self.train_seconds
                for k, v in logs.items():
                    self.history.setdefault(k, []).append(v)
                last = self.step == total
                metrics = None
                if self.eval_every and (self.step % self.eval_every == 0 or last):
                    metrics = self.evaluate()
                if self.sample_every and (self.step % self.sample_every == 0 or last):
                    self.save_samples()
                if self.checkpoint_every and (self.step % self.checkpoint_every == 0 or last):
                    self.save_checkpoint()
                if bar is not None:
                    bar.update(1)
                self._report(bar, logs, metrics, total)
        finally:
            if bar is not None:
                bar.close()
        return self.history


__all__ = ["GANTrainer"]
