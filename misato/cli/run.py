"""`misato run`: inpaint + score several methods on several datasets, then the leaderboard."""

from __future__ import annotations

import argparse

from misato.cli._common import (
    add_clip_outputs_argument, add_device_argument, add_embedded_size_argument, add_inpaint_batch_argument, add_kind_argument, add_limit_argument,
    add_mask_arguments, add_option_argument, add_print_config_argument, add_progress_argument, add_score_compute_arguments, add_scoring_arguments,
    add_weight_arguments, parse_csv, print_config, score_config_from_args,
)

HELP = "inpaint and score several methods on several datasets, then write the leaderboard (resumable)"

EPILOG = """methods: built-in names (telea, ns, biharmonic, lama, ...), module:Class, path/to/file.py:Class,
an entry point of group misato.inpainters, or folder:PATH (precomputed predictions); LABEL=SPEC names a
method's row and folders (default: the name, or Class).
datasets: a folder (image/ + mask/, or the MISATO {512,1024}/ layout), or 'embedded' (the offline
default set, see `misato demo`); LABEL=PATH renames one.

Writes OUT/predictions/<dataset>/<method>/ (resumable: run the command again to continue),
OUT/results/*.json, OUT/leaderboard/ (md, tex, csv, html) and OUT/run.json. A method that fails (a plug-in
that does not import, missing weights, ...) is skipped and the others go on; it stays in the tables as a
'failed' row and is listed, with its fix, at the end. Exit status: 0 when every method was scored and the
leaderboard written, else 1 (--strict also turns a metric's missing weights into its method's failure).
One run at a time per --out: a second one is refused, naming the first (OUT/.misato.lock).

examples:
  misato run --methods telea,ns,lama --dataset MISATO/ --out runs/misato
  misato run --methods telea,mine=plugins/mine.py:MyInpainter --dataset embedded --out runs/try
  misato run --methods lama --dataset data/places --dataset embedded --out runs/all --weight lama-big=~/big-lama.pt
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    what = parser.add_argument_group("what to run")
    what.add_argument("--methods", action="append", required=True, metavar="M1,M2,...",
                      help="comma-separated method specs (repeatable)")
    what.add_argument("--dataset", action="append", required=True, metavar="DIR|embedded",
                      help="dataset folder or 'embedded' (repeatable)")
    what.add_argument("--out", required=True, help="output folder")
    add_limit_argument(what)
    add_kind_argument(what)
    add_embedded_size_argument(what)
    add_option_argument(what)
    add_clip_outputs_argument(what)
    add_scoring_arguments(parser)
    add_mask_arguments(parser)
    extra = parser.add_argument_group("scoring (run)")
    add_score_compute_arguments(extra)
    extra.add_argument("--samples", type=parse_csv, default=None, help="stems for the HTML grid (default: the leaderboard's choice)")
    compute = parser.add_argument_group("compute")
    add_device_argument(compute)
    add_inpaint_batch_argument(compute)
    compute.add_argument("--seed", type=int, default=0, help="run seed; sample seeds derive from it and the stem")
    add_progress_argument(compute)
    add_weight_arguments(parser)
    add_print_config_argument(parser)
    parser.set_defaults(handler=run)


def exit_code(report) -> int:
    """0 when every (dataset, method) pair was scored and the leaderboard written (`RunReport.ok`), else 1."""
    return 0 if report.ok else 1


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from misato.jobs.pipeline import (
        RunConfig, format_report, parse_dataset, parse_methods, run_benchmark,
    )

    config = RunConfig(
        methods=parse_methods(args.methods),
        datasets=[parse_dataset(d) for d in args.dataset],
        out_dir=Path(args.out).absolute(),
        score=score_config_from_args(args, args.score_batch_size, args.device),
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
        limit=args.limit,
        options=dict(args.option),
        kind=args.kind,
        mask_keep_is_white=args.mask_keep_is_white,
        mask_binary_01=args.mask_binary_01,
        clip_outputs=args.clip_outputs,
        embedded_size=args.embedded_size,
        grid_samples=tuple(args.samples) if args.samples else None,
        progress=not args.no_progress,
    )
    if args.print_config:
        return print_config(config)
    report = run_benchmark(config)
    print(format_report(report, config.score.protocol, config.score.weights))
    return exit_code(report)
