"""The inpainter contract every method implements.

Tensors at the boundary (diffusers-style, stated once here):
  images: float32 (B, 3, H, W), RGB in [0, 1]; the harness sets hole pixels to 0 (ground truth hidden)
  masks:  float32 (B, 1, H, W) in {0, 1}, 1 = hole (white in files)
  seeds:  list[int] of length B, one per sample, derived from the sample id (never from batch position)
  return: float32 (B, 3, H, W), RGB in [0, 1]; the raw output, the harness composites it. Values outside [0, 1]
          (beyond float rounding) or NaN are refused by the harness, naming method and sample (clipped only
          with `clip_outputs` / `--clip-outputs`, recorded in the run manifest).
A model that wants [-1, 1] or 1 = keep converts inside its own class and converts back.
"""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from misato.weights import ResolvedWeight


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


# Options every inpainter accepts (read by `Inpainter.resolve_weight`).
COMMON_OPTIONS: tuple[str, ...] = ("weight_paths", "allow_download")


class Inpainter(abc.ABC):
    """Base class of every inpainter. Subclasses set the class attributes and implement `inpaint`."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    policy: ClassVar[ResolutionPolicy] = ResolutionPolicy()
    batched: ClassVar[bool] = True  # False: the harness calls inpaint with B == 1
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    deterministic: ClassVar[bool] = True  # same inputs and seeds -> same outputs
    weights: ClassVar[tuple[str, ...]] = ()  # keys in misato.weights
    uses_sample_ids: ClassVar[bool] = False  # True: the harness passes `stems=` (precomputed predictions)
    # options read from `self.options` besides the constructor's named parameters and COMMON_OPTIONS
    extra_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, device: str | torch.device = "cpu", **options: Any) -> None:
        self.device = torch.device(device)
        if self.device.type not in self.devices:
            raise ValueError(f"{self.name or type(self).__name__} supports devices {self.devices}, got {self.device}")
        self.options = options

    @classmethod
    def accepted_options(cls, strict: bool = True) -> set[str] | None:
        """Option names the constructor takes: its named parameters (device excluded), `COMMON_OPTIONS` and
        `extra_options`. None (anything goes) when not `strict` and the constructor takes **options: a plug-in
        may read options of its own from them."""
        params = list(inspect.signature(cls.__init__).parameters.values())
        if not strict and any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        return (named - {"self", "device"}) | set(COMMON_OPTIONS) | set(cls.extra_options)

    @abc.abstractmethod
    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Fill the holes. See the module docstring for shapes, ranges and the mask convention."""

    def prepare(self, stems: list[str]) -> None:
        """Called once by the runner with every sample id of the run before any `inpaint` call.

        Default: nothing. Inpainters that read per-sample files check here that all of them exist.
        """

    def resolve_weight(self, key: str) -> "ResolvedWeight":
        """Find the file for weights `key` (see `misato.weights.resolve`) and remember it for `config()`.

        Explicit paths come from the option `weight_paths={key: path}` (CLI `--weight KEY=PATH`), downloads
        are allowed by the option `allow_download=True`. A missing file raises `WeightsNotFoundError`.
        """
        from misato.weights import resolve

        paths = self.options.get("weight_paths") or {}
        resolved = resolve(key, path=paths.get(key), allow_download=bool(self.options.get("allow_download", False)))
        self.__dict__.setdefault("resolved_weights", {})[key] = resolved
        return resolved

    def config(self) -> dict[str, Any]:
        """JSON-able description recorded in run manifests (override to add resolved weights)."""
        return {
            "name": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "version": self.version,
            "device": str(self.device),
            "options": {k: v for k, v in self.options.items() if isinstance(v, (str, int, float, bool, type(None)))},
            "weights": [w.record() for w in self.__dict__.get("resolved_weights", {}).values()],
        }
