import io

import torch
from PIL import Image
from torchvision.models import AlexNet_Weights

from app.serving.inputs import FashionInput, ImageNetInput
from torchgate_bench.images import garment_png, input_file_for, photo_jpeg


def test_photo_is_a_deterministic_500x375_jpeg() -> None:
    photo = photo_jpeg()
    assert photo.data == photo_jpeg().data
    image = Image.open(io.BytesIO(photo.data))
    assert (image.format, image.size, image.mode) == ("JPEG", (500, 375), "RGB")
    assert 20_000 < len(photo.data) < 200_000  # compresses like a photo, not a flat pattern


def test_garment_is_a_28x28_greyscale_png() -> None:
    image = Image.open(io.BytesIO(garment_png().data))
    assert (image.format, image.size, image.mode) == ("PNG", (28, 28), "L")


def test_inputs_decode_through_the_servers_codecs() -> None:
    imagenet = ImageNetInput(AlexNet_Weights.DEFAULT.transforms())
    assert imagenet.from_image(photo_jpeg().data, 10**7).shape == torch.Size([3, 224, 224])
    fashion = FashionInput(0.5, 0.5, sequence=True)
    assert fashion.from_image(garment_png().data, 10**7).shape == torch.Size([28, 28])


def test_each_model_gets_the_input_its_clients_send() -> None:
    assert input_file_for("resnet101").content_type == "image/jpeg"
    assert input_file_for("cnn").content_type == "image/png"
