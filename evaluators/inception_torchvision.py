"""torchvision's ImageNet Inception v3 and its `IMAGENET1K_V1.transforms()`, as the asuka protocol's FID / IDS
features: the official `cal_ids.py` builds `inception_v3(weights=IMAGENET1K_V1)` with `fc = nn.Identity()`.

Own code (why): `import torchvision` costs 1.1-1.5 s of every scoring run's start-up on 2 CPU cores, most of it
`torch._dynamo`, which `torchvision.ops` imports unconditionally (issue 26); scoring needs only this network and
its preprocessing. Module names equal torchvision's (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_mean`,
`AuxLogits.fc.bias`, ...), so its published file (`inception_v3_google-0cc3c7bd.pth`) loads strictly; features and
preprocessing equal torchvision 0.29's with `torch.equal` (tests/test_inception_torchvision.py). Eval mode only: the
auxiliary classifier (`AuxLogits`) is kept for its tensors and never run.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class BasicConv2d(nn.Module):
    """Convolution (no bias) -> batch norm (eps 1e-3) -> ReLU; `misato.devices.fold_batch_norms` folds the norm."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class _Block(nn.Module):
    """An Inception block: one `BasicConv2d` per entry of `layers` (name -> constructor arguments)."""

    def __init__(self, layers: dict[str, tuple]) -> None:
        super().__init__()
        for name, arguments in layers.items():
            self.add_module(name, BasicConv2d(*arguments))

    def _chain(self, x: torch.Tensor, *names: str) -> torch.Tensor:
        for name in names:
            x = getattr(self, name)(x)
        return x


def _pool3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(_Block):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__({"branch1x1": (cin, 64, 1), "branch5x5_1": (cin, 48, 1), "branch5x5_2": (48, 64, 5, 1, 2),
                          "branch3x3dbl_1": (cin, 64, 1), "branch3x3dbl_2": (64, 96, 3, 1, 1),
                          "branch3x3dbl_3": (96, 96, 3, 1, 1), "branch_pool": (cin, pool_features, 1)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self._chain(x, "branch5x5_1", "branch5x5_2"),
                          self._chain(x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                          self.branch_pool(_pool3(x))], 1)


class InceptionB(_Block):
    def __init__(self, cin: int) -> None:
        super().__init__({"branch3x3": (cin, 384, 3, 2), "branch3x3dbl_1": (cin, 64, 1),
                          "branch3x3dbl_2": (64, 96, 3, 1, 1), "branch3x3dbl_3": (96, 96, 3, 2)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self._chain(x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(_Block):
    def __init__(self, cin: int, c7: int) -> None:
        row, column = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
        super().__init__({"branch1x1": (cin, 192, 1), "branch7x7_1": (cin, c7, 1), "branch7x7_2": (c7, c7, *row),
                          "branch7x7_3": (c7, 192, *column), "branch7x7dbl_1": (cin, c7, 1),
                          "branch7x7dbl_2": (c7, c7, *column), "branch7x7dbl_3": (c7, c7, *row),
                          "branch7x7dbl_4": (c7, c7, *column), "branch7x7dbl_5": (c7, 192, *row),
                          "branch_pool": (cin, 192, 1)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = ("branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5")
        return torch.cat([self.branch1x1(x), self._chain(x, "branch7x7_1", "branch7x7_2", "branch7x7_3"),
                          self._chain(x, *double), self.branch_pool(_pool3(x))], 1)


class InceptionD(_Block):
    def __init__(self, cin: int) -> None:
        super().__init__({"branch3x3_1": (cin, 192, 1), "branch3x3_2": (192, 320, 3, 2),
                          "branch7x7x3_1": (cin, 192, 1), "branch7x7x3_2": (192, 192, (1, 7), 1, (0, 3)),
                          "branch7x7x3_3": (192, 192, (7, 1), 1, (3, 0)), "branch7x7x3_4": (192, 192, 3, 2)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._chain(x, "branch3x3_1", "branch3x3_2"),
                          self._chain(x, "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"),
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(_Block):
    def __init__(self, cin: int) -> None:
        row, column = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))
        super().__init__({"branch1x1": (cin, 320, 1), "branch3x3_1": (cin, 384, 1), "branch3x3_2a": (384, 384, *row),
                          "branch3x3_2b": (384, 384, *column), "branch3x3dbl_1": (cin, 448, 1),
                          "branch3x3dbl_2": (448, 384, 3, 1, 1), "branch3x3dbl_3a": (384, 384, *row),
                          "branch3x3dbl_3b": (384, 384, *column), "branch_pool": (cin, 192, 1)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self._chain(x, "branch3x3dbl_1", "branch3x3dbl_2")
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double), self.branch_pool(_pool3(x))], 1)


class AuxiliaryTensors(nn.Module):
    """The tensors of torchvision's training-only auxiliary classifier (`AuxLogits`), so the published file loads
    strictly; never run: features are taken in eval mode, where torchvision skips it too."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(768, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, 1000)


class InceptionV3(nn.Module):
    """torchvision `inception_v3(transform_input=True, aux_logits=True)` in eval mode. `fc` is the 1000-class layer
    as loaded; the feature builder replaces it with `nn.Identity()`, as cal_ids.py does, so that `forward` maps
    (B, 3, 299, 299) float32 (ImageNet-normalised, `ImageNetInceptionTransform`) to (B, 2048)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, 2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, 1, 1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.AuxLogits = AuxiliaryTensors()
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b, self.Mixed_7c = InceptionE(1280), InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=0.5)
        self.fc: nn.Module = nn.Linear(2048, 1000)

    @staticmethod
    def _transform_input(x: torch.Tensor) -> torch.Tensor:
        """ImageNet normalisation -> the (x - 0.5) / 0.5 inputs the Google weights were trained on (transform_input)."""
        return torch.cat([torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                          torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                          torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                     "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool", "dropout"):
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(x, 1))


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageNetInceptionTransform:
    """`Inception_V3_Weights.IMAGENET1K_V1.transforms()` on a PIL image, as cal_ids.py applies it: the shorter side
    resized to 342 by PIL bilinear (antialiased), the centre 299 x 299 cut out, bytes / 255, ImageNet mean and std.
    Call with uint8 (H, W, 3) RGB; returns float32 (3, 299, 299). Picklable (runs in data-loader workers)."""

    resize, crop = 342, 299

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        from PIL import Image

        pil = Image.fromarray(image)
        width, height = pil.size
        short, long = min(width, height), max(width, height)
        new_long = int(self.resize * long / short)
        size = (self.resize, new_long) if width <= height else (new_long, self.resize)
        if size != (width, height):
            pil = pil.resize(size, Image.BILINEAR)
        top, left = (int(round((side - self.crop) / 2.0)) for side in (size[1], size[0]))
        pil = pil.crop((left, top, left + self.crop, top + self.crop))
        tensor = torch.as_tensor(np.array(pil, copy=True)).permute(2, 0, 1).to(torch.float32) / 255.0
        mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32).view(-1, 1, 1)
        std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32).view(-1, 1, 1)
        return tensor.sub_(mean).div_(std)
