"""The regularizer study: one network, one data split, one seed, every regularizer family.

    python -m minireg study [--only none,l2] [--epochs 40] [--seed 0] [--jobs 1] [--out runs/study]

Every configuration trains the same MLP (64-256-256-10 with ReLU on standardized digits; 784-256-256-10
on Fashion-MNIST) with Adam (lr 1e-3, cosine schedule, batch 64; AdamW or ProximalAdamW where that
is the regularizer) for the same number of epochs, from the same initial weights and with the same
batch order, on the same train / validation / test split. Only the regularizer changes. The shared
``minireg.training.Trainer`` runs every loop.

Data (``load_data``): the fixed 1437 / 360 digits split of ``minireg.datasets.load_digits``; the
1437 training images are split again into 1149 train / 288 validation (stratified, seed 0). Inputs
are standardized with training statistics only. Validation accuracy is what the learning curves
show; the test set is evaluated once, after training, and chooses nothing.

Strengths (``STRENGTHS``) are fixed defaults written below, each with where it comes from; none
was chosen by looking at the test set (the few that have no textbook value were checked on the
validation split only). They are the same for every data set and seed.

The registry (``REGISTRY``) maps a name to a builder ``fn(setup) -> Recipe``: the model, the
optimizer (with any regularizer hooks attached), and extra loss terms. Adding a family is one short
entry. ``run_study`` runs the chosen entries, one after the other or in parallel processes through
joblib (``jobs``), or on a Dask cluster through joblib's Dask backend (``dask_scheduler``); results
do not depend on how they are run (each run seeds minireg itself, uses one BLAS thread, and runs
alone in its process), only the seconds do.

Outputs under ``out``: ``results.csv``, ``results.md`` (the table), ``results.json`` (everything:
settings, per-epoch histories, per-layer weight statistics), ``learning_curves.png`` (validation
curves of all configurations), ``curves/<name>.png`` (train and validation curves of each), and
``weight_histograms.png`` (one panel per configuration).
"""
import csv
import dataclasses
import functools
import json
import math
import os
import sys
import threading
import time
import warnings

import numpy as np

import minireg as mr
from minireg import nn, optim, reg
from minireg._config import no_grad
from minireg._threads import blas_threads
from minireg.data import DataLoader, Standardizer, TensorDataset, train_val_split
from minireg.datasets import load_digits, load_fashion_mnist
from minireg.losses import cross_entropy
from minireg.metrics import accuracy
from minireg.optim.lr_scheduler import CosineAnnealingLR
from minireg.plots import plot_history
from minireg.training import Callback, SchedulerStep, Trainer

# -- defaults ------------------------------------------------------------------------------------
EPOCHS = 40
SEED = 0
BATCH_SIZE = 64
LR = 1e-3
HIDDEN = 256
VAL_FRACTION = 0.2
SPLIT_SEED = 0
DATASETS = ("digits", "fashion-mnist")
FASHION_SUBSET = 10000     # training images (train + validation) drawn from Fashion-MNIST's 60000

# The regularization strengths, in one place, fixed before any test number was seen. Where a
# family has a textbook default it is used; the others were set so that each family visibly acts
# within the default budget (40 epochs of 18 Adam steps), judged on the validation split only.
# With Adam every weight moves by about lr per step whatever its gradient's scale, so a prox
# threshold lr * a compares with that step: a is in "Adam steps", not in loss units.
STRENGTHS = {
    # coupled L2, Keras scaling: L2(a) = a * sum w^2, gradient 2 a w; the classic 5e-4 of ImageNet
    # training (there as PyTorch weight_decay, i.e. L2(2.5e-4))
    "l2": 5e-4,
    # AdamW, Loshchilov & Hutter (2019) normalized weight decay: lambda = lambda_norm * sqrt(b / (B T))
    # for batch b, B training samples, T epochs, with their lambda_norm = 0.05; PyTorch's (and
    # minireg's) weight_decay multiplies lr, so weight_decay = lambda / lr (about 1.9 at the defaults)
    "weight_decay_norm": 0.05,
    # L1(a) = a * sum |w| as the prox step of ProximalAdamW: weights whose Adam updates stay below a
    # tenth of a step are held at exactly zero
    "l1": 0.1,
    # scikit-learn (alpha, l1_ratio): alpha*rho*|w|_1 + alpha*(1-rho)/2*|w|^2; the same L1 part as "l1"
    "elastic_net": (0.2, 0.5),
    # a * sum over rows (units) ||w_row||_2, block soft threshold lr * a on each row norm; a row of
    # n weights moves by about lr * sqrt(n) per Adam step, so 3 = 0.2 * sqrt(256) for the hidden layer
    "group_lasso": 3.0,
    # ||w_unit||_2 <= c for each unit's incoming weights: the default initialisation gives rows of
    # norm 1/sqrt(3) = 0.58, so units may turn but hardly grow (Srivastava et al.'s 3-4 never binds here)
    "max_norm": 0.6,
    # after each hidden ReLU; Srivastava et al. (2014)'s default for hidden units
    "dropout": 0.5,
    # tau in L = L_data + tau * (-log p(w)); a tenth of Ullrich et al. (2017)'s 5e-3, which is for
    # retraining a trained network (from scratch it underfits: 92% on validation)
    "soft_weight_sharing": 5e-4,
}


def normalized_weight_decay(setup):
    """AdamW's weight_decay from ``STRENGTHS["weight_decay_norm"]`` (see there) for this run."""
    lam = STRENGTHS["weight_decay_norm"] * math.sqrt(setup.batch_size / (setup.n_train * setup.epochs))
    return lam / setup.lr


# -- data ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Data:
    """Standardized float32 arrays of the three splits (host NumPy)."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def sizes(self):
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


@functools.lru_cache(maxsize=4)
def load_data(name="digits", subset=None):
    """The study's split of ``name``; ``subset`` limits the training images (train + validation).

    The subset is drawn at random (seed ``SPLIT_SEED``) before the stratified validation split;
    the test set is always the data set's own test split, whole.
    """

    if name == "digits":
        (x, y), (x_test, y_test) = load_digits(flatten=True)
    elif name == "fashion-mnist":
        (x, y), (x_test, y_test) = load_fashion_mnist(flatten=True)
        subset = FASHION_SUBSET if subset is None else subset
    else:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if subset:
        if subset > len(y):
            raise ValueError(f"--subset {subset} is larger than the {len(y)} training images of {name}")
        keep = np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(y))[:subset])
        x, y = x[keep], y[keep]
    (x_train, y_train), (x_val, y_val) = train_val_split(x, y, val_fraction=VAL_FRACTION, seed=SPLIT_SEED,
                                                         stratify=y)
    scaler = Standardizer().fit(x_train)
    x_train, x_val, x_test = (scaler.transform(a).astype(np.float32) for a in (x_train, x_val, x_test))
    return Data(name, x_train, y_train, x_val, y_val, x_test, y_test)


# -- the registry ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Setup:
    """What a configuration's builder may use: the problem's sizes and the shared settings."""
    in_features: int
    num_classes: int
    n_train: int
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    hidden: int = HIDDEN
    depth: int = 2
    lr: float = LR

    def mlp(self, dropout=0.0, batch_norm=False, wrap_hidden=None):
        """The study's MLP: ``depth`` hidden layers of ``hidden`` units with ReLU.

        All Linear layers are created (and initialised) first, in the same order for every
        configuration, so every configuration starts from the same weights; ``wrap_hidden(linear)``
        (e.g. spectral normalization) is applied to the hidden ones afterwards.
        """
        widths = [self.in_features] + [self.hidden] * self.depth + [self.num_classes]
        linears = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
        layers = []
        for i, linear in enumerate(linears):
            hidden = i < len(linears) - 1
            layers.append(wrap_hidden(linear) if wrap_hidden and hidden else linear)
            if hidden:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(self.hidden))
                layers.append(nn.ReLU())
                if dropout:
                    layers.append(nn.Dropout(dropout))
        return nn.Sequential(*layers)

    def adam(self, params, **options):
        return optim.Adam(params, lr=self.lr, **options)


@dataclasses.dataclass
class Recipe:
    """A configuration, built: what to train and how.

    ``loss_terms``: callables returning a Tensor that is added to the data loss every step.
    """
    model: object
    optimizer: object
    loss_terms: tuple = ()


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    family: str
    summary: str
    build: object


REGISTRY = {}


def register(name, family, summary):
    """Decorator: add ``fn(setup) -> Recipe`` to the registry under ``name``."""
    def add(fn):
        if name in REGISTRY:
            raise ValueError(f"configuration {name!r} is registered twice")
        REGISTRY[name] = Config(name, family, summary, fn)
        return fn
    return add


def _attached(s, regularizer, mode="auto"):
    """The MLP with Adam and ``regularizer`` attached as an optimizer hook (grad, prox or projection)."""
    model = s.mlp()
    optimizer = s.adam(model.parameters())
    reg.attach(optimizer, regularizer, mode)
    return Recipe(model, optimizer)


@register("none", "baseline", "no regularization")
def _none(s):
    model = s.mlp()
    return Recipe(model, s.adam(model.parameters()))


@register("l2", "soft penalty", f"L2({STRENGTHS['l2']}) = a*sum w^2, gradient hook (coupled)")
def _l2(s):
    return _attached(s, reg.L2(STRENGTHS["l2"]), mode="grad")


@register("weight_decay", "decoupled decay",
          f"AdamW, normalized decay {STRENGTHS['weight_decay_norm']} (Loshchilov & Hutter) on weights")
def _weight_decay(s):
    model = s.mlp()
    decayed = [p for p in model.parameters() if p.ndim >= 2]       # not biases, as the penalties
    others = [p for p in model.parameters() if p.ndim < 2]
    return Recipe(model, optim.AdamW([{"params": decayed}, {"params": others, "weight_decay": 0.0}], lr=s.lr,
                                     weight_decay=normalized_weight_decay(s)))


@register("l1_prox", "proximal", f"ProximalAdamW, L1({STRENGTHS['l1']}): soft threshold lr*a")
def _l1_prox(s):
    model = s.mlp()
    return Recipe(model, optim.ProximalAdamW(model.parameters(), lr=s.lr, penalty=reg.L1(STRENGTHS["l1"])))


@register("elastic_net", "proximal", "ElasticNet(alpha={}, l1_ratio={}), prox hook".format(*STRENGTHS["elastic_net"]))
def _elastic_net(s):
    return _attached(s, reg.ElasticNet(*STRENGTHS["elastic_net"]), mode="prox")


@register("group_lasso", "proximal", f"GroupLasso({STRENGTHS['group_lasso']}) over rows (units), prox hook")
def _group_lasso(s):
    return _attached(s, reg.GroupLasso(STRENGTHS["group_lasso"], groups="rows"), mode="prox")


@register("max_norm", "constraint", f"MaxNorm({STRENGTHS['max_norm']}) per unit (rows), projection hook")
def _max_norm(s):
    return _attached(s, reg.MaxNorm(STRENGTHS["max_norm"], axis="rows"))


@register("dropout", "noise layer", f"Dropout(p={STRENGTHS['dropout']}) after each hidden ReLU")
def _dropout(s):
    model = s.mlp(dropout=STRENGTHS["dropout"])
    return Recipe(model, s.adam(model.parameters()))


@register("batch_norm", "normalization", "BatchNorm1d before each hidden ReLU")
def _batch_norm(s):
    model = s.mlp(batch_norm=True)
    return Recipe(model, s.adam(model.parameters()))


@register("soft_weight_sharing", "learnable prior",
          f"SoftWeightSharing(16 Gaussians, tau={STRENGTHS['soft_weight_sharing']}), loss term")
def _soft_weight_sharing(s):
    model = s.mlp()
    prior = reg.SoftWeightSharing(n_components=16, tau=STRENGTHS["soft_weight_sharing"])
    weights = list(model.parameters())
    # the prior's means, precisions and mixing logits are learned with the network
    optimizer = s.adam(weights + list(prior.parameters()))
    return Recipe(model, optimizer, loss_terms=(lambda: prior.value(weights),))


@register("spectral_norm", "layer wrapper", "SpectralNorm(Linear) on the hidden layers (1 power iteration)")
def _spectral_norm(s):
    # the output layer stays free to scale the logits: normalized everywhere, a 1-Lipschitz MLP
    # underfits digits in this budget (94% train accuracy, on the validation run)
    model = s.mlp(wrap_hidden=nn.SpectralNorm)
    return Recipe(model, s.adam(model.parameters()))


def names():
    """The registered configuration names, in the table's order."""
    return list(REGISTRY)


# -- one run ------------------------------------------------------------------------------------
_RUN_LOCK = threading.Lock()     # minireg's seed and backend are per process: one run at a time


def model_weights(model):
    """``[(name, array)]``: the weight matrices the layers compute with (parameters with ndim >= 2,
    the regularizers' default selection), W_orig / sigma for spectrally normalized layers."""
    modules = dict(model.named_modules())
    out = []
    with no_grad():
        for name, p in model.named_parameters():
            owner, _, attr = name.rpartition(".")
            wrapper = modules.get(owner)
            if p.ndim < 2:
                continue
            if attr.endswith("_orig") and hasattr(wrapper, "compute_weight"):
                out.append((f"{owner}.{attr[:-5]}", wrapper.compute_weight().numpy()))
            else:
                out.append((name, p.numpy()))
    return out


def _layer_stats(weights):
    layers = [{"name": name, "shape": list(w.shape), "size": int(w.size),
               "zero_fraction": float(np.count_nonzero(w == 0) / w.size),
               "l2_norm": float(np.sqrt(np.sum(np.square(w, dtype=np.float64))))} for name, w in weights]
    total = sum(layer["size"] for layer in layers)
    zeros = sum(layer["zero_fraction"] * layer["size"] for layer in layers)
    norm = math.sqrt(sum(layer["l2_norm"] ** 2 for layer in layers))
    return layers, {"num_weights": total, "zero_fraction": zeros / total, "weight_l2_norm": norm}


class _EpochProgress(Callback):
    """Calls ``report()`` after each epoch (used when the runs share this process)."""

    def __init__(self, report):
        self.report = report

    def on_epoch_end(self, trainer, epoch, logs):
        self.report()


def run_config(name, epochs=EPOCHS, seed=SEED, data="digits", subset=None, batch_size=BATCH_SIZE,
               on_epoch=None):
    """Train configuration ``name`` and return its numbers (a JSON-able dict plus ``"weights"``,
    the flattened weights as a float32 array for the histograms)."""

    config = REGISTRY[name]
    split = load_data(data, subset)
    with _RUN_LOCK, blas_threads(1), mr.using_backend("numpy"):
        start = time.perf_counter()
        mr.manual_seed(seed)
        setup = Setup(split.x_train.shape[1], int(max(split.y_train.max(), split.y_test.max())) + 1,
                      n_train=len(split.y_train), epochs=epochs, batch_size=batch_size)
        recipe = config.build(setup)
        model, optimizer = recipe.model, recipe.optimizer

        def loss_fn(output, target):
            # extra terms only in training mode: evaluation (val_loss, the final numbers) is the data loss
            loss = cross_entropy(output, target)
            if model.training:
                for term in recipe.loss_terms:
                    loss = loss + term()
            return loss

        # the batch order comes from its own generator: the same for every configuration
        train_loader = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=batch_size, shuffle=True,
                                  generator=np.random.default_rng(seed))
        callbacks = [SchedulerStep(CosineAnnealingLR(optimizer, epochs))]
        if on_epoch is not None:
            callbacks.append(_EpochProgress(on_epoch))
        trainer = Trainer(model, optimizer, loss_fn, metrics={"accuracy": accuracy}, callbacks=callbacks, verbose=0)
        val_loader = DataLoader(TensorDataset(split.x_val, split.y_val), batch_size=512)
        history = trainer.fit(train_loader, epochs, val_loader=val_loader)
        # final numbers: in eval mode (data loss only), on each whole split
        scores = {part: trainer.evaluate(DataLoader(TensorDataset(x, y), batch_size=512))
                  for part, x, y in (("train", split.x_train, split.y_train), ("validation", split.x_val, split.y_val),
                                     ("test", split.x_test, split.y_test))}
        weights = model_weights(model)
        seconds = time.perf_counter() - start
    layers, totals = _layer_stats(weights)
    return {
        "name": name, "family": config.family, "summary": config.summary,
        "test_accuracy": scores["test"]["accuracy"], "test_loss": scores["test"]["loss"],
        "train_accuracy": scores["train"]["accuracy"], "train_loss": scores["train"]["loss"],
        "val_accuracy": scores["validation"]["accuracy"], "val_loss": scores["validation"]["loss"],
        "train_test_gap": scores["train"]["accuracy"] - scores["test"]["accuracy"],
        **totals, "layers": layers,
        "history": {k: [float(v) for v in values] for k, values in history.items() if k != "seconds"},
        "seconds": seconds,
        "weights": np.concatenate([np.asarray(w, dtype=np.float32).ravel() for _, w in weights]),
    }


# -- the study ----------------------------------------------------------------------------------
COLUMNS = (("regularizer", "name"), ("test acc", "test_accuracy"), ("train-test gap", "train_test_gap"),
           ("zero weights", "zero_fraction"), ("weight L2 norm", "weight_l2_norm"), ("seconds", "seconds"))


def _formatted(result):
    return [result["name"], f"{result['test_accuracy']:.4f}", f"{result['train_test_gap']:+.4f}",
            f"{100 * result['zero_fraction']:.1f}%", f"{result['weight_l2_norm']:.2f}", f"{result['seconds']:.1f}"]


def format_table(results):
    """The results as a plain-text table (what the command prints)."""
    rows = [[title for title, _ in COLUMNS]] + [_formatted(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results):
    rows = [[title for title, _ in COLUMNS], ["---"] + ["---:"] * (len(COLUMNS) - 1)]
    rows += [_formatted(r) for r in results]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def _parse_only(only):
    if only is None:
        return names()
    chosen = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    unknown = [n for n in chosen if n not in REGISTRY]
    if unknown or not chosen:
        problem = f"unknown regularizer name(s): {', '.join(unknown)}" if unknown else "--only names no regularizer"
        raise ValueError(f"{problem}; valid names: {', '.join(names())}")
    return list(dict.fromkeys(chosen))


def check_options(only=None, epochs=EPOCHS, jobs=1, data="digits", subset=None, seed=SEED):
    """Validate the options before any training; returns the chosen configuration names."""
    chosen = _parse_only(only)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"--epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1, got {jobs!r}")
    if data not in DATASETS:
        raise ValueError(f"--data must be one of {', '.join(DATASETS)}, got {data!r}")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 0):
        raise ValueError(f"--subset must be an integer >= 0 (0: all training images), got {subset!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {seed!r}")
    return chosen


NO_FIGURES = ("matplotlib is missing, so the study writes no figures, only the tables and the JSON: "
              "pip install 'minireg[study]'")


class MissingDependency(ImportError):
    """An optional dependency of the study is missing; the message names the extra to install."""


def require_dependencies():
    """joblib, or a MissingDependency naming the ``study`` extra."""
    if importlib_find("joblib") is None:
        raise MissingDependency("the study needs joblib: pip install 'minireg[study]' (or, in a source checkout, "
                                "pip install -e '.[study]')")


def importlib_find(module):
    import importlib.util
    return importlib.util.find_spec(module)


def _progress_bar(total, unit, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=unit, desc="study", dynamic_ncols=True)


def _run_all(chosen, options, jobs, dask_scheduler, bar):
    import joblib

    tasks = (joblib.delayed(run_config)(name, **options) for name in chosen)
    if dask_scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise MissingDependency("--dask-scheduler needs dask.distributed: pip install 'dask[distributed]'") \
                from None
        with Client(dask_scheduler), joblib.parallel_config(backend="dask"):
            yield from joblib.Parallel(n_jobs=-1, return_as="generator_unordered")(tasks)
        return
    if jobs == 1:
        # in this process: the bar can advance per epoch
        for name in chosen:
            if bar is not None:
                bar.set_postfix_str(name)
            yield run_config(name, **options, on_epoch=(lambda: bar.update(1)) if bar is not None else None)
        return
    yield from joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks)


@dataclasses.dataclass
class StudyResult:
    results: list          # one dict per configuration, in registry order (without the weight arrays)
    weights: dict          # name -> flattened float32 weights
    table: str             # the plain-text table
    files: dict            # kind -> path


def run_study(only=None, epochs=EPOCHS, seed=SEED, jobs=1, out="runs/study", data="digits", subset=None,
              dask_scheduler=None, progress=True, figures=True):
    """Run the chosen configurations and write the outputs; returns a ``StudyResult``.

    Raises ``ValueError`` for bad options and ``MissingDependency`` for a missing joblib, both
    before any training. Without matplotlib it warns and writes no figures.
    """
    chosen = check_options(only, epochs, jobs, data, subset, seed)
    require_dependencies()
    if figures and importlib_find("matplotlib") is None:
        warnings.warn(NO_FIGURES, stacklevel=2)
        figures = False
    load_data(data, subset)          # fail early on missing data files
    options = dict(epochs=epochs, seed=seed, data=data, subset=subset)
    sequential = jobs == 1 and not dask_scheduler
    bar = _progress_bar(len(chosen) * epochs if sequential else len(chosen), "epoch" if sequential else "config",
                        progress)
    started = time.perf_counter()
    by_name = {}
    try:
        for result in _run_all(chosen, options, jobs, dask_scheduler, bar):
            by_name[result["name"]] = result
            if bar is not None and not sequential:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    total_seconds = time.perf_counter() - started
    weights = {name: by_name[name].pop("weights") for name in chosen}
    results = [by_name[name] for name in chosen]
    table = format_table(results)
    split = load_data(data, subset)
    meta = {"data": data, "subset": subset, "sizes": split.sizes, "epochs": epochs, "seed": seed,
            "batch_size": BATCH_SIZE, "lr": LR, "hidden": HIDDEN, "optimizer": "Adam, cosine schedule",
            "strengths": {k: list(v) if isinstance(v, tuple) else v for k, v in STRENGTHS.items()},
            "adamw_weight_decay": normalized_weight_decay(Setup(split.x_train.shape[1], 0, len(split.y_train), epochs)),
            "jobs": jobs, "dask_scheduler": dask_scheduler, "total_seconds": total_seconds}
    files = write_outputs(out, results, weights, meta, figures)
    return StudyResult(results, weights, table, files)


# -- outputs ------------------------------------------------------------------------------------
def write_outputs(out, results, weights, meta, figures=True):
    os.makedirs(out, exist_ok=True)
    files = {"csv": os.path.join(out, "results.csv"), "markdown": os.path.join(out, "results.md"),
             "json": os.path.join(out, "results.json")}
    with open(files["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["regularizer", "test_accuracy", "train_test_gap", "zero_fraction", "weight_l2_norm",
                         "seconds", "train_accuracy", "val_accuracy", "test_loss", "summary"])
        for r in results:
            writer.writerow([r["name"], r["test_accuracy"], r["train_test_gap"], r["zero_fraction"],
                             r["weight_l2_norm"], round(r["seconds"], 3), r["train_accuracy"], r["val_accuracy"],
                             r["test_loss"], r["summary"]])
    with open(files["markdown"], "w") as f:
        f.write(markdown_table(results))
    with open(files["json"], "w") as f:
        json.dump({"settings": meta, "results": results}, f, indent=1)
    if figures:
        files.update(plot_study(out, results, weights))
    return files


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_study(out, results, weights):
    """learning_curves.png, curves/<name>.png and weight_histograms.png under ``out``."""
    plt = _pyplot()
    files = {"learning_curves": os.path.join(out, "learning_curves.png"),
             "weight_histograms": os.path.join(out, "weight_histograms.png")}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = plt.get_cmap("tab20").colors
    for i, r in enumerate(results):
        epochs = range(1, len(r["history"]["val_accuracy"]) + 1)
        style = dict(label=r["name"], color=colors[(2 * i) % 20 + (2 * i) // 20], linestyle="-" if i < 10 else "--")
        axes[0].plot(epochs, r["history"]["val_accuracy"], **style)
        axes[1].plot(epochs, r["history"]["val_loss"], **style)
    for ax, label in zip(axes, ("validation accuracy", "validation loss (data term)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle("Regularizer study: validation curves (same network, data, seed and epochs)")
    fig.tight_layout()
    fig.savefig(files["learning_curves"], dpi=110)
    plt.close(fig)

    for r in results:
        files[f"curves/{r['name']}"] = plot_history(r["history"], os.path.join(out, "curves", f"{r['name']}.png"),
                                                    title=f"{r['name']}: {r['summary']}")

    cols = min(4, len(results))
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False, sharex=True)
    # one x range for all panels: 99.9% of every configuration's weights (the rest is left out)
    limit = max(float(np.percentile(np.abs(w), 99.9)) for w in weights.values()) or 1.0
    bins = np.linspace(-limit, limit, 81)
    for ax, r in zip(axes.ravel(), results):
        ax.hist(weights[r["name"]], bins=bins, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(f"{r['name']}  ({100 * r['zero_fraction']:.1f}% zeros)", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(results):]:
        ax.axis("off")
    fig.suptitle("Weight histograms (all weight matrices; log count; the central 99.9%)")
    fig.tight_layout()
    fig.savefig(files["weight_histograms"], dpi=110)
    plt.close(fig)
    return files


# -- command line (``python -m minireg study``) --------------------------------------------------
def add_parser(subparsers):
    """Add the ``study`` command to an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "study", help="train one network under every regularizer family and compare them",
        description="Train the same MLP on the same data split with the same seed and epochs under each "
                    "regularizer family; print one table and write curves, weight histograms, CSV, Markdown "
                    "and JSON to --out. Needs joblib (and matplotlib for the figures): pip install 'minireg[study]'.")
    parser.add_argument("--only", metavar="NAMES",
                        help=f"comma-separated configurations to run (default: all): {', '.join(names())}")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs per configuration "
                                                                         f"(default {EPOCHS})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of every run (default {SEED})")
    parser.add_argument("--jobs", type=int, default=1, help="configurations run in parallel processes (joblib; "
                                                            "default 1)")
    parser.add_argument("--dask-scheduler", metavar="ADDRESS",
                        help="run the configurations on a Dask cluster (joblib's Dask backend), e.g. "
                             "tcp://127.0.0.1:8786; --jobs is then ignored")
    parser.add_argument("--data", choices=DATASETS, default="digits", help="data set (default digits)")
    parser.add_argument("--subset", type=int, default=None,
                        help=f"training images (train + validation) to draw; 0: all (default: all for digits, "
                             f"{FASHION_SUBSET} for fashion-mnist)")
    parser.add_argument("--out", default="runs/study", help="output directory (default runs/study)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(usage_error=parser.error)
    return parser


def run(args):
    """Execute the parsed ``study`` command; returns the exit status."""
    figures = importlib_find("matplotlib") is not None
    try:        # every check before any training
        check_options(args.only, args.epochs, args.jobs, args.data, args.subset, args.seed)
        require_dependencies()
        load_data(args.data, args.subset)
    except MissingDependency as exc:
        print(f"minireg study: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        args.usage_error(str(exc))
    if not figures:
        print(f"minireg study: {NO_FIGURES}", file=sys.stderr)
    result = run_study(only=args.only, epochs=args.epochs, seed=args.seed, jobs=args.jobs, out=args.out,
                             data=args.data, subset=args.subset, dask_scheduler=args.dask_scheduler,
                             progress=not args.quiet, figures=figures)
    print(result.table)
    written = [os.path.relpath(path, args.out) for kind, path in result.files.items() if not kind.startswith("curves/")]
    print(f"\nwritten to {args.out}: " + ", ".join(written + (["curves/*.png"] if figures else [])))
    return 0
