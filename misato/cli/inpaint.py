"""`misato inpaint`: run one inpainter over a dataset (a thin layer over `baselines.runner.inpaint_dataset`)."""

from __future__ import annotations

import argparse
import json
import os

from misato.cli._common import (
    add_clip_outputs_argument,
    add_degenerate_masks_argument,
    add_device_argument,
    add_inpaint_batch_argument,
    add_limit_argument,
    add_mask_arguments,
    add_option_argument,
    add_progress_argument,
    add_weight_arguments,
    dataset_from_args,
    parse_weight_overrides,
)

HELP = "inpaint a dataset with one method: raw and composited PNGs plus a manifest (resumable)"

EPILOG = """examples:
  misato inpaint --method telea --dataset data/misato --out runs/telea
  misato inpaint --method lama --dataset data/misato --out runs/lama --weight lama-big=~/big-lama.pt
  misato inpaint --method my_pkg.mod:MyInpainter --dataset DIR --out runs/mine --option steps=20
  misato inpaint --method folder:preds/mat --dataset DIR --out runs/mat     (precomputed predictions)
  accelerate launch --num_processes 4 -m misato inpaint --method sd --dataset DIR --out runs/sd
  misato inpaint --list                                             (every inpainter and its options)

Running the same command again resumes an interrupted run; finished samples are not recomputed."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    what = parser.add_argument_group("what to run")
    what.add_argument("--list", action="store_true", help="list the registered inpainters and their options, then exit")
    what.add_argument("--method",
                      help="built-in name (telea, ns, biharmonic, lama, ...), module:Class, file.py:Class, "
                           "an entry point of group misato.inpainters, or folder:PATH")
    what.add_argument("--dataset", help="dataset folder (image/ + mask/, or the MISATO layout)")
    what.add_argument("--resolution", type=int, default=None, help="MISATO layout sub-folder (512 or 1024)")
    what.add_argument("--out", help="output folder (raw/, composite/, manifest.json)")
    add_limit_argument(what)
    add_option_argument(what)
    add_degenerate_masks_argument(what)
    add_clip_outputs_argument(what)
    how = parser.add_argument_group("how")
    add_device_argument(how)
    add_inpaint_batch_argument(how)
    how.add_argument("--seed", type=int, default=0, help="run seed; sample seeds derive from it and the stem")
    add_progress_argument(how)
    add_mask_arguments(parser)
    add_weight_arguments(parser)
    parser.set_defaults(handler=run)


def list_inpainters() -> None:
    """One line per registered inpainter: name, its options and the first line of its docstring."""
    from baselines.registry import REGISTRY

    for name in REGISTRY.names():
        try:
            cls = REGISTRY.get(name)
        except Exception as error:  # noqa: BLE001 (a broken plug-in is listed with its error)
            print(f"{name}: cannot be loaded ({error})")
            continue
        options = sorted(REGISTRY.accepted_options(name) or ["(any)"])
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name}: {summary}\n    options: {', '.join(options)}")


def run(args: argparse.Namespace) -> int:
    from baselines.runner import inpaint_dataset

    if args.list:
        list_inpainters()
        return 0
    missing = [flag for flag in ("method", "dataset", "out") if not getattr(args, flag)]
    if missing:
        raise ValueError(f"the following arguments are required: {', '.join('--' + m for m in missing)} "
                         "(or --list)")

    dataset = dataset_from_args(args, args.dataset, args.resolution)
    from misato.lock import folder_lock

    with folder_lock(args.out):  # one job per output folder: a second is refused, naming the first
        manifest = inpaint_dataset(
            dataset,
            args.method,
            args.out,
            seed=args.seed,
            batch_size=args.batch_size,
            limit=args.limit,
            device=args.device,
            weight_paths=parse_weight_overrides(args.weight),
            allow_download=args.allow_download,
            options=dict(args.option),
            progress=not args.no_progress,
            allow_degenerate_masks=args.allow_degenerate_masks,
            clip_outputs=args.clip_outputs,
        )
    if os.environ.get("RANK", "0") != "0":  # one summary line per data-parallel run
        return 0
    status = json.loads(manifest.read_text())
    print(f"{status['status']}: {status['num_finished']}/{status['dataset']['num_selected']} samples; manifest {manifest}")
    return 0
