"""`misato train STAGE`: train ASUKA-SD's MAE and alignment module, or the learned SD prompt."""

from __future__ import annotations

import argparse

HELP = "train ASUKA-SD parts (mae, alignment, decoder) or the SD-prompt baseline (prompt); resumable, accelerate-ready"

EPILOG = """examples:
  misato train mae --preset tiny --data photos/ --out runs/mae --max-steps 5        (CPU, seconds, no weights)
  misato train alignment --preset tiny --data photos/ --mae runs/mae --out runs/align --max-steps 5
  accelerate launch -m misato train mae --config mae.yaml --data PLACES2_TRAIN --mae mae_pretrain.pth --out runs/mae
  accelerate launch -m misato train alignment --preset cross4 --data PLACES2_TRAIN --mae runs/mae --out runs/cross4
  accelerate launch -m misato train alignment --preset pretrained-mae --data PLACES2_TRAIN --mae MAE-FAR.pth --out runs/pt
  accelerate launch -m misato train prompt --data PLACES2_TRAIN --out runs/prompt
  accelerate launch -m misato train decoder --preset cond --data PLACES2_TRAIN --out runs/dec-cond
  misato train decoder-latents --preset asuka --data PLACES2_TRAIN --out runs/latents     (Eq. (1), offline)
  accelerate launch -m misato train decoder --preset asuka --data PLACES2_TRAIN --latents runs/latents --out runs/dec
  misato inpaint --method asuka-sd --option model=runs/align --option decoder=runs/dec --dataset MISATO/512 --out runs/a
  misato inpaint --method sd-prompt --option model=runs/prompt --dataset MISATO/512 --out runs/sdp

Configuration: the paper's values, then --preset NAME[,NAME] (left to right), then --config FILE (JSON/YAML
fields, may name "preset"), then --set FIELD=VALUE. Running the same command again resumes from the newest
checkpoint; a folder holding a run with other settings is refused."""


def register(parser: argparse.ArgumentParser) -> None:
    from baselines.asuka.training import COMMANDS, LATENTS
    from baselines.asuka.training.config import PRESETS
    from misato.cli._common import add_print_config_argument, add_progress_argument, add_weight_arguments

    parser.epilog = EPILOG
    parser.add_argument("stage", choices=COMMANDS,
                        help=f"what to train; {LATENTS}: the decoder's offline latent cache (--out is the cache)")
    parser.add_argument("--data", required=True, help="training images: a folder (recursive) or a file list")
    parser.add_argument("--out", required=True, help="run folder (created; rerun to resume)")
    parser.add_argument("--preset", action="append", default=[], metavar="NAME[,NAME]",
                        help="named presets, applied left to right (" + "; ".join(
                            f"{stage}: {', '.join(names)}" for stage, names in PRESETS.items()) + ")")
    parser.add_argument("--config", default=None, help="JSON or YAML file of config fields")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override one field")
    parser.add_argument("--mae", default=None,
                        help="mae: the pre-trained MAE file to fine-tune; alignment: the fine-tuned MAE (a `misato "
                             "train mae` folder or a file)")
    parser.add_argument("--masks", default=None, help="mask folder or .zip (white = hole, e.g. the released ASUKA "
                                                      "training masks) instead of the Sec. 3.1 sampler")
    parser.add_argument("--coco-annotations", default=None, help="COCO instances JSON: object shapes for the masks "
                                                                  "(default: synthetic shapes)")
    parser.add_argument("--latents", default=None, help="decoder: the latent cache of `misato train decoder-latents`")
    parser.add_argument("--decoder-init", default=None, help="decoder with --set init=file: asymmetric decoder to "
                                                             "start from (the '+ cond.' starting point)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (resumable)")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    add_progress_argument(parser)
    add_print_config_argument(parser)
    add_weight_arguments(parser)  # e.g. vgg16-torchvision for the decoder's LPIPS loss
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from baselines.asuka.training import LATENTS, config_stage, stage_builder
    from baselines.asuka.training.config import build_config
    from baselines.asuka.training.loop import TrainInputs, train
    from misato.cli._common import parse_weight_overrides

    sets = list(args.set)
    if args.masks and not any(pair.startswith("mask_source=") for pair in sets):
        sets.append("mask_source=folder")  # --masks means: read masks from there
    config = build_config(config_stage(args.stage), args.preset, args.config, sets)
    if args.print_config:
        print(json.dumps(config.record(), indent=2))
        return 0
    from misato.lock import folder_lock

    if args.stage == LATENTS:
        from baselines.asuka.training.latents import build_latent_cache

        with folder_lock(args.out):  # one job per output folder: a second is refused, naming the first
            index = build_latent_cache(config, args.data, args.out, progress=not args.no_progress,
                                       device="cpu" if args.cpu else None, allow_download=args.allow_download)
        print(f"{LATENTS}: {len(index['entries'])} latents in {args.out} ({len(index['bad'])} unreadable files)")
        return 0
    inputs = TrainInputs(data=args.data, out=args.out, mae=args.mae, masks=args.masks,
                         coco_annotations=args.coco_annotations, decoder_init=args.decoder_init, latents=args.latents,
                         weights=parse_weight_overrides(args.weight), allow_download=args.allow_download)
    with folder_lock(args.out):
        record = train(config, stage_builder(args.stage), inputs, max_steps=args.max_steps,
                       progress=not args.no_progress, cpu=args.cpu)
    print(f"{args.stage}: {record['status']} at step {record['step']}; files in {args.out}: "
          f"{', '.join(sorted(record.get('files', {})))}")
    return 0
