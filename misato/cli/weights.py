"""`misato weights list|verify|fetch`: the pretrained files the suite knows."""

from __future__ import annotations

import argparse

from misato.defaults import PROTOCOL
from misato.jobs.weight_needs import JOBS

HELP = "list, verify or download the registered pretrained weight files"

EPILOG = """examples:
  misato weights list                              every file: size, source, present?, which metrics/methods need it
  misato weights list --sizes                      also the servers' sizes of the missing files
  misato weights verify                            hash every file found (exit 1 when one does not match)
  misato weights verify inception-tf lpips-alex-lin
  misato weights fetch inception-tf                download into $MISATO_WEIGHTS_DIR (needs internet)
  misato weights fetch --for demo --dry-run        what the demo would download, with sizes
  misato weights fetch --for table1                every file the paper's Table 1 uses
  misato weights fetch all
  MISATO_WEIGHTS_ENDPOINT=http://mirror/weights misato weights fetch inception-tf   (a flat mirror: <endpoint>/<file>)
  misato weights convert big-lama/models/best.ckpt big-lama.safetensors --state-key state_dict
                                                   (once, on an authors' pickled release: tensors only)
  MISATO_WEIGHT_INCEPTION_TF=/data/pt_inception.pth misato weights verify inception-tf   (an explicit path)"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="every file: its size, where it comes from, whether it is present, and "
                                          "which metrics and methods need it")
    listing.add_argument("--sizes", action="store_true",
                         help="also ask the servers for the size of each missing file (HEAD requests)")
    listing.set_defaults(handler=run_list)
    verify = sub.add_parser("verify", help="hash every file found and compare with the registry")
    verify.add_argument("keys", nargs="*", help="keys to verify (default: all)")
    verify.set_defaults(handler=run_verify)
    fetch = sub.add_parser("fetch", help="download files into $MISATO_WEIGHTS_DIR (Hugging Face files: the hub cache) "
                                         "and check their sha256; the sizes are printed first")
    fetch.add_argument("keys", nargs="*", help="keys to download, or 'all'")
    fetch.add_argument("--for", dest="job", choices=JOBS, default=None,
                       help="every downloadable file a job uses: demo, score (its default metrics), table1, table2 "
                            "(the paper presets)")
    fetch.add_argument("--protocol", default=None,
                       help=f"with --for score: the protocol whose files (default {PROTOCOL})")
    fetch.add_argument("--dry-run", action="store_true", help="print what is missing and the sizes; download nothing")
    fetch.set_defaults(handler=run_fetch)
    convert = sub.add_parser(
        "convert", help="save the tensors of an authors' pickled checkpoint as .safetensors, running none of its code",
        description="Checkpoints are loaded with torch.load(weights_only=True) or safetensors only. An authors' file "
        "that holds other objects (pytorch-lightning 1.x checkpoints with callbacks and OmegaConf configs, "
        "StyleGAN-style network pickles) is converted once with this command: a restricted unpickler builds only "
        "tensors and plain containers and records every other class inertly (never imported or run; neither "
        "pytorch_lightning, omegaconf nor the authors' code is needed), then reports what it skipped. The "
        ".safetensors it writes is then used like the original (--weight KEY=DEST).",
        epilog="examples:\n  misato weights convert big-lama/models/best.ckpt big-lama-best.safetensors --state-key state_dict\n"
               "  misato weights convert mae_far_places2.ckpt mae_far_places2.safetensors --state-key state_dict\n"
               "  misato weights convert Places_512_FullData.pkl Places_512_FullData.safetensors --state-key G_ema",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    convert.add_argument("src", help="the publisher's checkpoint (.ckpt/.pth/.pt, or a network .pkl)")
    convert.add_argument("dest", help="the .safetensors file to write")
    convert.add_argument("--state-key", default=None,
                         help="dotted path to the weights inside the file: mapping entries (state_dict, model) or "
                         "modules of a network pickle (G_ema); default: the whole file")
    convert.set_defaults(handler=run_convert)


def _status(key: str) -> tuple[str, str, int | None]:
    """(state, where, size in bytes when present) of a key, without downloading."""
    import os

    from misato.weights import WeightsHashError, WeightsNotFoundError, env_var, resolve

    try:
        found = resolve(key)
    except WeightsNotFoundError:
        named = os.environ.get(env_var(key))
        if named:  # an explicit path that is not a file: not the same as a file not yet fetched
            return "BAD PATH", f"${env_var(key)}={named}: no such file", None
        return "missing", "-", None
    except WeightsHashError as error:
        return "BAD HASH", str(error), None
    verdict = {True: "ok", False: "MISMATCH", None: "found (no published hash)"}[found.matches]
    return verdict, f"{found.path} [{found.source}]", found.path.stat().st_size


def _size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _origin(spec) -> str:
    """Where a missing file would come from (after MISATO_WEIGHTS_ENDPOINT / HF_ENDPOINT)."""
    import os

    from misato.download import mirror_url

    if not spec.url:
        return "never published (trained with `misato train`)"
    if spec.manual:
        return f"manual: {spec.manual} ({spec.url})"
    if spec.hf_repo is not None:
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        return f"Hugging Face {spec.hf_repo} at {spec.hf_revision} ({endpoint})"
    return mirror_url(spec.url, spec.filename)


def run_list(args: argparse.Namespace) -> int:
    from misato.download import offline, offline_reason
    from misato.jobs.weight_needs import method_needs, metric_needs
    from misato.weights import all_specs, default_weights_dir, env_var

    metrics, methods = metric_needs(), method_needs()
    mode = f"offline ({offline_reason()})" if offline() else "missing files are downloaded on first use"
    print(f"weights folder: {default_weights_dir()}  (set MISATO_WEIGHTS_DIR to change); {mode}")
    for key, spec in all_specs().items():
        state, where, size = _status(key)
        if state == "missing" and args.sizes and spec.url and not spec.manual:
            state = f"missing, {_remote_size(spec)}"
        needed = [f"metrics {'; '.join(metrics[key])}"] if key in metrics else []
        needed += [f"methods {', '.join(methods[key])}"] if key in methods else []
        print(f"\n{key}: {spec.filename}  [{state}{', ' + _size(size) if size is not None else ''}]\n"
              f"  {spec.description}\n  from: {_origin(spec)}\n"
              f"  sha256: {spec.sha256 or '(not published)'}\n"
              f"  needed by: {'; '.join(needed) or '(no built-in metric or method)'}\n"
              f"  override: --weight {key}=PATH or ${env_var(key)}\n  found: {where}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from misato.weights import all_specs

    keys = args.keys or list(all_specs())
    bad = 0
    for key in keys:
        state, where, _ = _status(key)
        print(f"{key}: {state} {where}")
        bad += state in ("MISMATCH", "BAD HASH", "BAD PATH")
    return 1 if bad else 0


def _remote_size(spec) -> str:
    """The server's size for a missing file, or why it is unknown."""
    from misato.download import DownloadError, hf_remote_size, mirror_url, offline, offline_reason, remote_size

    if offline():
        return f"size unknown (offline: {offline_reason()})"
    try:
        if spec.hf_repo is not None:
            return _size(hf_remote_size(spec.hf_repo, spec.filename, spec.hf_revision))
        return _size(remote_size(mirror_url(spec.url, spec.filename)))
    except DownloadError as error:
        return f"size unknown: {error}"


def _fetch_keys(args: argparse.Namespace) -> dict[str, str]:
    """{key: why} from the positional keys ('all' for every key) or --for JOB."""
    from misato.jobs.weight_needs import job_needs
    from misato.weights import all_specs, get_spec

    if bool(args.keys) == bool(args.job):
        raise ValueError("misato weights fetch: name KEYS (or 'all') or --for JOB, not both or neither")
    if args.protocol and args.job != "score":
        raise ValueError("--protocol goes with --for score")
    if args.job:
        return job_needs(args.job, args.protocol)
    keys = list(all_specs()) if args.keys == ["all"] else args.keys
    for key in keys:
        get_spec(key)  # an unknown key ends the command before any download, with close matches
    return {key: "" for key in keys}


def run_fetch(args: argparse.Namespace) -> int:
    from misato.weights import WeightsNotFoundError, fix_text, get_spec, resolve

    needs = _fetch_keys(args)
    missing, failed = [], 0
    for key, why in needs.items():
        spec = get_spec(key)
        state, where, size = _status(key)
        label = f"{key} ({spec.filename}{'; ' + why if why else ''})"
        if state != "missing":
            print(f"{label}: {state}, {_size(size)}: {where}")
            failed += state in ("BAD HASH", "BAD PATH")
        elif not spec.url or spec.manual:
            print(f"{label}: not downloadable: {fix_text(spec)}")
            failed += bool(spec.manual) or not args.job  # --for: unpublished files are what the job trains
        else:
            missing.append(spec)
            print(f"{label}: to download, {_remote_size(spec)}, from {_origin(spec)}")
    if args.dry_run or not missing:
        return 1 if failed else 0
    for spec in missing:
        try:
            found = resolve(spec.key, allow_download=True)
        except WeightsNotFoundError as error:
            print(f"{spec.key}: not downloaded: {error.reason or fix_text(spec)}")
            failed += 1
            continue
        print(f"{spec.key}: {found.path} [{found.source}, {_size(found.path.stat().st_size)}]")
    return 1 if failed else 0


def run_convert(args: argparse.Namespace) -> int:
    from misato.checkpoints import convert_checkpoint
    from misato.io import sha256_file

    conversion = convert_checkpoint(args.src, args.dest, args.state_key)
    print(conversion.summary())
    print(f"sha256 of {conversion.dest}: {sha256_file(conversion.dest)}")
    return 0
