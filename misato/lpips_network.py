"""The LPIPS network (version 0.1, linear heads, spatial average) with both weight files resolved by misato.weights:
one builder for the LPIPS metric (`evaluators`) and the decoder's training loss (`baselines.asuka.training`).

Own code, not the `lpips` package (why): `lpips` builds its backbones through `torchvision.models`, and
`import torchvision` pulls in `torch._dynamo`: about 1.1-1.5 s of start-up on every `misato score` on 2 CPU cores
(issue 26). `LPIPS` here is `lpips.LPIPS(net, version="0.1")` of lpips 0.1.4 with the same state-dict keys and
the same float32 operations in the same order; tests/test_lpips_network.py checks its outputs and input gradients
against the package with torch.equal, for AlexNet and VGG16.

`LPIPS_WEIGHTS` is the one table of each backbone's registry keys (backbone file, linear heads), by `lpips` net name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from misato.weights import ResolvedWeight

# Registry keys (backbone, linear heads) of each LPIPS network, by the `lpips` package's net name.
LPIPS_WEIGHTS: dict[str, tuple[str, str]] = {"alex": ("alexnet-torchvision", "lpips-alex-lin"),
                                             "vgg": ("vgg16-torchvision", "lpips-vgg-lin")}


def lpips_weight_keys(net: str, field: str = "lpips_net") -> tuple[str, str]:
    """(backbone, linear heads) registry keys of LPIPS network `net`; ValueError naming `field` for another net."""
    if net not in LPIPS_WEIGHTS:
        raise ValueError(f"{field} {net!r}: not an LPIPS network with registered weights "
                         f"(known: {', '.join(sorted(LPIPS_WEIGHTS))})")
    return LPIPS_WEIGHTS[net]


@dataclass(frozen=True)
class Conv:
    """A torchvision `features` convolution to `out` channels (its input channels: the previous one's) and its
    in-place ReLU."""

    out: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1


@dataclass(frozen=True)
class Pool:
    """A torchvision `features` max-pool (no padding, floor mode)."""

    kernel: int
    stride: int


_VGG_POOL = Pool(2, 2)

# Each backbone's torchvision `features` up to the last layer LPIPS compares, cut into the slices whose outputs it
# compares (after each slice's last ReLU); the layers are numbered on across slices as torchvision numbers them.
BACKBONES: dict[str, tuple[tuple[Conv | Pool, ...], ...]] = {
    "alex": ((Conv(64, 11, 4, 2),),
             (Pool(3, 2), Conv(192, 5, 1, 2)),
             (Pool(3, 2), Conv(384)),
             (Conv(256),),
             (Conv(256),)),
    "vgg": ((Conv(64), Conv(64)),
            (_VGG_POOL, Conv(128), Conv(128)),
            (_VGG_POOL, Conv(256), Conv(256), Conv(256)),
            (_VGG_POOL, Conv(512), Conv(512), Conv(512)),
            (_VGG_POOL, Conv(512), Conv(512), Conv(512))),
}

# The backbone file's keys are torchvision's: net.sliceK.<i>.* here == features.<i>.* there
_BACKBONE_PREFIX = "features."


class Backbone(nn.Module):
    """torchvision's `features` of `net` in slices `slice1`..`sliceN` (module names: torchvision's indices, ReLUs
    in place as there). forward: (B, 3, H, W) float32 -> tuple of each slice's output (B, C_k, H_k, W_k)."""

    def __init__(self, net: str) -> None:
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"net {net!r}: not an LPIPS backbone (known: {', '.join(sorted(BACKBONES))})")
        self.channels: list[int] = []
        channels, index = 3, 0
        for number, layers in enumerate(BACKBONES[net], start=1):
            part = nn.Sequential()
            for layer in layers:
                if isinstance(layer, Pool):
                    part.add_module(str(index), nn.MaxPool2d(kernel_size=layer.kernel, stride=layer.stride))
                    index += 1
                    continue
                part.add_module(str(index), nn.Conv2d(channels, layer.out, layer.kernel, layer.stride, layer.padding))
                part.add_module(str(index + 1), nn.ReLU(inplace=True))
                channels, index = layer.out, index + 2
            self.add_module(f"slice{number}", part)
            self.channels.append(channels)
        self.slices = len(self.channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = []
        for number in range(1, self.slices + 1):
            x = getattr(self, f"slice{number}")(x)
            outputs.append(x)
        return tuple(outputs)


class ScalingLayer(nn.Module):
    """LPIPS's input scaling: (x - shift) / scale per channel, on (B, 3, H, W) inputs in [-1, 1]. Its constants are
    in no weight file; they are `lpips.ScalingLayer`'s (float32, shape (1, 3, 1, 1))."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450], dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class LinearHead(nn.Module):
    """One LPIPS linear head: Dropout then a bias-free 1x1 convolution `channels` -> 1 (keys `model.1.weight`);
    the dropout is lpips' and only acts in training mode."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, stride=1, padding=0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def normalize_tensor(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """(B, C, H, W) features divided by their L2 norm over channels (+ eps), as `lpips.normalize_tensor`."""
    norm = torch.sqrt(torch.sum(features ** 2, dim=1, keepdim=True))
    return features / (norm + eps)


class LPIPS(nn.Module):
    """`lpips.LPIPS(net, version="0.1")` (lpips=True, spatial=False): same modules, state-dict keys and forward.

    Built with random weights like any nn.Module; `build_lpips` builds it empty and fills it from the files.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        self.version = "0.1"  # read by evaluators.lpips_metric.lpips_distance, as the package's attributes
        self.lpips = True
        self.spatial = False
        self.pnet_type = net
        self.scaling_layer = ScalingLayer()
        self.net = Backbone(net)
        for number, channels in enumerate(self.net.channels):  # lin0.. before lins: parameters are named lin<k>.*
            self.add_module(f"lin{number}", LinearHead(channels))
        self.lins = nn.ModuleList(getattr(self, f"lin{number}") for number in range(len(self.net.channels)))

    def forward(self, in0: torch.Tensor, in1: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """LPIPS distance of (B, 3, H, W) float32 images in [-1, 1] (in [0, 1] with normalize=True) -> (B, 1, 1, 1).
        Differentiable in both inputs (the decoder's training loss)."""
        if normalize:
            in0 = 2 * in0 - 1
            in1 = 2 * in1 - 1
        outs0, outs1 = self.net(self.scaling_layer(in0)), self.net(self.scaling_layer(in1))
        # the package's order (all differences, then all heads, then the sum), so autograd meets the same graph
        differences = [(normalize_tensor(a) - normalize_tensor(b)) ** 2 for a, b in zip(outs0, outs1)]
        layers = [head(difference).mean([2, 3], keepdim=True) for head, difference in zip(self.lins, differences)]
        total = 0
        for layer in layers:
            total += layer
        return total


def build_lpips(backbone: ResolvedWeight, lin: ResolvedWeight, net: str = "alex") -> LPIPS:
    """`LPIPS(net)` with the torchvision backbone file `backbone` and the linear heads `lin`, frozen, in eval mode.

    Built empty (`misato.checkpoints.build_empty`) and filled from both resolved files, read weights-only; a file
    without a needed tensor, or heads with foreign keys, is a ValueError naming the file.
    Call the result with two (B, 3, H, W) tensors in [-1, 1]; it returns (B, 1, 1, 1).
    """
    from misato.checkpoints import build_empty, check_loaded, load_state_dict_file

    model = build_empty(lambda: LPIPS(net))
    model.scaling_layer = ScalingLayer()  # its constants are in no file
    heads = load_state_dict_file(lin.path, f"LPIPS linear heads for {net!r}")
    unexpected = _load(model, heads, lin.path, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"{lin.path}: not LPIPS linear heads for {net!r} (unexpected {', '.join(unexpected[:5])})")
    state = load_state_dict_file(backbone.path, f"a torchvision {net!r} state dict")
    mapped = {}
    for name, _ in list(model.net.named_parameters()) + list(model.net.named_buffers()):
        _, index_and_param = name.split(".", 1)  # "slice1.0.weight" -> "0.weight"
        source = _BACKBONE_PREFIX + index_and_param
        if source not in state:
            raise ValueError(f"{backbone.path}: no {source!r} for LPIPS backbone parameter {name!r}")
        mapped[name] = state[source]
    _load(model.net, mapped, backbone.path, strict=True)
    check_loaded(model, f"{backbone.path} + {lin.path}")
    return model.eval().requires_grad_(False)


def _load(module: nn.Module, state: dict, path: object, strict: bool):
    """module.load_state_dict(state, assign=True); a value that is no tensor, or a tensor of the wrong shape, is a
    ValueError naming `path`."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: {key!r} is a {type(value).__name__}, not a tensor")
    try:
        return module.load_state_dict(state, strict=strict, assign=True)
    except RuntimeError as error:  # torch lists every "size mismatch for <name>: ..." on its own line
        mismatches = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        raise ValueError(f"{path}: {'; '.join(mismatches[:3]) or error}") from None
