"""The six served models, described as data: how each is built, where its weights come from,
what it takes as input and how it is batched by default."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from torchvision.models import (
    AlexNet_Weights,
    ResNet101_Weights,
    VGG16_Weights,
    WeightsEnum,
)

from app.errors import NotFound

FASHION_SIDE = 28
# The crop of all three torchvision ImageNet weights; their networks take any side in range.
IMAGENET_INPUT = (3, 224, 224)
IMAGENET_ACCEPTS = (3, -1, -1)


@dataclass(frozen=True)
class ExplainSpec:
    """How a classifier is explained (app/serving/explain.py): ``gradcam_layer`` names the
    output of its last conv block (None: no Grad-CAM); ``rows``: the input is read row by row,
    so attributions are also summed per row; ``cudnn``: whether cuDNN may run its backward in
    eval mode (not for RNNs: cuDNN's RNN backward needs training mode)."""

    gradcam_layer: str | None = None
    rows: bool = False
    cudnn: bool = True


class ModelKind(StrEnum):
    IMAGE_CLASSIFIER = "image-classifier"
    SEQUENCE_CLASSIFIER = "sequence-classifier"
    GENERATOR = "generator"


@dataclass(frozen=True)
class ModelSpec:
    """One served model. Exactly one of ``pretrained`` (torchvision) or ``net_module`` (trained
    here, checkpoint + manifest in the checkpoint dir) says where its weights come from."""

    name: str
    kind: ModelKind
    summary: str
    max_batch_size: int
    max_batch_delay_ms: float
    pretrained: WeightsEnum | None = None
    net_module: str | None = None
    dataset: str = "imagenet-1k"
    # The serving form measured fastest SERVED on each device type (docs/graph-modes.md;
    # rerun with ``python -m torchgate_bench bench-graphs`` and ``... bench``): frozen TorchScript
    # where it wins by a margin and its weight copy is small, channels_last for the conv nets;
    # TORCHGATE_GRAPH / TORCHGATE_CHANNELS_LAST override. AOTInductor ("aot") runs a forward
    # faster, but its Python binding holds the GIL for the whole forward, which stalls the
    # event loop: served, it loses on the CPU (cnn at c=32: 3,531 req/s against script's 5,167).
    cpu_graph: str = "eager"
    cuda_graph: str = "eager"
    channels_last: bool = False
    # At most this many intra-op threads for its batches on the CPU (None: all the worker's).
    # A model whose batch takes a millisecond or two gains nothing from a second thread and
    # takes that core from the event loop; an explicit TORCHGATE_TORCH_THREADS overrides.
    cpu_threads: int | None = None
    # What one sample is (-1: a dimension that may vary), for v2/gRPC metadata and checks: a
    # classifier's float32 input tensor and the looser shape it also accepts; a generator's
    # input, a latent of ``latent_dim`` normal values and a class label, and its image output.
    input_shape: tuple[int, ...] = ()
    input_accepts: tuple[int, ...] | None = None
    latent_dim: int | None = None
    output_shape: tuple[int, ...] = ()
    # How it is explained (None: it cannot be, a generator)
    explain: ExplainSpec | None = None

    @property
    def is_classifier(self) -> bool:
        return self.kind is not ModelKind.GENERATOR

    @property
    def latent_size(self) -> int:
        """The generator's latent size (``latent_dim``); a classifier has none."""
        if self.latent_dim is None:
            raise ValueError(f"model {self.name!r} takes no latent input")
        return self.latent_dim


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "alexnet",
            ModelKind.IMAGE_CLASSIFIER,
            "AlexNet, ImageNet-1k (torchvision)",
            max_batch_size=16,
            max_batch_delay_ms=5.0,
            explain=ExplainSpec(gradcam_layer="features.11"),
            pretrained=AlexNet_Weights.DEFAULT,
            input_shape=IMAGENET_INPUT,
            input_accepts=IMAGENET_ACCEPTS,
            channels_last=True,
        ),
        ModelSpec(
            "vgg16",
            ModelKind.IMAGE_CLASSIFIER,
            "VGG-16, ImageNet-1k (torchvision)",
            max_batch_size=8,
            max_batch_delay_ms=5.0,
            explain=ExplainSpec(gradcam_layer="features.29"),
            pretrained=VGG16_Weights.DEFAULT,
            input_shape=IMAGENET_INPUT,
            input_accepts=IMAGENET_ACCEPTS,
            channels_last=True,
        ),
        ModelSpec(
            "resnet101",
            ModelKind.IMAGE_CLASSIFIER,
            "ResNet-101, ImageNet-1k (torchvision)",
            max_batch_size=8,
            max_batch_delay_ms=5.0,
            explain=ExplainSpec(gradcam_layer="layer4"),
            pretrained=ResNet101_Weights.DEFAULT,
            input_shape=IMAGENET_INPUT,
            input_accepts=IMAGENET_ACCEPTS,
            cpu_graph="script",
            channels_last=True,
        ),
        ModelSpec(
            "cnn",
            ModelKind.IMAGE_CLASSIFIER,
            "compact CNN trained on Fashion-MNIST",
            # 16, not more: with a closed loop of 32 clients, two half-size batches overlap
            # (one in the forward while the event loop answers and refills the other); one
            # batch of 32 leaves the loop idle during the forward (docs/performance.md).
            max_batch_size=16,
            max_batch_delay_ms=2.0,
            explain=ExplainSpec(gradcam_layer="features.1.5"),
            net_module="app.nets.cnn",
            input_shape=(1, FASHION_SIDE, FASHION_SIDE),
            dataset="fashion-mnist",
            cpu_graph="script-onednn",
            channels_last=True,
            cpu_threads=1,
        ),
        ModelSpec(
            "lstm",
            ModelKind.SEQUENCE_CLASSIFIER,
            "bidirectional LSTM reading Fashion-MNIST images row by row",
            max_batch_size=64,
            max_batch_delay_ms=2.0,
            explain=ExplainSpec(rows=True, cudnn=False),
            net_module="app.nets.lstm",
            input_shape=(-1, FASHION_SIDE),  # T rows of 28 pixels, 1 <= T <= 28
            dataset="fashion-mnist",
            cpu_graph="script",
        ),
        ModelSpec(
            "gan",
            ModelKind.GENERATOR,
            "class-conditional DCGAN generator (Fashion-MNIST)",
            max_batch_size=64,
            max_batch_delay_ms=2.0,
            net_module="app.nets.gan",
            dataset="fashion-mnist",
            cpu_graph="script",
            latent_dim=100,  # app.nets.gan.ConditionalGenerator's z_dim
            output_shape=(1, FASHION_SIDE, FASHION_SIDE),
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec for ``name``; an unknown name lists the valid ones."""
    try:
        return SPECS[name]
    except KeyError:
        raise NotFound(f"no model named {name!r}; available models: {', '.join(SPECS)}.") from None
