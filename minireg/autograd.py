"""Reverse-mode differentiation over the recorded graph.

The graph is walked iteratively in decreasing ``generation`` (a heap, no recursion), so deep graphs
are fine. A gradient reaching an input whose shape or dtype differs from the input's (broadcasting,
dtype promotion) is reduced here, once, for every op. Gradients are computed with ordinary ops;
under ``create_graph=True`` those ops are recorded, which gives higher-order gradients.
``grad(outputs, inputs)`` first marks which inputs of each op lead to ``inputs`` and computes only
those gradients (``Function.needs_input_grad``).
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


def _sum(a, b):
    """a + b for two gradients of one node as a fresh array, without recording an op (no graph is
    being built: an Add op per accumulation doubled the cost of a backward pass through a chain that
    reuses one tensor)."""
    total = a.data + b.data
    return Tensor._make(np.asarray(total) if isinstance(total, np.generic) else total, a.backend)


def _needed_inputs(outputs, keep):
    """For ``grad(outputs, inputs)``: op id -> one flag per input of the op, True when a gradient
    through that input reaches a wanted node (ids in ``keep``). Gradients of the other inputs are
    never needed, so they are not computed (PyTorch prunes the same way): an R1 penalty's
    gradient with respect to the images skips every weight gradient of the discriminator."""
    needs, leads = {}, {}     # leads: op id -> whether a gradient of its output reaches a wanted node
    stack = [y.creator for y in outputs if y.creator is not None]
    while stack:
        fn = stack[-1]
        key = id(fn)
        if key in needs:
            stack.pop()
            continue
        if fn.inputs is None:          # a freed graph: let the backward pass visit it and say so
            needs[key], leads[key] = (), True
            stack.pop()
            continue
        pending = [x.creator for x in fn.inputs if x.creator is not None and id(x.creator) not in needs]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        needs[key] = flags = tuple(x.requires_grad and (id(_node(x)) in keep or (x.creator is not None and
                                                                                 leads[id(x.creator)]))
                                   for x in fn.inputs)
        leads[key] = any(flags)
    return needs


def backward_pass(outputs, grad_outputs, *, retain_graph, create_graph, wanted=None):
    """Propagate ``grad_outputs`` back from ``outputs``.

    With ``wanted=None`` gradients are accumulated into ``.grad`` of the leaves (once, at the end of
    the pass); otherwise the gradients of the ``wanted`` tensors are returned (None where
    unreachable) and no ``.grad`` changes.
    """
    from minireg.functional import cast, sum_to

    # grads: node id -> its gradient so far. Without create_graph a node's second gradient makes a
    # fresh array (its id goes into `summed`) and later ones add into it in place: one array pass per
    # accumulation, no op, no new tensor (a leaf reused by 100 ops gets 100 in-place adds).
    grads, summed, leaves = {}, set(), {}
    heap, order, processed = [], itertools.count(), []
    keep = set() if wanted is None else {id(_node(t)) for t in wanted}
    needs = None if wanted is None else _needed_inputs(outputs, keep)
    heappush, heappop = heapq.heappush, heapq.heappop

    def accumulate(key, g):
        """Add g into node ``key``'s gradient; True when it is the node's first one."""
        old = grads.get(key)
        if old is None:
            grads[key] = g
            return True
        if create_graph:
            grads[key] = old + g
        elif key in summed:
            old.data += g.data
        else:
            grads[key] = _sum(old, g)
            summed.add(key)
        return False

    with _set_grad(create_graph):
        for y, gy in zip(outputs, grad_outputs):
            if gy.shape != y.shape:
                raise ShapeError(f"grad_output of shape {gy.shape} does not match output shape {y.shape}")
            if y.creator is not None:
                if accumulate(id(y.creator), gy):
                    heappush(heap, (-y.creator.generation, next(order), y.creator))
            elif wanted is None or id(y) in keep:    # backward() or grad() called on a leaf itself
                leaves[id(y)] = y
                accumulate(id(y), gy)
        while heap:
            fn = heappop(heap)[2]
            inputs = fn.inputs
            if inputs is None:
                raise GraphError("backward through a graph that was already freed: pass retain_graph=True "
                                 "to the first backward if you need to go through the graph twice")
            key = id(fn)
            gy = grads[key] if key in keep else grads.pop(key)
            if fn._checks_versions:              # ops that read only shapes save () and skip the check
                fn.check_saved_versions()
            if needs is None:
                gxs = fn.backward(gy)
            else:
                fn._needs_input_grad = flags = needs[key]
                try:
                    gxs = fn.backward(gy)
                finally:                         # a retained graph must not keep this call's pruning
                    fn._needs_input_grad = None
            if type(gxs) is not tuple or len(gxs) != len(inputs):
                gxs = fn.check_gradients(gxs)    # raises unless a list of the right length
            if needs is not None:                # drop what an op computed without asking (checked first)
                if not all(g is None or isinstance(g, Tensor) for g in gxs):
                    fn.check_gradients(gxs)
                gxs = tuple(g if flag else None for g, flag in zip(gxs, flags))
            for x, gx in zip(inputs, gxs):
                if gx is None:
                    continue
                if type(gx) is not Tensor and not isinstance(gx, Tensor):
                    fn.check_gradients(gxs)      # raises, naming the op and what it returned
                if not x.requires_grad:
                    continue
                g_data, x_data = gx.data, x.data
                if g_data.shape != x_data.shape:
                    gx = sum_to(gx, x.shape)
                if g_data.dtype is not x_data.dtype and g_data.dtype != x_data.dtype:
                    gx = cast(gx, x.dtype)
                creator = x.creator
                if creator is not None:
                    key = id(creator)
                    if key not in grads:             # accumulate()'s first case, inlined (hot path)
                        grads[key] = gx
                        heappush(heap, (-creator.generation, next(order), creator))
                    else:
                        accumulate(key, gx)
                elif wanted is None:
                    key = id(x)
                    if key not in grads:             # a leaf's first gradient (hot path)
                        grads[key] = gx
                        leaves[key] = x
                    elif key in summed:              # accumulate()'s in-place case, inlined
                        grads[key].data += gx.data
                    else:
                        accumulate(key, gx)
                elif id(x) in keep:
                    accumulate(id(x), gx)
            processed.append(fn)
        if wanted is None:
            handed_out = set()
            for key, leaf in leaves.items():
                g = grads[key]
                leaf.grad = _own(g, leaf, handed_out, create_graph) if leaf.grad is None else \
                    leaf.grad + g if create_graph else _sum(leaf.grad, g)
    # Released only now: an op's output must stay alive until that op's own backward has run.
    if not retain_graph:
        for fn in processed:
            fn.inputs = fn._output_ref = None     # drop what keeps the graph alive
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
