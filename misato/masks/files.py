"""Mask files of a dataset: the one check every entry point runs before any work.

`misato score`, `misato inpaint`, `misato run`, `misato reproduce` and their Python APIs (`evaluators.scoring.score`,
`baselines.runner.inpaint_dataset`) all call `Dataset.mask_report()` (which calls `check_masks`) and refuse what it
finds, so a mask that would silently give a wrong number (the ground truth scored as a prediction, a hole that is
not there) stops the command, naming the file:

* unusable files: unreadable, 16-bit or float, and 0/1 masks read without `--mask-binary-01` (the LaMa
  convention: binarised at 128 they have no hole at all) -- `misato.io.orient_mask` is the rule;
* empty masks (no pixel at or above the hole threshold, including masks whose gray levels never reach it) and
  full masks (no known pixel): refused unless `--allow-degenerate-masks`, then counted in the result.

Masks are read as uint8 (H, W) oriented so that 255 = hole (white in files unless the dataset says otherwise) and
binarised at `misato.io.MASK_THRESHOLD` (128, i.e. 0.5 after /255).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from misato.io import MASK_THRESHOLD, ImageFileError, read_mask_gray

if TYPE_CHECKING:
    from misato.data import Sample

DEGENERATE_HINT = "pass --allow-degenerate-masks (Python: allow_degenerate_masks=True) to keep it"


class MaskError(ValueError):
    """Mask files that cannot be used as they are; the message lists every problem, naming the files."""


@dataclass(frozen=True)
class MaskInfo:
    """What one readable mask holds. size: (W, H) as PIL reports it; hole_ratio: share of pixels at or above the
    threshold; strongest: its highest oriented level (255 = hole); non_binary: gray levels other than 0 and 255."""

    path: Path
    size: tuple[int, int]
    hole_ratio: float
    strongest: int
    non_binary: bool


@dataclass
class MaskReport:
    """`check_masks`' findings by sample stem: `info` for readable masks, `problems` (messages naming the file)
    for unusable ones. `hole_is_white` is the convention the masks were read with (for the messages)."""

    info: dict[str, MaskInfo] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    hole_is_white: bool = True

    @property
    def empty(self) -> list[str]:
        """Stems of masks without a hole."""
        return [stem for stem, info in self.info.items() if info.hole_ratio == 0.0]

    @property
    def full(self) -> list[str]:
        """Stems of masks without a known pixel."""
        return [stem for stem, info in self.info.items() if info.hole_ratio == 1.0]

    @property
    def non_binary(self) -> list[str]:
        """Stems of masks with gray levels other than 0 and 255 (anti-aliased): binarised at the threshold."""
        return [stem for stem, info in self.info.items() if info.non_binary]

    def subset(self, stems: Iterable[str]) -> "MaskReport":
        """The findings for `stems` only."""
        stems = list(stems)
        return MaskReport({s: self.info[s] for s in stems if s in self.info},
                          {s: self.problems[s] for s in stems if s in self.problems}, self.hole_is_white)

    def degenerate_messages(self) -> list[str]:
        """One message per empty or full mask, naming its file and the flag that keeps it."""
        messages = []
        for stem in self.empty:
            info = self.info[stem]
            detail = ""
            if info.strongest > 0:
                level = info.strongest if self.hole_is_white else 255 - info.strongest
                colour = "white (255)" if self.hole_is_white else "black (0)"
                detail = (f"; its gray levels never reach the hole threshold {MASK_THRESHOLD} (the closest is "
                          f"{level}): holes are {colour}")
            messages.append(f"{info.path}: no hole (empty mask{detail}); {DEGENERATE_HINT}")
        messages += [f"{self.info[s].path}: all hole (full mask, no known pixel); {DEGENERATE_HINT}" for s in self.full]
        return messages

    def refusals(self, allow_degenerate_masks: bool = False) -> list[str]:
        """One message per refused mask, naming its file: every unusable one, and the empty and full ones unless
        `allow_degenerate_masks`."""
        return list(self.problems.values()) + ([] if allow_degenerate_masks else self.degenerate_messages())

    def require_usable(self, allow_degenerate_masks: bool = False, max_listed: int = 20) -> None:
        """Raise `MaskError` listing `refusals` (at most `max_listed`, then a count) when there are any."""
        refused = self.refusals(allow_degenerate_masks)
        if refused:
            raise MaskError(format_problems(refused, max_listed, "mask problem(s)"))


def format_problems(problems: list[str], max_listed: int, what: str = "problem(s) with the inputs") -> str:
    """'N problem(s):' and the first `max_listed` problems, one per line, then '... and K more'."""
    shown = "\n  ".join(problems[:max_listed])
    more = f"\n  ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
    return f"{len(problems)} {what}:\n  {shown}{more}"


def inspect_mask(path: Path, hole_is_white: bool = True, binary_01: bool = False) -> MaskInfo:
    """Decode one mask file and describe it; `ImageFileError` (naming the file) when it is unusable."""
    gray = read_mask_gray(path, hole_is_white, binary_01)
    hole = gray >= MASK_THRESHOLD
    return MaskInfo(Path(path), (gray.shape[1], gray.shape[0]), float(hole.mean()) if hole.size else 0.0,
                    int(gray.max(initial=0)), bool(((gray != 0) & (gray != 255)).any()))


def check_masks(samples: Iterable["Sample"], hole_is_white: bool = True, binary_01: bool = False) -> MaskReport:
    """Read every sample's mask once (masks are small 8-bit files) and report what `MaskReport` says."""
    report = MaskReport(hole_is_white=hole_is_white)
    for sample in samples:
        try:
            report.info[sample.stem] = inspect_mask(sample.mask_path, hole_is_white, binary_01)
        except FileNotFoundError as error:
            report.problems[sample.stem] = f"{sample.mask_path}: mask file missing ({error.strerror})"
        except ImageFileError as error:
            report.problems[sample.stem] = str(error)
    return report


__all__ = ["MaskError", "MaskInfo", "MaskReport", "check_masks", "format_problems", "inspect_mask"]
