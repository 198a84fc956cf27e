"""`misato demo`: the whole benchmark, offline, on the embedded photo set."""

from __future__ import annotations

import argparse

from misato.cli._common import (
    add_device_argument, add_embedded_size_argument, add_print_config_argument, add_progress_argument, add_weight_arguments, parse_weight_overrides,
    print_config,
)

HELP = "build the embedded photo set, run the classical inpainters (and LaMa if present), score, tabulate"

# Measured on 2 CPU cores at 512 px, 11 photos: telea ~0.5 s, ns ~0.5 s, biharmonic ~1-6 s per photo.
CLASSICAL = ("telea", "ns", "biharmonic")
LAMA_KEY = "lama-big"

EPILOG = """The embedded set: 11 photos shipped inside scikit-image and scikit-learn, centre-cropped and resized
to --size, with MISATO-style irregular masks (see misato/embedded.py); built once into
$MISATO_CACHE_DIR/embedded/<size> (default ~/.cache/misato/embedded/<size>).

PSNR, SSIM and the boundary gradient error need no weights and are always computed; LPIPS, FID, U-IDS,
P-IDS, KID and CLIP score need pretrained files, downloaded on first use into $MISATO_WEIGHTS_DIR
(`misato weights fetch --for demo --dry-run` lists them with the sizes their servers report).
With --offline (or MISATO_OFFLINE=1, HF_HUB_OFFLINE=1) nothing is downloaded and a metric whose file is
missing is listed as unavailable, with the command that fetches it. LaMa joins the default methods when
lama-big (big-lama.pt) is present (`misato weights fetch lama-big`); it is not downloaded for the demo.

examples:
  misato demo
  misato demo --out /tmp/demo --embedded-size 256
  misato demo --methods telea,ns,mine=plugins/mine.py:MyInpainter
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--out", default="misato-demo", help="output folder (default ./misato-demo)")
    add_embedded_size_argument(parser, old_flag="--size")
    parser.add_argument("--methods", default=None, metavar="M1,M2,...",
                        help=f"method specs (default: {','.join(CLASSICAL)}, plus lama when its weights resolve)")
    parser.add_argument("--data-dir", default=None,
                        help="folder for the embedded set (default $MISATO_CACHE_DIR/embedded/<size>)")
    add_device_argument(parser)
    add_progress_argument(parser)
    add_print_config_argument(parser)
    add_weight_arguments(parser)
    parser.set_defaults(handler=run)


def default_methods(weights: dict[str, str]) -> tuple[list[str], str]:
    """The classical methods, plus lama when its file is present (never downloaded for this choice: the demo's
    methods do not depend on the network); and a sentence saying which and why."""
    from misato.weights import WeightsHashError, WeightsNotFoundError, get_spec, resolve

    try:
        found = resolve(LAMA_KEY, weights.get(LAMA_KEY), allow_download=False)
    except (WeightsNotFoundError, WeightsHashError) as error:
        spec = get_spec(LAMA_KEY)
        reason = "not found" if isinstance(error, WeightsNotFoundError) else "hash mismatch"
        return list(CLASSICAL), (f"lama left out: {spec.filename} {reason}; "
                                 f"`misato weights fetch {LAMA_KEY}` or --weight {LAMA_KEY}=PATH adds it")
    return [*CLASSICAL, "lama"], f"lama included: {found.path}"


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from evaluators.scoring import ScoreConfig
    from misato.cli.run import exit_code
    from misato.jobs.pipeline import (
        DatasetEntry, RunConfig, format_report, parse_methods, run_benchmark,
    )

    start = time.perf_counter()
    weights = parse_weight_overrides(args.weight)
    if args.methods:
        methods, note = [args.methods], None
    else:
        methods, note = default_methods(weights)
    config = RunConfig(
        methods=parse_methods(methods),
        datasets=[DatasetEntry("embedded")],
        out_dir=Path(args.out).absolute(),
        score=ScoreConfig(device=args.device, weights=weights, allow_download=args.allow_download,
                          progress=not args.no_progress),
        device=args.device,
        embedded_size=args.embedded_size,
        embedded_dir=Path(args.data_dir).absolute() if args.data_dir else None,
        progress=not args.no_progress,
    )
    if args.print_config:
        return print_config(config)
    report = run_benchmark(config)
    print(format_report(report, config.score.protocol, config.score.weights))
    if note:
        print(note)
    print(f"demo finished in {time.perf_counter() - start:.1f} s; open {report.leaderboard.get('html', args.out)}")
    return exit_code(report)
