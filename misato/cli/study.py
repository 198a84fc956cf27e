"""`misato study create | serve | tally`: a blind preference study of inpainting runs (Table 2 (c))."""

from __future__ import annotations

import argparse

from misato.cli._common import parse_csv, parse_resamples
from misato.defaults import BOOTSTRAP_RESAMPLES

HELP = "run a blind user study of inpainting runs (the paper's Table 2 (c)): create, serve, tally, agreement"

EPILOG = """examples:
  misato study create --runs runs/ --methods asuka-sd,sd,lama --images 40 --seed 0 --out study/
  misato study create --runs runs/ --methods telea,ns --images 20 --attention-checks 3 --out study/
  misato study serve study/ --port 8000                 (participants open the printed URL)
  misato study tally study/ --out results/ && misato table results/ --out leaderboard/
  misato study agreement study/ scores/ --out report/   (every metric judged against the votes)

`serve` needs the web extra: pip install -e ".[study]"."""

CREATE_EPILOG = """RUNS is the --out of `misato run` / `misato reproduce` (RUNS/predictions/<dataset>/<method>/) or a
folder of `misato inpaint` outputs (RUNS/<method>/). The images are the composited outputs (prediction inside the
hole, ground truth outside), resized to --max-side and saved under random names; the masked input shows the hole
in grey. The same --seed picks the same images (stratified over the MISATO domains); ids and file names are random.
An attention check shows the untouched ground truth in place of one method's output: a participant who picks it in
fewer than --attention-pass of the check questions is excluded by `tally` (and counted).

examples:
  misato study create --runs runs/ --methods asuka-sd,sd,lama --images 40 --attention-checks 4 --out study/
  misato study create --runs runs/ --methods a,b --dataset misato-512 --dataset-root /data/MISATO --images 40 --out s/"""

SERVE_EPILOG = """Binds 127.0.0.1 unless --host says otherwise (--host 0.0.0.0: every interface, plain HTTP; for a public
study put it behind an HTTPS proxy with --behind-proxy). Prints the participants' URL, the recruiting link
(URL?PROLIFIC_PID=...; the id is stored with the answers) and the organiser token (a fresh one, or the one kept in
--token-file); the results (GET /results) and the export of every answer (GET /export, CSV) need
`Authorization: Bearer TOKEN`. Participants consent, then answer in an order drawn from the study's secret; every
answer is stored in STUDY/answers.sqlite as it is given (with the order shown and the response time); stopping and
restarting the server loses nothing. GET /healthz for monitoring.

examples:
  misato study serve study/                             (http://127.0.0.1:8000/)
  misato study serve study/ --host 0.0.0.0 --port 8080  (reachable from other machines)
  misato study serve study/ --behind-proxy --public-url https://study.example.org --token-file ~/study.token \\
      --completion-code C1A2B3 --completion-url 'https://app.prolific.com/submissions/complete?cc=C1A2B3'"""

TALLY_EPILOG = """Writes one result file per method (<method>__<dataset>__user-study.json): the top-1 selection ratio (%)
per question over the participants who answered every item and passed the attention checks, 95% bootstrap
intervals over participants, and the counts (participants, complete, partial, excluded, attention-check failure
rate). `misato table RESULTS` renders it as the measured Table 2 (c) beside the paper's.

examples:
  misato study tally study/ --out results/ && misato table results/ --out leaderboard/
  misato study tally study/ --out results/ --bootstrap 5000 --seed 1"""


AGREEMENT_EPILOG = """For every per-image metric of the result files and every question: how often the metric orders two
methods on an item the way the participants' majority does (pairwise agreement; 0.5 = chance) and Kendall's tau-b
per item, averaged (0 = chance), with 95% bootstrap intervals over items. The participants are those `tally`
counts. Writes agreement.json, agreement.md (the table) and agreement.html (table and chart).

examples:
  misato score ... --out results/      (per method, on the study's dataset)
  misato study agreement study/ results/ --out report/"""


def add_vote_arguments(parser: argparse.ArgumentParser, resampled: str) -> None:
    """`--bootstrap N`, `--seed` and `--min-seconds S` of `study tally` and `study agreement` (one definition);
    `resampled` names what the bootstrap resamples ("participants" or "items")."""
    parser.add_argument("--bootstrap", type=parse_resamples, default=BOOTSTRAP_RESAMPLES, metavar="N",
                        help=f"bootstrap resamples of {resampled} for the 95%% intervals (default %(default)s; "
                             "0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0; recorded)")
    parser.add_argument("--min-seconds", type=float, metavar="S",
                        help="exclude (and count) complete participants whose median time per item is under S")


def register(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="study_command", metavar="STEP", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    create = sub.add_parser("create", help="pick the images and write the study folder", epilog=CREATE_EPILOG,
                            description="pick the images and write the study folder", formatter_class=formatter)
    create.add_argument("--runs", required=True, help="the runs folder (see below)")
    create.add_argument("--methods", required=True, type=parse_csv, help="comma-separated method folder names")
    create.add_argument("--images", required=True, type=int, help="images in the study (the paper: 40)")
    create.add_argument("--out", required=True, help="the study folder to create (absent or empty)")
    create.add_argument("--seed", type=int, default=0, help="picks the images and the attention checks (default 0)")
    create.add_argument("--attention-checks", type=int, default=0, metavar="K",
                        help="extra items whose candidates include the untouched ground truth (default 0)")
    create.add_argument("--attention-pass", type=float, default=0.5, metavar="FRACTION",
                        help="share of attention-check questions a participant must answer with the ground truth "
                             "(default 0.5)")
    create.add_argument("--dataset", help="the dataset's name when the runs folder holds several")
    create.add_argument("--dataset-root", help="the dataset's folder when it moved since the runs (default: the "
                                               "folder their manifests record)")
    create.add_argument("--max-side", type=int, default=512, help="largest side of the web images (default 512)")
    create.set_defaults(handler=run_create)

    serve = sub.add_parser("serve", help="serve the study to participants", epilog=SERVE_EPILOG,
                           description="serve the study to participants", formatter_class=formatter)
    serve.add_argument("study", help="a folder written by `misato study create`")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    public = serve.add_argument_group("a public study")
    public.add_argument("--token-file", metavar="PATH",
                        help="keep the organiser token in this file (read when it exists, else created, mode 0600): "
                             "the same token across restarts")
    public.add_argument("--behind-proxy", action="store_true",
                        help="behind an HTTPS reverse proxy on this machine: trust its X-Forwarded-* headers (from "
                             "127.0.0.1/::1 only) and mark the cookie Secure")
    public.add_argument("--public-url", metavar="URL", help="the address participants open (the proxy's https URL), "
                                                            "for the printed links")
    public.add_argument("--id-param", default="PROLIFIC_PID", metavar="NAME",
                        help="the link's query parameter holding the recruiting platform's participant id, stored "
                             "with the answers (default PROLIFIC_PID)")
    public.add_argument("--completion-code", metavar="CODE", help="shown on the thank-you page")
    public.add_argument("--completion-url", metavar="URL",
                        help="the thank-you page's link back to the platform (e.g. its completion URL)")
    serve.set_defaults(handler=run_serve)

    tally = sub.add_parser("tally", help="tally the answers into result files", epilog=TALLY_EPILOG,
                           description="tally the answers into result files", formatter_class=formatter)
    tally.add_argument("study", help="the study folder")
    tally.add_argument("--out", required=True, help="results folder (created if needed)")
    add_vote_arguments(tally, "participants")
    tally.set_defaults(handler=run_tally)

    agree = sub.add_parser("agreement", help="judge every metric against the participants' votes",
                           epilog=AGREEMENT_EPILOG, formatter_class=formatter,
                           description="judge every metric of the result files against the participants' votes")
    agree.add_argument("study", help="the study folder (with answers)")
    agree.add_argument("results", nargs="+", help="result files or folders of `misato score` for the study's "
                                                  "methods on the study's dataset (with their per-image CSVs)")
    agree.add_argument("--out", required=True, help="report folder (agreement.json, .md, .html)")
    add_vote_arguments(agree, "items")
    agree.set_defaults(handler=run_agreement)


def run_create(args: argparse.Namespace) -> int:
    from pathlib import Path

    from misato.jobs.study.create import CreateConfig, create_study

    study = create_study(CreateConfig(
        runs=Path(args.runs), methods=tuple(args.methods), images=args.images, out=Path(args.out), seed=args.seed,
        attention_checks=args.attention_checks, attention_pass_fraction=args.attention_pass, dataset=args.dataset,
        dataset_root=Path(args.dataset_root) if args.dataset_root else None, max_side=args.max_side))
    print(f"study {study.study_id}: {len(study.items)} items ({study.attention_checks} attention checks), "
          f"{len(study.methods)} methods, dataset {study.source['dataset']['name']} -> {args.out}")
    print(f"next: misato study serve {args.out}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    try:
        from misato.jobs.study.server import (ServeConfig, StudyApp, bind_socket, new_token, server, summary,
                                         token_from_file)
    except ImportError as error:
        raise ValueError(f"serve needs the web extra ({error.name} is missing): pip install -e \".[study]\"") \
            from error
    from urllib.parse import urlsplit

    from misato.jobs.study.design import load_study

    load_study(args.study)  # a bad folder is reported before the port is taken and the database created
    if args.public_url is not None and urlsplit(args.public_url).scheme not in ("http", "https"):
        raise ValueError(f"--public-url {args.public_url!r}: an http(s) URL")
    token = token_from_file(args.token_file) if args.token_file else new_token()
    config = ServeConfig(token, args.id_param, args.completion_code, args.completion_url, args.behind_proxy)
    config.check()
    sock = bind_socket(args.host, args.port)
    app = StudyApp(args.study, config)
    print(summary(app, sock, token, args.public_url), flush=True)
    server(app).run(sockets=[sock])
    return 0


def run_agreement(args: argparse.Namespace) -> int:
    from pathlib import Path

    from misato.jobs.study.agreement import study_agreement, write_report

    found = study_agreement(args.study, [Path(r) for r in args.results], args.bootstrap, args.seed,
                            args.min_seconds)
    paths = write_report(found, args.out, {"resamples": args.bootstrap, "seed": args.seed,
                                           "min_seconds": args.min_seconds, "study": str(Path(args.study).resolve())})
    for a in found:
        pairwise = "n/a" if a.pairwise is None else f"{a.pairwise:.3f}"
        tau = "n/a" if a.tau_b is None else f"{a.tau_b:.3f}"
        print(f"{a.question:<26} {a.metric:<28} pairwise {pairwise}  tau-b {tau}  ({a.items} items, {a.pairs} pairs)")
    print(f"wrote {paths['md']} and {paths['html']}")
    return 0


def run_tally(args: argparse.Namespace) -> int:
    from misato.jobs.study.tally import write_results

    result, written = write_results(args.study, args.out, args.bootstrap, args.seed, args.min_seconds)
    counts = result.counts
    rate = counts["attention_failure_rate"]
    print(f"{counts['tallied']} participant(s) tallied ({counts['answers']} answers); {counts['started']} started, "
          f"{counts['answered']} answered, {counts['complete']} complete, {counts['partial']} partial, "
          f"{counts['excluded_attention']} excluded by the attention checks"
          + (f" (failure rate {100 * rate:.1f}%)" if rate is not None else "")
          + (f", {counts['excluded_fast']} as too fast (median under {args.min_seconds:g} s)"
             if args.min_seconds is not None else ""))
    for metric, shares in result.position_bias.items():
        print(f"  position bias, {metric}: " + ", ".join(f"{chr(65 + i)} {v:.1f}%" for i, v in enumerate(shares))
              + f" (position-blind: {100 / len(shares):.1f}% each)")
    for path in written:
        print(f"  {path}")
    return 0
