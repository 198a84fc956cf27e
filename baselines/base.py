"""The inpainter contract every method implements.

Tensors at the boundary (diffusers-style, stated once here):
  images: float32 (B, 3, H, W), RGB in [0, 1]
  masks:  float32 (B, 1, H, W) in {0, 1}, 1 = hole (white in files)
  seeds:  list[int] of length B, one per sample, derived from the sample id (never from batch position)
  return: float32 (B, 3, H, W), RGB in [0, 1]; the raw output, the harness composites it.
A model that wants [-1, 1] or 1 = keep converts inside its own class and converts back.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass(frozen=True)
class ResolutionPolicy:
    """What input sizes a model accepts; the harness pads (reflect) and crops back to fit.

    pad_multiple: H and W are padded up to a multiple of this.
    min_size: H and W are padded up to at least this.
    square: pad the short side so H == W.
    """

    pad_multiple: int = 1
    min_size: int = 0
    square: bool = False


class Inpainter(abc.ABC):
    """Base class of every inpainter. Subclasses set the class attributes and implement `inpaint`."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy()
    batched: ClassVar[bool] = True  # False: the harness calls inpaint with B == 1
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    deterministic: ClassVar[bool] = True  # same inputs and seeds -> same outputs
    weights: ClassVar[tuple[str, ...]] = ()  # keys in misato.weights

    def __init__(self, device: str | torch.device = "cpu", **options: Any) -> None:
        self.device = torch.device(device)
        if self.device.type not in self.devices:
            raise ValueError(f"{self.name or type(self).__name__} supports devices {self.devices}, got {self.device}")
        self.options = options

    @abc.abstractmethod
    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Fill the holes. See the module docstring for shapes, ranges and the mask convention."""

    def config(self) -> dict[str, Any]:
        """JSON-able description recorded in run manifests (override to add resolved weights)."""
        return {
            "name": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "version": self.version,
            "device": str(self.device),
            "options": {k: v for k, v in self.options.items() if isinstance(v, (str, int, float, bool, type(None)))},
        }
