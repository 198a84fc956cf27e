"""Table 1 at scale (not a test): scoring memory and throughput against the image count, the cost of one
bootstrap resample per set metric, FLOPs per image of every Table 1 method and of scoring, and the projected
wall time of the whole Table 1 (both datasets, nine methods) on N GPUs.

    python benchmarks/bench_table1_scale.py memory --counts 1000,4000,16000 [--size 512] [--device cuda]
    python benchmarks/bench_table1_scale.py bootstrap --counts 500,2000,36500
    python benchmarks/bench_table1_scale.py project [--gpus 8] [--gpu-tflops 312] [--mfu 0.35]

memory: `misato score` (the comod metric set with default intervals, real-size networks with random weights:
  the cost does not depend on the weights) on N pairs at --size, each count in a fresh process; prints images/s
  and peak RSS (CPU) or peak allocated (CUDA). The inputs are hard links to 8 distinct photos, so 16k images take
  no disk; the pass cache is off so every count runs its pass.
bootstrap: seconds per resample of FID (rows: N x N SVD below D = 2048, covariance form from there), of U/P-IDS
  (conditional on the fitted SVM: a mean over resampled decisions; the SVM fit is timed once) and of KID (the
  protocol's 100 subsets of 1000), on synthetic paired 2048-d features.
project: FLOPs per image counted with torch's FlopCounterMode (real-size networks; diffusers models on the meta
  device, the others on the CPU with random weights) for each method of the `paper` preset
  (misato/jobs/reproduce/table1_paper.json: steps, guidance, RePaint's jumps) and for scoring (Inception on both
  sides once per dataset, on the result per method; LPIPS on both), times 2,000 MISATO + 36,500 Places2 images,
  divided by GPUs x peak x utilisation. A FLOP model, not a measurement on GPUs: data loading, PNG writing and
  the CPU-side set metrics (timed by `bootstrap`) come on top.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ("lpips", "fid", "u_ids", "p_ids", "kid", "psnr", "ssim", "grad_error")
IMAGES = {"MISATO": 2000, "Places2": 36500}


# ----------------------------------------------------------------------------------------------------- memory
def _linked_inputs(root: Path, n: int, size: int) -> tuple[Path, Path]:
    """A dataset of n samples and n predictions, hard links to 8 distinct generated files."""
    sys.path.insert(0, str(HERE))
    from bench_scoring import make_inputs

    data, pred, _ = make_inputs(root / "pool", 8, size)
    for sub in ("data/image", "data/mask", "pred"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        stem, source = f"{i:06d}.png", f"{i % 8:04d}.png"
        os.link(data / "image" / source, root / "data/image" / stem)
        os.link(data / "mask" / source, root / "data/mask" / stem)
        os.link(pred / source, root / "pred" / stem)
    return root / "data", root / "pred"


def memory_one(n: int, size: int, device: str, workers: int) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from bench_scoring import random_weights

    from evaluators.scoring import ScoreConfig, score
    from misato.data import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, pred = _linked_inputs(tmp, n, size)
        config = ScoreConfig(metrics=METRICS, weights=random_weights(tmp, False), device=device, batch_size=16,
                             num_workers=workers, use_cache=False, progress=False)
        start = time.perf_counter()
        result = score(load_dataset(data), pred, "m", tmp / "out", config)
        wall = time.perf_counter() - start
    cuda = result.record.device.startswith("cuda")
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"n": n, "size": size, "device": result.record.device, "wall_s": round(wall, 1),
            "images_per_s": round(n / wall, 2), "forward_s": round(result.record.timing["forward_s"], 1),
            "bootstrap_s": result.record.bootstrap["seconds"],
            "peak_gib": round(peak / 2**30, 3), "peak_kind": "cuda allocated" if cuda else "process RSS"}


def memory(args: argparse.Namespace) -> list[dict]:
    rows = []
    for n in args.counts:
        command = [sys.executable, __file__, "_memory_one", str(n), str(args.size), args.device, str(args.workers)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"memory at {n} images failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    return rows


# -------------------------------------------------------------------------------------------------- bootstrap
def _paired_features(n: int, dim: int = 2048, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    real = np.abs(rng.normal(size=(n, dim))).astype(np.float32)
    fake = (0.8 * real + 0.3 * np.abs(rng.normal(size=(n, dim)))).astype(np.float32)
    return real, fake


def bootstrap(args: argparse.Namespace) -> list[dict]:
    from evaluators.bootstrap import resample_indices
    from evaluators.protocols import get_protocol
    from evaluators.set_metrics import DiscriminativeScores, FrechetInceptionDistance, KernelInceptionDistance

    protocol = get_protocol("comod")
    rows = []
    for n in args.counts:
        real, fake = _paired_features(n)
        row: dict = {"n": n}
        for name, cls, count in (("fid", FrechetInceptionDistance, 2), ("ids", DiscriminativeScores, 200),
                                 ("kid", KernelInceptionDistance, 1)):
            metric = cls(protocol, None)
            metric.update(real, fake)
            start = time.perf_counter()
            metric.compute()
            row[f"{name}_compute_s"] = round(time.perf_counter() - start, 3)
            indices = resample_indices(n, count, 0)
            start = time.perf_counter()
            metric.intervals(real, fake, indices, 0.95)
            row[f"{name}_per_resample_s"] = round((time.perf_counter() - start) / count, 5)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------- project
def _flops(fn) -> float:
    """FLOPs of one call of `fn` (torch FlopCounterMode: matmuls and convolutions)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return float(counter.get_total_flops())


def _sd_parts(size: int) -> dict[str, float]:
    """FLOPs of one SD-1.5 UNet call (9-channel inpainting, 4-channel for RePaint; 77 and 256 context tokens), one
    VAE encode and one decode at `size`, on the meta device (shapes only)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from bench_asuka_vs_sd import SD15_INPAINT_UNET, SD15_VAE

    latent = size // 8
    out = {}
    with torch.device("meta"):
        for channels in (9, 4):
            unet = UNet2DConditionModel(**{**SD15_INPAINT_UNET, "in_channels": channels})
            for tokens in (77, 256):
                out[f"unet{channels}_ctx{tokens}"] = _flops(lambda: unet(
                    torch.zeros(1, channels, latent, latent), 500, torch.zeros(1, tokens, 768)))
        vae = AutoencoderKL(**SD15_VAE)
        out["vae_encode"] = _flops(lambda: vae.encode(torch.zeros(1, 3, size, size)))
        out["vae_decode"] = _flops(lambda: vae.decode(torch.zeros(1, 4, latent, latent)))
    return out


def _asuka_parts(size: int) -> dict[str, float]:
    """MAE prior (256), alignment (D = 768) and the mask-conditioned decoder at `size` (CPU, random weights)."""
    import torch

    from baselines.asuka.alignment import AsukaAlignment
    from baselines.asuka.decoder import build_decoder
    from baselines.asuka.mae import AsukaMAE

    mae = AsukaMAE().eval()
    images, masks = torch.rand(1, 3, 256, 256), torch.zeros(1, 1, 256, 256)
    masks[:, :, 64:192, 40:200] = 1
    out = {"mae_prior": _flops(lambda: mae.prior(images, masks))}
    with torch.inference_mode():
        prior = mae.prior(images, masks)
    out["alignment"] = _flops(lambda: AsukaAlignment(768).eval()(prior))
    decoder = build_decoder("asuka", "sd15").eval()
    mask = torch.zeros(1, 1, size, size)
    mask[:, :, size // 4: 3 * size // 4, size // 8: 5 * size // 8] = 1
    out["asuka_decoder"] = _flops(lambda: decoder(torch.zeros(1, 4, size // 8, size // 8),
                                                  torch.zeros(1, 3, size, size), mask))
    return out


def _gan_flops(size: int) -> dict[str, float]:
    """One inpainting call of each GAN row's real-size generator at `size` through its inpainter (CPU)."""
    import numpy as np

    from bench_gan_baselines import save_random_weights
    from baselines.harness import inpaint_arrays
    from baselines.registry import create_inpainter

    out = {}
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.float32)
    mask[size // 4: 3 * size // 4, size // 8: 5 * size // 8] = 1
    for method in ("mat", "comod", "mae-far", "lama"):
        with tempfile.TemporaryDirectory() as tmp:
            options, paths = save_random_weights(method, Path(tmp))
            inpainter = create_inpainter(method, device="cpu", weight_paths=paths, **options)
        out[method] = _flops(lambda: inpaint_arrays(inpainter, [image], [mask], [0]))  # noqa: B023
    return out


def _scoring_flops(size: int) -> dict[str, float]:
    """TF-Inception on one image at `size` (resized to 299 inside) and LPIPS-Alex on one pair at `size`."""
    import torch

    sys.path.insert(0, str(HERE))
    from bench_scoring import random_weights

    from evaluators.features import build_tf_inception
    from evaluators.lpips_metric import lpips_distance
    from misato.lpips_network import build_lpips
    from misato.weights import resolve

    with tempfile.TemporaryDirectory() as tmp:
        paths = random_weights(Path(tmp), False)
        net = build_tf_inception(paths["inception-tf"]).eval()
        lpips = build_lpips(resolve("alexnet-torchvision", paths["alexnet-torchvision"]),
                            resolve("lpips-alex-lin", paths["lpips-alex-lin"]))
    image = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    return {"inception": _flops(lambda: net(image)), "lpips_pair": _flops(lambda: lpips_distance(lpips, image, image))}


def _repaint_unet_calls(steps: int, jump_length: int, jump_n_sample: int) -> int:
    """UNet calls of diffusers' RePaint schedule: one per step down in time (the jumps back call none)."""
    from diffusers import RePaintScheduler

    scheduler = RePaintScheduler()
    scheduler.set_timesteps(steps, jump_length=jump_length, jump_n_sample=jump_n_sample)
    times = [int(t) for t in scheduler.timesteps]
    return sum(1 for previous, t in zip([10**9] + times, times) if t < previous)


def method_flops(preset: dict, parts: dict[str, float]) -> dict[str, float]:
    """FLOPs per image of each preset method from the counted parts (classifier-free guidance > 1 doubles the UNet
    batch; the inpainting UNet's pipeline encodes the masked image once and decodes once)."""
    out = {}
    for label, method in preset["methods"].items():
        spec, options = method["spec"], method["options"]
        if spec in ("mat", "comod", "mae-far", "lama"):
            out[label] = parts[spec]
            continue
        cfg = 2 if options.get("guidance", 1.0) > 1 else 1
        if spec == "sd-repaint":
            calls = _repaint_unet_calls(options["steps"], options["jump_length"], options["jump_n_sample"])
            out[label] = calls * cfg * parts["unet4_ctx77"] + parts["vae_encode"] + parts["vae_decode"]
        elif spec == "asuka-sd":
            out[label] = (options["steps"] * cfg * parts["unet9_ctx256"] + parts["vae_encode"] + parts["mae_prior"]
                          + parts["alignment"] + parts["asuka_decoder"])
        else:
            out[label] = options["steps"] * cfg * parts["unet9_ctx77"] + parts["vae_encode"] + parts["vae_decode"]
    return out


def project(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(HERE))
    preset = json.loads((HERE.parent / "misato/jobs/reproduce/table1_paper.json").read_text())
    parts = {**_sd_parts(args.size), **_asuka_parts(args.size), **_gan_flops(args.size), **_scoring_flops(args.size)}
    methods = method_flops(preset, parts)
    images = sum(IMAGES.values())
    scoring = len(methods) * images * (parts["inception"] + parts["lpips_pair"]) + images * parts["inception"]
    rate = args.gpus * args.gpu_tflops * 1e12 * args.mfu
    inpaint_hours = {label: flops * images / rate / 3600 for label, flops in methods.items()}
    return {
        "size": args.size, "images": IMAGES, "gpus": args.gpus, "gpu_tflops": args.gpu_tflops, "mfu": args.mfu,
        "parts_gflop": {k: round(v / 1e9, 1) for k, v in parts.items()},
        "method_gflop_per_image": {k: round(v / 1e9, 1) for k, v in methods.items()},
        "inpaint_hours": {k: round(v, 2) for k, v in inpaint_hours.items()},
        "scoring_hours": round(scoring / rate / 3600, 3),
        "total_hours": round(sum(inpaint_hours.values()) + scoring / rate / 3600, 2),
    }


def _counts(text: str) -> list[int]:
    """`--counts 500,2000`: positive integers."""
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if min(counts) < 2:
        raise argparse.ArgumentTypeError(f"every count must be at least 2, got {text!r}")
    return counts


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_memory_one":  # the child process of `memory`
        n, size, device, workers = sys.argv[2:6]
        print(json.dumps(memory_one(int(n), int(size), device, int(workers))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["memory", "bootstrap", "project"])
    parser.add_argument("--counts", type=_counts, default=None, help="comma-separated image counts")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2, help="data-loader workers (memory)")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--gpu-tflops", type=float, default=312.0, help="peak dense bf16 TFLOP/s (A100: 312)")
    parser.add_argument("--mfu", type=float, default=0.35, help="assumed model FLOP utilisation")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.counts is None:
        args.counts = [1000, 4000, 16000] if args.part == "memory" else [500, 2000, 36500]
    result = {"memory": memory, "bootstrap": bootstrap, "project": project}[args.part](args)
    output = {"part": args.part, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "result": result}
    print(json.dumps(output, indent=2))
    if args.out:
        args.out.write_text(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
