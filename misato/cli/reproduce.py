"""`misato reproduce table1|table2`: the paper's Table 1, and Table 2 (a), (b), (d), end to end."""

from __future__ import annotations

import argparse

HELP = "regenerate a table of the paper end to end (table1: every method on both datasets; table2: the ablations)"

EPILOG = """examples:
  misato reproduce table1 --preset smoke --out runs/table1-smoke        (CPU, minutes; see `misato reproduce table1 -h`)
  misato reproduce table2 --preset smoke --out runs/table2-smoke        (CPU, minutes: embedded photos, tiny models)
  accelerate launch -m misato reproduce table2 --preset paper --data PLACES2_TRAIN --misato MISATO/512 \\
      --mae-pretrained MAE-FAR/mae_places.pth --weight vgg16-torchvision=vgg16-397923af.pth --out runs/table2

Rerunning the same command continues where it stopped: finished stages, latents, inpainted samples and scores
are reused. Outputs: table2.md (measured, paper and difference rows), table2_<sub-table>.csv, reproduce.json.
A failed stage or run is listed at the end, its rows read 'failed', the rest goes on; exit status 1. One job at a
time per --out (OUT/.misato.lock): a second one is refused, naming the first."""


def register(parser: argparse.ArgumentParser) -> None:
    from misato.cli._common import add_device_argument, add_progress_argument, add_weight_arguments, parse_csv
    from misato.jobs.reproduce import table1, table2

    parser.epilog = EPILOG
    tables = parser.add_subparsers(dest="table", metavar="TABLE", required=True)
    one = tables.add_parser("table1", help="Table 1: the nine methods on MISATO and Places2, with intervals",
                            description=table1.__doc__, epilog=TABLE1_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    one.add_argument("--preset", required=True, choices=table1.preset_names(), help="what to run (a data file)")
    one.add_argument("--out", required=True, help="output folder (rerun to resume)")
    one.add_argument("--misato", default=None, help="MISATO evaluation folder (MISATO/512)")
    one.add_argument("--places2", default=None, help="Places2 evaluation folder (`misato build places2` output)")
    one.add_argument("--methods", type=parse_csv, default=None, help="comma-separated subset of the preset's labels")
    one.add_argument("--set", action="append", default=[], metavar="LABEL.KEY=VALUE",
                     help="change one generation option of one method (repeatable; the value is JSON when it parses, "
                          "checked against the option's type before any work)")
    two = tables.add_parser("table2", help="Table 2 (a)(b)(d): train every ablation, inpaint, score, tabulate",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    two.add_argument("--preset", required=True, choices=table2.preset_names(), help="what to run (a data file)")
    two.add_argument("--out", required=True, help="output folder (rerun to resume)")
    two.add_argument("--data", default=None, help="training images (Places2 train); smoke: the embedded photos")
    two.add_argument("--misato", default=None, help="evaluation set (MISATO/512); smoke: the embedded photos")
    two.add_argument("--mae-pretrained", default=None, help="the pre-trained MAE (MAE-FAR) to fine-tune and "
                                                             "for the Table 2(a) p.t. row")
    two.add_argument("--coco-annotations", default=None, help="COCO instances JSON for object-shape masks")
    for sub, handler in ((one, run_table1), (two, run)):
        add_device_argument(sub)
        add_progress_argument(sub)
        add_weight_arguments(sub)
        sub.set_defaults(handler=handler)


TABLE1_EPILOG = """examples:
  misato reproduce table1 --preset smoke --out runs/table1-smoke       (CPU, minutes: embedded photos, classical
                                                                        methods and the tiny random SD)
  accelerate launch -m misato reproduce table1 --preset paper --misato MISATO/512 --places2 PLACES2_VAL \\
      --set SD-prompt.prompt_file=runs/prompt/prompt.safetensors --set ASUKA.model=runs/asuka --out runs/table1
  misato reproduce table1 --preset paper --methods LaMa,MAT --misato MISATO/512 --places2 PLACES2_VAL --out runs/t1

Rerunning continues where it stopped (finished inpaintings and scores are reused). Outputs: table1.md (with the
settings the paper does not state), leaderboard/ (all formats, intervals, paired comparisons), reproduce.json.
A method that fails is listed at the end and kept in the tables as 'failed'; the others go on; exit status 1.
One job at a time per --out (OUT/.misato.lock): a second one is refused, naming the first."""


def run_table1(args: argparse.Namespace) -> int:
    from misato.cli._common import parse_weight_overrides
    from misato.jobs.reproduce.table1 import Table1Inputs, run_table1 as run_preset

    summary = run_preset(Table1Inputs(
        preset=args.preset, out=args.out, misato=args.misato, places2=args.places2,
        methods=tuple(args.methods) if args.methods else None, sets=tuple(args.set),
        weights=parse_weight_overrides(args.weight), allow_download=args.allow_download, device=args.device,
        progress=not args.no_progress))
    from misato.jobs.pipeline import Outcome, failure_lines

    outcomes = [Outcome(**o) for o in summary["outcomes"]]
    failed = [o for o in outcomes if o.status != "ok"]
    print(f"table1 ({args.preset}): {len(outcomes) - len(failed)} of {len(outcomes)} runs scored; table in "
          f"{args.out}/table1.md")
    lines = failure_lines(outcomes, summary.get("leaderboard_error"))
    if lines:
        print("\n".join(lines))
    return 1 if lines else 0


def run(args: argparse.Namespace) -> int:
    from misato.cli._common import parse_weight_overrides
    from misato.jobs.reproduce.table2 import Table2Inputs, run_table2

    summary = run_table2(Table2Inputs(
        preset=args.preset, out=args.out, data=args.data, misato=args.misato, mae_pretrained=args.mae_pretrained,
        coco_annotations=args.coco_annotations, weights=parse_weight_overrides(args.weight),
        allow_download=args.allow_download, device=args.device, progress=not args.no_progress))
    failures = summary.get("failures", [])
    scored = sum(1 for run in summary["runs"].values() if run.get("status") != "failed")
    print(f"table2 ({args.preset}): {scored} of {len(summary['preset']['runs'])} models scored; tables in "
          f"{args.out}/table2.md")
    if failures:
        print(f"\nFAILED: {len(failures)} stage(s) or run(s) (the others went on; their rows read 'failed'; "
              "exit status 1):")
        for failure in failures:
            print(f"- {failure['kind']} {failure['name']}:")
            print("\n".join("    " + line for line in failure["error"].splitlines()))
    return 1 if failures else 0
