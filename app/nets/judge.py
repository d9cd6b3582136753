"""A small residual classifier that judges the GAN: not served, and built unlike the cnn."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ResNetJudge"]


class _Residual(nn.Module):
    """A pre-activation-free basic block: two 3x3 convs that halve the resolution, plus a 1x1
    strided shortcut, summed before the ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNetJudge(nn.Module):
    """Normalized images [N, 1, 28, 28] -> logits [N, num_classes].

    A 3x3 stem at 28x28, two strided residual blocks (28 -> 14 -> 7), global average
    pooling and one linear layer: residual connections, strided convolutions and no
    max-pooling or MLP head, where the served cnn (:class:`FashionCNN`) is a plain
    VGG-style stack. A GAN scored by a classifier of another make cannot pass by
    exploiting the served cnn's own blind spots. :meth:`features` gives the pooled
    features that the diversity measure compares.
    """

    def __init__(
        self, num_classes: int = 10, channels: tuple[int, int, int] = (24, 48, 96)
    ) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.stem = nn.Sequential(
            nn.Conv2d(1, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)
        )
        self.blocks = nn.Sequential(_Residual(c0, c1), _Residual(c1, c2))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c2, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Pooled features [N, channels[-1]]: what the classifier's last layer reads."""
        return self.pool(self.blocks(self.stem(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
