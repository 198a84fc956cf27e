"""Argument helpers shared by subcommands: a flag that several commands take is defined once here, so it has
one spelling, help and default everywhere (tests/test_cli_flags.py compares every subcommand's parser).

`PER_COMMAND_FLAGS` lists the flags whose meaning is each command's own (what `--out` holds differs by command).
Renamed flags keep their old spelling for one release (`add_deprecated_alias`): it still works and says so.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable

from misato.defaults import (
    BOOTSTRAP_MAX, BOOTSTRAP_RESAMPLES, EMBEDDED_SIZE, INPAINT_BATCH_SIZE, KID_BOOTSTRAP_RESAMPLES, PROTOCOL,
    SCORE_BATCH_SIZE, SET_BOOTSTRAP_RESAMPLES,
)

if TYPE_CHECKING:
    from evaluators.scoring import ScoreConfig
    from misato.data import Dataset

# Flags several commands take with a meaning of their own: the output folder, the input (dataset, data, runs,
# methods, presets, samples), the seed of what each command draws, the size it builds, and the study's resamples
# (of participants or items, not of images).
PER_COMMAND_FLAGS = frozenset({
    "--out", "--seed", "--dataset", "--data", "--misato", "--coco-annotations", "--methods", "--preset", "--set",
    "--samples", "--size", "--resolution", "--bootstrap", "--protocol",
})
DEPRECATED_UNTIL = "0.2"


class _DeprecatedAlias(argparse.Action):
    """An old spelling of a renamed flag: stores into the new flag's destination and prints a deprecation line."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: object) -> None:
        self.new = new
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        print(f"misato: {option_string} is deprecated (removed after {DEPRECATED_UNTIL}); use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(group: argparse._ActionsContainer, old: str, new: argparse.Action) -> None:
    """Accept `old` for one release as the renamed flag `new` (same destination and type), with a message."""
    group.add_argument(old, dest=new.dest, type=new.type, action=_DeprecatedAlias, new=new.option_strings[0])


def parse_weight_overrides(values: list[str] | None) -> dict[str, str]:
    """`--weight KEY=PATH` pairs -> {key: path}. ValueError for a malformed pair, a key the registry does not know
    (a typo would otherwise be ignored) or a path that is not a file (the metric would otherwise be recorded as
    unavailable, with a hint to pass the very flag given)."""
    from pathlib import Path

    from misato.weights import get_spec

    overrides = {}
    for value in values or []:
        key, sep, path = value.partition("=")
        if not sep or not key or not path:
            raise ValueError(f"--weight expects KEY=PATH, got {value!r}")
        try:
            get_spec(key)
        except KeyError as error:
            raise ValueError(f"--weight {value}: {error.args[0]}") from None
        if not Path(path).is_file():
            raise ValueError(f"--weight {value}: no such file")
        overrides[key] = path
    return overrides


OFFLINE_HELP = ("never download: a missing pretrained file is reported (with the `misato weights fetch KEY` that "
                "fetches it) instead of fetched; the same as MISATO_OFFLINE=1 or HF_HUB_OFFLINE=1. Default: missing "
                "registered files are downloaded on first use into $MISATO_WEIGHTS_DIR (or the Hugging Face cache)")


def add_weight_arguments(parser: argparse.ArgumentParser) -> None:
    """`--weight KEY=PATH` and the download switch: `args.allow_download` is True unless `--offline` (downloads
    on first use, the default); `--allow-download` is kept, a deprecated no-op alias of that default."""
    group = parser.add_argument_group("weights")
    group.add_argument("--weight", action="append", metavar="KEY=PATH",
                       help="explicit weight file for a registry key (repeatable); see `misato weights list`")
    switch = group.add_mutually_exclusive_group()
    switch.add_argument("--offline", dest="allow_download", action="store_false", help=OFFLINE_HELP)
    switch.add_argument("--allow-download", dest="allow_download", action="store_true",
                        help="deprecated, no effect: downloads are on unless --offline")


DEVICE_HELP = ("auto (default): this process's GPU under `accelerate launch`, else cuda when available, else cpu; "
               "or cpu, cuda, cuda:N (checked before any work; never a silent fallback)")


def add_device_argument(group: argparse._ActionsContainer) -> None:
    """`--device`, the same flag with the same default in every subcommand (`misato.devices.resolve_device`)."""
    group.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_progress_argument(group: argparse._ActionsContainer) -> None:
    """`--no-progress`, the same flag in every subcommand with long work."""
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_score_compute_arguments(group: argparse._ActionsContainer, old_batch_flag: bool = False) -> None:
    """`--score-batch-size` and `--num-workers`, the scoring compute flags of `misato score` and `misato run`.
    old_batch_flag: also accept `--batch-size`, its old spelling in `misato score`."""
    batch = group.add_argument("--score-batch-size", type=int, default=SCORE_BATCH_SIZE, metavar="N",
                               help="images per metric-network forward when scoring (default %(default)s)")
    if old_batch_flag:
        add_deprecated_alias(group, "--batch-size", batch)
    group.add_argument("--num-workers", type=int, default=0, metavar="N",
                       help="scoring data-loader worker processes (default %(default)s: in this process)")


def add_inpaint_batch_argument(group: argparse._ActionsContainer) -> None:
    """`--inpaint-batch-size` (`args.batch_size`; old spelling `--batch-size` accepted for one release)."""
    batch = group.add_argument("--inpaint-batch-size", dest="batch_size", type=parse_positive_int,
                               default=INPAINT_BATCH_SIZE,
                               metavar="N", help="samples per inpainter call (batched inpainters; default %(default)s)")
    add_deprecated_alias(group, "--batch-size", batch)


def add_print_config_argument(parser: argparse.ArgumentParser) -> None:
    """`--print-config`: print the command's resolved configuration as JSON and exit without doing any work."""
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration (JSON, every default filled in) and exit")


def print_config(config: object, **extra: object) -> int:
    """Print dataclass `config` (and `extra` fields) as sorted JSON for `--print-config`; returns exit status 0."""
    import dataclasses
    import json

    print(json.dumps({**dataclasses.asdict(config), **extra}, indent=2, sort_keys=True, default=str))
    return 0


def add_embedded_size_argument(group: argparse._ActionsContainer, old_flag: str | None = None) -> None:
    """`--embedded-size N` (`args.embedded_size`): the side of the embedded photo set. old_flag: its old spelling
    in this command, accepted for one release."""
    size = group.add_argument("--embedded-size", type=parse_embedded_size, default=EMBEDDED_SIZE, metavar="N",
                              help="side of the 'embedded' photo set in pixels (default %(default)s)")
    if old_flag:
        add_deprecated_alias(group, old_flag, size)


def int_at_least(low: int, message: str = "must be at least {low}, got {value}") -> Callable[[str], int]:
    """An argparse type: an integer >= `low`, checked when the command line is parsed; below it, `message` (with
    {low} and {value}) as the flag's one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(message.format(low=low, value=value))
        return value
    return parse


# `--limit` and `--inpaint-batch-size` (`build places2 --limit 0` used to build every image; `inpaint
# --inpaint-batch-size 0` was refused only by the runner, naming batch_size).
parse_positive_int = int_at_least(1, "must be 1 or more, got {value}")


def parse_embedded_size(text: str) -> int:
    """argparse type of `--embedded-size`: an integer of at least `misato.embedded.MIN_SIZE`, checked when the
    command line is parsed (a smaller one used to fail every pair of the run after its folder was written)."""
    from misato.embedded import MIN_SIZE

    return int_at_least(MIN_SIZE, "the embedded set's side must be at least {low} pixels, got {value}")(text)


def add_limit_argument(group: argparse._ActionsContainer) -> None:
    """`--limit N`: only the first N items of the input, in sorted order."""
    group.add_argument("--limit", type=parse_positive_int, default=None, metavar="N",
                       help="only the first N samples of each dataset (source images for `build places2`), "
                            "in sorted name order")


def add_kind_argument(group: argparse._ActionsContainer) -> None:
    """`--kind`: the leaderboard group of a folder dataset."""
    from misato.data import KINDS

    group.add_argument("--kind", choices=KINDS, default=None,
                       help="leaderboard group of folder datasets (default: the dataset's own: MISATO only for the "
                            "MISATO layout ROOT/{512,1024}/ or a `misato build` manifest, Places2 by its manifest, "
                            "else custom)")


def add_mask_arguments(parser: argparse.ArgumentParser) -> None:
    """How mask files are read (`misato.data.load_dataset`'s `mask_hole_is_white` and `mask_binary_01`): one
    definition for every command that opens a dataset folder; `dataset_from_args` reads them."""
    group = parser.add_argument_group("masks (white = hole, stored 0/255, unless these say otherwise)")
    group.add_argument("--mask-keep-is-white", action="store_true", help="masks use white = keep (MAT convention)")
    group.add_argument("--mask-binary-01", action="store_true",
                       help="masks are stored as 0/1 (LaMa convention); without it such masks are refused, never "
                            "read as masks without a hole")


def dataset_from_args(args: argparse.Namespace, root: str, resolution: int | None = None) -> "Dataset":
    """`misato.data.load_dataset` with the flags of `add_mask_arguments`."""
    from misato.data import load_dataset

    return load_dataset(root, resolution, mask_hole_is_white=not args.mask_keep_is_white,
                        mask_binary_01=args.mask_binary_01)


def add_degenerate_masks_argument(group: argparse._ActionsContainer) -> None:
    """`--allow-degenerate-masks`, the same flag in `score`, `inpaint` and `run`."""
    group.add_argument("--allow-degenerate-masks", action="store_true",
                       help="accept samples with empty or full masks (refused by default, naming the files): "
                            "inpainted, scored and counted, left out of the means they would bias")


def add_clip_outputs_argument(group: argparse._ActionsContainer) -> None:
    """`--clip-outputs`: clip inpainter outputs outside [0, 1] instead of refusing them (recorded in the manifest)."""
    group.add_argument("--clip-outputs", action="store_true",
                       help="clip inpainter outputs outside [0, 1] (refused by default, naming method and sample); "
                            "recorded in the run manifest with the clipped share of every sample")


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The scoring flags of `misato score` and `misato run` (one definition: they mean the same in both)."""
    from evaluators.metrics import DEFAULT, SCORED, metrics_help

    parser.epilog = f"{parser.epilog or ''}\n\nmetrics (--metrics):\n{metrics_help()}".strip("\n")
    group = parser.add_argument_group("scoring")
    group.add_argument("--protocol", default=PROTOCOL, help=f"comod, clean or asuka (default {PROTOCOL})")
    group.add_argument("--metrics", default=None, type=parse_csv,
                       help=f"comma-separated subset of {', '.join(SCORED)} (default: all but the opt-in "
                       f"{', '.join(m for m in SCORED if m not in DEFAULT)})")
    group.add_argument("--no-paste-back", action="store_true", help="score raw predictions, without compositing")
    add_degenerate_masks_argument(group)
    group.add_argument("--no-cache", action="store_true", help="do not read or write the ground-truth feature cache")
    group.add_argument("--cache-dir", help="feature cache folder (default $MISATO_CACHE_DIR/features, "
                                           "$MISATO_CACHE_DIR defaulting to ~/.cache/misato)")
    group.add_argument("--strict", action="store_true",
                       help="fail when a metric's weights are missing (misato run: that method's scoring fails)")
    group.add_argument("--bootstrap", type=parse_resamples, default=BOOTSTRAP_RESAMPLES, metavar="N",
                       help="bootstrap resamples for the 95%% intervals of per-image means and U/P-IDS (default %(default)s; "
                            f"0: no intervals; every count at most {BOOTSTRAP_MAX:,})")
    group.add_argument("--set-bootstrap", type=parse_resamples, default=SET_BOOTSTRAP_RESAMPLES, metavar="N",
                       help="bootstrap resamples for FID, each a recomputation (default %(default)s; 0: none)")
    group.add_argument("--kid-bootstrap", type=parse_resamples, default=KID_BOOTSTRAP_RESAMPLES, metavar="N",
                       help="bootstrap resamples for KID, each its 100 subsets again (about 10-20 s per resample on "
                            "2 CPU cores; default %(default)s; 0: no KID interval)")
    group.add_argument("--thumbnail-samples", type=parse_csv, default=None, metavar="IDS",
                       help="comma-separated sample ids whose thumbnails the result keeps for the report's grid "
                            "(default: the first sample of each domain, or the first 4)")


def score_config_from_args(args: argparse.Namespace, batch_size: int, device: str) -> "ScoreConfig":
    """`ScoreConfig` from the flags of `add_scoring_arguments`, `add_weight_arguments` and the compute flags."""
    from evaluators.scoring import ScoreConfig

    return ScoreConfig(
        protocol=args.protocol,
        metrics=tuple(args.metrics) if args.metrics else None,
        device=device, batch_size=batch_size, progress=not args.no_progress, num_workers=args.num_workers,
        paste_back=not args.no_paste_back, weights=parse_weight_overrides(args.weight),
        allow_download=args.allow_download, cache_dir=args.cache_dir, use_cache=not args.no_cache,
        strict=args.strict, allow_degenerate_masks=args.allow_degenerate_masks,
        thumbnail_samples=tuple(args.thumbnail_samples) if args.thumbnail_samples else None,
        bootstrap=args.bootstrap, set_bootstrap=args.set_bootstrap, kid_bootstrap=args.kid_bootstrap,
    )


def parse_resamples(text: str) -> int:
    """argparse type of every bootstrap count: an integer from 0 (no intervals) to misato.defaults.BOOTSTRAP_MAX,
    checked by `evaluators.bootstrap.check_resamples` when the command line is parsed (before any work)."""
    from evaluators.bootstrap import check_resamples

    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    try:
        return check_resamples(count, "the count")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_csv(text: str) -> list[str]:
    """argparse type: "a, b,c" -> ["a", "b", "c"] (empty parts dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_option(text: str) -> tuple[str, object]:
    """argparse type of `--option KEY=VALUE`: the value as JSON when it parses (numbers, true/false/null, quoted
    strings, lists), else the string itself."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_option_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--option KEY=VALUE` (repeatable; `dict(args.option)` gives the options)."""
    parser.add_argument("--option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                        help="inpainter constructor option (repeatable; values parsed as JSON when possible; "
                             "`misato run` gives it to each method that takes it)")
