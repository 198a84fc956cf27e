"""`misato build`: build MISATO from its source datasets (default), a Places2 evaluation set, or a
Hugging Face `datasets` copy of a dataset folder.

Thin layer over `misato.builder.pipeline.build_misato`, `misato.builder.places2.build_places2` and
`misato.builder.hf`; argument names follow the Python API.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from misato.cli._common import add_deprecated_alias, add_device_argument, add_limit_argument, add_progress_argument

HELP = "build MISATO from Matterport3D/Flickr-Landscape/MegaDepth/COCO, a Places2 set, or a datasets copy"

EPILOG = """targets:
  misato   (default) select representative images per domain and write OUT/512 (and OUT/1024)
  places2  centre-crop Places365 val_large to 512 and draw one seeded mask per image
  hf       save a dataset folder (built or released MISATO) as a Hugging Face datasets copy in OUT

examples:
  misato build --landscape flickr_landscape.lmdb --indoor matterport/v1/scans --building MegaDepth_v1 \\
      --coco-images coco/train2014 --coco-annotations coco/annotations/instances_train2014.json \\
      --out out/misato --device cuda
  misato build --indoor scans --out out/indoor-only --clusters 50 --features pixels   # offline, NOT the paper's features
  misato build places2 --places2-val places365/val_large --out out/places2
  misato build hf --from out/misato --out out/misato-hf
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("target", nargs="?", default="misato", choices=sorted(TARGETS), help="what to build (default misato)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="selection and mask seed (default 0)")
    parser.add_argument("--workers", type=int, default=0, help="processes writing samples (default 0: this process)")
    add_progress_argument(parser)

    src = parser.add_argument_group("MISATO sources (any subset; missing domains are left out)")
    src.add_argument("--landscape", type=Path, help="Flickr-Landscape: image folder or InfinityGAN LMDB")
    src.add_argument("--landscape-pattern", help="glob under --landscape (default **/*)")
    src.add_argument("--landscape-lmdb-size", type=int, help="LMDB key size prefix (default: detected)")
    src.add_argument("--indoor", type=Path, help="Matterport3D scans folder")
    src.add_argument("--indoor-pattern", help="glob under --indoor (default */undistorted_color_images/*.jpg)")
    src.add_argument("--building", type=Path, help="MegaDepth_v1 folder")
    src.add_argument("--building-pattern", help="glob under --building (default */dense*/imgs/*.jpg)")
    src.add_argument("--coco-images", type=Path, help="COCO 2014 image folder (e.g. train2014)")
    src.add_argument("--coco-annotations", type=Path, help="matching instances_*.json")
    src.add_argument("--coco-selection", choices=["cluster", "random"], default="cluster",
                     help="COCO images by clustering (default) or a seeded random draw (paper: unstated)")
    src.add_argument("--object-annotations", type=Path,
                     help="COCO instances file for object-shape masks (default: --coco-annotations; none: irregular only)")
    src.add_argument("--coco-candidates", type=int, default=20,
                     help="fallback images per COCO slot when one has too little background (default 20)")

    sel = parser.add_argument_group("selection")
    sel.add_argument("--clusters", type=int, default=500, help="clusters (= images) per domain (default 500)")
    sel.add_argument("--features", choices=["clip", "pixels"], default="clip",
                     help="clip (the paper's) or pixels (weight-free, NOT the paper's)")
    sel.add_argument("--clip-model", default="ViT-L-14", help="open_clip architecture (default ViT-L-14)")
    sel.add_argument("--clip-weights", help="checkpoint file (default: weights key clip-vit-l-14-openai)")
    add_device_argument(sel)
    batch = sel.add_argument("--feature-batch-size", dest="batch_size", type=int, default=32, metavar="N",
                             help="images per feature-network forward (default %(default)s)")
    add_deprecated_alias(sel, "--batch-size", batch)
    sel.add_argument("--feature-workers", type=int, default=2, help="DataLoader workers decoding images (default 2)")
    sel.add_argument("--cache", type=Path, help="feature cache folder (default OUT/.build/features)")

    out = parser.add_argument_group("output")
    out.add_argument("--size", type=int, default=512, help="output side (default 512)")
    out.add_argument("--with-1024", action="store_true", help="also write OUT/1024 (no COCO), as released")
    out.add_argument("--mask-naming-1024", choices=["plain", "released"], default="plain",
                     help="1024 mask names: plain 0000.png or released 000000.png (default plain)")
    out.add_argument("--resample", help="resize filter: lanczos, bicubic, bilinear, box "
                     "(default lanczos for misato, bilinear for places2 as in Co-Mod)")
    out.add_argument("--hf", type=Path, help="also save a Hugging Face datasets copy here")

    p2 = parser.add_argument_group("places2")
    p2.add_argument("--places2-val", type=Path, help="Places365 val_large folder")
    p2.add_argument("--places2-mode", choices=["resize", "crop"], default="resize",
                    help="resize: centre square + resize (Co-Mod, default); crop: centre 512 crop, no resize (MAT)")
    add_limit_argument(p2)

    hf = parser.add_argument_group("hf")
    hf.add_argument("--from", dest="source_dir", type=Path, help="dataset folder to convert (target hf)")
    hf.add_argument("--resolution", type=int, default=512, help="MISATO resolution to convert (default 512)")
    parser.set_defaults(handler=run)


def _build_misato(args: argparse.Namespace) -> int:
    from misato.devices import resolve_device  # imports torch: not at `misato --help` time
    from misato.builder.pipeline import BuildConfig, FeatureOptions, build_misato
    from misato.builder.sources import CocoSource, folder_source, landscape_source

    sources = {}
    if args.landscape:
        sources["landscape"] = landscape_source(args.landscape, args.landscape_pattern, args.landscape_lmdb_size)
    if args.indoor:
        sources["indoor"] = folder_source("matterport3d", args.indoor, args.indoor_pattern)
    if args.building:
        sources["building"] = folder_source("megadepth", args.building, args.building_pattern)
    if bool(args.coco_images) != bool(args.coco_annotations):
        raise ValueError("--coco-images and --coco-annotations go together")
    if args.coco_images:
        sources["background"] = CocoSource(args.coco_images, args.coco_annotations)
    features = FeatureOptions(kind=args.features, clip_model=args.clip_model, clip_weights=args.clip_weights,
                              device=str(resolve_device(args.device)), batch_size=args.batch_size,
                              workers=args.feature_workers)
    config = BuildConfig(out=args.out, sources=sources, clusters=args.clusters, seed=args.seed, size=args.size,
                         size_1024=args.with_1024, mask_naming_1024=args.mask_naming_1024, resample=args.resample or "lanczos",
                         coco_selection=args.coco_selection, coco_candidates=args.coco_candidates,
                         features=features, cache_dir=args.cache, workers=args.workers,
                         object_annotations=args.object_annotations,
                         progress=not args.no_progress)
    manifest = build_misato(config)
    print(f"{args.out}: {len(manifest['samples'])} samples, {len(manifest['files'])} files")
    if args.hf:
        from misato.builder.hf import save_hf
        from misato.data import load_dataset

        save_hf(load_dataset(args.out, resolution=args.size), args.hf)
        print(f"{args.hf}: datasets copy saved")
    return 0


def _build_places2(args: argparse.Namespace) -> int:
    from misato.builder.places2 import Places2Config, build_places2

    if not args.places2_val:
        raise ValueError("target places2 needs --places2-val DIR")
    config = Places2Config(val_dir=args.places2_val, out=args.out, seed=args.seed, size=args.size,
                           mode=args.places2_mode, resample=args.resample or "bilinear",
                           limit=args.limit, workers=args.workers, progress=not args.no_progress,
                           object_annotations=args.object_annotations or args.coco_annotations)
    manifest = build_places2(config)
    print(f"{args.out}: {len(manifest['samples'])} samples")
    return 0


def _build_hf(args: argparse.Namespace) -> int:
    from misato.builder.hf import save_hf
    from misato.builder.released import open_released

    if not args.source_dir:
        raise ValueError("target hf needs --from DIR (a dataset folder or the released zip)")
    dataset = open_released(args.source_dir, resolution=args.resolution)
    save_hf(dataset, args.out)
    print(f"{args.out}: {len(dataset)} pairs saved as a datasets copy")
    return 0


TARGETS = {"misato": _build_misato, "places2": _build_places2, "hf": _build_hf}


def run(args: argparse.Namespace) -> int:
    return TARGETS[args.target](args)
