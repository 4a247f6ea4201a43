"""Generative adversarial networks: model builders, losses and GAN regularizers."""
from minireg.gan.losses import GAN_LOSSES, GANLoss, get_loss, hinge, least_squares, minimax, non_saturating, wgan
from minireg.gan.models import (Discriminator, Generator, dcgan_discriminator, dcgan_generator, mlp_discriminator,
                                mlp_generator)
from minireg.gan.penalties import (DRAGAN, R1, R2, ConsistencyRegularization, FeatureMatching, GradientPenalty,
                                   InstanceNoise, LeCam, input_gradients)
from minireg.gan.trainer import GANTrainer
