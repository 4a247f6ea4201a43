"""Interval estimates for the study's tables, in plain Python (no SciPy needed).

- ``t_quantile(p, df)``: the Student-t quantile, from the regularized incomplete beta function
  (Numerical Recipes' continued fraction) by bisection; matches ``scipy.stats.t.ppf`` to 1e-9.
- ``summary(values)``: ``{mean, ci95: [lo, hi], per_seed}``, the t-interval
  ``mean ± t_{0.975, n-1} · s / sqrt(n)`` (s: sample standard deviation).
- ``paired(values, baseline)``: the same interval for the per-seed differences ``values - baseline``
  (same seeds, same splits), so what the two share (the split, the initial weights) cancels;
  ``indistinguishable`` when the interval covers 0.
- ``median_iqr(values)``: ``{median, iqr: [q1, q3], per_seed}`` (linear interpolation, NumPy's
  default), for the GAN metrics, whose distributions over seeds are skewed.

Undefined numbers (one seed: no interval) are ``None``, which JSON writes as ``null``.
"""
import math

import numpy as np

from minireg import check
from minireg.errors import ArgumentError

CONFIDENCE = 0.95


def _betacf(a, b, x):
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with ``df`` degrees of freedom: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t > 0."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p, df):
    """The ``p`` quantile of Student's t with ``df`` > 0 degrees of freedom (bisection on ``t_cdf``)."""
    p = check.real("t_quantile: p", p, low=0, high=1, low_open=True, high_open=True)
    df = check.positive("t_quantile: df", df)
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_interval(values, confidence=CONFIDENCE):
    """(mean, lo, hi): the t-interval of the mean of ``values``; lo = hi = None for a single value."""
    values = np.asarray([float(v) for v in values], dtype=np.float64)
    if values.size == 0:
        raise ArgumentError("t_interval: values is empty; expected at least one number")
    mean = float(values.mean())
    if values.size < 2:
        return mean, None, None
    half = t_quantile(0.5 + confidence / 2, values.size - 1) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, mean - half, mean + half


def summary(values, confidence=CONFIDENCE):
    """``{"mean", "ci95": [lo, hi], "per_seed"}`` of ``values`` (one per seed)."""
    mean, lo, hi = t_interval(values, confidence)
    return {"mean": mean, "ci95": [lo, hi], "per_seed": [float(v) for v in values]}


def paired(values, baseline, confidence=CONFIDENCE):
    """The paired comparison of ``values`` with ``baseline`` (same seeds, in the same order):
    ``{"mean_diff", "ci95": [lo, hi], "indistinguishable"}`` of ``values - baseline``."""
    values, baseline = list(values), list(baseline)
    if len(values) != len(baseline):
        raise ArgumentError(f"paired: {len(values)} values against {len(baseline)} baseline values; the comparison "
                         f"needs the same seeds on both sides")
    mean, lo, hi = t_interval([v - b for v, b in zip(values, baseline)], confidence)
    return {"mean_diff": mean, "ci95": [lo, hi], "indistinguishable": lo is None or lo <= 0.0 <= hi}


def median_iqr(values):
    """``{"median", "iqr": [q1, q3], "per_seed"}`` of ``values``."""
    values = np.asarray([float(v) for v in values], dtype=np.float64)
    if values.size == 0:
        raise ArgumentError("median_iqr: values is empty; expected at least one number")
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "iqr": [float(q1), float(q3)], "per_seed": values.tolist()}
