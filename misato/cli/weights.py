"""`misato weights list|verify|fetch`: the pretrained files the suite knows."""

from __future__ import annotations

import argparse

HELP = "list, verify or download the registered pretrained weight files"

EPILOG = """examples:
  misato weights list                              every key, file, URL and where it resolves now
  misato weights verify                            hash every file found (exit 1 when one does not match)
  misato weights verify inception-tf lpips-alex-lin
  misato weights fetch inception-tf                download into $MISATO_WEIGHTS_DIR (needs internet)
  misato weights fetch all
  misato weights convert big-lama/models/best.ckpt big-lama.safetensors --state-key state_dict
                                                   (once, on a pickle checkpoint you trust)
  MISATO_WEIGHT_INCEPTION_TF=/data/pt_inception.pth misato weights verify inception-tf   (an explicit path)"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="every key, file name, URL and where it resolves now")
    listing.set_defaults(handler=run_list)
    verify = sub.add_parser("verify", help="hash every file found and compare with the registry")
    verify.add_argument("keys", nargs="*", help="keys to verify (default: all)")
    verify.set_defaults(handler=run_verify)
    fetch = sub.add_parser("fetch", help="download files into $MISATO_WEIGHTS_DIR and check their sha256")
    fetch.add_argument("keys", nargs="+", help="keys to download, or 'all'")
    fetch.set_defaults(handler=run_fetch)
    convert = sub.add_parser(
        "convert", help="unpickle a checkpoint YOU TRUST once and save its tensors as .safetensors",
        description="Checkpoints are loaded with torch.load(weights_only=True) or safetensors only. A publisher's "
        "file that needs the full unpickler (it can run code) is converted once with this command, on a file you "
        "trust; the .safetensors it writes is then used like the original (--weight KEY=DEST).",
        epilog="examples:\n  misato weights convert big-lama/models/best.ckpt big-lama-best.safetensors --state-key state_dict\n"
               "  misato weights convert mae_far_places2.ckpt mae_far_places2.safetensors --state-key state_dict",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    convert.add_argument("src", help="the publisher's checkpoint (.ckpt/.pth/.pt)")
    convert.add_argument("dest", help="the .safetensors file to write")
    convert.add_argument("--state-key", default=None,
                         help="dotted path to the state dict inside the file (e.g. state_dict, model, g_ema)")
    convert.set_defaults(handler=run_convert)


def _status(key: str) -> tuple[str, str]:
    from misato.weights import WeightsHashError, WeightsNotFoundError, resolve

    try:
        found = resolve(key)
    except WeightsNotFoundError:
        return "missing", "-"
    except WeightsHashError as error:
        return "BAD HASH", str(error)
    verdict = {True: "ok", False: "MISMATCH", None: "found (no published hash)"}[found.matches]
    return verdict, f"{found.path} [{found.source}]"


def run_list(args: argparse.Namespace) -> int:
    from misato.weights import all_specs, default_weights_dir, env_var

    print(f"weights folder: {default_weights_dir()}  (set MISATO_WEIGHTS_DIR to change)")
    for key, spec in all_specs().items():
        state, where = _status(key)
        print(f"\n{key}: {spec.filename}  [{state}]\n  {spec.description}\n  url: {spec.url}\n"
              f"  sha256: {spec.sha256 or '(not published)'}\n  override: --weight {key}=PATH or ${env_var(key)}\n  found: {where}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from misato.weights import all_specs

    keys = args.keys or list(all_specs())
    bad = 0
    for key in keys:
        state, where = _status(key)
        print(f"{key}: {state} {where}")
        bad += state in ("MISMATCH", "BAD HASH")
    return 1 if bad else 0


def run_fetch(args: argparse.Namespace) -> int:
    from misato.weights import WeightsNotFoundError, all_specs, fix_text, resolve

    keys = list(all_specs()) if args.keys == ["all"] else args.keys
    failed = 0
    for key in keys:
        try:
            found = resolve(key, allow_download=True)
        except WeightsNotFoundError as error:  # unpublished or manual files: say how, go on with the others
            print(f"{key}: not downloadable: {fix_text(error.spec)}")
            failed += 1
            continue
        print(f"{key}: {found.path} [{found.source}]")
    return 1 if failed else 0


def run_convert(args: argparse.Namespace) -> int:
    from misato.checkpoints import convert_to_safetensors
    from misato.io import sha256_file

    dest = convert_to_safetensors(args.src, args.dest, args.state_key)
    print(f"wrote {dest} (sha256 {sha256_file(dest)})")
    return 0
