"""The LPIPS network (version 0.1, through the `lpips` package) with both weight files resolved by misato.weights:
one builder for the LPIPS metric (`evaluators`) and the decoder's training loss (`baselines.asuka.training`).

`LPIPS_WEIGHTS` is the one table of each backbone's registry keys (backbone file, linear heads), by `lpips` net name.
"""

from __future__ import annotations

import torch

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

# lpips backbone slices keep torchvision's `features` indices as module names: net.sliceK.<i>.* == features.<i>.*
_BACKBONE_PREFIX = "features."


def build_lpips(backbone: ResolvedWeight, lin: ResolvedWeight, net: str = "alex") -> torch.nn.Module:
    """lpips.LPIPS(net, version 0.1) with the torchvision backbone file `backbone` and the linear heads `lin`.

    The package would fetch the backbone through torchvision's hub cache and load the heads itself; we build it
    empty (`misato.checkpoints.build_empty`) and load both resolved files weights-only, so the paths and hashes are ours.
    Call the result with two (B, 3, H, W) tensors in [-1, 1]; it returns (B, 1, 1, 1).
    """
    import warnings

    import lpips

    from misato.checkpoints import build_empty, check_loaded, load_checkpoint

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = build_empty(lambda: lpips.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True, verbose=False))
    model.scaling_layer = lpips.ScalingLayer()  # its constants are in no file
    heads = load_checkpoint(lin.path)
    unexpected = model.load_state_dict(heads, strict=False, assign=True).unexpected_keys
    if unexpected:
        raise ValueError(f"{lin.path}: not LPIPS linear heads for {net!r} (unexpected {', '.join(unexpected[:5])})")
    state = load_checkpoint(backbone.path)
    mapped = {}
    for name, _ in list(model.net.named_parameters()) + list(model.net.named_buffers()):
        _, index_and_param = name.split(".", 1)  # "slice1.0.weight" -> "0.weight"
        source = _BACKBONE_PREFIX + index_and_param
        if source not in state:
            raise ValueError(f"{backbone.path}: no {source!r} for LPIPS backbone parameter {name!r}")
        mapped[name] = state[source]
    model.net.load_state_dict(mapped, assign=True)
    check_loaded(model, f"{backbone.path} + {lin.path}")
    return model.eval().requires_grad_(False)
