"""Neural-network building blocks: modules, layers, losses and initialisers."""
from minireg.nn import init
from minireg.nn.conv import AvgPool2d, Conv2d, ConvTranspose2d, MaxPool2d, Upsample
from minireg.nn.layers import (ELU, Dropout, Embedding, Flatten, Identity, LeakyReLU, Linear, LogSoftmax, ReLU,
                               Sigmoid, Softmax, Softplus, Tanh)
from minireg.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss
from minireg.nn.module import Module, ModuleList, Sequential
from minireg.nn.noise import DropConnect, GaussianDropout, GaussianNoise, SpatialDropout2d
from minireg.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from minireg.nn.parameter import Parameter
from minireg.nn.spectral_norm import SpectralNorm
