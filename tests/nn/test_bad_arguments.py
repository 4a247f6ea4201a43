"""Every documented bad argument of the layers (minireg.nn), the data tools (minireg.data,
minireg.datasets), the metrics and the constraints raises a MiniregError subclass (still a
ValueError or TypeError) whose message names the argument and what it got, from minireg.check."""
import numpy as np
import pytest

from minireg import nn
from minireg.data import DataLoader, Standardizer, Subset, TensorDataset, random_split, train_val_split
from minireg.datasets import load_diabetes, load_digits
from minireg.errors import ArgumentError, ArgumentTypeError, DTypeError, MiniregError, ShapeError
from minireg.metrics import accuracy, top_k_accuracy
from minireg.reg.constraints import L1Ball, L2Ball, MaxNorm, MinMaxNorm, TopK, UnitNorm, WeightClip

X = np.zeros((10, 3), np.float32)
DATASET = TensorDataset(X)
SCORES = np.random.default_rng(0).normal(size=(20, 7))
LABELS = np.arange(20) % 7

# (callable, keyword arguments, error class, message fragment)
BAD_ARGUMENTS = [
    # dense layers and activations
    (nn.Linear, dict(in_features=0, out_features=3), ArgumentError,
     "Linear: in_features must be an integer >= 1, got 0"),
    (nn.Linear, dict(in_features=-1, out_features=3), ArgumentError,
     "Linear: in_features must be an integer >= 1, got -1"),
    (nn.Linear, dict(in_features=2, out_features=0), ArgumentError, "Linear: out_features must be an integer >= 1"),
    (nn.Linear, dict(in_features=2.0, out_features=3), ArgumentTypeError, "in_features must be an integer, got 2.0"),
    (nn.Linear, dict(in_features=2, out_features=3, bias="yes"), ArgumentTypeError, "bias must be True or False"),
    (nn.Dropout, dict(p=1.5), ArgumentError, "Dropout: p must be in [0, 1], got 1.5"),
    (nn.Dropout, dict(p=-0.1), ArgumentError, "Dropout: p must be in [0, 1], got -0.1"),
    (nn.Dropout, dict(p="0.5"), ArgumentTypeError, "Dropout: p must be a real number, got '0.5'"),
    (nn.Embedding, dict(num_embeddings=0, embedding_dim=2), ArgumentError, "num_embeddings must be an integer >= 1"),
    (nn.Embedding, dict(num_embeddings=3, embedding_dim=-2), ArgumentError, "embedding_dim must be an integer >= 1"),
    (nn.Flatten, dict(start_axis=1.0), ArgumentTypeError, "Flatten: start_axis must be an integer"),
    (nn.LeakyReLU, dict(slope=0.1), ArgumentTypeError, "LeakyReLU() got unexpected options ['slope']"),
    (nn.LeakyReLU, dict(negative_slope="0.1"), ArgumentTypeError, "LeakyReLU: negative_slope must be a real number"),
    (nn.ELU, dict(alpha=float("nan")), ArgumentError, "ELU: alpha must be finite, got nan"),
    (nn.Softmax, dict(axis=1.5), ArgumentTypeError, "Softmax: axis must be an integer, got 1.5"),
    # convolution, pooling, upsampling
    (nn.Conv2d, dict(in_channels=0, out_channels=4, kernel_size=3), ArgumentError, "Conv2d: in_channels must be"),
    (nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=0), ArgumentError,
     "kernel_size must be an int or a pair of ints >= 1, got 0"),
    (nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=(3, 3, 3)), ArgumentError, "kernel_size must be"),
    (nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, stride=0), ArgumentError,
     "stride must be an int or a pair of ints >= 1, got 0"),
    (nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, padding=-1), ArgumentError,
     "padding must be an int or a pair of ints >= 0, got -1"),
    (nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, dilation=(1, 0)), ArgumentError, "dilation must be"),
    (nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), ArgumentError,
     "groups=2 must divide in_channels=3 and out_channels=4"),
    (nn.Conv2d, dict(in_channels=3, out_channels=3, kernel_size=3, groups=0), ArgumentError,
     "Conv2d: groups must be an integer >= 1, got 0"),
    (nn.ConvTranspose2d, dict(in_channels=2, out_channels=2, kernel_size=4, output_padding=-1), ArgumentError,
     "output_padding must be"),
    (nn.ConvTranspose2d, dict(in_channels=2, out_channels=2.5, kernel_size=4), ArgumentTypeError,
     "ConvTranspose2d: out_channels must be an integer"),
    (nn.MaxPool2d, dict(kernel_size=0), ArgumentError, "kernel_size must be an int or a pair of ints >= 1"),
    (nn.AvgPool2d, dict(kernel_size=2, stride=0), ArgumentError, "stride must be"),
    (nn.MaxPool2d, dict(kernel_size=2, padding=-1), ArgumentError, "padding must be"),
    (nn.Upsample, dict(scale_factor=0), ArgumentError, "Upsample: scale_factor must be an int or a pair of ints >= 1"),
    (nn.Upsample, dict(mode="bilinear"), ArgumentError, "Upsample: mode (only nearest-neighbour is implemented) "
                                                        "must be one of 'nearest'; got 'bilinear'"),
    # normalization
    (nn.BatchNorm1d, dict(num_features=0), ArgumentError, "BatchNorm1d: num_features must be an integer >= 1"),
    (nn.BatchNorm1d, dict(num_features=3, eps=0.0), ArgumentError, "BatchNorm1d: eps must be > 0, got 0.0"),
    (nn.BatchNorm2d, dict(num_features=3, eps=-1e-5), ArgumentError, "BatchNorm2d: eps must be > 0"),
    (nn.BatchNorm2d, dict(num_features=3, momentum=1.5), ArgumentError, "momentum must be in [0, 1], got 1.5"),
    (nn.BatchNorm2d, dict(num_features=3, momentum=-0.1), ArgumentError, "momentum must be in [0, 1], got -0.1"),
    (nn.BatchNorm2d, dict(num_features=3, momentum=None), ArgumentTypeError, "momentum must be a real number"),
    (nn.BatchNorm1d, dict(num_features=3, affine=1), ArgumentTypeError, "affine must be True or False"),
    (nn.LayerNorm, dict(normalized_shape=0), ArgumentError, "LayerNorm: normalized_shape must be an integer >= 1"),
    (nn.LayerNorm, dict(normalized_shape=(2, 3), eps=0), ArgumentError, "LayerNorm: eps must be > 0"),
    # noise layers and wrappers
    (nn.SpatialDropout2d, dict(p=-0.1), ArgumentError, "SpatialDropout2d: p must be in [0, 1], got -0.1"),
    (nn.SpatialDropout2d, dict(p=float("nan")), ArgumentError, "SpatialDropout2d: p must be finite, got nan"),
    (nn.GaussianDropout, dict(rate=1.0), ArgumentError, "GaussianDropout: rate must be in [0, 1), got 1.0"),
    (nn.GaussianDropout, dict(rate="0.5"), ArgumentTypeError, "rate must be a real number, got '0.5'"),
    (nn.GaussianNoise, dict(stddev=-1.0), ArgumentError, "GaussianNoise: stddev must be >= 0, got -1.0"),
    (nn.GaussianNoise, dict(stddev=float("inf")), ArgumentError, "GaussianNoise: stddev must be finite, got inf"),
    (nn.DropConnect, dict(module=np.zeros((2, 2))), ArgumentTypeError,
     "DropConnect: module must be a Module to wrap, got ndarray"),
    (nn.DropConnect, dict(module=nn.ReLU()), ArgumentError, "DropConnect: ReLU has no parameter 'weight'"),
    (nn.DropConnect, dict(module=nn.Linear(2, 2), p=1.5), ArgumentError, "DropConnect: p must be in [0, 1], got 1.5"),
    (nn.SpectralNorm, dict(module=nn.Linear(4, 3), name="bias"), ShapeError,
     "at least 2 dimensions, got 'bias' of shape (3,)"),
    (nn.SpectralNorm, dict(module=nn.Linear(4, 3), name="weights"), ArgumentError,
     "SpectralNorm: Linear has no parameter 'weights'; its parameters are ['weight', 'bias'] (did you mean 'weight'?)"),
    (nn.SpectralNorm, dict(module=nn.Linear(4, 3), n_power_iterations=0), ArgumentError,
     "SpectralNorm: n_power_iterations must be an integer >= 1, got 0"),
    (nn.SpectralNorm, dict(module=nn.Linear(4, 3), eps=0.0), ArgumentError, "SpectralNorm: eps must be > 0, got 0.0"),
    (nn.SpectralNorm, dict(module=nn.Linear(4, 3), dim=2), ShapeError,
     "SpectralNorm: dim (for a weight of shape (3, 4))=2 is out of range for 2-d input"),
    # losses, initialisers, module methods
    (nn.HuberLoss, dict(delta=0.0), ArgumentError, "HuberLoss: delta must be > 0, got 0.0"),
    (nn.CrossEntropyLoss, dict(label_smoothing=1.5), ArgumentError, "label_smoothing must be in [0, 1], got 1.5"),
    (nn.init.calculate_gain, dict(nonlinearity="rellu"), ArgumentError, "(did you mean 'relu'?)"),
    (nn.init.normal_, dict(tensor=nn.Parameter(np.zeros(2)), std=-1.0), ArgumentError, "normal_: std must be >= 0"),
    (nn.init.uniform_, dict(tensor=nn.Parameter(np.zeros(2)), a=1.0, b=0.0), ArgumentError,
     "uniform_: b must be >= 1.0, got 0.0"),
    (nn.init.constant_, dict(tensor=nn.Parameter(np.zeros(2)), value="1"), ArgumentTypeError,
     "constant_: value must be a real number"),
    (nn.init.orthogonal_, dict(tensor=nn.Parameter(np.zeros(2))), ShapeError,
     "orthogonal_ needs at least 2 dimensions"),
    (nn.Linear(2, 2).astype, dict(dtype="int32"), DTypeError, "Linear.to: dtype must be a floating dtype"),
    (nn.Linear(2, 2).to, dict(dtype="float99"), DTypeError, "dtype must be a floating dtype"),
    (nn.Linear(2, 2).summary, dict(input_shape=(0,)), ArgumentError, "summary: input_shape must be an integer >= 1"),
    (nn.ModuleList, dict(modules=[nn.ReLU(), 3]), ArgumentTypeError,
     "ModuleList.append: module must be a Module, got int"),
    (nn.Sequential().append, dict(module=print), ArgumentTypeError, "Sequential.append: module must be a Module"),
    (nn.Linear(2, 2).train, dict(mode="eval"), ArgumentTypeError,
     "Linear.train: mode must be True or False, got 'eval'"),
    (nn.Linear(2, 2).load_state_dict, dict(state_dict=[1, 2]), ArgumentTypeError,
     "load_state_dict: state_dict must be a mapping of names to arrays, got list"),
    # data
    (DataLoader, dict(dataset=DATASET, batch_size=0), ArgumentError,
     "DataLoader: batch_size must be an integer >= 1, got 0"),
    (DataLoader, dict(dataset=DATASET, batch_size=2.0), ArgumentTypeError, "batch_size must be an integer, got 2.0"),
    (DataLoader, dict(dataset=DATASET, batch_size=True), ArgumentTypeError, "batch_size must be an integer, got True"),
    (DataLoader, dict(dataset=DATASET, batch_size=20, drop_last=True), ArgumentError, "would yield no batches"),
    (DataLoader, dict(dataset=DATASET, shuffle="yes"), ArgumentTypeError, "DataLoader: shuffle must be True or False"),
    (DataLoader, dict(dataset=DATASET, shuffle=True, generator=42), ArgumentTypeError,
     "generator must be a numpy.random.Generator or None, got int"),
    (DataLoader, dict(dataset=5), ArgumentTypeError, "dataset must be a map-style dataset"),
    (DataLoader, dict(dataset=TensorDataset(X[:0])), ArgumentError, "the dataset is empty"),
    (TensorDataset, dict(), ArgumentError, "TensorDataset needs at least one array"),
    (Subset, dict(dataset=DATASET, indices=[0, 10]), ArgumentError,
     "indices must lie in [0, 10), got values from 0 to 10"),
    (Subset, dict(dataset=DATASET, indices=[0.5]), ArgumentError, "indices must be a 1-d sequence of integers"),
    (random_split, dict(dataset=DATASET, lengths=[3, 3]), ArgumentError, "summing to len(dataset) = 10"),
    (train_val_split, dict(val_fraction=1.0), ArgumentError, "train_val_split needs at least one array"),
    (lambda **kw: train_val_split(X, **kw), dict(val_fraction=1.0), ArgumentError,
     "train_val_split: val_fraction must be in (0, 1), got 1.0"),
    (lambda **kw: train_val_split(X, **kw), dict(val_fraction=0.95), ArgumentError, "leaves none for training"),
    (lambda **kw: train_val_split(X, **kw), dict(seed=-1), ArgumentError, "seed must be an integer >= 0, got -1"),
    (Standardizer().fit, dict(x=X, axis=2), ShapeError, "Standardizer.fit: axis=2 is out of range for 2-d input"),
    (Standardizer().fit, dict(x=np.array(["a", "b"])), ArgumentTypeError, "expected numeric data, got dtype <U1"),
    (Standardizer().fit, dict(x=X[:0]), ShapeError, "no samples"),
    (load_digits, dict(flatten="yes"), ArgumentTypeError, "flatten must be True or False, got 'yes'"),
    (load_diabetes, dict(scale=2), ArgumentTypeError, "load_diabetes: scale must be True or False, got 2"),
    # metrics
    (accuracy, dict(scores=SCORES, labels=LABELS + 1), ArgumentError, "accuracy: label 7 is out of range [0, 7)"),
    (accuracy, dict(scores=SCORES, labels=LABELS - 1), ArgumentError, "label -1 is out of range"),
    (accuracy, dict(scores=SCORES, labels=LABELS.astype(float)), ArgumentError, "class labels must be integers"),
    (accuracy, dict(scores=SCORES[:, 0], labels=LABELS), ShapeError, "expected scores of shape (N, C)"),
    (accuracy, dict(scores=SCORES, labels=LABELS[:5]), ShapeError, "expected 20 labels"),
    (accuracy, dict(scores=SCORES[:0], labels=LABELS[:0]), ShapeError, "no samples"),
    (top_k_accuracy, dict(scores=SCORES, labels=LABELS, k=0), ArgumentError,
     "top_k_accuracy: k (for 7 classes) must be an integer in [1, 7], got 0"),
    (top_k_accuracy, dict(scores=SCORES, labels=LABELS, k=8), ArgumentError, "must be an integer in [1, 7], got 8"),
    (top_k_accuracy, dict(scores=SCORES, labels=LABELS, k=2.0), ArgumentTypeError,
     "k (for 7 classes) must be an integer"),
    # constraints
    (WeightClip, dict(c=-0.1), ArgumentError, "WeightClip: c must be >= 0, got -0.1"),
    (WeightClip, dict(c=float("nan")), ArgumentError, "WeightClip: c must be finite, got nan"),
    (MaxNorm, dict(max_value=float("inf")), ArgumentError, "MaxNorm: max_value must be finite, got inf"),
    (MaxNorm, dict(max_value=2.0, axis=0), ArgumentError, "MaxNorm: axis must be one of 'rows', 'columns'; got 0"),
    (UnitNorm, dict(axis="column"), ArgumentError, "UnitNorm: axis must be one of 'rows', 'columns'; got 'column' "
                                                   "(did you mean 'columns'?)"),
    (MinMaxNorm, dict(min_value=-1.0), ArgumentError, "MinMaxNorm: min_value must be >= 0, got -1.0"),
    (MinMaxNorm, dict(min_value=2.0, max_value=1.0), ArgumentError,
     "min_value must be <= max_value, got min_value=2.0"),
    (MinMaxNorm, dict(rate=1.5), ArgumentError, "MinMaxNorm: rate must be in (0, 1], got 1.5"),
    (MinMaxNorm, dict(rate=0.0), ArgumentError, "MinMaxNorm: rate must be in (0, 1], got 0.0"),
    (L2Ball, dict(radius=0.0), ArgumentError, "L2Ball: radius must be > 0, got 0.0"),
    (L1Ball, dict(radius=-2.0), ArgumentError, "L1Ball: radius must be > 0, got -2.0"),
    (TopK, dict(k=0), ArgumentError, "TopK: k must be an integer >= 1, got 0"),
    (TopK, dict(k=2.0), ArgumentTypeError, "TopK: k must be an integer, got 2.0"),
    (TopK, dict(k=True), ArgumentTypeError, "TopK: k must be an integer, got True"),
]


def _name(case):
    make, kwargs = case[0], case[1]
    return f"{getattr(make, '__qualname__', type(make).__name__)}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


@pytest.mark.parametrize("make, kwargs, error, fragment", BAD_ARGUMENTS, ids=[_name(c) for c in BAD_ARGUMENTS])
def test_a_bad_argument_raises_a_minireg_error_naming_it(make, kwargs, error, fragment):
    with pytest.raises(error) as info:
        make(**kwargs)
    assert isinstance(info.value, MiniregError) and isinstance(info.value, (ValueError, TypeError))
    assert fragment in str(info.value)


@pytest.mark.parametrize("value", [np.float32(0.25), np.float64(0.25), np.array(0.25)])
def test_numpy_scalars_are_numbers(value):
    assert nn.Dropout(value).p == 0.25 and isinstance(nn.Dropout(value).p, float)
    assert nn.GaussianNoise(value).stddev == 0.25 and MaxNorm(value).max_value == 0.25
    assert nn.Linear(np.int64(2), np.int32(3)).weight.shape == (3, 2)
    assert DataLoader(DATASET, batch_size=np.int64(4)).batch_size == 4
