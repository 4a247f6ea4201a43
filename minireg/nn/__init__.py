"""Neural-network building blocks: modules, layers, losses and initialisers."""
from minireg.nn import init
from minireg.nn.layers import (ELU, Dropout, Embedding, Flatten, Identity, LeakyReLU, Linear, LogSoftmax, ReLU,
                               Sigmoid, Softmax, Softplus, Tanh)
from minireg.nn.module import Module, ModuleList, Sequential
from minireg.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from minireg.nn.parameter import Parameter
