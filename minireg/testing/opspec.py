"""Op specifications: one declarative line per op drives its whole test suite (MyGrad/OpInfo style).

An ``OpSpec`` names a minireg function, a NumPy reference, and a Hypothesis strategy that draws
``(arrays, kwargs)``: float64 host arrays kept away from the op's kinks, plus keyword arguments
(axes, shapes, indices) that fit them. Generic tests (see ``tests/test_ops.py``) then check the
forward against the reference, the gradient and the second derivative against finite differences,
dtypes, 0-d/empty and non-contiguous inputs, on every backend. The builders below cover the
common op shapes; a spec for your own op needs only a name, two functions and a strategy.
"""
import dataclasses
from typing import Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minireg.testing import strategies as mst


@dataclasses.dataclass(frozen=True)
class OpSpec:
    name: str
    fn: Callable               # fn(*tensors, **kwargs) -> Tensor
    reference: Callable        # reference(*numpy_arrays, **kwargs) -> numpy array
    inputs: st.SearchStrategy  # draws (tuple_of_float64_arrays, kwargs)
    rtol: float = 1e-6         # forward tolerance against the reference (float32 uses float32_rtol)
    float32_rtol: float = 1e-4
    grad_atol: float = 1e-5
    grad_rtol: float = 1e-4
    second_order: bool = True  # run gradgradcheck
    empty: bool = True         # meaningful on arrays with a zero-length axis

    def __str__(self):
        return self.name


def _with_kwargs(arrays_strategy, kwargs=st.just({})):
    return st.tuples(arrays_strategy, kwargs)


def elementwise(n=1, lo=-3.0, hi=3.0, kinks=(), ranges=None, min_side=1, unique=False):
    """n broadcast-compatible arrays; ``ranges`` gives (lo, hi) per input when they differ."""
    ranges = ranges or [(lo, hi)] * n

    @st.composite
    def draw(draw):
        shapes = draw(mst.broadcastable_shapes(n, max_side=4)) if n > 1 else (draw(mst.shapes(min_side=min_side)),)
        if unique:   # all values of all inputs distinct: no ties between any broadcast pair
            flat = draw(mst.float_arrays(sum(int(np.prod(s)) for s in shapes), lo=lo, hi=hi, kinks=kinks,
                                         unique=True, min_gap=1e-2))
            splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
            return tuple(p.reshape(s) for p, s in zip(np.split(flat, splits), shapes))
        return tuple(draw(mst.float_arrays(s, lo=r[0], hi=r[1], kinks=kinks)) for s, r in zip(shapes, ranges))
    return _with_kwargs(draw())


def reduction(lo=-3.0, hi=3.0, unique=False, keepdims=True, single_axis=False, min_side=1):
    """One array plus ``axis`` (None, int or tuple; an int only when ``single_axis``) and ``keepdims``."""
    @st.composite
    def draw(draw):
        shape = draw(mst.shapes(min_dims=1 if single_axis else 0, min_side=min_side))
        x = draw(mst.float_arrays(shape, lo=lo, hi=hi, unique=unique, min_gap=1e-2))
        if single_axis:
            kwargs = {"axis": draw(st.integers(-len(shape), len(shape) - 1))}
        else:
            kwargs = {"axis": draw(mst.axes(len(shape)))}
        if keepdims:
            kwargs["keepdims"] = draw(st.booleans())
        return (x,), kwargs
    return draw()


def matmul_inputs():
    @st.composite
    def draw(draw):
        sa, sb = draw(mst.matmul_shapes(max_batch_dims=2, max_side=3))
        vector = draw(st.sampled_from(["none", "left", "right"]))   # NumPy's 1-D promotion rules
        if vector == "left":
            sa = sa[-1:]
        elif vector == "right":
            sb = sb[-2:-1]
        return (draw(mst.float_arrays(sa)), draw(mst.float_arrays(sb))), {}
    return draw()


def transposed_matmul_inputs():
    """Operands of ``MatMul(transpose_a, transpose_b)``: (a, b) stored with their last two axes
    swapped where the flag says so, plus the flags as keyword arguments."""
    @st.composite
    def draw(draw):
        sa, sb = draw(mst.matmul_shapes(max_batch_dims=2, max_side=3))
        ta, tb = draw(st.booleans()), draw(st.booleans())
        swap = lambda s: s[:-2] + (s[-1], s[-2])  # noqa: E731
        a, b = draw(mst.float_arrays(swap(sa) if ta else sa)), draw(mst.float_arrays(swap(sb) if tb else sb))
        return (a, b), {"transpose_a": ta, "transpose_b": tb}
    return draw()


def reshape_inputs():
    @st.composite
    def draw(draw):
        shape = draw(mst.shapes(min_side=0))
        x = draw(mst.float_arrays(shape))
        target = draw(st.sampled_from([shape[::-1], (-1,), (int(np.prod(shape)), 1)]))
        return (x,), {"shape": target}
    return draw()


def transpose_inputs():
    @st.composite
    def draw(draw):
        shape = draw(mst.shapes(min_side=0))
        axes = draw(st.permutations(range(len(shape)))) if shape else []
        return (draw(mst.float_arrays(shape)),), {"axes": tuple(axes)}
    return draw()


def getitem_inputs():
    @st.composite
    def draw(draw):
        shape = draw(mst.shapes(min_dims=1))
        x = draw(mst.float_arrays(shape))
        kind = draw(st.sampled_from(["basic", "integers", "mask"]))
        if kind == "basic":
            index = draw(hnp.basic_indices(shape, allow_ellipsis=True))
        elif kind == "integers":   # integer array on the first axis, duplicates included
            index = draw(mst.index_arrays(shape[0], max_len=5))
        else:   # a boolean mask over some leading axes, after zero or more whole axes (x[:, mask])
            skip = draw(st.integers(0, len(shape) - 1))
            dims = draw(st.integers(1, len(shape) - skip))
            mask = draw(hnp.arrays(np.bool_, shape[skip:skip + dims]))
            index = (slice(None),) * skip + (mask,) if skip else mask
        return (x,), {"index": index}
    return draw()


def join_inputs(max_n=3):
    """Several arrays with equal shapes except along ``axis`` (for concatenate; stack uses equal shapes)."""
    @st.composite
    def draw(draw):
        shape = draw(mst.shapes(min_dims=1, max_dims=3, max_side=3))
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        n = draw(st.integers(1, max_n))
        arrays = []
        for _ in range(n):
            s = list(shape)
            s[axis] = draw(st.integers(1, 3))
            arrays.append(draw(mst.float_arrays(tuple(s))))
        return tuple(arrays), {"axis": axis}
    return draw()


def stack_inputs(max_n=3):
    @st.composite
    def draw(draw):
        shape = draw(mst.shapes(max_dims=2, max_side=3))
        n = draw(st.integers(1, max_n))
        axis = draw(st.integers(-len(shape) - 1, len(shape)))
        return tuple(draw(mst.float_arrays(shape)) for _ in range(n)), {"axis": axis}
    return draw()


def pad_inputs():
    @st.composite
    def draw(draw):
        shape = draw(mst.shapes(min_dims=1, max_side=3))
        widths = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in shape)
        return (draw(mst.float_arrays(shape)),), {"pad_width": widths, "value": draw(st.sampled_from([0.0, -1.5]))}
    return draw()


def broadcast_inputs():
    @st.composite
    def draw(draw):
        small, target = draw(hnp.mutually_broadcastable_shapes(num_shapes=1, max_side=4)
                             .map(lambda b: (b.input_shapes[0], b.result_shape)))
        extra = draw(st.lists(st.integers(1, 3), max_size=1))
        return (draw(mst.float_arrays(small)),), {"shape": tuple(extra) + target}
    return draw()


def where_inputs():
    @st.composite
    def draw(draw):
        (sc, sa, sb) = draw(mst.broadcastable_shapes(3))
        condition = draw(hnp.arrays(np.bool_, sc))
        return (draw(mst.float_arrays(sa)), draw(mst.float_arrays(sb))), {"condition": condition}
    return draw()
