"""Validation of a dataset + predictions pair before any computation.

Every problem is collected and reported at once, naming the file. Nothing is dropped silently: the masks
go through the one check every entry point shares (`misato.masks.files`, via `Dataset.mask_report`): 0/1 masks
without `--mask-binary-01`, unreadable and 16-bit masks are errors; empty or full masks are errors unless
`allow_degenerate_masks` is set, and then they are scored and counted.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from misato.data import Dataset, list_images
from misato.masks.files import format_problems

log = logging.getLogger(__name__)


class InputError(ValueError):
    """The dataset or the predictions cannot be scored as they are; the message lists every problem."""


@dataclass
class CheckedInputs:
    """Predictions matched to samples by stem, in dataset order, plus what the checks found."""

    predictions: list[Path]
    prediction_sha256: dict[str, str] = field(default_factory=dict)  # by stem, of the bytes the checks read
    empty_masks: list[str] = field(default_factory=list)
    full_masks: list[str] = field(default_factory=list)
    non_binary_masks: list[str] = field(default_factory=list)  # gray levels other than 0 and 255 (anti-aliased)


# The smallest side the metrics accept (the comod protocol's SSIM window is 11 x 11).
MIN_SIDE = 11


def _sixteen_bit(image: Image.Image) -> bool:
    """PIL opens a 16-bit-per-channel RGB PNG as mode "RGB" (keeping the high byte): its raw mode tells."""
    return any(str(getattr(tile, "args", None) or tile[3]).endswith(("16", "16B", "16L")) for tile in image.tile or [])


def _mode_problem(path: Path, image: Image.Image) -> str | None:
    if (image.mode == "RGB" and not _sixteen_bit(image)) or (image.mode == "P" and "transparency" not in image.info):
        return None
    mode = f"{image.mode} with 16 bits per channel" if image.mode == "RGB" else repr(image.mode)
    return f"{path}: mode {mode} is not 8-bit RGB (RGBA, gray, 16-bit and CMYK are refused)"


def check_inputs(
    dataset: Dataset, predictions_dir: str | Path, allow_degenerate_masks: bool = False, max_listed: int = 20
) -> CheckedInputs:
    """Match predictions to samples and check every file; raise InputError listing all problems.

    Checks: missing and extra predictions (by stem, png/jpg); readable, untruncated files (PIL verify);
    8-bit RGB modes for predictions and ground truths; prediction size == ground-truth size == mask size;
    the masks as `Dataset.mask_report` finds them (`misato.masks.files`: unusable, 0/1, empty, full).
    """
    predictions_dir = Path(predictions_dir)
    if not predictions_dir.is_dir():
        raise InputError(f"{predictions_dir}: predictions folder does not exist")
    found = list_images(predictions_dir)
    stems = [s.stem for s in dataset.samples]
    problems = [f"{predictions_dir}: no prediction for {stem!r}" for stem in stems if stem not in found]
    problems += [f"{found[stem]}: extra prediction with no sample in {dataset.root}" for stem in sorted(set(found) - set(stems))]
    checked = CheckedInputs(predictions=[found.get(stem, predictions_dir / f"{stem}.png") for stem in stems])
    if problems:
        _raise(problems, max_listed)
    masks = dataset.mask_report()
    problems += list(masks.problems.values())
    for sample, pred_path in zip(dataset.samples, checked.predictions):
        sizes = {}
        for role, path in (("prediction", pred_path), ("image", sample.image_path)):
            try:
                source: Path | io.BytesIO = path
                if role == "prediction":  # read once: verified here, hashed for the scorer's pass cache
                    data = path.read_bytes()
                    checked.prediction_sha256[sample.stem] = hashlib.sha256(data).hexdigest()
                    source = io.BytesIO(data)
                with Image.open(source) as image:
                    sizes[role] = image.size
                    problem = _mode_problem(path, image)
                    if problem:
                        problems.append(problem)
                    image.verify()  # chunk checksums and truncation, without decoding the pixels
            except Exception as error:  # PIL raises several types for broken files
                problems.append(f"{path}: unreadable {role} ({error})")
                sizes.pop(role, None)
        if sample.stem in masks.info:
            sizes["mask"] = masks.info[sample.stem].size
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{role} {w}x{h}" for role, (w, h) in sizes.items())
            problems.append(f"{pred_path}: sizes differ for {sample.stem!r}: {listed}")
            continue
        if "image" in sizes and min(sizes["image"]) < MIN_SIDE:
            width, height = sizes["image"]
            problems.append(f"{sample.image_path}: {width}x{height} is too small to score (each side must be at "
                            f"least {MIN_SIDE} pixels, the SSIM window)")
    checked.empty_masks, checked.full_masks, checked.non_binary_masks = masks.empty, masks.full, masks.non_binary
    if not allow_degenerate_masks:
        problems += masks.degenerate_messages()
    if problems:
        _raise(problems, max_listed)
    if checked.non_binary_masks:
        log.warning("%d mask(s) are not binary (gray levels other than 0 and 255, e.g. %s): binarised at 128; the "
                    "count is recorded in the result", len(checked.non_binary_masks), checked.non_binary_masks[0])
    return checked


def _raise(problems: list[str], max_listed: int) -> None:
    raise InputError(format_problems(problems, max_listed))
