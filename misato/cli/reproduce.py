"""`misato reproduce table2`: the paper's Table 2 (a), (b), (d), from training data to the tables."""

from __future__ import annotations

import argparse

HELP = "regenerate a table of the paper end to end (table2: train every ablation, inpaint, score, tabulate)"

EPILOG = """examples:
  misato reproduce table2 --preset smoke --out runs/table2-smoke        (CPU, minutes: embedded photos, tiny models)
  accelerate launch -m misato reproduce table2 --preset paper --data PLACES2_TRAIN --misato MISATO/512 \\
      --mae-pretrained MAE-FAR/mae_places.pth --weight vgg16-torchvision=vgg16-397923af.pth --out runs/table2

Rerunning the same command continues where it stopped: finished stages, latents, inpainted samples and scores
are reused. Outputs: table2.md (measured, paper and difference rows), table2_<sub-table>.csv, reproduce.json."""


def register(parser: argparse.ArgumentParser) -> None:
    from misato.cli._common import add_device_argument, add_progress_argument, add_weight_arguments
    from misato.reproduce.table2 import preset_names

    parser.epilog = EPILOG
    parser.add_argument("table", choices=("table2",), help="which table")
    parser.add_argument("--preset", required=True, choices=preset_names(), help="what to run (a data file)")
    parser.add_argument("--out", required=True, help="output folder (rerun to resume)")
    parser.add_argument("--data", default=None, help="training images (Places2 train); smoke: the embedded photos")
    parser.add_argument("--misato", default=None, help="evaluation set (MISATO/512); smoke: the embedded photos")
    parser.add_argument("--mae-pretrained", default=None, help="the pre-trained MAE (MAE-FAR) to fine-tune and "
                                                                "for the Table 2(a) p.t. row")
    parser.add_argument("--coco-annotations", default=None, help="COCO instances JSON for object-shape masks")
    add_device_argument(parser)
    add_progress_argument(parser)
    add_weight_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from misato.cli._common import parse_weight_overrides
    from misato.reproduce.table2 import Table2Inputs, run_table2

    summary = run_table2(Table2Inputs(
        preset=args.preset, out=args.out, data=args.data, misato=args.misato, mae_pretrained=args.mae_pretrained,
        coco_annotations=args.coco_annotations, weights=parse_weight_overrides(args.weight),
        allow_download=args.allow_download, device=args.device, progress=not args.no_progress))
    print(f"table2 ({args.preset}): {len(summary['runs'])} models scored; tables in {args.out}/table2.md")
    return 0
