"""Neural-network building blocks: modules, layers, losses and initialisers."""
from minireg.nn.parameter import Parameter
