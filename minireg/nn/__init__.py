"""Neural-network building blocks: modules, layers, losses and initialisers.

The dtype rule (PyTorch's): a layer's input must have the dtype of the layer's parameters.
Layers never promote or cast silently, so a float32 model stays float32 and its gradients match
the precision the user chose.

- A floating input of another dtype (float64 into a float32 ``Linear``) is a ``DTypeError`` naming
  the layer, both dtypes and the two fixes: ``x.astype('float32')`` or ``model.astype('float64')``
  (``Module.astype(dtype)``, short for ``Module.to(dtype=dtype)``, casts every floating parameter
  and buffer in place).
- Integer or boolean input to a floating layer is a ``DTypeError`` too (convert it explicitly);
  complex input is refused everywhere.
- ``Embedding`` takes integer indices and refuses anything else.
- Layers without parameters that draw noise (``Dropout``, ``SpatialDropout2d``, ``GaussianNoise``,
  ``GaussianDropout``, and ``BatchNorm`` with neither ``affine`` nor running statistics) need
  floating input of any dtype; activations, pooling, ``Flatten`` and ``Upsample`` follow their input.
- Python numbers and lists have no dtype of their own and take the layer's.
- Wrappers (``SpectralNorm``, ``DropConnect``) leave the check to the layer they wrap.

The check is ``minireg.nn.layers.layer_input``, called at the top of every layer's forward.
"""
from minireg.nn import init
from minireg.nn.conv import AvgPool2d, Conv2d, ConvTranspose2d, MaxPool2d, Upsample
from minireg.nn.layers import (ELU, GELU, Dropout, Embedding, Flatten, Identity, LeakyReLU, Linear, LogSoftmax, ReLU,
                               SiLU, Sigmoid, Softmax, Softplus, Tanh)
from minireg.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss
from minireg.nn.module import Module, ModuleList, Sequential
from minireg.nn.noise import DropConnect, GaussianDropout, GaussianNoise, SpatialDropout2d
from minireg.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from minireg.nn.parameter import Parameter
from minireg.nn.spectral_norm import SpectralNorm
