"""Hard constraints: after each update a parameter is projected onto a feasible set.

Every class implements ``project_(param)`` (in place on ``param.data``, through the backend's
kernel table or array namespace, so the data never leaves its device) and
``is_feasible(param, tol)``. Attach them with ``minireg.reg.attach`` (or a layer's
``weight_constraint``); the optimizer projects after each update.

Units and ``axis``. Norm constraints act on *units*:

- ``axis="rows"`` (default): each output unit, i.e. each row of a Linear weight (out, in) and each
  filter of a conv weight (out, in, kh, kw): the norm runs over all axes but 0;
- ``axis="columns"``: each input unit of a 2-D weight, the norm runs over axis 0.

Keras stores Dense kernels as (in, out) and conv kernels as (kh, kw, in, out), and its ``axis``
names the axes the norm runs over. So Keras ``MaxNorm(axis=0)`` on a Dense kernel (its default)
and ``MaxNorm(axis=[0, 1, 2])`` on a conv kernel are our ``axis="rows"``; Keras ``axis=1`` on a
Dense kernel is our ``"columns"``. ``torch.renorm(w, 2, 0, c)`` is our rows.

Feasibility is checked with a slack of ``tol * max(1, |bound|)``: absolute for bounds up to 1,
relative beyond, so float32 rounding of a projected point still counts as feasible.

Unit norms are accumulated in float64 whatever the parameter's dtype (as the compiled kernels
do), so float32 units with entries near 1e20 (whose squares overflow float32) or 1e-20 (whose
squares underflow to 0) are measured and rescaled correctly.
"""
import math

from minireg import check
from minireg.errors import ArgumentError, ShapeError
from minireg.reg.base import Constraint

_AXES = ("rows", "columns")


def _slack(bound, tol):
    return tol * max(1.0, abs(bound))


def _all(xp, condition):
    return bool(xp.all(condition))


def _units(xp, data, axis):
    """The (units, fan) matrix of ``data``: rows -> (out, -1), columns -> data.T, None -> (1, -1)."""
    if axis == "columns":
        return xp.permute_dims(data, (1, 0))
    return xp.reshape(data, (data.shape[0] if axis == "rows" else 1, -1))


def _row_norms(xp, units, keepdims=False):
    """The L2 norm of each row of the 2-D ``units``, accumulated in float64 (see the module docstring)."""
    wide = xp.astype(units, xp.float64)
    return xp.sqrt(xp.sum(wide * wide, axis=1, keepdims=keepdims))


def _unit_norms(xp, data, axis):
    return _row_norms(xp, _units(xp, data, axis))


def _rescale_units_(param, axis, kernel):
    """Run the in-place 2-D ``kernel`` on the units of ``param.data``; the result lands in ``param.data``.

    A reshape of an array that owns its contiguous buffer is a view, so the kernel writes straight
    into the parameter. Otherwise (column units, strided or device arrays, where a reshape may copy)
    the kernel runs on a contiguous copy, which is then written back.
    """
    backend, data = param.backend, param.data
    xp = backend.xp
    if axis != "columns" and backend.owns_buffer(data):
        kernel(_units(xp, data, axis))
        return
    units = backend.copy(_units(xp, data, axis))
    kernel(units)
    data[...] = xp.permute_dims(units, (1, 0)) if axis == "columns" else xp.reshape(units, data.shape)


class _UnitConstraint(Constraint):
    """A constraint on the norm of each unit (see the module docstring for ``axis``)."""

    def _check_rank(self, param):
        """A ShapeError unless ``param`` has units along ``axis``."""
        ok = param.ndim >= 2 if self.axis == "rows" else param.ndim == 2
        if not ok:
            expected = ("a weight with at least 2 dimensions (out, in, ...)" if self.axis == "rows"
                        else "a 2-D weight (out, in)")
            raise ShapeError(f"{self!r} needs {expected}, got a parameter of shape {tuple(param.shape)}")


class WeightClip(Constraint):
    """w <- clip(w, -c, c), the box [-c, c] (WGAN critic, Arjovsky et al. 2017: c = 0.01)."""

    def __init__(self, c=0.01, select=None):
        c = check.nonnegative("WeightClip: c", c)
        super().__init__(select)
        self.c = c

    def project_(self, param):
        param.backend.kernels.clip_(param.data, -self.c, self.c)

    def is_feasible(self, param, tol=1e-6):
        xp = param.backend.xp
        return _all(xp, xp.abs(param.data) <= self.c + _slack(self.c, tol))


class NonNeg(Constraint):
    """w <- max(w, 0) (Keras ``NonNeg``)."""

    def project_(self, param):
        param.backend.kernels.clip_(param.data, 0.0, math.inf)

    def is_feasible(self, param, tol=1e-6):
        return _all(param.backend.xp, param.data >= -tol)


class MaxNorm(_UnitConstraint):
    """Each unit u with ||u||_2 > c becomes u * c / ||u||_2 (Srebro & Shraibman 2005; with dropout on
    each hidden unit's incoming weights, i.e. our rows, in Hinton et al. 2012 and Srivastava et al.
    2014, who find c = 3 to 4 typical). Default c = 3; Keras ``MaxNorm`` defaults to 2."""

    def __init__(self, max_value=3.0, axis="rows", select=None):
        max_value = check.nonnegative("MaxNorm: max_value", max_value)
        axis = check.choice(f"{type(self).__name__}: axis", axis, _AXES)
        super().__init__(select)
        self.max_value, self.axis = max_value, axis

    def project_(self, param):
        self._check_rank(param)
        _rescale_units_(param, self.axis, lambda units: param.backend.kernels.max_norm_(units, self.max_value))

    def is_feasible(self, param, tol=1e-6):
        self._check_rank(param)
        xp = param.backend.xp
        return _all(xp, _unit_norms(xp, param.data, self.axis) <= self.max_value + _slack(self.max_value, tol))


class MinMaxNorm(_UnitConstraint):
    """Unit norms pulled into [min_value, max_value] (Keras ``MinMaxNorm`` semantics and defaults):

        n = ||u||_2,   u <- u * (rate * clip(n, min_value, max_value) + (1 - rate) * n) / n

    ``rate = 1`` is the projection; ``rate < 1`` moves each norm only part of the way (not a
    projection: repeated calls keep moving). Zero units stay zero, as they have no direction to
    rescale, and count as feasible.
    """

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis="rows", select=None):
        min_value = check.nonnegative("MinMaxNorm: min_value", min_value)
        max_value = check.nonnegative("MinMaxNorm: max_value", max_value)
        if min_value > max_value:
            raise ArgumentError(f"MinMaxNorm: min_value must be <= max_value, got min_value={min_value!r}, "
                                f"max_value={max_value!r}")
        rate = check.real("MinMaxNorm: rate", rate, low=0, high=1, low_open=True)
        axis = check.choice(f"{type(self).__name__}: axis", axis, _AXES)
        super().__init__(select)
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def _rescale_(self, xp, units):
        norms = _row_norms(xp, units, keepdims=True)   # float64, so is the factor until the last step
        desired = self.rate * xp.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        nonzero, ones = norms > 0, xp.ones_like(norms)
        # The inner where keeps zero norms out of the division.
        units *= xp.astype(xp.where(nonzero, desired / xp.where(nonzero, norms, ones), ones), units.dtype)
        return units

    def project_(self, param):
        self._check_rank(param)
        _rescale_units_(param, self.axis, lambda units: self._rescale_(param.backend.xp, units))

    def is_feasible(self, param, tol=1e-6):
        self._check_rank(param)
        xp = param.backend.xp
        norms = _unit_norms(xp, param.data, self.axis)
        inside = ((norms >= self.min_value - _slack(self.min_value, tol))
                  & (norms <= self.max_value + _slack(self.max_value, tol)))
        return _all(xp, inside | (norms == 0))


class UnitNorm(MinMaxNorm):
    """u <- u / ||u||_2 for each unit (Keras ``UnitNorm``); zero units stay zero."""

    def __init__(self, axis="rows", select=None):
        super().__init__(1.0, 1.0, 1.0, axis, select)

    def __repr__(self):
        return f"UnitNorm(axis={self.axis!r})"


class L2Ball(Constraint):
    """w <- w * min(1, r / ||w||_2) over the whole tensor (optax ``projection_l2_ball``)."""

    def __init__(self, radius, select=None):
        radius = check.positive("L2Ball: radius", radius)
        super().__init__(select)
        self.radius = radius

    def project_(self, param):
        # The whole tensor as one row: the row-wise max-norm kernel is exactly this projection.
        _rescale_units_(param, None, lambda units: param.backend.kernels.max_norm_(units, self.radius))

    def is_feasible(self, param, tol=1e-6):
        xp = param.backend.xp
        return _all(xp, _unit_norms(xp, param.data, None) <= self.radius + _slack(self.radius, tol))


class L1Ball(Constraint):
    """w <- argmin_{||x||_1 <= r} ||x - w||_2 = sign(w) * max(|w| - theta, 0) over the whole tensor,
    theta from the sorted |w| (Duchi et al. 2008; optax ``projection_l1_ball``)."""

    def __init__(self, radius, select=None):
        radius = check.positive("L1Ball: radius", radius)
        super().__init__(select)
        self.radius = radius

    def project_(self, param):
        param.backend.kernels.project_l1_ball_(param.data, self.radius)

    def is_feasible(self, param, tol=1e-6):
        xp = param.backend.xp
        return _all(xp, xp.sum(xp.abs(param.data)) <= self.radius + _slack(self.radius, tol))


class TopK(Constraint):
    """Hard thresholding, the projection onto {w : ||w||_0 <= k}: keep the k entries of largest
    magnitude over the whole tensor, zero the rest (iterative hard thresholding, Blumensath & Davies
    2009; pyproximal ``L0Ball``). Ties are broken by flat (C-order) index: the lower index is kept,
    so the result is deterministic. k >= size leaves the tensor unchanged.
    """

    def __init__(self, k, select=None):
        k = check.positive_int("TopK: k", k)
        super().__init__(select)
        self.k = k

    def project_(self, param):
        data = param.data
        if self.k >= data.size:
            return
        xp = param.backend.xp
        # A stable sort of -|w| puts the largest magnitudes first and keeps ties in index order;
        # sorting that permutation gives each entry's rank.
        order = xp.argsort(-xp.abs(xp.reshape(data, (-1,))), stable=True)
        rank = xp.argsort(order, stable=True)
        keep = xp.reshape(rank < self.k, data.shape)
        data[...] = xp.where(keep, data, xp.zeros_like(data))

    def is_feasible(self, param, tol=1e-6):
        """At most k entries with |w| > tol."""
        xp = param.backend.xp
        return int(xp.count_nonzero(xp.abs(param.data) > tol)) <= self.k
