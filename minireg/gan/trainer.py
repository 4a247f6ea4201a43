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

Checked before anything trains (``ShapeError``/``ArgumentError`` naming both sides): a noise
dimension other than the generator's, a condition of the wrong size (or labels outside
``num_classes``), a discriminator conditioned differently from the generator, images whose shape
differs from the generator's output, images outside [-1, 1], a conditional GAN fed without
labels. Penalty strengths < 0 are refused by the penalty constructors. During training the
optimizers check every gradient before an update, so a NaN or infinite loss or penalty (whose
gradients are not finite either) raises ``NonFiniteError`` naming the step and the critic
iteration before it reaches the weights; a non-finite value whose gradient is finite (a constant
term) is reported, with its step, when the history is read.

Device reads: the per-step values stay on the device and are read in one transfer at reporting
intervals (``log_every``), evaluations, checkpoints and the end of ``fit``; host data given to
``sample``/``generate``/condition functions is copied to the generator's device explicitly, and
device arrays are used where they are (another device raises ``DeviceError``).

History (``trainer.history``, one entry per step): ``d_loss`` and ``g_loss`` (the adversarial
losses, mean over the critic iterations for D), ``d_real`` / ``d_fake`` (mean D output on real
and generated samples), one ``d/<Penalty>`` or ``g/<Penalty>`` list per regularizer (NaN on
steps where a lazy penalty was skipped), ``seconds`` (cumulative training time), and ``eval``: a
list of ``{"step": s, **eval_fn(trainer)}``.

Outputs under ``out_dir``: ``samples/step_000500.png`` every ``sample_every`` steps (and at the
end), ``checkpoint_generator.npz`` / ``checkpoint_discriminator.npz`` every ``checkpoint_every``
steps (and at the end): ``minireg.save`` of each network with its optimizer, written atomically;
the discriminator's file also holds the step, the history, the lazy penalties' and noise layers'
counters, ``minireg.random``'s state and the position in the data (the shuffling generator's
state when the epoch began and the batches used since). ``GANTrainer.load_checkpoint`` restores
all of it or nothing, and the next ``fit`` on the same loader continues exactly as the
uninterrupted run would, in a fresh process too (bitwise on the same device).
"""
import itertools
import math
import os
import time
import warnings

import numpy as np

from minireg import check
from minireg import functional as F
from minireg._config import no_grad
from minireg.checkpoint import _prepared, _restore, read, save
from minireg.errors import (ArgumentError, ArgumentTypeError, CheckpointError, DeviceError, MiniregError, NonFiniteError,
                            ShapeError)
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
    return check.positive_int(f"GANTrainer: {name}", value)


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


def _describe(key):
    """'discriminator penalty R1' for the history key 'd/R1', and so on."""
    named = {"d_loss": "discriminator loss", "g_loss": "generator loss",
             "d_real": "mean discriminator output on real samples", "d_fake": "mean discriminator output on fakes"}
    if key in named:
        return named[key]
    role, _, name = key.partition("/")
    return f"{'discriminator' if role == 'd' else 'generator'} penalty {name}"


def _device_value(t):
    """A 0-d float64 array of a scalar Tensor's value, left on its device (read later, in bulk);
    float64 so the sums and means match those of Python floats read one by one."""
    xp = t.backend.xp
    return xp.astype(xp.reshape(t.data, ()), xp.float64)


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
        verbose = check.choice("GANTrainer: verbose (0 silent, 1 progress bar, 2 lines)", verbose, (0, 1, 2))
        self.G, self.D = generator, discriminator
        self.loss = loss if isinstance(loss, GANLoss) else get_loss(loss)
        self.n_critic = _positive_int("n_critic", n_critic)
        self.sample_every = _positive_int("sample_every", sample_every, allow_none=True)
        self.checkpoint_every = _positive_int("checkpoint_every", checkpoint_every, allow_none=True)
        self.eval_every = _positive_int("eval_every", eval_every, allow_none=True)
        self.log_every = _positive_int("log_every", log_every, allow_none=True)
        self.num_eval_samples = _positive_int("num_eval_samples", num_eval_samples)
        if (self.sample_every or self.checkpoint_every) and out_dir is None:
            raise ArgumentError("GANTrainer: sample_every and checkpoint_every write files: give out_dir")
        if self.eval_every and eval_fn is None:
            raise ArgumentError("GANTrainer: eval_every needs an eval_fn(trainer) -> dict of metrics")
        if eval_fn is not None and not callable(eval_fn):
            raise ArgumentTypeError(f"GANTrainer: eval_fn must be callable, got {type(eval_fn).__name__}")
        if generator_rng is not None and not isinstance(generator_rng, np.random.Generator):
            raise ArgumentTypeError(f"GANTrainer: generator_rng must be a numpy.random.Generator, "
                                    f"got {type(generator_rng).__name__}")
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
                raise ArgumentTypeError(f"GANTrainer: penalties: {type(p).__name__} is not a GAN penalty or a callable")
        for p in g_penalties:
            if not (isinstance(p, (Penalty, FeatureMatching)) or callable(p)):
                raise ArgumentTypeError(f"GANTrainer: g_penalties: {type(p).__name__} is neither a minireg.reg "
                                        f"Penalty, FeatureMatching nor a callable")
        self.g_penalties = list(g_penalties)
        self.d_penalty_names = _penalty_names(self.penalties, "d")
        self.g_penalty_names = _penalty_names(self.g_penalties, "g")

        self.g_optimizer = g_optimizer or Adam(self.G.parameters(), lr=DEFAULT_LR, betas=DEFAULT_BETAS)
        self.d_optimizer = d_optimizer or Adam(self.D.parameters(), lr=DEFAULT_LR, betas=DEFAULT_BETAS)
        self.d_constraints = list(d_constraints)
        for c in self.d_constraints:
            if not isinstance(c, Constraint):
                raise ArgumentTypeError(f"GANTrainer: d_constraints: expected minireg.reg constraints, "
                                        f"got {type(c).__name__}")
            attach(self.d_optimizer, c)

        self._param = next(iter(self.G.parameters()), None)
        if self._param is None:
            raise ArgumentError("GANTrainer: the generator has no parameters")
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
        self._pending = []               # (step logs) whose values are still on the device
        self._loader = None              # the loader fit() is drawing from, and where in it
        self._epoch_start = None         # state of the shuffling generator when this epoch began
        self._batches_into_epoch = 0
        self._resume_position = None     # set by load_checkpoint, used by the next fit()

    # -- checks -------------------------------------------------------------------------------------
    def _check_noise_dim(self, noise_dim):
        expected = getattr(self.G, "noise_dim", None)
        if noise_dim is None:
            if expected is None:
                raise ArgumentError(f"GANTrainer: {type(self.G).__name__} has no noise_dim attribute: pass noise_dim=")
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
            raise ArgumentError(f"GANTrainer: condition must be None, 'one_hot' or a callable labels -> (N, k) "
                                f"array, got {condition!r}")
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
            raise NonFiniteError(f"GANTrainer: the first batch of images holds NaN or infinite values "
                             f"(range [{lo}, {hi}])")
        if lo < -1.01 or hi > 1.01:
            raise ArgumentError(f"GANTrainer: images must lie in [-1, 1] (the generator's tanh range), the first batch "
                             f"spans [{lo:.3g}, {hi:.3g}]; map [0, 1] data with 2x - 1")
        if lo >= 0 and hi > 0:
            warnings.warn(f"GANTrainer: the first batch has no negative values (range [{lo:.3g}, {hi:.3g}]); images "
                          f"should span [-1, 1] (map [0, 1] data with 2x - 1)", stacklevel=3)
        if self.condition is None:
            return
        if len(batch) < 2:
            raise ArgumentError("GANTrainer: a conditional GAN needs labels: the data loader must yield (images, labels)")
        labels = batch[1]
        if self.condition == "one_hot":
            values = labels.numpy()
            if values.dtype.kind not in "iu" or values.ndim != 1:
                raise ArgumentError(f"GANTrainer: one-hot conditions need integer class labels of shape (N,), got "
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
    def _on_device(self, array, dtype=None):
        """``array`` as a Tensor on the generator's device (cast to ``dtype`` if given): host data
        (NumPy, lists) is copied there explicitly, Tensors and arrays of that device stay put, and
        data of another device raises ``DeviceError`` (never a silent host round trip)."""
        from minireg.backend import backend_of
        backend = self._param.backend
        if isinstance(array, Tensor):
            owner, data = array.backend, array.data
        elif isinstance(array, (np.ndarray, np.generic, list, tuple, int, float)):
            host = np.asarray(array)
            owner, data = backend, backend.asarray(host if dtype is None else host.astype(backend.numpy_dtype(dtype)))
        else:
            owner, data = backend_of(array), array
        if owner is not backend:
            raise DeviceError(f"GANTrainer: got data on {owner.device_name}, but the generator is on "
                              f"{backend.device_name}")
        if dtype is not None and data.dtype != dtype:
            data = backend.xp.astype(data, backend.dtype(dtype))
        return Tensor._make(data, backend)

    def _tensor(self, array):
        return self._on_device(array, self._param.dtype)

    def noise(self, n):
        """Training noise z ~ N(0, I), shape (n, noise_dim), on the generator's device and dtype."""
        p = self._param
        rng = self.generator_rng or default_generator()
        return Tensor._make(p.backend.random_normal(rng, (n, self.noise_dim), p.dtype), p.backend)

    def _labels_tensor(self, labels):
        return self._on_device(labels)

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

    def _optimizer_step(self, optimizer, network, losses, critic=None):
        """``optimizer.step()``. Its gradient check refuses non-finite gradients before any weight
        changes; that error is reported with the loss or penalty that caused it (read only then)."""
        try:
            optimizer.step()
        except NonFiniteError as exc:
            for what, term in losses:
                self._check_finite(what, term.item(), critic)
            where = f"step {self.step + 1}" + ("" if critic is None else f", critic iteration {critic + 1}")
            raise NonFiniteError(f"GANTrainer: a {network} gradient became non-finite at {where} although its "
                                 f"losses are finite; nothing was updated ({exc})") from exc

    def d_step(self, real, labels, critic=None):
        """One discriminator update on a real batch; returns (d_loss, mean D(real), mean D(fake),
        {penalty: value}), each a 0-d float64 array on the device (read in bulk by the history)."""
        c = self._condition(labels)
        with no_grad():
            fake = self.G(self.noise(real.shape[0]), c)
        real_in, fake_in = self._d_input(real), self._d_input(fake)
        real_logits, fake_logits = self.D(real_in, c), self.D(fake_in, c)
        d_loss = self.loss.d_loss(real_logits, fake_logits)
        total, losses, terms = d_loss, [("discriminator loss", d_loss)], {}
        for name, p in zip(self.d_penalty_names, self.penalties):
            term = self._d_penalty(p, real_in, fake_in, real_logits, fake_logits, c)
            if term is None:
                continue
            losses.append((f"discriminator penalty {name[2:]}", term))
            terms[name] = _device_value(term)
            total = total + term
        total = total + self.D.regularization_loss()    # activity regularizers of D's last training forward
        self.d_optimizer.zero_grad()
        total.backward()
        self._optimizer_step(self.d_optimizer, "discriminator", losses, critic)
        return (_device_value(d_loss), _device_value(F.mean(real_logits)), _device_value(F.mean(fake_logits)),
                terms)

    def g_step(self, real, labels):
        """One generator update (D frozen); ``real``/``labels`` feed feature matching and the conditions.
        Returns (g_loss, {penalty: value}) as 0-d float64 arrays on the device."""
        c = self._condition(labels)
        d_params = [p for p in self.D.parameters() if p.requires_grad]
        for p in d_params:
            p.requires_grad_(False)
        try:
            fake = self.G(self.noise(real.shape[0]), c)
            g_loss = self.loss.g_loss(self.D(self._d_input(fake), c))
            total, losses, terms = g_loss, [("generator loss", g_loss)], {}
            for name, p in zip(self.g_penalty_names, self.g_penalties):
                term = self._g_penalty(p, real, fake, c)
                if term is None:
                    continue
                losses.append((f"generator penalty {name[2:]}", term))
                terms[name] = _device_value(term)
                total = total + term
            total = total + self.G.regularization_loss()    # activity regularizers of G's forward
        finally:
            for p in d_params:
                p.requires_grad_(True)
        self.g_optimizer.zero_grad()
        total.backward()
        self._optimizer_step(self.g_optimizer, "generator", losses)
        return _device_value(g_loss), terms

    def train_step(self, batches):
        """One step: ``n_critic`` discriminator updates (one batch each from the iterator ``batches``)
        and one generator update; returns the step's logs (0-d arrays on the device, NaN for a lazy
        penalty that skipped this step)."""
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
                raise ArgumentError(f"sample: n={n} exceeds num_eval_samples={self.num_eval_samples}; pass noise=")
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
                raise ArgumentError("generate: pass labels (the condition function sees no data before fit)")
        labels = None if labels is None else self._labels_tensor(labels)
        parts = []
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            z = self._tensor(rng.standard_normal((stop - start, self.noise_dim)))
            c = None
            if self.condition_dim:
                c = self._condition(Tensor._make(labels.data[start:stop], labels.backend))
            parts.append(self.sample(noise=z, condition=c).data)
        return Tensor._make(self._param.backend.xp.concat(parts), self._param.backend)

    def save_samples(self, path=None):
        """Write the grid of the fixed evaluation samples as a PNG (default: ``out_dir/samples/step_XXXXXX.png``)."""
        from minireg.gan.plots import save_image_grid
        if path is None:
            if self.out_dir is None:
                raise ArgumentError("save_samples: give a path or out_dir")
            path = os.path.join(self.out_dir, "samples", f"step_{self.step:06d}.png")
        ncols = self.condition_dim if self.condition == "one_hot" else None
        save_image_grid(self.sample().numpy(), path, ncols=ncols, image_shape=getattr(self.G, "output_shape", None))
        self.files["samples"] = path
        return path

    def checkpoint_paths(self, directory=None):
        directory = directory or self.out_dir
        return (os.path.join(directory, "checkpoint_generator.npz"),
                os.path.join(directory, "checkpoint_discriminator.npz"))

    # -- exact resume ---------------------------------------------------------------------------------
    def _stateful(self):
        """The penalties and noise layers that count their calls (lazy R1/R2, annealed noise)."""
        return [p for p in (*self.penalties, *self.noise_layers, *self.g_penalties) if isinstance(getattr(p, "steps", None), int)]

    def _shuffle_generator(self):
        loader = self._loader
        if loader is None or not getattr(loader, "shuffle", False):
            return None
        return getattr(loader, "generator", None) or default_generator()

    def _trainer_state(self):
        shuffle = self._shuffle_generator()
        return {"step": self.step, "train_seconds": self.train_seconds, "history": self._saved_history(),
                "counters": [p.steps for p in self._stateful()],
                "generator_rng": None if self.generator_rng is None else self.generator_rng.bit_generator.state,
                "data": {"batches": self._batches_into_epoch, "epoch_start": self._epoch_start,
                         "shuffle_now": None if shuffle is None else shuffle.bit_generator.state}}

    def _saved_history(self):
        self._flush()
        return {k: ([None if isinstance(x, float) and math.isnan(x) else x for x in v] if k != "eval" else v)
                for k, v in self.history.items()}

    def save_checkpoint(self, directory=None):
        """``minireg.save`` both networks with their optimizers (each file atomic); the
        discriminator's file also holds the trainer's state (step, history, penalty counters, the
        random state and the position in the data), so ``load_checkpoint`` + ``fit`` continue
        exactly as the uninterrupted run would (in a fresh process too). Returns the paths."""
        g_path, d_path = self.checkpoint_paths(directory)
        save(g_path, self.G, self.g_optimizer, step=self.step, role="generator")
        save(d_path, self.D, self.d_optimizer, rng_state=True, step=self.step, role="discriminator",
             gan=self._trainer_state())
        self.files["checkpoint"] = d_path
        return g_path, d_path

    def load_checkpoint(self, directory=None):
        """Load both networks, optimizers and the trainer's state, all or nothing (a corrupt or
        mismatched file raises ``CheckpointError`` and changes nothing); returns the step. The next
        ``fit`` on the same data loader continues where the saved run was."""
        g_path, d_path = self.checkpoint_paths(directory)
        g_contents, d_contents = read(g_path), read(d_path)
        state = d_contents["metadata"].get("gan")
        expected = ["counters", "data", "generator_rng", "history", "step", "train_seconds"]
        if not isinstance(state, dict) or sorted(state) != expected:
            raise CheckpointError(f"{d_path} holds no complete GANTrainer state (write it with save_checkpoint)")
        if g_contents["metadata"].get("step") != state["step"]:
            raise CheckpointError(f"checkpoints of different steps: generator {g_contents['metadata'].get('step')}, "
                                  f"discriminator {state['step']}")
        try:
            step = check.integer("step", state["step"], low=0)
            seconds = check.nonnegative("train_seconds", state["train_seconds"])
        except (ArgumentError, ArgumentTypeError) as exc:
            raise CheckpointError(f"{d_path}: {exc}") from None
        stateful = self._stateful()
        counters = state["counters"]
        if not isinstance(counters, list) or len(counters) != len(stateful) or \
                not all(isinstance(n, int) and n >= 0 for n in counters):
            raise CheckpointError(f"{d_path}: {len(counters) if isinstance(counters, list) else counters!r} saved "
                                  f"penalty counters for {len(stateful)} counting penalties here: resume with the "
                                  f"same penalties")
        if (state["generator_rng"] is None) != (self.generator_rng is None):
            raise CheckpointError(f"{d_path}: the saved run {'had' if state['generator_rng'] else 'had no'} its own "
                                  f"generator_rng; resume the same way")
        noise_rng = None
        if self.generator_rng is not None:
            noise_rng = np.random.default_rng()
            try:
                noise_rng.bit_generator.state = state["generator_rng"]
            except (TypeError, ValueError, KeyError) as exc:
                raise CheckpointError(f"{d_path}: bad generator_rng state: {exc}") from None
        history = {k: ([math.nan if x is None else x for x in v] if k != "eval" else list(v))
                   for k, v in (state["history"] or {}).items()}

        def assign():
            self.step, self.train_seconds = step, seconds
            self.history = history or self.history
            self._pending.clear()
            for p, n in zip(stateful, counters):
                p.steps = n
            if noise_rng is not None:
                self.generator_rng.bit_generator.state = noise_rng.bit_generator.state
            self._resume_position = state["data"]

        g_optimizer = _prepared(g_path, "generator optimizer state", self.g_optimizer, g_contents["optimizer"])
        g_before = self.G.state_dict()
        try:
            self.G.load_state_dict(g_contents["model"])
        except (MiniregError, TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot load the generator from {g_path}: {exc}") from exc
        try:
            _restore(d_path, d_contents, self.D, self.d_optimizer, rng_state=True, extra=[g_optimizer, assign])
        except CheckpointError:
            self.G.load_state_dict(g_before)          # keep the pair consistent
            raise
        return self.step

    def evaluate(self):
        """Run ``eval_fn`` now; the metrics are appended to ``history["eval"]`` with the step."""
        self._flush()
        metrics = {"step": self.step, **self.eval_fn(self)}
        self.history["eval"].append(metrics)
        return metrics

    # -- the history: per-step values stay on the device until read in bulk ---------------------------
    def _flush(self):
        """Read every pending step's values in one transfer, append them to the history and report
        the first non-finite loss or penalty (it never reached the weights: the optimizers check
        gradients before each update)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        # host numbers are exactly floats (seconds, NaN for a skipped lazy penalty); NumPy's float64 is a float too
        on_device = [(step, logs, k) for step, logs in pending for k, v in logs.items() if type(v) is not float]
        bad = None
        if on_device:
            backend = self._param.backend
            values = backend.to_numpy(backend.xp.stack([logs[k] for _, logs, k in on_device]))
            for (step, logs, k), v in zip(on_device, values.tolist()):
                logs[k] = v
                if bad is None and not math.isfinite(v):
                    bad = (step, k, v)
        for _, logs in pending:
            for k, v in logs.items():
                self.history.setdefault(k, []).append(v)
        if bad is not None:
            step, key, value = bad
            raise NonFiniteError(f"GANTrainer: the {_describe(key)} became {value} at step {step}; lower the learning "
                                 f"rates, add a regularizer (gradient penalty, spectral norm), or check the data")

    # -- the loop -----------------------------------------------------------------------------------
    def _batches(self, loader):
        """Batches of ``loader`` over epochs, recording the position (for checkpoints). After
        ``load_checkpoint``, the first epoch is the saved one: its order is drawn again from the
        saved state of the shuffling generator, and the batches already used are skipped."""
        resume, self._resume_position = self._resume_position, None
        while True:
            shuffle = self._shuffle_generator()
            skip = 0
            if resume is not None and resume.get("batches"):
                skip = resume["batches"]
                if shuffle is not None and resume.get("epoch_start") is not None:
                    shuffle.bit_generator.state = resume["epoch_start"]
            self._epoch_start = None if shuffle is None else shuffle.bit_generator.state
            self._batches_into_epoch = 0
            empty = True
            for batch in loader:
                empty = False
                if resume is not None:        # this epoch's order is drawn: back to the saved present
                    if shuffle is not None and resume.get("shuffle_now") is not None:
                        shuffle.bit_generator.state = resume["shuffle_now"]
                    resume = None
                self._batches_into_epoch += 1
                if skip:
                    skip -= 1
                    continue
                yield batch if isinstance(batch, (tuple, list)) else (batch,)
            resume = None
            if empty:
                raise ArgumentError("GANTrainer: the data loader produced no batches")

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
        else:
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

        Everything is checked on the first batch before any parameter changes. The step's values
        stay on the device and are read in bulk every ``log_every`` steps (default: a tenth of the
        run) for the progress report, and at evaluations, checkpoints and the end.
        """
        steps = _positive_int("steps", steps)
        self._check_labels(loader)
        self._loader = loader
        batches = self._batches(loader)
        first = next(batches)
        self._check_batch(first)
        if self.condition is not None and self.eval_labels is None:    # a condition function: first batch's labels
            self._set_eval_labels(first[1].numpy())
        batches = itertools.chain([first], batches)
        total = self.step + steps
        report_every = self.log_every or max(1, total // 10)
        bar = self._progress(steps)
        try:
            for _ in range(steps):
                start = time.perf_counter()
                logs = self.train_step(batches)
                self.train_seconds += time.perf_counter() - start
                self.step += 1
                logs["seconds"] = self.train_seconds
                self._pending.append((self.step, logs))
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
                if self.verbose and (metrics or last or self.step % report_every == 0):
                    self._flush()
                    self._report(bar, {k: v[-1] for k, v in self.history.items() if k != "eval"}, metrics, total)
            self._flush()
        finally:
            if bar is not None:
                bar.close()
        return self.history


__all__ = ["GANTrainer"]
