"""Gradient checks: analytic backward passes against central finite differences in float64.

    >>> import numpy as np, minireg
    >>> from minireg.testing import gradcheck, gradgradcheck
    >>> x = minireg.tensor(np.array([[0.5, -1.0], [2.0, 0.3]]))
    >>> w = minireg.tensor(np.array([1.5, -0.5]))
    >>> gradcheck(lambda x, w: (x * w).exp(), [x, w]).ok
    True
    >>> gradgradcheck(lambda x: x.tanh(), [x]).ok
    True

How it works. Every real-floating input is copied to float64 on its own backend (the numerics
never use float32 finite differences) and all of them are differentiated, whatever their
``requires_grad`` says; other inputs (integer index arrays, Python objects) are passed through as
constants. A cotangent ``v`` (``grad_outputs``, else standard-normal numbers drawn on the host
from ``numpy.random.default_rng(seed)``, never all ones) turns ``fn`` into the scalar
``s(x) = sum_k <v_k, fn(x)_k>``. The analytic gradient of ``s`` comes from ``minireg.grad``;
the numerical one from central differences ``(s(x + eps e) - s(x - eps e)) / (2 eps)``:

* ``mode="full"``: one unit vector ``e`` per input element, compared elementwise with
  ``|analytic - numeric| <= atol + rtol * |numeric|``; costs 2 forward passes per element.
* ``mode="directional"``: ``n_directions`` random unit directions over all inputs at once
  (Chainer's floor keeps every component >= 0.1/sqrt(size)); the directional derivative is
  compared with ``sum_i <grad_i, u_i>``. A failure is re-run in full mode to name the element.
* ``mode="auto"``: full when the differentiable inputs hold <= ``max_full_size`` elements.

Also checked: outputs and gradients are finite (else ``NonFiniteError``), every gradient has its
input's shape and dtype (in float64 and in one extra backward pass on the original dtypes),
``fn`` does not modify its inputs in place, and two backward passes agree within ``nondet_tol``.
float32 kernels are not gradient-checked here: test them by comparing their float32 gradients
with the float64 ones at looser tolerances (e.g. rtol=2e-3).
"""
import dataclasses
from typing import NamedTuple, Optional

import numpy as np

import minireg
from minireg.errors import ArgumentError, ArgumentTypeError, GradcheckError, NonFiniteError, ShapeError

_MAX_DIAGNOSE_SIZE = 4096   # largest input size re-checked element by element after a directional failure


class Worst(NamedTuple):
    """The worst compared value. Directional mode: ``input_index`` is None, ``index`` = (direction,)."""
    input_index: Optional[int]
    index: tuple
    analytic: float
    numeric: float


@dataclasses.dataclass
class GradcheckResult:
    ok: bool
    mode: str
    max_abs_err: float
    max_rel_err: float
    worst: Optional[Worst]
    eps: float
    atol: float = 0.0
    rtol: float = 0.0

    def __bool__(self):
        return self.ok

    def __str__(self):
        head = (f"gradcheck {'passed' if self.ok else 'FAILED'} (mode={self.mode}, eps={self.eps:g}, "
                f"atol={self.atol:g}, rtol={self.rtol:g}): max abs err {self.max_abs_err:.3g}, "
                f"max rel err {self.max_rel_err:.3g}")
        if self.worst is None:
            return head
        w = self.worst
        where = f"direction {w.index[0]}" if w.input_index is None else f"input {w.input_index}, element {w.index}"
        return (f"{head}; worst at {where}: analytic {w.analytic:.10g} vs numeric {w.numeric:.10g} "
                f"(|diff| {abs(w.analytic - w.numeric):.3g}, allowed {self.atol + self.rtol * abs(w.numeric):.3g})")


class _Inputs:
    """The positional inputs of ``fn`` as host copies, from which fresh tensors are made per call."""

    def __init__(self, inputs):
        self.originals, self.hosts, self.backends, self.diff = list(inputs), [], [], []
        for x in self.originals:
            if not isinstance(x, minireg.Tensor) and not (hasattr(x, "shape") and hasattr(x, "dtype")):
                self.hosts.append(None), self.backends.append(None), self.diff.append(False)
                continue
            t = x if isinstance(x, minireg.Tensor) else minireg.tensor(x)
            host = np.array(t.numpy(), copy=True)
            self.hosts.append(host), self.backends.append(t.backend), self.diff.append(host.dtype.kind == "f")
        self.diff_idx = [i for i, d in enumerate(self.diff) if d]

    def make(self, values=None, upcast=True):
        """Fresh tensors (``values`` replaces the host data of differentiable inputs)."""
        out = []
        for i, host in enumerate(self.hosts):
            if host is None:
                out.append(self.originals[i])
                continue
            if self.diff[i]:
                host = values[i] if values is not None else host
                host = host.astype(np.float64) if upcast else host.astype(self.hosts[i].dtype)
            array = self.backends[i].asarray(np.array(host, copy=True))
            out.append(minireg.tensor(array, requires_grad=self.diff[i]))
        return out


def _outputs(fn, xs):
    out = fn(*xs)
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    for k, o in enumerate(outs):
        if not isinstance(o, minireg.Tensor):
            raise ArgumentTypeError(f"gradcheck: fn must return Tensors, output {k} is {type(o).__name__}")
    hosts = [np.asarray(o.numpy()) for o in outs]
    keep = [k for k, h in enumerate(hosts) if h.dtype.kind == "f"]   # integer/bool outputs are not checked
    return [outs[k] for k in keep], [hosts[k] for k in keep]


def _host(obj):
    if isinstance(obj, minireg.Tensor):
        return np.asarray(obj.numpy())
    if isinstance(obj, np.ndarray) or np.isscalar(obj):
        return np.asarray(obj)
    return np.asarray(minireg.tensor(obj).numpy())


def _cotangents(out_hosts, grad_outputs, rng):
    if grad_outputs is None:
        return [np.asarray(rng.standard_normal(h.shape)) for h in out_hosts]
    gos = list(grad_outputs) if isinstance(grad_outputs, (list, tuple)) else [grad_outputs]
    if len(gos) != len(out_hosts):
        raise ShapeError(f"gradcheck: {len(gos)} grad_outputs for {len(out_hosts)} floating outputs")
    vs = [_host(g).astype(np.float64) for g in gos]
    for k, (v, h) in enumerate(zip(vs, out_hosts)):
        if v.shape != h.shape:
            raise ShapeError(f"gradcheck: grad_outputs[{k}] has shape {v.shape}, output {k} has {h.shape}")
    return vs


def _check_unchanged(xs, expected, when):
    for i in range(len(xs)):
        if expected[i] is not None and not np.array_equal(np.asarray(xs[i].numpy()), expected[i], equal_nan=True):
            raise GradcheckError(f"gradcheck: input {i} was modified in place by {when}")


def _check_finite(arrays, what):
    for k, a in enumerate(arrays):
        if a is not None and not np.all(np.isfinite(a)):
            idx = tuple(int(j) for j in np.argwhere(~np.isfinite(a))[0])
            raise NonFiniteError(f"gradcheck: {what} {k} is not finite at element {idx} (value {a[idx]})")


def _analytic(fn, ins, vs, upcast=True):
    """One forward + backward pass on fresh copies; returns host gradients (zeros where unused)."""
    xs = ins.make(upcast=upcast)
    expected = [None if h is None else np.array(x.numpy(), copy=True) for h, x in zip(ins.hosts, xs)]
    outs, out_hosts = _outputs(fn, xs)
    _check_unchanged(xs, expected, "fn")
    _check_finite(out_hosts, "output")
    pairs = [(o, minireg.tensor(o.backend.asarray(v.astype(h.dtype))))
             for o, h, v in zip(outs, out_hosts, vs) if o.requires_grad]
    targets = [xs[i] for i in ins.diff_idx]
    if pairs and targets:
        grads = minireg.grad([p[0] for p in pairs], targets, grad_outputs=[p[1] for p in pairs], allow_unused=True)
    else:
        grads = [None] * len(targets)
    _check_unchanged(xs, expected, "the backward pass")
    result = []
    for i, x, g in zip(ins.diff_idx, targets, grads):
        if g is None:
            result.append(np.zeros(x.shape, np.asarray(x.numpy()).dtype))
            continue
        if tuple(g.shape) != tuple(x.shape) or g.dtype != x.dtype:
            raise GradcheckError(f"gradcheck: gradient of input {i} has shape {tuple(g.shape)} and dtype {g.dtype}, "
                                 f"but the input has shape {tuple(x.shape)} and dtype {x.dtype}")
        result.append(np.asarray(g.numpy()))
    _check_finite(result, "gradient of input")
    return result


def _directional_value(fn, ins, vs, steps, eps):
    """<v, (f(x + eps*steps) - f(x - eps*steps)) / (2 eps)>, steps = {input index: host array}."""
    plus = {i: ins.hosts[i].astype(np.float64) + eps * d for i, d in steps.items()}
    minus = {i: ins.hosts[i].astype(np.float64) - eps * d for i, d in steps.items()}
    fill = lambda ch: [ch.get(i, h) for i, h in enumerate(ins.hosts)]
    yp = _outputs(fn, ins.make(fill(plus)))[1]
    ym = _outputs(fn, ins.make(fill(minus)))[1]
    value = sum(float(np.sum(v * (a.astype(np.float64) - b.astype(np.float64)))) for v, a, b in zip(vs, yp, ym))
    return value / (2 * eps)


def _full_numeric(fn, ins, vs, eps):
    grads = {}
    for i in ins.diff_idx:
        g = grads[i] = np.zeros(ins.hosts[i].shape, np.float64)
        for idx in np.ndindex(*g.shape):
            e = np.zeros(g.shape)
            e[idx] = 1.0
            g[idx] = _directional_value(fn, ins, vs, {i: e}, eps)
            if not np.isfinite(g[idx]):
                raise NonFiniteError(f"gradcheck: fn is not finite within eps={eps:g} of input {i} element {idx}")
    return grads


def numerical_grad(fn, inputs, grad_outputs, eps=1e-6):
    """Central-difference vector-Jacobian product, element by element, in float64.

    Returns one host NumPy float64 array per input (None for non-floating inputs): the gradient of
    ``sum_k <grad_outputs[k], fn(*inputs)[k]>``.

    >>> import numpy as np, minireg
    >>> x = minireg.tensor(np.array([1.0, 2.0]))
    >>> np.round(numerical_grad(lambda x: x * x, [x], np.array([1.0, 0.5]))[0], 6)
    array([2., 2.])
    """
    ins = _Inputs(inputs)
    vs = _cotangents(_outputs(fn, ins.make())[1], grad_outputs, np.random.default_rng(0))
    grads = _full_numeric(fn, ins, vs, eps)
    return [grads.get(i) for i in range(len(ins.hosts))]


def _compare(analytic, numeric, atol, rtol):
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    diff = np.abs(a - n)
    with np.errstate(divide="ignore", invalid="ignore"):   # rel is inf where numeric == 0 != analytic
        rel = np.where(diff == 0, 0.0, diff / np.abs(n))
        ratio = np.where(diff == 0, 0.0, diff / (atol + rtol * np.abs(n)))
    return diff, rel, ratio


def _full_result(analytic, numeric, ins, eps, atol, rtol, mode):
    stats, worst, worst_ratio = [0.0, 0.0], None, -1.0
    for g, i in zip(analytic, ins.diff_idx):
        if g.size == 0:
            continue
        diff, rel, ratio = _compare(g, numeric[i], atol, rtol)
        stats = [max(stats[0], float(diff.max())), max(stats[1], float(rel.max()))]
        idx = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        if ratio[idx] > worst_ratio:
            worst_ratio = float(ratio[idx])
            worst = Worst(i, tuple(int(j) for j in idx), float(g[idx]), float(numeric[i][idx]))
    return GradcheckResult(worst_ratio <= 1.0, mode, stats[0], stats[1], worst, eps, atol, rtol)


def _unit_direction(rng, shapes):
    """A random unit vector over all inputs, every component at least 0.1/sqrt(size) (Chainer)."""
    sizes = [int(np.prod(s)) for s in shapes]
    d = rng.standard_normal(sum(sizes))
    d = d / np.linalg.norm(d)
    u = np.where(d >= 0, 1.0, -1.0) * np.sqrt(0.99 * d * d + 0.01 / d.size)
    return [p.reshape(s) for p, s in zip(np.split(u, np.cumsum(sizes)[:-1]), shapes)]


def _directional_result(fn, ins, vs, analytic, rng, n_directions, eps, atol, rtol):
    result = GradcheckResult(True, "directional", 0.0, 0.0, None, eps, atol, rtol)
    worst_ratio = -1.0
    for k in range(n_directions):
        u = _unit_direction(rng, [ins.hosts[i].shape for i in ins.diff_idx])
        num = _directional_value(fn, ins, vs, dict(zip(ins.diff_idx, u)), eps)
        if not np.isfinite(num):
            raise NonFiniteError(f"gradcheck: fn is not finite within eps={eps:g} of the inputs (direction {k})")
        ana = sum(float(np.sum(g.astype(np.float64) * p)) for g, p in zip(analytic, u))
        diff, rel, ratio = (float(r) for r in _compare(ana, num, atol, rtol))
        result.max_abs_err, result.max_rel_err = max(result.max_abs_err, diff), max(result.max_rel_err, rel)
        if ratio > worst_ratio:
            worst_ratio, result.worst = ratio, Worst(None, (k,), ana, num)
    result.ok = worst_ratio <= 1.0
    return result


def gradcheck(fn, inputs, *, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-4, mode="auto", max_full_size=64,
              n_directions=2, seed=0, nondet_tol=0.0, raise_exception=True):
    """Compare ``fn``'s backward pass with finite differences; see the module docstring.

    Returns a GradcheckResult (truthy when ok). On a mismatch raises ``GradcheckError`` naming the
    input, the element, both values and the tolerances (or returns the failed result when
    ``raise_exception=False``). NaN/inf outputs or gradients raise ``NonFiniteError``.
    """
    if mode not in ("auto", "full", "directional"):
        raise ArgumentError(f"gradcheck: mode must be 'auto', 'full' or 'directional', got {mode!r}")
    ins = _Inputs(inputs)
    rng = np.random.default_rng(seed)
    vs = _cotangents(_outputs(fn, ins.make())[1], grad_outputs, rng)
    analytic = _analytic(fn, ins, vs)
    again = _analytic(fn, ins, vs)
    for i, g1, g2 in zip(ins.diff_idx, analytic, again):
        if g1.size and not (np.array_equal(g1, g2) or float(np.max(np.abs(g1 - g2))) <= nondet_tol):
            raise GradcheckError(f"gradcheck: backward is not deterministic: two runs differ by up to "
                                 f"{float(np.max(np.abs(g1 - g2))):.3g} for input {i} (nondet_tol={nondet_tol:g})")
    if any(ins.hosts[i].dtype != np.float64 for i in ins.diff_idx):
        _analytic(fn, ins, vs, upcast=False)   # gradient dtype/shape on the original dtypes
    sizes = [ins.hosts[i].size for i in ins.diff_idx]
    if mode == "auto":
        mode = "full" if sum(sizes) <= max_full_size else "directional"
    if mode == "full" or sum(sizes) == 0:
        result = _full_result(analytic, _full_numeric(fn, ins, vs, eps), ins, eps, atol, rtol, mode)
    else:
        result = _directional_result(fn, ins, vs, analytic, rng, n_directions, eps, atol, rtol)
        if not result.ok and sum(sizes) <= _MAX_DIAGNOSE_SIZE:
            full = _full_result(analytic, _full_numeric(fn, ins, vs, eps), ins, eps, atol, rtol,
                                "directional, located by a full re-check")
            result = full if not full.ok else result   # name the bad element when full mode sees it
    if not result.ok and raise_exception:
        raise GradcheckError(str(result))
    return result


def gradgradcheck(fn, inputs, *, grad_outputs=None, grad_grad_outputs=None, eps=1e-6, atol=1e-4, rtol=1e-3,
                  mode="auto", max_full_size=64, n_directions=2, seed=0, nondet_tol=0.0, raise_exception=True):
    """Check second derivatives: gradcheck of ``(x, v) -> grad(fn(x), x, v, create_graph=True)``.

    ``v`` (``grad_outputs``, else seeded normal numbers) becomes an extra differentiable input, so
    the double backward is checked in both ``x`` and ``v``. Looser default tolerances than
    gradcheck because the numerics differentiate a computed gradient.
    """
    ins = _Inputs(inputs)
    outs, out_hosts = _outputs(fn, ins.make(upcast=False))
    vs = _cotangents(out_hosts, grad_outputs, np.random.default_rng(seed))
    v_args = [minireg.tensor(o.backend.asarray(v.astype(h.dtype))) for o, h, v in zip(outs, out_hosts, vs)]
    n = len(ins.hosts)

    def first_grad(*args):
        xs, vts = args[:n], args[n:]
        outs = _outputs(fn, xs)[0]
        pairs = [(o, v) for o, v in zip(outs, vts) if o.requires_grad]
        targets = [xs[i] for i in ins.diff_idx]
        grads = [None] * len(targets)
        if pairs and targets:
            grads = minireg.grad([p[0] for p in pairs], targets, grad_outputs=[p[1] for p in pairs],
                                 create_graph=True, allow_unused=True)
        return tuple(g if g is not None else minireg.tensor(x.backend.asarray(np.zeros(x.shape, x.numpy().dtype)))
                     for g, x in zip(grads, targets))

    return gradcheck(first_grad, list(ins.originals) + v_args, grad_outputs=grad_grad_outputs, eps=eps, atol=atol,
                     rtol=rtol, mode=mode, max_full_size=max_full_size, n_directions=n_directions, seed=seed + 1,
                     nondet_tol=nondet_tol, raise_exception=raise_exception)
