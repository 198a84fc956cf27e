"""Devices and workers: device names given on the command line or in configs (checked before any work starts),
this process's place in a data-parallel run (`Workers`, from accelerate), and inference layouts of networks."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

SUPPORTED = ("cpu", "cuda")


def check_device(requested: str | None) -> None:
    """Raise ValueError naming the problem unless `requested` is None, "auto", "cpu", "cuda" or "cuda:N" and
    usable here (a CUDA device needs a visible GPU with that index): never fall back silently."""
    if requested in (None, "auto"):
        return
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"--device {requested!r} is not a device name; use auto, cpu, cuda or cuda:N") from error
    if device.type not in SUPPORTED:
        raise ValueError(f"--device {requested!r}: only {', '.join(SUPPORTED)} are supported (or auto)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested!r}: no CUDA GPU is visible here (torch.cuda.is_available() is "
                             "False); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) visible")


def resolve_device(requested: str | None, process_device: "torch.device | None" = None) -> torch.device:
    """The device to use for `--device requested` (checked first, never a silent fallback).

    "auto" (or None): the process's device under `accelerate launch` (`process_device`), else CUDA when
    available, else CPU. Plain "cuda" under accelerate is this process's GPU. Anything else as named.
    """
    check_device(requested)
    if requested in (None, "auto"):
        if process_device is not None:
            return torch.device(process_device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and process_device is not None and torch.device(process_device).type == "cuda":
        return torch.device(process_device)
    return torch.device(requested)


def fold_batch_norms(module: torch.nn.Module) -> torch.nn.Module:
    """`module` (in eval mode) with every Inception `BasicConv2d` block folded into one biased convolution by torch's
    `fuse_conv_bn_eval`; the batch norm becomes an identity. A block is any submodule whose children are exactly
    `conv` (Conv2d) then `bn` (BatchNorm2d), run conv -> batch norm -> ReLU: the layout of torch-fidelity's and of
    `evaluators.inception_torchvision`'s BasicConv2d (recognised by layout, so that neither package is imported
    here). Same function up to float rounding (measured 1e-6 of the features' scale, test bound 1e-5); the torchvision
    Inception forward at 299 takes 0.121 instead of 0.146 s per image on 2 CPU cores (channels-last both, mean of 4
    alternating runs)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for block in module.modules():
        children = dict(block.named_children())
        if (list(children) == ["conv", "bn"] and isinstance(children["conv"], torch.nn.Conv2d)
                and isinstance(children["bn"], torch.nn.BatchNorm2d)):
            block.conv = fuse_conv_bn_eval(block.conv, block.bn)
            block.bn = torch.nn.Identity()
    return module


def to_inference_layout(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`module` in eval mode on `device`, batch norms folded into their convolutions (`fold_batch_norms`), 4-d
    weights in channels-last (NHWC) memory format. Convolutional metric networks run faster so (TF-Inception at
    512: 0.119 -> 0.091 s per image, LPIPS-Alex at 512: 0.126 -> 0.104 s per pair on 2 CPU cores); outputs agree
    with the default layout to float rounding (tested). Inputs need no conversion: a convolution with
    channels-last weights returns channels-last outputs."""
    return fold_batch_norms(module.eval()).to(device=device, memory_format=torch.channels_last)


@dataclass
class Workers:
    """This process's place in a data-parallel run (rank 0 of 1 without `accelerate launch`)."""

    rank: int = 0
    world_size: int = 1
    device: Any = None  # accelerate's device for this process, when launched by accelerate
    barrier: Callable[[], None] = lambda: None

    def shard(self, stems: list[str]) -> list[str]:
        """Stems of this process: index i of the sorted list goes to rank i % world_size."""
        return [stem for i, stem in enumerate(stems) if i % self.world_size == self.rank]


def current_workers(device: str | None = None) -> Workers:
    """Workers from `accelerate`'s `PartialState` when started by a launcher that sets WORLD_SIZE > 1.

    `accelerate launch --multi_gpu --num_processes N` (or `torchrun --nproc-per-node N`) starts the
    processes; with `device="cpu"` or without CUDA they talk over gloo. (`accelerate launch --cpu`
    starts a single process unless given an MPI host file.)
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Workers()
    from accelerate import PartialState

    use_cpu = (device not in (None, "auto") and torch.device(device).type == "cpu") or not torch.cuda.is_available()
    state = PartialState(cpu=use_cpu)
    return Workers(state.process_index, state.num_processes, state.device, state.wait_for_everyone)


def choose_device(requested: str | None, workers: Workers, supported: tuple[str, ...]) -> str:
    """The device to build the inpainter on: `misato.devices.resolve_device` with accelerate's device for this
    process. A device the inpainter does not support falls back to CPU (classical methods in a GPU run) with a
    warning.
    """
    device = str(resolve_device(requested, workers.device))
    if torch.device(device).type not in supported:
        if "cpu" not in supported:
            raise ValueError(f"device {device} not supported (supported: {supported})")
        log.warning("device %s not supported by this inpainter; using cpu", device)
        device = "cpu"
    return device


def device_record(device: Any) -> dict[str, Any]:
    """`device` as a provenance record: its name, and the GPU's model for a CUDA device."""
    record: dict[str, Any] = {"device": str(device)}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        record["name"] = torch.cuda.get_device_name(torch.device(device))
    return record
