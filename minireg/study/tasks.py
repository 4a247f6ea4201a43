"""The study's tasks: what is trained, on which data, under which families, with which defaults.

=================  ==============================================================================
``mlp-digits``     (the default) MLP 64-256-256-10 on the digits, data-scarce and with label noise
``cnn-digits``     the CNN on the same split of the digits
``mlp-fashion``    the MLP on a subset of Fashion-MNIST
``cnn-fashion``    the CNN on a subset of Fashion-MNIST: L1 / L2 / elastic net vs dropout vs batch norm
``linear-diabetes`` least squares on diabetes: lasso, ridge and elastic net over a log grid of alphas
``gan-digits``     the MLP GAN on the digits under every GAN regularizer (``gan --compare``)
``gan-fashion``    the same on Fashion-MNIST
=================  ==============================================================================

A task holds the options every run of it shares (they are part of each run's config, so the
results cache knows them), its default and ``full`` presets (families, seeds, budget), the
registry its families come from, the run function, and how a run's metrics are read: the
validation score that chooses a strength, the test score reported, and the other columns.

The default regime (``mlp-digits``): 400 training and 200 validation images drawn per seed from
the 1437 digits, with 30% of their labels replaced by another class (the test labels stay clean),
40 epochs of batch 64. It was chosen on validation accuracy alone, over 2-3 seeds: on a clean
data-scarce split (200 / 200, batch 32) no family moved validation accuracy by more than the
seed-to-seed spread (none 0.880 / 0.930, L2 1e-3 0.890 / 0.930, dropout 0.5 0.885 / 0.925, batch norm 0.895 /
0.950), while with label noise ``none`` memorizes the wrong labels (training accuracy 0.95-0.99)
and L2 and dropout gained 2.5 to 4.5 points of validation accuracy on every seed (none 0.610 / 0.580
/ 0.600, L2 1e-2 0.635 / 0.625 / 0.645, dropout 0.5 0.645 / 0.625 / 0.645; validation labels are
as noisy as the training labels, so these numbers stay far below the clean test accuracy).
"""
import dataclasses
import os
from typing import Callable, Optional

from minireg.errors import ArgumentError, MissingDataError
from minireg.study import classify, families, gan, linear


@dataclasses.dataclass(frozen=True)
class Metric:
    """How a run's point is read: ``value(point)`` -> float, and whether higher is better."""
    name: str
    label: str
    value: Callable
    higher_is_better: bool = True


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    kind: str                     # "classification", "regression" or "gan"
    title: str
    options: dict                 # shared by every run (default preset)
    families: tuple               # the default families
    seeds: int
    registry: dict                # family name -> Family / Setup
    run: Callable                 # run(config) -> result (a pure function of the config)
    select: Metric                # the validation score that chooses a strength
    test: Metric                  # the reported test score ("test_accuracy" in results.json)
    columns: tuple                # further summaries: Metrics of the final points
    full: dict = dataclasses.field(default_factory=dict)   # preset "full": {"options", "families", "seeds"}
    budget_key: Optional[str] = None   # the option --epochs (or --steps) overrides
    requires: Optional[Callable] = None
    path_runs: bool = False       # one run computes every strength of the grid (a warm-started path)

    def preset(self, name):
        """(options, families, seeds) of preset ``name`` ("default" or "full")."""
        if name == "default":
            return dict(self.options), self.families, self.seeds
        full = self.full
        return {**self.options, **full.get("options", {})}, full.get("families", tuple(self.registry)), \
            full.get("seeds", self.seeds)

    def family(self, name):
        if name not in self.registry:
            from minireg.check import suggest
            raise ArgumentError(f"--only: {self.name} has no family {name!r}{suggest(name, self.registry)}; valid "
                                f"names: {', '.join(self.registry)}")
        return self.registry[name]


def _require_fashion():
    from minireg.datasets import _FASHION_HINT, _IDX_FILES, FASHION_MNIST_PATH
    present = set(os.listdir(FASHION_MNIST_PATH)) if os.path.isdir(FASHION_MNIST_PATH) else set()
    if any(name not in present and name + ".gz" not in present for pair in _IDX_FILES for name in pair):
        raise MissingDataError(f"this task needs the Fashion-MNIST data in {FASHION_MNIST_PATH}, which is missing: "
                          f"{_FASHION_HINT}")


def _require_sklearn():
    import importlib.util
    if importlib.util.find_spec("sklearn") is None:
        raise MissingDataError("this task reads the data that scikit-learn ships: pip install 'minireg[study]'")


# -- reading a run's point ---------------------------------------------------------------------------
def _get(part, key):
    return lambda point: point[part][key]


ACCURACY = Metric("validation_accuracy", "validation accuracy", _get("validation", "accuracy"))
TEST_ACCURACY = Metric("test_accuracy", "test accuracy", _get("test", "accuracy"))
GAP = Metric("generalization_gap", "train - test accuracy", lambda p: p["train"]["accuracy"] - p["test"]["accuracy"],
             higher_is_better=False)
ZEROS = Metric("zero_fraction", "exact-zero weights", lambda p: p["zero_fraction"])
NORM = Metric("weight_l2_norm", "weight L2 norm", lambda p: p["weight_l2_norm"], higher_is_better=False)
R2 = Metric("validation_r2", "validation R^2", _get("validation", "r2"))
TEST_R2 = Metric("test_r2", "test R^2", _get("test", "r2"))
R2_GAP = Metric("generalization_gap", "train - test R^2", lambda p: p["train"]["r2"] - p["test"]["r2"],
                higher_is_better=False)
TEST_MSE = Metric("test_mse", "test MSE", _get("test", "mse"), higher_is_better=False)
FID = Metric("validation_fid", "validation FID", _get("validation", "fid"), higher_is_better=False)
TEST_FID = Metric("test_fid", "test FID", _get("test", "fid"), higher_is_better=False)
GAN_COLUMNS = (Metric("inception_score", "IS", _get("test", "inception_score")),
               Metric("precision", "precision", _get("test", "precision")),
               Metric("recall", "recall", _get("test", "recall")))

_CLASSIFIER_COLUMNS = (GAP, ZEROS, NORM)


def _classification(name, title, dataset, arch, train_size, val_size, label_noise, epochs, batch_size, families_,
                    seeds, full, requires=None):
    options = {"dataset": dataset, "arch": arch, "hidden": 256, "depth": 2, "lr": 1e-3, "batch_size": batch_size,
               "epochs": epochs, "train_size": train_size, "val_size": val_size, "label_noise": label_noise}
    return Task(name, "classification", title, options, families_, seeds, families.FAMILIES, classify.run, ACCURACY,
                TEST_ACCURACY, _CLASSIFIER_COLUMNS, full=full, budget_key="epochs",
                requires=requires or _require_sklearn)


# The default study's families: all but group lasso (whose exact prox in Adam's metric, a root
# search per unit, makes a run 30 times slower) and soft weight-sharing (as slow); --preset full has them
_DEFAULT_FAMILIES = ("none", "l2", "weight_decay", "l1", "elastic_net", "max_norm", "dropout", "batch_norm",
                     "spectral_norm")
_CNN_FAMILIES = ("none", "l1", "l2", "elastic_net", "dropout", "batch_norm")

LINEAR_GRID = tuple(float(f"{10 ** (e / 4):.6g}") for e in range(-12, 9))      # 1e-3 .. 1e2, 4 per decade
LINEAR_FAMILIES = {
    "none": families.Family("none", "ordinary least squares", (None,), "-", None),
    "lasso": families.Family("lasso", "1/(2n)||y - Xw||^2 + a ||w||_1", LINEAR_GRID,
                             "scikit-learn's LassoCV searches 3 decades below alpha_max (about 40 here) on a log "
                             "grid; 1e-3..1e2 at 4 per decade covers it", None),
    "ridge": families.Family("ridge", "1/(2n)||y - Xw||^2 + a/2 ||w||^2", LINEAR_GRID,
                             "scikit-learn's RidgeCV default alphas (0.1, 1, 10) widened to the lasso grid", None),
    "elastic_net": families.Family("elastic_net", "1/(2n)||y - Xw||^2 + a (||w||_1 / 2 + ||w||^2 / 4)", LINEAR_GRID,
                                   "the lasso grid with scikit-learn's ElasticNet l1_ratio 0.5", None),
}

TASKS = {t.name: t for t in [
    _classification("mlp-digits", "MLP on digits: 400 train / 200 validation per seed, 30% label noise", "digits",
                    "mlp", 400, 200, 0.3, 40, 64, _DEFAULT_FAMILIES, 5,
                    full={"families": tuple(families.FAMILIES), "seeds": 10, "options": {"epochs": 60}}),
    _classification("cnn-digits", "CNN on digits: 400 train / 200 validation per seed, 30% label noise", "digits",
                    "cnn", 400, 200, 0.3, 30, 32, _CNN_FAMILIES, 5,
                    full={"families": tuple(families.FAMILIES), "seeds": 10}),
    _classification("mlp-fashion", "MLP on Fashion-MNIST: 4000 train / 1000 validation per seed", "fashion-mnist",
                    "mlp", 4000, 1000, 0.0, 10, 64, _DEFAULT_FAMILIES, 3,
                    full={"families": tuple(families.FAMILIES), "seeds": 10, "options": {"train_size": 20000,
                                                                                        "val_size": 5000}},
                    requires=_require_fashion),
    _classification("cnn-fashion", "CNN on Fashion-MNIST: 2000 train / 1000 validation per seed", "fashion-mnist",
                    "cnn", 2000, 1000, 0.0, 6, 64, _CNN_FAMILIES, 3,
                    full={"families": tuple(families.FAMILIES), "seeds": 10, "options": {"train_size": 20000,
                                                                                        "val_size": 5000}},
                    requires=_require_fashion),
    Task("linear-diabetes", "regression", "least squares on diabetes (353 train, 20% validation per seed)",
         {"val_fraction": 0.2, "l1_ratio": 0.5}, tuple(LINEAR_FAMILIES), 20, LINEAR_FAMILIES, linear.run, R2,
         TEST_R2, (R2_GAP, TEST_MSE, ZEROS, NORM), full={"seeds": 50}, requires=_require_sklearn, path_runs=True),
    *(Task(f"gan-{short}", "gan", f"MLP GAN on {dataset}",
           {"dataset": dataset, "steps": gan.DEFAULT_STEPS, "num_eval": gan.NUM_EVAL, "conditional": False,
            "eval_points": gan.EVAL_POINTS}, gan.DEFAULT_SETUPS, 5, gan.REGISTRY, gan.run, FID, TEST_FID,
           GAN_COLUMNS, full={"seeds": 10, "options": {"steps": 2 * gan.DEFAULT_STEPS}}, budget_key="steps",
           requires=_require_fashion if dataset == "fashion-mnist" else _require_sklearn)
      for short, dataset in (("digits", "digits"), ("fashion", "fashion-mnist"))),
]}
DEFAULT_TASK = "mlp-digits"


def get_task(name):
    if name not in TASKS:
        from minireg.check import suggest
        raise ArgumentError(f"--task must be one of {', '.join(TASKS)}; got {name!r}{suggest(name, TASKS)}")
    return TASKS[name]
