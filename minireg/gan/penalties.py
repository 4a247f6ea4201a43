"""GAN regularizers: gradient penalties, feature matching, consistency, LeCam and instance noise.

Every penalty returns a differentiable scalar Tensor to add to a loss (instance noise instead
perturbs D's inputs). The gradient penalties (GradientPenalty, DRAGAN, R1, R2) differentiate D
with respect to its input with ``minireg.grad(..., create_graph=True)``, so the penalty itself
is differentiable with respect to D's weights (double backward). They compute the gradient of
sum_i D(x_i), which gives every sample its own gradient only when D treats samples
independently: no batch norm in D (layer norm is fine).

``D`` is any callable ``D(x)`` (or ``D(x, condition)`` when a condition is passed), e.g. a
``minireg.gan.models.Discriminator``; its output holds one value per sample. Random draws
(interpolation weights, perturbations, augmentations, noise) come from the host generator given
as ``generator`` (a ``numpy.random.Generator``: the same numbers on every backend), else from
minireg's stream on the data's device at call time (``minireg.random``), so ``minireg.manual_seed``
makes them reproducible on each backend.

Hyperparameters must be finite and >= 0, else ``ValueError`` at construction. Each class
documents its paper's defaults.
"""
from minireg import check
from minireg import functional as F
from minireg.autograd import grad
from minireg.errors import ArgumentError, ShapeError
from minireg.random import default_generator
from minireg.reg.base import check_strength
from minireg.tensor import Tensor

# Added under the square root of a gradient norm: sqrt has an infinite derivative at 0.
_NORM_EPS = 1e-12
_SHIFT_FRACTION = 1 / 8     # CR translations: up to 1/8 of the image size (Zhang et al. 2020; StudioGAN)
AUGMENTATIONS = ("flip_translate", "flip", "translate")


class _Readable:
    """``Name(arg=value, ...)`` from the constructor's arguments (a ``generator`` only when given),
    then the running state that changes during training (step counts, LeCam's EMAs) when it exists."""
    _state = ()

    def __repr__(self):
        import inspect
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        shown = [f"{n}={getattr(self, n)!r}" for n in names if not (n == "generator" and self.generator is None)]
        state = [f"{n}={_plain(getattr(self, n))!r}" for n in self._state if getattr(self, n, None) is not None]
        return f"{type(self).__name__}({', '.join(shown)}{'; ' + ', '.join(state) if state else ''})"


def _plain(value):
    """A number for a 0-d device array (an EMA), else the value."""
    return float(value.item()) if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


def _call(fn, x, condition):
    return fn(x) if condition is None else fn(x, condition)


def _uniform(generator, like, shape):
    """U[0, 1) numbers of ``like``'s dtype on its device, drawn on the host."""
    return Tensor._make(like.backend.random_uniform(generator or default_generator(), shape, like.dtype), like.backend)


def _per_sample_shape(x):
    return (x.shape[0],) + (1,) * (x.ndim - 1)


def input_gradients(D, x, condition=None):
    """(D(x), grad_x sum_i D(x_i)) at a detached copy of ``x``; the gradient keeps its graph."""
    x = x.detach().requires_grad_()
    out = _call(D, x, condition)
    return out, grad(F.sum(out), x, create_graph=True)[0]


def _squared_norms(g):
    """||g_i||^2 per sample, shape (N,)."""
    return F.sum(F.reshape(g * g, (g.shape[0], -1)), axis=1)


def _unit_gradient_penalty(D, points, condition):
    """E (||grad D(points)||_2 - 1)^2."""
    _, g = input_gradients(D, points, condition)
    deviation = F.sqrt(_squared_norms(g) + _NORM_EPS) - 1.0
    return F.mean(deviation * deviation)


class GradientPenalty(_Readable):
    """WGAN-GP (Gulrajani et al. 2017): weight * E (||grad_x D(x_hat)||_2 - 1)^2.

    x_hat = eps x + (1 - eps) x_fake on random interpolates, eps ~ U[0, 1] per sample. Paper
    defaults: weight 10, 5 critic steps per generator step, Adam(1e-4, betas (0, 0.9)), no batch
    norm in the critic. ``penalty(D, real, fake, condition=None)``; a conditional D gets the same
    condition for each interpolate (that of its real and fake pair).
    """

    def __init__(self, weight=10.0, generator=None):
        self.weight = check_strength(f"{type(self).__name__}: weight", weight)
        self.generator = generator

    def interpolates(self, real, fake):
        """eps real + (1 - eps) fake, detached, one eps ~ U[0, 1] per sample."""
        if real.shape != fake.shape:
            raise ShapeError(f"GradientPenalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} samples "
                             f"must have the same shape")
        eps = _uniform(self.generator, real, _per_sample_shape(real))
        return eps * real.detach() + (1.0 - eps) * fake.detach()

    def __call__(self, D, real, fake, condition=None):
        return self.weight * _unit_gradient_penalty(D, self.interpolates(real, fake), condition)


class DRAGAN(_Readable):
    """DRAGAN (Kodali et al. 2017): weight * E (||grad_x D(x_hat)||_2 - 1)^2 around the real data.

    x_hat = x + alpha * c * std(x) * u, with alpha ~ U[0, 1] per sample, u ~ U[0, 1] per element
    and std(x) the standard deviation of the whole real batch (the authors' code and StudioGAN's
    ``cal_dra_penalty``). Defaults weight 10, c 0.5. ``penalty(D, real, condition=None)``.
    """

    def __init__(self, weight=10.0, c=0.5, generator=None):
        self.weight = check_strength(f"{type(self).__name__}: weight", weight)
        self.c = check_strength(f"{type(self).__name__}: c", c)
        self.generator = generator

    def perturbed(self, real):
        """The perturbed real samples x_hat, detached."""
        real = real.detach()
        alpha = _uniform(self.generator, real, _per_sample_shape(real))
        u = _uniform(self.generator, real, real.shape)
        return real + alpha * (self.c * F.sqrt(F.var(real))) * u

    def __call__(self, D, real, condition=None):
        return self.weight * _unit_gradient_penalty(D, self.perturbed(real), condition)


class R1(_Readable):
    """R1 (Mescheder et al. 2018): gamma/2 * E_{x ~ data} ||grad_x D(x)||^2, on real samples.

    ``gamma`` 10 is common (Mescheder et al.; StudioGAN's CIFAR-10 StyleGAN2 uses 0.01).
    Lazy regularization (Karras et al. 2020, StyleGAN2): with ``lazy_interval`` k the penalty is
    computed only on steps where ``step % k == 0``, multiplied by k so that its average strength
    stays gamma/2 (StyleGAN2: k = 16); on other steps the call returns None::

        reg = r1(D, real)                # call once per discriminator step
        if reg is not None:
            d_loss = d_loss + reg

    The object counts its calls in ``steps`` (starting at 0); pass ``step=`` to use your own
    counter instead (``steps`` then continues from it).
    """

    _state = ('steps',)

    def __init__(self, gamma=10.0, lazy_interval=1):
        self.gamma = check_strength(f"{type(self).__name__}: gamma", gamma)
        self.lazy_interval = check.positive_int(f"{type(self).__name__}: lazy_interval", lazy_interval)
        self.steps = 0

    def __call__(self, D, x, condition=None, step=None):
        step = self.steps if step is None else step
        self.steps = step + 1
        if step % self.lazy_interval:
            return None
        _, g = input_gradients(D, x, condition)
        return (self.gamma / 2 * self.lazy_interval) * F.mean(_squared_norms(g))


class R2(R1):
    """R2 (Mescheder et al. 2018): gamma/2 * E_z ||grad_x D(G(z))||^2, R1 on generated samples.

    Same arguments and lazy schedule as ``R1``; call it with fake samples.
    """


class FeatureMatching(_Readable):
    """Feature matching (Salimans et al. 2016): weight * ||E f(x_real) - E f(G(z))||_2^2, f = D.features.

    A generator loss (default weight 1). The real mean E f(x_real) is a constant target
    (detached); the gradient flows through f(G(z)). ``penalty(D, real, fake, real_condition=None,
    fake_condition=None)``. (StudioGAN uses the mean absolute difference instead.)
    """

    def __init__(self, weight=1.0):
        self.weight = check_strength(f"{type(self).__name__}: weight", weight)

    def __call__(self, D, real, fake, real_condition=None, fake_condition=None):
        target = F.mean(_call(D.features, real, real_condition), axis=0).detach()
        diff = F.mean(_call(D.features, fake, fake_condition), axis=0) - target
        return self.weight * F.sum(diff * diff)


class ConsistencyRegularization(_Readable):
    """CR-GAN (Zhang et al. 2020): weight * E (D(x) - D(T(x)))^2, T a random augmentation.

    Default weight 10. ``augment``:

    - ``"flip_translate"`` (the paper's T), ``"flip"`` or ``"translate"`` on NCHW images: each
      sample is flipped horizontally with probability 1/2 and/or shifted by integers
      (dy, dx) ~ U{-H/8..H/8} x U{-W/8..W/8} with zero fill (StudioGAN's ``CR_DiffAug``);
    - any callable ``x -> T(x)`` (for flat samples, or other augmentations).

    The random choices come from the host generator; the images never leave their device.
    ``penalty(D, x, condition=None)`` with real samples x (bCR: call it on fakes as well).
    """

    def __init__(self, weight=10.0, augment="flip_translate", generator=None):
        self.weight = check_strength(f"{type(self).__name__}: weight", weight)
        if not callable(augment) and augment not in AUGMENTATIONS:
            raise ArgumentError(f"augment must be one of {AUGMENTATIONS} or a callable, got {augment!r}")
        self.augment, self.generator = augment, generator

    def transform(self, x):
        """T(x): the augmented samples."""
        if callable(self.augment):
            return self.augment(x)
        if x.ndim != 4:
            raise ShapeError(f"ConsistencyRegularization: augment={self.augment!r} needs images of shape "
                             f"(N, C, H, W), got {tuple(x.shape)}; pass a callable augment for other inputs")
        rng = self.generator or default_generator()
        n, _, height, width = x.shape
        flips = rng.random(n) < 0.5 if "flip" in self.augment else [False] * n
        translate = "translate" in self.augment
        sh, sw = (int(height * _SHIFT_FRACTION), int(width * _SHIFT_FRACTION)) if translate else (0, 0)
        shifts = zip(rng.integers(-sh, sh + 1, n), rng.integers(-sw, sw + 1, n))
        padded = F.pad(x, ((0, 0), (0, 0), (sh, sh), (sw, sw)))
        samples = []
        for i, ((dy, dx), flip) in enumerate(zip(shifts, flips)):
            top, left = sh + int(dy), sw + int(dx)
            sample = padded[i:i + 1, :, top:top + height, left:left + width]
            samples.append(sample[:, :, :, ::-1] if flip else sample)
        return F.concatenate(samples, axis=0)

    def __call__(self, D, x, condition=None):
        diff = _call(D, x, condition) - _call(D, self.transform(x), condition)
        return self.weight * F.mean(diff * diff)


class LeCam(_Readable):
    """LeCam regularization (Tseng et al. 2021): weight * (E (D(x) - a_F)^2 + E (D(G(z)) - a_R)^2).

    a_R and a_F are exponential moving averages of the mean of D on real and fake samples, kept
    in ``ema_real`` and ``ema_fake`` (0-d Tensors, None before the first call). Each call first
    updates them with the batch, a <- decay * a + (1 - decay) * mean (the first call sets them to
    the batch means), then returns the penalty with the updated averages as constants. Defaults
    weight 0.3, ``ema_decay`` 0.99 (StudioGAN). Call it once per discriminator step with that
    step's logits: ``penalty(real_logits, fake_logits)``. (StudioGAN's variant clips with relu.)
    """

    _state = ('ema_real', 'ema_fake')

    def __init__(self, weight=0.3, ema_decay=0.99):
        self.weight = check_strength(f"{type(self).__name__}: weight", weight)
        self.ema_decay = check_strength(f"{type(self).__name__}: ema_decay", ema_decay)
        if self.ema_decay > 1:
            raise ArgumentError(f"ema_decay must lie in [0, 1], got {ema_decay!r}")
        self.ema_real = self.ema_fake = None

    def _updated(self, ema, logits):
        batch_mean = F.mean(logits.detach())
        return batch_mean if ema is None else self.ema_decay * ema + (1 - self.ema_decay) * batch_mean

    def __call__(self, real_logits, fake_logits):
        self.ema_real = self._updated(self.ema_real, real_logits)
        self.ema_fake = self._updated(self.ema_fake, fake_logits)
        real_gap, fake_gap = real_logits - self.ema_fake, fake_logits - self.ema_real
        return self.weight * (F.mean(real_gap * real_gap) + F.mean(fake_gap * fake_gap))


class InstanceNoise(_Readable):
    """Instance noise (Sonderby et al. 2017; Arjovsky & Bottou 2017): x + N(0, sigma_t^2) for D's inputs.

    Apply it to real and fake samples alike: ``D(noise(real))``, ``D(noise(fake))``. sigma_t =
    ``std`` (default 0.1 for data in [-1, 1]), or, with ``anneal_steps`` T, std * max(0, 1 - t/T),
    annealed linearly to 0 over T steps; t counts calls of ``step()`` (once per training step).
    At sigma_t = 0 the input is returned unchanged.
    """

    _state = ('steps',)

    def __init__(self, std=0.1, anneal_steps=None, generator=None):
        self.std = check_strength(f"{type(self).__name__}: std", std)
        self.anneal_steps = None if anneal_steps is None else check.positive_int(
            "InstanceNoise: anneal_steps", anneal_steps)
        self.generator = generator
        self.steps = 0

    @property
    def current_std(self):
        if self.anneal_steps is None:
            return self.std
        return self.std * max(0.0, 1.0 - self.steps / self.anneal_steps)

    def step(self):
        """Advance the annealing schedule by one training step."""
        self.steps += 1

    def __call__(self, x):
        std = self.current_std
        if std == 0:
            return x
        noise = x.backend.random_normal(self.generator or default_generator(), x.shape, x.dtype, std=std)
        return x + Tensor._make(noise, x.backend)
