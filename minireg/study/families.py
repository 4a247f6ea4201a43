"""Regularizer families of the classification tasks, each with its strength grid and the grid's source.

A family is a name, a one-line summary, a ``grid`` of strengths (``(None,)`` for a family without
one), ``grid_source`` (where the grid comes from), a wider ``full_grid`` for ``--preset full``, and
``build(net, strength) -> Recipe``: the model, the optimizer with its hooks, extra loss terms.
Every family trains the same network (``net``: a ``Net`` from ``minireg.study.classify``) with
Adam, from the same initial weights and with the same batches; only the regularizer changes.

Strengths are objective strengths: a penalty R with strength a trains on L + a R (the mean
cross-entropy L), whether its gradient is added (``grad``) or its prox is taken after each Adam
step (``prox``, which gives exact zeros). Keras scaling: ``L2(a) = a sum w^2``, ``L1(a) = a sum |w|``.
Biases and normalization parameters are never penalized (the regularizers' default selection).
"""
import dataclasses
from typing import Callable

from minireg import optim, reg


@dataclasses.dataclass
class Recipe:
    """A family built: what to train and how. ``loss_terms``: callables giving a Tensor added to the
    data loss at every training step."""
    model: object
    optimizer: object
    loss_terms: tuple = ()


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    summary: str
    grid: tuple
    grid_source: str
    build: Callable
    full_grid: tuple = None

    def strengths(self, preset="default"):
        return tuple(self.full_grid or self.grid) if preset == "full" else tuple(self.grid)

    @property
    def tuned(self):
        """Whether the family has a strength to choose."""
        return self.grid != (None,)


def _decades(lo, hi):
    """1e{lo}, 1e{lo+1}, ..., 1e{hi}."""
    return tuple(float(f"1e{e}") for e in range(lo, hi + 1))


def _with_hook(net, regularizer, mode="auto"):
    model = net.build()
    optimizer = net.adam(model.parameters())
    reg.attach(optimizer, regularizer, mode)
    return Recipe(model, optimizer)


def _plain(net, **layers):
    model = net.build(**layers)
    return Recipe(model, net.adam(model.parameters()))


def _weight_decay(net, strength):
    model = net.build()
    decayed = [p for p in model.parameters() if p.ndim >= 2]       # weights only, as the penalties
    others = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decayed}, {"params": others, "weight_decay": 0.0}]
    return Recipe(model, optim.AdamW(groups, lr=net.lr, weight_decay=strength))


def _soft_weight_sharing(net, strength):
    model = net.build()
    prior = reg.SoftWeightSharing(n_components=16, tau=strength)
    weights = list(model.parameters())
    # the prior's means, precisions and mixing weights are learned with the network
    optimizer = net.adam(weights + list(prior.parameters()))
    return Recipe(model, optimizer, loss_terms=(lambda: prior.value(weights),))


KERAS = "Keras' default strength 0.01 (keras.regularizers) and the decades below it"
FAMILIES = {f.name: f for f in [
    Family("none", "no regularization", (None,), "-", lambda net, a: _plain(net)),
    Family("l2", "L2(a) = a sum w^2, its gradient added (coupled, under Adam)", _decades(-5, -1),
           f"{KERAS}; 1e-5..1e-1 in decades is the usual log grid (Goodfellow et al. 2016, sec. 11.4.3)",
           lambda net, a: _with_hook(net, reg.L2(a), mode="grad"), full_grid=_decades(-6, -1)),
    Family("weight_decay", "AdamW, decoupled decay w -= lr*a*w on the weights", (1e-2, 1e-1, 1.0, 10.0),
           "PyTorch's AdamW default weight_decay 0.01 and the decades above it (Loshchilov & Hutter 2019 tune "
           "it on a log grid; with lr 1e-3 a decay of 10 shrinks weights by 1% a step)", _weight_decay,
           full_grid=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)),
    Family("l1", "L1(a) = a sum |w|, prox (soft threshold) after each Adam step", _decades(-5, -2),
           f"{KERAS}", lambda net, a: _with_hook(net, reg.L1(a), mode="prox"), full_grid=_decades(-6, -1)),
    Family("elastic_net", "ElasticNet(a, l1_ratio=0.5): a (|w|_1 / 2 + |w|^2 / 4), prox", _decades(-5, -2),
           "scikit-learn's ElasticNet l1_ratio 0.5 with the L1 grid",
           lambda net, a: _with_hook(net, reg.ElasticNet(a, 0.5), mode="prox"), full_grid=_decades(-6, -1)),
    Family("group_lasso", "GroupLasso(a): a sum over units ||w_unit||_2, block prox", _decades(-5, -2),
           "the L1 grid: a group of one weight is L1, so the same strengths apply",
           lambda net, a: _with_hook(net, reg.GroupLasso(a, groups="rows"), mode="prox"),
           full_grid=_decades(-6, -1)),
    Family("max_norm", "MaxNorm(c): ||w_unit||_2 <= c, projection after each step", (0.25, 0.5, 1.0, 2.0),
           "Srivastava et al. 2014 use c = 3-4, Keras' MaxNorm default is 2; the default initialisation gives "
           "unit norms near 0.6, so the grid reaches below it", lambda net, a: _with_hook(net, reg.MaxNorm(a)),
           full_grid=(0.125, 0.25, 0.5, 1.0, 2.0, 4.0)),
    Family("dropout", "Dropout(p) after each hidden activation", (0.1, 0.3, 0.5, 0.7),
           "Srivastava et al. 2014: p = 0.5 for hidden units, 0.1-0.2 for inputs; PyTorch's default 0.5",
           lambda net, a: _plain(net, dropout=a), full_grid=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
    Family("batch_norm", "BatchNorm before each hidden activation", (None,), "-",
           lambda net, a: _plain(net, batch_norm=True)),
    Family("spectral_norm", "SpectralNorm on the hidden layers (1 power iteration)", (None,), "-",
           lambda net, a: _plain(net, spectral_norm=True)),
    Family("soft_weight_sharing", "SoftWeightSharing(16 Gaussians, tau): a learned mixture prior", (5e-4, 5e-3),
           "Ullrich et al. 2017: tau = 5e-3 (for retraining a trained net) and a tenth of it",
           _soft_weight_sharing, full_grid=(5e-5, 5e-4, 5e-3)),
]}


def get_family(name):
    if name not in FAMILIES:
        from minireg.check import suggest
        from minireg.errors import ArgumentError
        raise ArgumentError(f"unknown regularizer family {name!r}{suggest(name, FAMILIES)}; valid names: "
                            f"{', '.join(FAMILIES)}")
    return FAMILIES[name]
