"""Scoring throughput: images/s, overhead beyond network forwards, and the ground-truth cache speed-up.

Not a test. Real architectures with random weights (no downloads): TF-Inception (torch-fidelity port),
AlexNet + the real LPIPS heads, and optionally CLIP ViT-L/14. Photos from scikit-image, 512x512, MISATO
masks. Prints:
  images/s of the first method (no cache),
  overhead = (wall - forward) / forward for that run (decode, compositing, pixel metrics, statistics, SVM, I/O),
  speed-up of a second method on the same dataset (ground-truth features from the cache).

With --official-eval DIR (an asuka-misato checkout's asuka-flux/eval folder, fetched outside this repository;
nothing of it is shipped here), only fresh processes are timed, on the same inputs and weights: the official
scripts cal_psnr_lpips_ssim.py, cal_ids.py and cal_grad.py, each in its own process as commands.sh runs them,
against `misato score --protocol asuka` with the same metrics (cold: empty feature cache; warm: a second method,
ground-truth features cached), in --rounds alternating rounds (default 5) at every --n. Prints each round, the
medians, the ratios of the median walls, misato's start-up (everything before the first image), seconds per image
and set-metric/interval tail (from the result's timing), and both sets of values. The official scripts find the
random weights where they look (TORCH_HOME's hub cache, ckpt/alex.pth); a sitecustomize makes `.cuda()` a no-op
where there is no GPU (cal_ids.py calls it unconditionally); below 512 pairs cal_ids.py runs with --resolution 2048
(no PCA: PCA to 512 needs 512 rows) and U/P-IDS are not compared. Run it on an idle machine: the ratio moves with
the load (issue 26: 57-69 s official here against 133-151 s on a busier day).

    python benchmarks/bench_scoring.py --n 64 --clip
    python benchmarks/bench_scoring.py --n 16 --new-metrics

--new-metrics times only cmmd, fd_dinov2 and dreamsim (issue 25; random weights of the real architectures, written
by `new_metric_weights`): the seconds per image each adds to a run (its wall with PSNR minus PSNR's alone, networks
built by a warm-up, no feature cache: truths and results both go through the network). Measured at 512 (8 images,
batch 4 or 8): on this project's 2-core machine under a load average of 6-7 from other jobs, cmmd 31.1 s, fd_dinov2
28.0 s, dreamsim (both crops) 20.3 s; on an otherwise idle 16-core CPU 0.85, 0.39 and 0.63 s; on an H200 GPU (32
images) 0.03, 0.02 and 0.04 s.
    python benchmarks/bench_scoring.py --n 64,512 --protocol asuka --num-workers 0 --official-eval /work/official/asuka-flux/eval
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from misato.cli._common import int_at_least


# MISATO masks below it may miss the 20-80% hole ratio: index 7 fails at 64 px, 115 at 128 px; 200 passed at 160.
MIN_SIZE = 256


def make_inputs(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """n ground-truth photos, MISATO masks and two noisy predictions (pred_a, pred_b) at size x size, seeded (the
    warm-ups use another seed: at --n 2 the same inputs were served from the caches, a forward of 0 s)."""
    from skimage import data

    from misato.masks import misato_mask

    if size < MIN_SIZE:
        raise SystemExit(f"--size {size}: the benchmarks' MISATO masks need at least {MIN_SIZE} px")
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(seed)
    for sub in ("data/image", "data/mask", "pred_a", "pred_b"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo = photos[i % len(photos)]
        side = min(photo.shape[:2])
        y, x = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
        image = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.BICUBIC)
        if i // len(photos) % 2:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        gt = np.asarray(image)
        stem = f"{i:04d}"
        image.save(root / "data/image" / f"{stem}.png")
        Image.fromarray(misato_mask(0, "landscape", i, size=size).mask * 255).save(root / "data/mask" / f"{stem}.png")
        for name, noise in (("pred_a", 20.0), ("pred_b", 35.0)):
            pred = np.clip(gt + rng.normal(0, noise, gt.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pred).save(root / name / f"{stem}.png")
    return root / "data", root / "pred_a", root / "pred_b"


def calibrated_inception() -> torch.nn.Module:
    """torchvision's Inception with random weights and batch-norm statistics measured on random inputs (not the
    constructor's mean 0 / variance 1, under which activations grow without bound through the 94 layers and FID
    reaches 1e21), so that features and FID have realistic magnitudes for the value comparison."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics = the cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(8, 3, 299, 299) * 4 - 2)
    return net.eval()


def random_weights(folder: Path, clip: bool, protocol: str = "comod") -> dict[str, str]:
    """Random weight files for the networks `protocol` scores with (its Inception only: the other one costs
    time and, in `bench_table1_scale memory`, the peak memory being measured), LPIPS, and CLIP with `clip`."""
    import lpips
    import torchvision

    from evaluators.features import EXTRACTORS
    from evaluators.protocols import get_protocol

    torch.manual_seed(0)
    paths = {"alexnet-torchvision": folder / "alexnet.pth"}
    torch.save(torchvision.models.alexnet().state_dict(), paths["alexnet-torchvision"])
    paths["lpips-alex-lin"] = Path(lpips.__file__).parent / "weights/v0.1/alex.pth"
    if EXTRACTORS[get_protocol(protocol).feature_net].weight_key == "inception-torchvision":
        paths["inception-torchvision"] = folder / "inception_torchvision.pth"
        torch.save(calibrated_inception().state_dict(), paths["inception-torchvision"])
    else:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        with mock.patch.object(torch, "load", lambda *a, **k: {}), mock.patch.object(
            FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None
        ):
            tf_net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")
        paths["inception-tf"] = folder / "inception.pth"
        torch.save(tf_net.state_dict(), paths["inception-tf"])
    if clip:
        import open_clip

        paths["clip-vit-l-14-openai"] = folder / "clip.pth"
        torch.save(open_clip.create_model("ViT-L-14", pretrained=None).state_dict(), paths["clip-vit-l-14-openai"])
    return {k: str(v) for k, v in paths.items()}


NEW_METRICS = {"cmmd": ("cmmd",), "fd_dinov2": ("fd_dinov2",), "dreamsim": ("dreamsim", "dreamsim_image")}


def new_metric_weights(folder: Path) -> dict[str, str]:
    """Random weight files of the real architectures behind cmmd, fd_dinov2 and dreamsim (issue 25), in their
    published layouts: CLIP ViT-L/14-336 (open_clip state dict), DINOv2 ViT-L/14 (hub config.json +
    model.safetensors), the DreamSim ensemble release zip (ViT-B/16 backbones + a LoRA adapter of the released
    shape: r 16 on every qkv) and the DINO ViT-B/16 backbone."""
    import json

    import open_clip
    from safetensors.torch import save_file
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    paths = {"clip-vit-l-14-336-openai": folder / "clip336.pth"}
    torch.save(open_clip.create_model("ViT-L-14-336", pretrained=None, force_quick_gelu=True).state_dict(),
               paths["clip-vit-l-14-336-openai"])
    dinov2 = folder / "dinov2"
    dinov2.mkdir()
    config = Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4,
                          patch_size=14, image_size=518, layerscale_value=1.0)
    (dinov2 / "config.json").write_text(json.dumps(config.to_dict()))
    save_file({k: v.contiguous() for k, v in Dinov2Model(config).state_dict().items()}, dinov2 / "model.safetensors")
    paths["dinov2-vit-l-14-config"], paths["dinov2-vit-l-14"] = dinov2 / "config.json", dinov2 / "model.safetensors"
    paths.update(_dreamsim_release(folder))
    return {k: str(v) for k, v in paths.items()}


def _dreamsim_release(folder: Path) -> dict[str, Path]:
    """The DreamSim ensemble archive and DINO backbone with random ViT-B/16 weights (`new_metric_weights`)."""
    import zipfile

    from dreamsim import model as package
    from dreamsim.feature_extraction.vision_transformer import vit_base
    from peft import LoraConfig, get_peft_model

    from evaluators.dreamsim_metric import dino_backbone

    release = folder / "dreamsim"
    release.mkdir()
    dino = folder / "dino_vitbase16_pretrain.pth"
    torch.save(vit_base(patch_size=16, num_classes=0).state_dict(), dino)
    # the DINO projection head the package reads but never uses for the CLS feature: any tensors
    head = [f"module.head.mlp.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")] + ["module.head.last_layer.weight"]
    torch.save({"student": {key: torch.zeros(1) for key in head}}, release / "dino_vitb16_pretrain.pth")
    for name in ("clip_vitb16_pretrain.pth.tar", "open_clip_vitb16_pretrain.pth.tar"):
        vit = vit_base(patch_size=16)
        vit.pos_drop = torch.nn.LayerNorm(768)
        torch.save({"state_dict": {**vit.state_dict(), "proj": torch.randn(768, 512) / 28}}, release / name)
    with mock.patch.object(torch.hub, "load", lambda *a, **k: dino_backbone(dino)), \
            mock.patch.object(torch.hub, "set_dir", lambda d: None):
        base = package.PerceptualModel(**package.dreamsim_args["model_config"]["ensemble"], device="cpu",
                                       load_dir=str(release), normalize_embeds=True)
    get_peft_model(base, LoraConfig(r=16, lora_alpha=0.5, lora_dropout=0.3, bias="none",
                                    target_modules=["qkv"])).save_pretrained(release / "ensemble_lora")
    archive = folder / "dreamsim_ensemble_checkpoint.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(release.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(release).as_posix())
    return {"dreamsim-ensemble": archive, "dino-vitb16": dino}


def time_new_metrics(tmp: Path, n: int, args: argparse.Namespace) -> None:
    """Seconds per image each issue-25 metric adds to a scoring run (random weights, no feature cache): the wall
    of scoring it with PSNR minus the wall of PSNR alone, over --n images, networks built beforehand (warm-up)."""
    from evaluators.scoring import ScoreConfig, score
    from misato.data import load_dataset

    data_dir, pred, _ = make_inputs(tmp, n, args.size)
    warm_data, warm_pred, _ = make_inputs(tmp / "warm", 2, args.size, seed=1)
    weights = new_metric_weights(tmp)
    walls = {}
    for name, metrics in {"baseline (psnr)": (), **NEW_METRICS}.items():
        config = ScoreConfig(metrics=("psnr", *metrics), weights=weights, device=args.device,
                             batch_size=args.batch_size, num_workers=args.num_workers, use_cache=False, strict=True,
                             protocol=args.protocol, progress=False)
        score(load_dataset(warm_data), warm_pred, "warmup", tmp / "res", config)
        start = time.perf_counter()
        result = score(load_dataset(data_dir), pred, name.split()[0], tmp / "res", config)
        walls[name] = time.perf_counter() - start
        values = ", ".join(f"{m} {result.record.overall[m]:.4g}" for m in metrics)
        print(f"{name:16s} wall {walls[name]:.1f} s, forward {result.record.timing['forward_s']:.1f} s  {values}")
    print(f"device {result.record.device}, {n} images at {args.size}; added seconds per image:")
    for name in NEW_METRICS:
        print(f"  {name:10s} {(walls[name] - walls['baseline (psnr)']) / n:.2f} s")


OFFICIAL_METRICS = ("lpips", "fid", "u_ids", "p_ids", "psnr", "ssim", "grad_error")  # what the three scripts report
OFFICIAL_SCRIPTS = ("cal_psnr_lpips_ssim.py", "cal_ids.py", "cal_grad.py")


def official_workspace(root: Path, weights: dict[str, str]) -> dict[str, str]:
    """The environment the official scripts need, holding our random weights: the torchvision files in a
    TORCH_HOME hub cache under the names torchvision looks for, the LPIPS heads in root/ckpt/alex.pth (their
    working directory is root), and a sitecustomize that makes `.cuda()` a no-op without a GPU."""
    hub = root / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(weights["alexnet-torchvision"], hub / "alexnet-owt-7be5be79.pth")
    shutil.copy(weights["inception-torchvision"], hub / "inception_v3_google-0cc3c7bd.pth")
    (root / "ckpt").mkdir()
    shutil.copy(weights["lpips-alex-lin"], root / "ckpt" / "alex.pth")
    shim = root / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sklearn.svm  # cal_ids.py calls sklearn.svm after a bare `import sklearn`\n"
        "import torch\n"
        "if not torch.cuda.is_available():\n"
        "    torch.Tensor.cuda = lambda self, *args, **kwargs: self\n"
        "    torch.nn.Module.cuda = lambda self, *args, **kwargs: self\n")
    return dict(os.environ, TORCH_HOME=str(root / "torch_home"), PYTHONPATH=str(shim))


def run_official(eval_dir: Path, root: Path, data_dir: Path, pred: Path, n: int,
                 env: dict[str, str]) -> tuple[dict[str, float], dict]:
    """Wall seconds of each of the three official scripts, run in turn (working directory `root`, the
    `official_workspace`), by script name, and the values they print."""
    gt_dir = root / f"pairs{n}" / "512"  # the scripts read the resolution from the folder name
    if not gt_dir.exists():
        gt_dir.parent.mkdir(exist_ok=True)
        gt_dir.symlink_to(data_dir.resolve())
    ids_resolution = "512" if n >= 512 else "2048"
    outputs, walls = {}, {}
    extras = {"cal_psnr_lpips_ssim.py": [], "cal_ids.py": ["--resolution", ids_resolution],
              "cal_grad.py": ["--resolution", "512"]}
    for script in OFFICIAL_SCRIPTS:
        extra = extras[script]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(eval_dir / script), "--generated_dir", str(pred), "--gt_dir",
                               str(gt_dir), *extra], cwd=root, env=env, capture_output=True, text=True)
        walls[script] = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{eval_dir / script} failed:\n{done.stderr[-2000:]}")
        outputs[script] = done.stdout
    psnr, ssim, lpips_value = (float(v) for v in outputs["cal_psnr_lpips_ssim.py"].strip().splitlines()[-1].split())
    fid, u_ids, p_ids = (float(v) for v in re.search(r"full: (\S+) (\S+) (\S+)", outputs["cal_ids.py"]).groups())
    grad = float(outputs["cal_grad.py"].strip().splitlines()[-1].split()[-1])
    values = {"psnr": psnr, "ssim": ssim, "lpips": lpips_value, "fid": fid, "grad_error": grad}
    if n >= 512:
        values.update(u_ids=u_ids, p_ids=p_ids)
    return walls, values


def run_cli(data_dir: Path, pred: Path, method: str, out: Path, cache: Path, weights: dict[str, str],
            args: argparse.Namespace) -> dict[str, float]:
    """One `misato score --protocol asuka` process: its wall seconds (`wall`; start-up, imports and network builds
    included) split by the result's timing into `startup` (everything before the first image: interpreter,
    imports, input checks, weight hashes, network builds), `pass` (decoding, preprocessing, forwards: seconds per
    image x n) and `tail` (set metrics, bootstrap intervals, result files)."""
    from evaluators.record import ResultRecord, result_stem

    command = [sys.executable, "-m", "misato", "score", "--dataset", str(data_dir), "--predictions", str(pred),
               "--label", method, "--out", str(out), "--protocol", "asuka", "--metrics", ",".join(OFFICIAL_METRICS),
               "--cache-dir", str(cache), "--device", args.device, "--score-batch-size", str(args.batch_size),
               "--num-workers", str(args.num_workers), "--no-progress"]
    for key, path in weights.items():  # every file `random_weights` wrote for the protocol
        command += ["--weight", f"{key}={path}"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"misato score failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    timing = ResultRecord.read(out / f"{result_stem(method, data_dir.name, 'asuka')}.json").timing
    startup = wall - timing["total_s"] + timing["build_s"]
    return {"wall": wall, "startup": startup, "pass": timing["pass_s"], "tail": wall - startup - timing["pass_s"]}


def _median(values: list[float]) -> float:
    return float(np.median(values))


def compare_official(eval_dir: Path, root: Path, pairs: int, weights: dict[str, str], workspace: Path,
                     env: dict[str, str], args: argparse.Namespace) -> None:
    """The official scripts against `misato score --protocol asuka` as fresh processes on the same `pairs` files,
    `args.rounds` rounds whose order alternates (official first in even rounds, misato first in odd ones, so a
    load change on a shared machine does not fall on one side only). Each round: the official trio, then misato
    cold (an empty feature cache) and warm (a second method, ground-truth features cached). Prints the medians
    over the rounds, the ratios of the median walls, and misato's start-up and seconds per image (`run_cli`)."""
    from evaluators.record import ResultRecord

    data_dir, pred_a, pred_b = make_inputs(root, pairs, args.size)
    official_walls: list[dict[str, float]] = []
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    official: dict[str, float] = {}
    for index in range(args.rounds):
        out, cache = root / f"out{index}", root / f"cache{index}"

        def ours() -> None:
            runs["cold"].append(run_cli(data_dir, pred_a, "a", out, cache, weights, args))
            runs["warm"].append(run_cli(data_dir, pred_b, "b", out, cache, weights, args))

        def theirs() -> None:
            walls, values = run_official(eval_dir, workspace, data_dir, pred_a, pairs, env)
            official_walls.append(walls)
            official.update(values)

        for step in ((theirs, ours) if index % 2 == 0 else (ours, theirs)):
            step()
        print(f"  round {index + 1}/{args.rounds}: official {sum(official_walls[-1].values()):.1f} s, misato cold "
              f"{runs['cold'][-1]['wall']:.1f} s, warm {runs['warm'][-1]['wall']:.1f} s "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    theirs_s = _median([sum(walls.values()) for walls in official_walls])
    scripts = ", ".join(f"{name} {_median([walls[name] for walls in official_walls]):.1f} s" for name in OFFICIAL_SCRIPTS)
    print(f"{pairs} pairs at {args.size}, medians of {args.rounds} alternating rounds:")
    print(f"  official trio (3 processes) {theirs_s:.1f} s ({theirs_s / pairs:.3f} s per pair; {scripts})")
    for state, measured in runs.items():
        median = {part: _median([run[part] for run in measured]) for part in measured[0]}
        print(f"  misato score {state}: {median['wall']:.1f} s, {theirs_s / median['wall']:.2f}x faster; start-up "
              f"{median['startup']:.2f} s, {median['pass'] / pairs:.3f} s per image, set metrics and intervals "
              f"{median['tail']:.2f} s")
    ours_values = ResultRecord.read(next((root / "out0").glob("a*.json"))).overall
    for metric, value in official.items():
        print(f"  {metric:10s} official {value:.6g}  misato {ours_values[metric]:.6g}")


def official_comparisons(eval_dir: Path, root: Path, args: argparse.Namespace) -> None:
    """`compare_official` at every --n, with one set of random weights and one official workspace."""
    weights = random_weights(root, False, "asuka")
    # misato's caches (the weight-file hashes: kept across rounds, as a user's are) in the temporary folder
    os.environ["MISATO_CACHE_DIR"] = str(root / "misato_cache")
    workspace = root / "workspace"
    env = official_workspace(workspace, weights)
    print(f"load average at the start {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)", flush=True)
    for pairs in args.n:
        compare_official(eval_dir, root / f"pairs{pairs}", pairs, weights, workspace, env, args)


def _counts(low: int):
    """An argparse type: comma-separated integers, each no smaller than `low`."""
    parse = int_at_least(low)
    return lambda text: [parse(part) for part in text.split(",") if part.strip()]


def in_process(tmp: Path, n: int, args: argparse.Namespace) -> None:
    """Two methods scored in this process after a warm-up: images/s, overhead beyond forwards, cache speed-up."""
    from evaluators.scoring import ScoreConfig, score
    from misato.data import load_dataset

    data_dir, pred_a, pred_b = make_inputs(tmp, n, args.size)
    weights = random_weights(tmp, args.clip, args.protocol)
    metrics = ("lpips", "fid", "u_ids", "p_ids", "kid", "psnr", "ssim", "grad_error") + (("clip_score",) if args.clip else ())
    dataset = load_dataset(data_dir)
    config = ScoreConfig(metrics=metrics, weights=weights, device=args.device, batch_size=args.batch_size,
                         num_workers=args.num_workers, cache_dir=str(tmp / "cache"), protocol=args.protocol)
    # Warm-up on two other images (own cache key): builds the networks once, as `misato run` keeps them.
    warm_data, warm_pred, _ = make_inputs(tmp / "warm", 2, args.size, seed=1)
    score(load_dataset(warm_data), warm_pred, "warmup", tmp / "res", config)
    start = time.perf_counter()
    first = score(dataset, pred_a, "a", tmp / "res", config)
    first_wall = time.perf_counter() - start
    start = time.perf_counter()
    second = score(dataset, pred_b, "b", tmp / "res", config)
    second_wall = time.perf_counter() - start
    forward = first.record.timing["forward_s"]
    print(f"device {first.record.device}, {n} images at {args.size}, protocol {args.protocol}, "
          f"metrics {','.join(metrics)}")
    if first.record.unavailable:
        print(f"unavailable: {first.record.unavailable}")
    print(f"first method : {first_wall:.1f} s wall, {n / first_wall:.2f} images/s, forward {forward:.1f} s, "
          f"overhead (wall - forward) / forward = {(first_wall - forward) / forward:.1%}")
    print(f"second method: {second_wall:.1f} s wall, forward {second.record.timing['forward_s']:.1f} s, "
          f"speed-up from the cache = {first_wall / second_wall:.2f}x")


def main() -> None:
    from evaluators.protocols import PROTOCOLS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=_counts(2), default=[64],
                        help="image pairs, comma-separated for several runs (each at least 2: covariances; "
                             "default 64; --official-eval 64,512 for the issue-26 figures)")
    parser.add_argument("--size", type=int_at_least(MIN_SIZE), default=512, help="image side")
    parser.add_argument("--batch-size", type=int_at_least(1), default=8)
    parser.add_argument("--num-workers", type=int_at_least(0), default=2)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (checked before any work)")
    parser.add_argument("--protocol", default="comod", choices=sorted(PROTOCOLS),
                        help="scoring protocol (asuka: the official scripts' own)")
    parser.add_argument("--clip", action="store_true", help="include the CLIP ViT-L/14 score")
    parser.add_argument("--official-eval", type=Path,
                        help="asuka-misato's asuka-flux/eval folder: time its scripts against misato score processes")
    parser.add_argument("--rounds", type=int_at_least(1), default=None,
                        help="--official-eval: alternating rounds per --n; medians reported (default 5)")
    parser.add_argument("--new-metrics", action="store_true",
                        help="only time cmmd, fd_dinov2 and dreamsim (issue 25): added seconds per image")
    args = parser.parse_args()
    if args.rounds is not None and not args.official_eval:
        parser.error("--rounds goes with --official-eval")
    args.rounds = args.rounds or 5
    if args.new_metrics and (args.official_eval or args.clip):
        parser.error("--new-metrics times cmmd, fd_dinov2 and dreamsim only: without --official-eval and --clip")
    from misato.devices import check_device

    try:
        check_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if args.official_eval:
        missing = [name for name in OFFICIAL_SCRIPTS if not (args.official_eval / name).is_file()]
        if missing:
            parser.error(f"--official-eval {args.official_eval}: no {', '.join(missing)} there (expected an "
                         f"asuka-misato checkout's asuka-flux/eval folder)")
        if args.protocol != "asuka":
            parser.error("--official-eval compares with the official scripts' own conventions: add --protocol asuka")
        if args.size != 512:
            parser.error("--official-eval needs --size 512 (the official scripts name their data folder 512 or 1024 "
                         "and read 1024 masks under other names)")
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            if args.new_metrics:
                time_new_metrics(Path(tmp), n, args)
            elif args.official_eval:
                official_comparisons(args.official_eval, Path(tmp), args)
                break  # every --n in one workspace
            else:
                in_process(Path(tmp), n, args)


if __name__ == "__main__":
    main()
