"""Reverse-mode differentiation over the recorded graph.

The graph is walked iteratively in decreasing ``generation`` (a heap, no recursion), so deep graphs
are fine. A gradient reaching an input whose shape or dtype differs from the input's (broadcasting,
dtype promotion) is reduced here, once, for every op. Gradients are computed with ordinary ops;
under ``create_graph=True`` those ops are recorded, which gives higher-order gradients.
"""
import heapq
import itertools

import numpy as np

from minireg._config import _set_grad
from minireg.errors import GraphError, ShapeError
from minireg.tensor import Tensor


def _as_sequence(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _node(t):
    """Gradients are stored per graph node: an op for its output, the tensor itself for a leaf."""
    return t.creator if t.creator is not None else t


def _own(g, leaf, handed_out, create_graph):
    """A gradient the leaf may keep and that hooks may update in place: never a view of another
    array, never the same tensor as another leaf's gradient (Add passes one gradient to both inputs).
    Under create_graph the copy is a recorded op, so the gradient stays differentiable."""
    if id(g) in handed_out or not leaf.backend.owns_buffer(g.data):
        g = g + 0.0 if create_graph else Tensor._make(leaf.backend.copy(g.data), leaf.backend)
    handed_out.add(id(g))
    return g


def _sum(a, b, create_graph):
    """a + b for two gradients of one node. Under create_graph a recorded op; otherwise plain array
    arithmetic: there is no graph to record, and an op per accumulation doubled the cost of a
    backward pass through a chain that reuses one tensor (every use adds into the same gradient)."""
    if create_graph:
        return a + b
    total = a.data + b.data
    return Tensor._make(np.asarray(total) if isinstance(total, np.generic) else total, a.backend)


def backward_pass(outputs, grad_outputs, *, retain_graph, create_graph, wanted=None):
    """Propagate ``grad_outputs`` back from ``outputs``.

    With ``wanted=None`` gradients are accumulated into ``.grad`` of the leaves; otherwise the
    gradients of the ``wanted`` tensors are returned (None where unreachable) and no ``.grad`` changes.
    """
    from minireg.functional import cast, sum_to

    grads = {}
    heap, seen, order, processed, handed_out = [], set(), itertools.count(), [], set()
    keep = set() if wanted is None else {id(_node(t)) for t in wanted}

    def accumulate(node, g):
        key = id(node)
        grads[key] = g if key not in grads else _sum(grads[key], g, create_graph)

    def push(fn):
        if id(fn) not in seen:
            seen.add(id(fn))
            heapq.heappush(heap, (-fn.generation, next(order), fn))

    with _set_grad(create_graph):
        for y, gy in zip(outputs, grad_outputs):
            if gy.shape != y.shape:
                raise ShapeError(f"grad_output of shape {gy.shape} does not match output shape {y.shape}")
            if y.creator is not None:
                accumulate(y.creator, gy)
                push(y.creator)
            elif wanted is None:                     # backward() called on a leaf itself
                y.grad = _own(gy, y, handed_out, create_graph) if y.grad is None else _sum(y.grad, gy, create_graph)
            else:
                accumulate(y, gy)
        while heap:
            fn = heapq.heappop(heap)[2]
            if fn.inputs is None:
                raise GraphError("backward through a graph that was already freed: pass retain_graph=True "
                                 "to the first backward if you need to go through the graph twice")
            gy = grads[id(fn)] if id(fn) in keep else grads.pop(id(fn))
            fn.check_saved_versions()
            for x, gx in zip(fn.inputs, fn.check_gradients(fn.backward(gy))):
                if gx is None or not x.requires_grad:
                    continue
                if gx.data.shape != x.data.shape:
                    gx = sum_to(gx, x.shape)
                if gx.data.dtype != x.data.dtype:
                    gx = cast(gx, x.dtype)
                if x.creator is not None:
                    accumulate(x.creator, gx)
                    push(x.creator)
                elif wanted is None:
                    x.grad = _own(gx, x, handed_out, create_graph) if x.grad is None else _sum(x.grad, gx, create_graph)
                elif id(x) in keep:
                    accumulate(x, gx)
            processed.append(fn)
    # Released only now: an op's output must stay alive until that op's own backward has run.
    if not retain_graph:
        for fn in processed:
            fn.release()
    if wanted is not None:
        return [grads.get(id(_node(t))) for t in wanted]


def grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned rather than stored in ``.grad``.

    ``create_graph=True`` records the gradient computation so it can be differentiated again
    (gradient penalties such as WGAN-GP and R1). ``retain_graph`` defaults to ``create_graph``.
    """
    outputs, inputs = _as_sequence(outputs), _as_sequence(inputs)
    if grad_outputs is None:
        for y in outputs:
            if y.size != 1:
                raise GraphError(f"grad of a non-scalar output of shape {y.shape} needs grad_outputs")
        grad_outputs = [y._ones_like() for y in outputs]
    else:
        from minireg.tensor import operand
        grad_outputs = [operand(g, like=y) for g, y in zip(_as_sequence(grad_outputs), outputs)]
    for x in inputs:
        if not x.requires_grad:
            raise GraphError(f"an input of shape {x.shape} does not require grad; nothing to differentiate")
    if retain_graph is None:
        retain_graph = create_graph
    result = backward_pass(outputs, grad_outputs, retain_graph=retain_graph, create_graph=create_graph,
                           wanted=inputs)
    if not allow_unused and any(g is None for g in result):
        raise GraphError("one of the inputs was not used to compute the outputs; pass allow_unused=True")
    if not create_graph:
        result = [None if g is None else g.detach() for g in result]
    return result
