"""One classification run: train a family's network at one strength on one seed's split.

``run(config)`` is a pure function of its config (a JSON-able dict, see ``minireg.study.tasks``):
it seeds minireg with ``config["seed"]`` (initial weights, dropout masks), draws the batches from
its own generator, and returns plain numbers: training, validation and (when ``score_test``) test
loss and accuracy of the final model, the exact-zero fraction and L2 norm of its weight matrices
(per layer and in total), a histogram of the weights, and the per-epoch history. Training uses
Adam (lr ``lr``, cosine schedule over the epochs, batch ``batch_size``) through the shared
``minireg.training.Trainer``; the final model is the one after the last epoch.

Networks (``Net``): ``mlp`` = input - hidden x depth - 10 with ReLU; ``cnn`` = conv3x3(16) - ReLU -
maxpool2 - conv3x3(32) - ReLU - maxpool2 - linear(128) - ReLU - linear(10). All weight layers are
created first, in the same order for every family, so every family starts from the same weights;
batch norm, dropout and spectral normalization are inserted around them.
"""
import dataclasses
import math
import time

import numpy as np

import minireg as mr
from minireg import nn
from minireg._config import no_grad
from minireg.data import DataLoader, TensorDataset
from minireg.losses import cross_entropy
from minireg.metrics import accuracy
from minireg.optim import Adam
from minireg.optim.lr_scheduler import CosineAnnealingLR
from minireg.study.data import classification_split
from minireg.study.families import get_family
from minireg.training import SchedulerStep, Trainer

HISTOGRAM_BINS = 81


@dataclasses.dataclass(frozen=True)
class Net:
    """The network of a task and the optimizer settings every family shares."""
    arch: str                 # "mlp" or "cnn"
    in_shape: tuple           # (features,) or (channels, height, width)
    num_classes: int
    hidden: int = 256
    depth: int = 2
    lr: float = 1e-3

    def adam(self, params, **options):
        return Adam(params, lr=self.lr, **options)

    def build(self, dropout=0.0, batch_norm=False, spectral_norm=False):
        if self.arch == "mlp":
            return self._mlp(dropout, batch_norm, spectral_norm)
        return self._cnn(dropout, batch_norm, spectral_norm)

    def _hidden_block(self, layer, width, dropout, batch_norm, spectral_norm, two_d=False):
        block = [nn.SpectralNorm(layer) if spectral_norm else layer]
        if batch_norm:
            block.append(nn.BatchNorm2d(width) if two_d else nn.BatchNorm1d(width))
        block.append(nn.ReLU())
        if dropout:
            block.append(nn.Dropout(dropout))
        return block

    def _mlp(self, dropout, batch_norm, spectral_norm):
        widths = [self.in_shape[0]] + [self.hidden] * self.depth + [self.num_classes]
        linears = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
        layers = []
        for linear, width in zip(linears[:-1], widths[1:]):
            layers += self._hidden_block(linear, width, dropout, batch_norm, spectral_norm)
        return nn.Sequential(*layers, linears[-1])

    def _cnn(self, dropout, batch_norm, spectral_norm):
        channels, height, width = self.in_shape
        conv1, conv2 = nn.Conv2d(channels, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        dense = nn.Linear(32 * (height // 4) * (width // 4), 128)
        out = nn.Linear(128, self.num_classes)
        # dropout goes after the dense layer only (Srivastava et al.: conv layers need little)
        return nn.Sequential(
            *self._hidden_block(conv1, 16, 0.0, batch_norm, spectral_norm, two_d=True), nn.MaxPool2d(2),
            *self._hidden_block(conv2, 32, 0.0, batch_norm, spectral_norm, two_d=True), nn.MaxPool2d(2),
            nn.Flatten(), *self._hidden_block(dense, 128, dropout, batch_norm, spectral_norm), out)


def weight_matrices(model):
    """``[(name, array)]``: the weights the layers compute with (parameters with ndim >= 2, the
    regularizers' default selection), W_orig / sigma for spectrally normalized layers."""
    modules = dict(model.named_modules())
    out = []
    with no_grad():
        for name, p in model.named_parameters():
            if p.ndim < 2:
                continue
            owner, _, attr = name.rpartition(".")
            wrapper = modules.get(owner)
            if attr.endswith("_orig") and hasattr(wrapper, "compute_weight"):
                out.append((f"{owner}.{attr[:-5]}", wrapper.compute_weight().numpy()))
            else:
                out.append((name, p.numpy()))
    return out


def weight_statistics(weights):
    """Per-layer and total exact-zero fraction and L2 norm, and a histogram of all weights."""
    layers = [{"name": name, "shape": list(w.shape), "size": int(w.size),
               "zero_fraction": float(np.count_nonzero(w == 0) / w.size),
               "l2_norm": float(np.sqrt(np.sum(np.square(w, dtype=np.float64))))} for name, w in weights]
    size = sum(layer["size"] for layer in layers)
    flat = np.concatenate([np.asarray(w, dtype=np.float64).ravel() for _, w in weights])
    # the central 99.9% (the rest would stretch the axis to a few outliers); zeros are counted apart
    limit = float(np.percentile(np.abs(flat), 99.9)) or 1.0
    counts, edges = np.histogram(flat, bins=HISTOGRAM_BINS, range=(-limit, limit))
    return {"zero_fraction": sum(layer["zero_fraction"] * layer["size"] for layer in layers) / size,
            "weight_l2_norm": math.sqrt(sum(layer["l2_norm"] ** 2 for layer in layers)), "num_weights": size,
            "layers": layers,
            "weight_histogram": {"edges": edges.tolist(), "counts": counts.tolist(),
                                 "zeros": int(np.count_nonzero(flat == 0))}}


def split_for(config):
    return classification_split(config["dataset"], config["arch"] == "mlp", config["train_size"], config["val_size"],
                                config["label_noise"], config["seed"], config.get("folds"), config.get("fold"))


def run(config):
    """Train ``config`` and return its metrics (see the module docstring)."""
    start = time.perf_counter()
    split = split_for(config)
    net = Net(config["arch"], tuple(split.x_train.shape[1:]), int(split.y_test.max()) + 1, config["hidden"],
              config["depth"], config["lr"])
    mr.manual_seed(config["seed"])
    recipe = get_family(config["family"]).build(net, config["strength"])
    model = recipe.model

    def loss_fn(output, target):
        # the extra terms only while training: evaluation reports the data loss
        loss = cross_entropy(output, target)
        if model.training:
            for term in recipe.loss_terms:
                loss = loss + term()
        return loss

    loader = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=config["batch_size"], shuffle=True,
                        generator=np.random.default_rng([config["seed"], 1]))
    callbacks = [SchedulerStep(CosineAnnealingLR(recipe.optimizer, config["epochs"]))]
    trainer = Trainer(model, recipe.optimizer, loss_fn, metrics={"accuracy": accuracy}, callbacks=callbacks,
                      verbose=0)

    def loader_of(x, y):
        return DataLoader(TensorDataset(x, y), batch_size=1000)
    val = None if split.x_val is None else loader_of(split.x_val, split.y_val)
    history = trainer.fit(loader, config["epochs"], val_loader=val)
    result = {"train": trainer.evaluate(loader_of(split.x_train, split.y_train)),
              "validation": None if val is None else trainer.evaluate(val),
              "test": trainer.evaluate(loader_of(split.x_test, split.y_test)) if config["score_test"] else None}
    result.update(weight_statistics(weight_matrices(model)))
    result["history"] = {k: [float(v) for v in values] for k, values in history.items() if k != "seconds"}
    result["sizes"] = {"train": len(split.y_train), "validation": 0 if val is None else len(split.y_val),
                       "test": len(split.y_test)}
    result["seconds"] = time.perf_counter() - start
    return result
