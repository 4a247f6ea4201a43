"""The one validation layer: every argument check and its message comes from here.

Each checker takes the argument's name (as the user spells it, prefixed with the op or class when
useful, e.g. ``"SGD: lr"``) and the value, and returns the value normalised (NumPy scalars become
Python numbers) or raises a ``MiniregError`` subclass whose message names the argument, what it got
and what was expected. Checks run before any state changes, so a failed call changes nothing.
"""
import difflib
import math
import numbers

import numpy as np

from minireg.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError


def _got(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def real(name, value, *, low=None, high=None, low_open=False, high_open=False, finite=True):
    """A real number (Python or NumPy scalar, not bool) in the given interval, as a float."""
    # A Python float skips the type checks (numbers.Real's isinstance is slow; kernels check per call).
    if type(value) is not float and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)):
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
            value = value.item()
        else:
            raise ArgumentTypeError(f"{name} must be a real number, got {_got(value)} ({type(value).__name__})")
    value = float(value)
    if finite and not math.isfinite(value):
        raise ArgumentError(f"{name} must be finite, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if high is None:
            expected = f"{'>' if low_open else '>='} {low}"
        elif low is None:
            expected = f"{'<' if high_open else '<='} {high}"
        else:
            expected = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ArgumentError(f"{name} must be {expected}, got {value!r}")
    return value


def positive(name, value):
    """A finite real > 0."""
    return real(name, value, low=0, low_open=True)


def nonnegative(name, value):
    """A finite real >= 0."""
    return real(name, value, low=0)


def probability(name, value, *, allow_one=False):
    """A real in [0, 1) (or [0, 1] with ``allow_one``): dropout rates, momenta, betas."""
    return real(name, value, low=0, high=1, high_open=not allow_one)


def integer(name, value, *, low=None, high=None):
    """An integer (Python or NumPy, not bool; integral 0-d arrays too) in [low, high], as an int."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = value.item()
    if type(value) is not int and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)):
        raise ArgumentTypeError(f"{name} must be an integer, got {_got(value)} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else (f"<= {high}" if low is None else f"in [{low}, {high}]")
        raise ArgumentError(f"{name} must be an integer {bounds}, got {value}")
    return value


def positive_int(name, value):
    """An integer >= 1 (sizes, counts, batch sizes)."""
    return integer(name, value, low=1)


def flag(name, value):
    """True or False (Python or NumPy bool)."""
    if not isinstance(value, (bool, np.bool_)) and not (isinstance(value, np.ndarray) and value.ndim == 0
                                                         and value.dtype == np.bool_):
        raise ArgumentTypeError(f"{name} must be True or False, got {_got(value)}")
    return bool(value)


def suggest(word, choices):
    """`` (did you mean 'x'?)`` for a near miss among ``choices``, else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choice(name, value, choices):
    """``value`` if it is one of ``choices`` (compared with ==), else an error listing them."""
    try:
        ok = value in choices
    except TypeError:
        ok = False
    if not ok:
        raise ArgumentError(f"{name} must be one of {', '.join(map(repr, choices))}; got {_got(value)}"
                            f"{suggest(value, choices)}")
    return value


def instance(name, value, kinds, expected=None):
    """``value`` if it is an instance of ``kinds``, else an ArgumentTypeError."""
    if not isinstance(value, kinds):
        if expected is None:
            names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
            expected = f"a {names}"
        raise ArgumentTypeError(f"{name} must be {expected}, got {type(value).__name__}")
    return value


def float_dtype(name, value):
    """A real floating dtype (a NumPy dtype, its name, or another library's dtype of that name), as a
    NumPy dtype."""
    dtype = None
    if value is not None:   # np.dtype(None) would be float64
        try:
            dtype = np.dtype(value)
        except TypeError:
            try:
                dtype = np.dtype(str(value).rsplit(".", 1)[-1])   # e.g. array_api_strict.float64
            except TypeError:
                pass
    if dtype is None or dtype.kind != "f":
        raise DTypeError(f"{name} must be a floating dtype such as 'float32' or 'float64', got {_got(value)}")
    return dtype


def axis(name, value, ndim):
    """An axis index for an array of ``ndim`` dimensions, normalised to [0, ndim); never wraps."""
    value = integer(name, value)
    if not -ndim <= value < ndim:
        raise ShapeError(f"{name}={value} is out of range for {ndim}-d input (expected an axis in "
                         f"[{-ndim}, {ndim - 1}])")
    return value % ndim if ndim else 0


def axes(name, value, ndim):
    """None (all axes), or one axis or a tuple of distinct axes, normalised to a sorted tuple."""
    if value is None:
        return tuple(range(ndim))
    items = value if isinstance(value, (tuple, list)) else (value,)
    out = tuple(axis(name, a, ndim) for a in items)
    if len(set(out)) != len(out):
        raise ShapeError(f"{name}={tuple(items)} repeats an axis")
    return tuple(sorted(out))
