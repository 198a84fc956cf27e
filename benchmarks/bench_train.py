"""Benchmark (not a test): cost of one training step of each `misato train` stage with the real-size
architectures and random weights (weights do not change the cost), batch 1, and from it the GPU-hours of the
paper's schedule.

Stages and sizes: `mae` = ASUKA's MAE (ViT-B/16 encoder, 512-d 8-block decoder) at 256 x 256, trained whole;
`alignment` = frozen MAE prior + frozen SD 1.5 inpainting UNet (860M) and VAE at 512 x 512, trained: the 4-block
alignment module; `prompt` = the same SD objective, trained: 77 prompt embeddings; `decoder` = the conditioned
decoder (SD VAE sizes) at 512 with L1 + LPIPS-VGG, fed by the frozen VAE encoder; `latents` = images/s of the offline
Eq. (1) cache (VAE encode + one UNet call per image) at 512. Each stage runs the stage's own `build()` and loss (the
SD pipeline is built from the published configs instead of being downloaded).

Reported per stage: step_s (fastest of --repeats full steps: data batch -> loss -> backward -> AdamW), steps_per_s,
peak_rss_gib (this process; each stage runs in its own process) or peak CUDA memory; parts_s: seconds per part of
the step (frozen: MAE prior, VAE encodes, UNet forward+backward through the condition; trained: the module's
forward+backward and the optimizer step); gflop_per_image (torch FlopCounterMode over one step, forward+backward);
gpu_hours: gflop_per_image x batch x steps / (--gpu-tflops x --mfu) for the schedule of the stage's paper preset.

Usage:
    python benchmarks/bench_train.py [--stages mae,alignment,prompt,decoder,latents] [--repeats 2] [--device cpu]
        [--gpu-tflops 312] [--mfu 0.35] [--out result.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def real_sd_pipeline(device: str) -> Any:
    """StableDiffusionInpaintPipeline of random real-size parts (published SD 1.5 inpainting configs)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionInpaintPipeline, UNet2DConditionModel

    from baselines.sd.tiny import tiny_scheduler
    from bench_asuka_vs_sd import SD15_INPAINT_UNET, SD15_VAE

    torch.manual_seed(0)
    pipe = StableDiffusionInpaintPipeline(
        vae=AutoencoderKL(**SD15_VAE), text_encoder=None, tokenizer=None, unet=UNet2DConditionModel(**SD15_INPAINT_UNET),
        scheduler=tiny_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe.to(device)


def timed(fn: Any, sync: Any) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def bench_stage(stage: str, repeats: int, device: str, data: Path) -> dict[str, Any]:
    import torch
    from accelerate import Accelerator
    from torch.utils.flop_counter import FlopCounterMode

    from baselines.asuka.training import stage_builder
    from baselines.asuka.training.config import build_config
    from baselines.asuka.training.data import StepBatchSampler, TrainingImages, collate, list_training_images
    from baselines.asuka.training.loop import TrainInputs, mask_source

    if stage == "latents":
        return bench_latents(repeats, device, data)
    paper = build_config(stage, ["paper"])
    sets = {"mae": ["init=random"], "alignment": ["init=random"], "prompt": ["init=random"],
            # the decoder at 512 (the size; the paper trains it at 256), fed by the VAE (no latent cache)
            "decoder": ["resolution=512", "latent_aug_share=0"]}[stage]
    config = build_config(stage, ["paper"], sets=[*sets, "micro_batch_size=1", "batch_size=1"])
    accelerator = Accelerator(cpu=device == "cpu")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    module = importlib.import_module(f"baselines.asuka.training.{stage}")
    patches = contextlib.ExitStack()
    if stage != "mae":  # every stage loads its frozen SD through `diffusion.load_frozen_sd`
        patches.enter_context(mock.patch("baselines.asuka.training.diffusion.load_frozen_sd",
                                         lambda *a, **k: freeze(real_sd_pipeline(device))))
    if stage == "decoder":  # LPIPS-VGG with a random backbone (the real size) and the wheel's linear heads
        import lpips

        patches.enter_context(mock.patch.object(module, "build_lpips_loss", lambda *a: (
            lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval().requires_grad_(False), {})))
    with patches:
        parts = stage_builder(stage)(config, TrainInputs(str(data), ""), accelerator)
    root, files = list_training_images(data)
    dataset = TrainingImages(root, files, config.resolution, mask_source(config, TrainInputs(str(data), "")),
                             tuple(config.crop_scale), config.hflip, parts.item_extra)
    batch = collate([dataset[key] for key in StepBatchSampler(files, 1, 1, 0, 0, 0, 1).keys(0)])
    model = parts.trainable.to(accelerator.device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)

    def step() -> None:
        loss, _ = parts.loss(model, batch, 5000)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    times = [timed(step, sync) for _ in range(repeats)]
    with FlopCounterMode(display=False) as counter:
        loss, _ = parts.loss(model, batch, 5000)
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    gflop = counter.get_total_flops() / 1e9
    result: dict[str, Any] = {
        "stage": stage, "resolution": config.resolution, "batch": 1, "step_s": min(times), "all_step_s": times,
        "steps_per_s": 1.0 / min(times), "gflop_per_image": gflop,
        "trainable_params_M": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "paper_schedule": {"steps": paper.steps, "batch_size": paper.batch_size},
        "parts_s": parts_breakdown(stage, parts, model, batch, sync, accelerator.device),
    }
    if device.startswith("cuda"):
        result["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def bench_latents(repeats: int, device: str, data: Path) -> dict[str, Any]:
    """Throughput of `misato train decoder-latents` at 512, batch 1: canonical crop, VAE encode, one UNet call
    (the one-step estimate of Eq. (1))."""
    import torch

    from baselines.asuka.training import latents as module
    from baselines.asuka.training.config import build_config
    from baselines.sd.tiny import tiny_text_encoder

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = freeze(real_sd_pipeline(device))
        pipe.text_encoder, pipe.tokenizer = tiny_text_encoder(hidden_size=768)  # the "" embedding's shape only
        return pipe

    config = build_config("decoder", ["paper"], sets=["resolution=512", "micro_batch_size=1", "latent_aug_share=1"])
    start = time.perf_counter()
    pipeline()
    setup = time.perf_counter() - start  # random init of the real-size parts; a real run loads them once
    times = []
    with mock.patch("baselines.asuka.training.diffusion.load_frozen_sd", pipeline), tempfile.TemporaryDirectory() as out:
        for repeat in range(repeats + 1):
            folder = Path(out) / str(repeat)
            start = time.perf_counter()
            index = module.build_latent_cache(config, str(data), str(folder), progress=False, device=device)
            times.append(time.perf_counter() - start)
    count = len(index["entries"])
    return {"stage": "latents", "resolution": 512, "images": count, "all_s": times, "setup_s": setup,
            "images_per_s": count / max(min(times[1:]) - setup, 1e-9),
            "note": "per call: setup_s of random initialisation, subtracted in images_per_s",
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "torch": torch.__version__}


def freeze(pipe: Any) -> Any:
    for module in (pipe.unet, pipe.vae):
        module.requires_grad_(False).eval()
    return pipe


def parts_breakdown(stage: str, parts: Any, model: Any, batch: dict, sync: Any, device: Any) -> dict[str, float]:
    """Seconds of each part of one step, each timed alone with the stage's own modules."""
    import torch

    from diffusers import DDPMScheduler

    from baselines.asuka.training.data import generators
    from baselines.asuka.training.diffusion import draw_diffusion, epsilon_loss, latent_shape
    from baselines.sd.tiny import tiny_scheduler

    images, masks = batch["image"].to(device), batch["mask"].to(device)
    out: dict[str, float] = {}
    if stage == "decoder":
        vae = parts.frozen["vae"]
        with torch.no_grad():
            out["frozen_vae_encode"] = timed(lambda: vae.encode(images * 2 - 1), sync)
            latents = vae.encode(images * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        out["trained_forward_backward"] = timed(
            lambda: model(latents, images * 2 - 1, masks).float().abs().mean().backward(), sync)
        return out
    if stage == "mae":
        def forward_backward() -> None:
            model(images, masks, batch["token_masked"].to(device)).float().pow(2).mean().backward()
        out["trained_forward_backward"] = timed(forward_backward, sync)
        return out
    unet, vae = parts.frozen["unet"], parts.frozen["vae"]
    if stage == "alignment":
        from baselines.asuka.mae import prepare_mae_inputs

        mae = parts.frozen["mae"]
        small = prepare_mae_inputs(images, masks, size=mae.config.img_size)
        with torch.no_grad():
            out["frozen_mae_prior"] = timed(lambda: mae.prior(*small), sync)
            prior = mae.prior(*small)
        cond_fn = lambda: model(prior)  # noqa: E731
    else:
        cond_fn = lambda: model(1)  # noqa: E731
    with torch.no_grad():
        out["frozen_vae_encode_x2"] = timed(lambda: (vae.encode(images * 2 - 1), vae.encode(images)), sync)
    scheduler = DDPMScheduler.from_config(tiny_scheduler().config)  # SD 1.5's schedule
    draws = draw_diffusion(generators(batch["seed"]), latent_shape(vae, *images.shape[-2:]), 1000)
    cond = cond_fn().detach().requires_grad_(True)
    out["frozen_unet_forward_backward"] = timed(
        lambda: epsilon_loss(unet, vae, scheduler, images, masks, cond, draws).backward(), sync) \
        - out["frozen_vae_encode_x2"]
    out["trained_forward_backward"] = timed(lambda: cond_fn().float().pow(2).mean().backward(), sync)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="mae,alignment,prompt,decoder,latents")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpu-tflops", type=float, default=312.0, help="peak dense bf16 TFLOP/s (A100: 312)")
    parser.add_argument("--mfu", type=float, default=0.35, help="assumed model FLOP utilisation")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one stage in this process
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(bench_stage(args.one, args.repeats, args.device, Path(args.data))))
        return 0
    from skimage import data as skdata
    from PIL import Image

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("astronaut", "coffee", "chelsea", "rocket"):
            Image.fromarray(getattr(skdata, name)()).save(Path(tmp) / f"{name}.png")
        for stage in args.stages.split(","):  # one process per stage: peak memory is the stage's own
            run = subprocess.run([sys.executable, __file__, "--one", stage, "--repeats", str(args.repeats),
                                  "--device", args.device, "--data", tmp], capture_output=True, text=True)
            if run.returncode:
                raise SystemExit(f"{stage} failed:\n{run.stderr[-3000:]}")
            result = json.loads(run.stdout.strip().splitlines()[-1])
            if "paper_schedule" in result:
                schedule = result["paper_schedule"]
                flops = result["gflop_per_image"] * 1e9 * schedule["batch_size"] * schedule["steps"]
                result["gpu_hours"] = flops / (args.gpu_tflops * 1e12 * args.mfu) / 3600
            results.append(result)
            print(json.dumps(result, indent=1), flush=True)
    report = {"platform": platform.platform(), "processor": platform.processor(), "device": args.device,
              "gpu_tflops": args.gpu_tflops, "mfu": args.mfu, "stages": results}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
