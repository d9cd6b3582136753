"""The networks trained on Fashion-MNIST: nn.Modules only, no I/O.

Every constructor argument has a default, so a manifest can record the kwargs and
rebuild the exact architecture.
"""

from app.nets.cnn import FashionCNN
from app.nets.gan import AuxiliaryClassifier, ConditionalDiscriminator, ConditionalGenerator
from app.nets.judge import ResNetJudge
from app.nets.lstm import RowLSTM

__all__ = [
    "AuxiliaryClassifier",
    "ConditionalDiscriminator",
    "ConditionalGenerator",
    "FashionCNN",
    "ResNetJudge",
    "RowLSTM",
]
