"""Our torchvision-layout Inception v3, its preprocessing and the asuka grayscale equal torchvision's bit for bit
(issue 26: the scoring path no longer imports torchvision)."""

import numpy as np
import pytest
import torch
from PIL import Image

from evaluators.features import build_torchvision_inception
from evaluators.functional.pixel import _gray_unit
from evaluators.inception_torchvision import ImageNetInceptionTransform, InceptionV3


def _reference(state: dict) -> torch.nn.Module:
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    net.load_state_dict(state)
    net.fc = torch.nn.Identity()
    return net.eval()


def test_state_dict_layout_is_torchvisions():
    from torchvision.models import inception_v3

    ours = {k: tuple(v.shape) for k, v in InceptionV3().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict().items()}
    assert ours == theirs


def test_features_equal_torchvisions_bit_for_bit(random_weights):
    """Unfolded, default memory layout: the same float32 operations as torchvision's eval forward."""
    state = torch.load(random_weights["inception-torchvision"], weights_only=True)
    ours = build_torchvision_inception(random_weights["inception-torchvision"])
    torch.manual_seed(1)
    x = torch.rand(2, 3, 299, 299) * 4 - 2
    with torch.inference_mode():
        expected = _reference(state)(x)
        got = ours(x)
    assert got.shape == (2, 2048) and torch.equal(got, expected)


def test_a_file_that_is_not_inception_is_refused(random_weights, tmp_path):
    state = torch.load(random_weights["inception-torchvision"], weights_only=True)
    state["Mixed_6b.branch7x7_2.conv.weight"] = torch.zeros(128, 128, 7, 1)  # a (7, 1) kernel where (1, 7) is
    torch.save(state, tmp_path / "transposed.pth")
    with pytest.raises(ValueError, match=r"transposed\.pth: .*Mixed_6b\.branch7x7_2\.conv\.weight"):
        build_torchvision_inception(tmp_path / "transposed.pth")


@pytest.mark.parametrize("height,width", [(512, 512), (300, 400), (342, 342), (600, 350), (299, 1000), (257, 263)])
def test_preprocessing_equals_the_weights_transforms(height, width):
    from torchvision.models import Inception_V3_Weights

    rng = np.random.default_rng(height * width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = Inception_V3_Weights.IMAGENET1K_V1.transforms()(Image.fromarray(image))
    got = ImageNetInceptionTransform()(image)
    assert got.shape == (3, 299, 299) and got.dtype == torch.float32 and torch.equal(got, expected)


def test_gray_equals_torchvision_rgb_to_grayscale():
    from torchvision.transforms.functional import rgb_to_grayscale

    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    expected = rgb_to_grayscale(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)[0].numpy()
    got = _gray_unit(image)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
