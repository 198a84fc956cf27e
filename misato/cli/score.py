"""`misato score`: score a folder of predictions against a dataset."""

from __future__ import annotations

import argparse

from misato.cli._common import (
    add_deprecated_alias,
    add_device_argument,
    add_kind_argument,
    add_mask_arguments,
    add_print_config_argument,
    add_progress_argument,
    add_score_compute_arguments,
    add_scoring_arguments,
    add_weight_arguments,
    dataset_from_args,
    print_config,
    score_config_from_args,
)

HELP = "score a folder of predictions (PNG/JPG by sample stem) against a dataset"

EPILOG = """examples:
  misato score --dataset MISATO/512 --predictions runs/lama --label lama --out results/   (an inpaint folder: its raw/)
  misato score --dataset data/ --predictions preds/ --label mine --protocol asuka --metrics lpips,fid,u_ids,p_ids
  misato score ... --weight inception-tf=/models/weights-inception-2015-12-05-6726825d.pth
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--dataset", required=True, help="dataset folder (image/ + mask/, or MISATO {512,1024}/...)")
    parser.add_argument("--predictions", required=True,
                        help="folder of predictions named by sample stem (a `misato inpaint` output folder: its raw/)")
    label = parser.add_argument("--label", dest="method", metavar="NAME",
                                help="the method's name in the result and the leaderboard (required)")
    add_deprecated_alias(parser, "--method", label)
    parser.add_argument("--out", default="results", help="folder for the result JSON and per-image CSV")
    parser.add_argument("--resolution", type=int, help="MISATO sub-folder (512 or 1024) when --dataset is the release root")
    add_kind_argument(parser)
    add_mask_arguments(parser)
    add_scoring_arguments(parser)
    compute = parser.add_argument_group("compute")
    add_device_argument(compute)
    add_score_compute_arguments(compute, old_batch_flag=True)
    add_progress_argument(compute)
    add_weight_arguments(parser)
    add_print_config_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from evaluators.scoring import score
    from misato.data import dataset_kind

    if args.method is None:
        raise ValueError("--label NAME is required (the method's name in the result)")
    config = score_config_from_args(args, args.score_batch_size, args.device)
    if args.print_config:
        return print_config(config, dataset=args.dataset, resolution=args.resolution, predictions=args.predictions,
                            label=args.method, out=args.out, kind=args.kind)
    dataset = dataset_from_args(args, args.dataset, args.resolution)
    kind = dataset_kind(dataset, args.kind)
    from misato.lock import folder_lock

    with folder_lock(args.out):  # one job per output folder: a second is refused, naming the first
        result = score(dataset, args.predictions, args.method, args.out, config, dataset_kind=kind)
    print(json.dumps(result.record.overall, indent=2))
    for metric, reason in result.record.unavailable.items():
        print(f"unavailable: {metric}: {reason}")
    print(f"wrote {result.json_path}\nwrote {result.csv_path}")
    return 0
