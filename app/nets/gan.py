"""A class-conditional DCGAN: the generator that is served and its training critic."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["AuxiliaryClassifier", "ConditionalDiscriminator", "ConditionalGenerator"]


class ConditionalGenerator(nn.Module):
    """Noise z [N, z_dim] and labels [N] -> images [N, 1, 28, 28] in [-1, 1].

    The label embedding is concatenated to z, projected to a 7x7 map and upsampled
    twice by transposed convolutions (7 -> 14 -> 28), DCGAN style.
    """

    def __init__(
        self,
        z_dim: int = 100,
        num_classes: int = 10,
        embed_dim: int = 32,
        channels: tuple[int, int] = (128, 64),
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.z_dim = z_dim
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.project = nn.Sequential(
            nn.Linear(z_dim + embed_dim, c1 * 7 * 7, bias=False),
            nn.BatchNorm1d(c1 * 7 * 7),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (c1, 7, 7)),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c2, 1, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.upsample(self.project(torch.cat((z, self.embed(labels)), dim=1)))


class ConditionalDiscriminator(nn.Module):
    """Images [N, 1, 28, 28] in [-1, 1] and labels [N] -> real/fake logits [N].

    The label enters as a learned 28x28 map stacked on the image as a second channel
    (conditional DCGAN), so the first convolution can judge the image against its
    class. A projection term and spectral normalization were tried instead and left
    the generator making noise on this budget; this variant learns classes quickly.
    """

    def __init__(self, num_classes: int = 10, channels: tuple[int, int] = (64, 128)) -> None:
        super().__init__()
        c1, c2 = channels
        self.label_map = nn.Embedding(num_classes, 28 * 28)
        self.features = nn.Sequential(
            nn.Conv2d(2, c1, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
        )
        self.linear = nn.Linear(c2 * 7 * 7, 1)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        maps = self.label_map(labels).view(-1, 1, 28, 28)
        return self.linear(self.features(torch.cat((x, maps), dim=1))).squeeze(1)


class AuxiliaryClassifier(nn.Module):
    """Images [N, 1, 28, 28] in [-1, 1] -> class logits [N, num_classes]; trained with the
    GAN on real images only, never served.

    The generator is asked to make its fakes recognisable to it (AC-GAN's auxiliary loss),
    which the real/fake discriminator alone does not ask for strongly: similar classes
    (pullover, coat, shirt) drift into each other. It never sees the label, so it cannot
    read the answer off the condition as the discriminator's first layer can. No
    normalization layer: fake batches pass through it in training mode too.
    """

    def __init__(self, num_classes: int = 10, channels: tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        c1, c2 = channels
        self.layers = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
