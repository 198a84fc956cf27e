"""`misato masks`: inspect the mask generators."""

from __future__ import annotations

import argparse

HELP = "mask generators: preview grids and hole-ratio histograms"

EPILOG = """examples:
  misato masks preview --out previews/ --generators lama-thin,lama-medium,lama-thick,comod,comod-brush
  misato masks preview --out previews/ --generators misato,coco-object --coco-annotations instances_val2014.json
  misato masks list
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="masks_command", metavar="ACTION")
    preview = sub.add_parser("preview", help="write a PNG grid per generator and a hole-ratio histogram")
    preview.add_argument("--out", required=True, help="output folder")
    preview.add_argument(
        "--generators",
        default="lama-thin,lama-medium,lama-thick,comod,comod-mat,comod-brush",
        help="comma-separated generator presets or samplers (see `misato masks list`)",
    )
    preview.add_argument("--n", type=int, default=16, help="samples per generator (default 16)")
    preview.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    preview.add_argument("--size", type=int, default=512, help="mask side in pixels (default 512)")
    preview.add_argument("--coco-annotations", default=None, help="COCO instances JSON for object-shape masks")
    preview.set_defaults(handler=_preview)
    listing = sub.add_parser("list", help="list generator presets and samplers")
    listing.set_defaults(handler=_list)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def _preview(args: argparse.Namespace) -> int:
    from misato.masks.coco import ObjectShapeBank
    from misato.masks.preview import write_preview

    objects = None
    if args.coco_annotations:
        from pycocotools.coco import COCO

        objects = ObjectShapeBank.from_coco(COCO(args.coco_annotations))
    names = [name.strip() for name in args.generators.split(",") if name.strip()]
    if not names:
        raise ValueError("--generators is empty")
    for path in write_preview(args.out, names, n=args.n, seed=args.seed, size=args.size, objects=objects):
        print(path)
    return 0


def _list(args: argparse.Namespace) -> int:
    from misato.masks.registry import PRESETS
    from misato.masks.samplers import SAMPLERS

    for preset in PRESETS.values():
        flags = " [training only]" if preset.training_only else ""
        flags += " [needs --coco-annotations]" if preset.needs_objects else ""
        print(f"{preset.name:22s} {preset.description}{flags}")
    for config in SAMPLERS.values():
        print(f"{config.name:22s} sampler, hole ratio in {list(config.ratio_range)}")
    return 0
