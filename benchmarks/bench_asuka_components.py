"""Benchmark of ASUKA's added components at real size with random weights (not a test; weights do not change
the cost): MAE prior at 256x256, alignment modules (D = 768 for SD 1.5 / FLUX-CLIP, D = 4096 for FLUX-T5), and
the SD-1.5-size decoder at the output resolution, plain KL-VAE decoder vs ASUKA's mask-conditioned decoder.

Usage:
    python benchmarks/bench_asuka_components.py [--device cpu|cuda] [--batch 1] [--size 512] [--repeats 3]
        [--dtype float32|float16|bfloat16] [--skip-t5]
Prints one JSON object: median seconds per call (per batch) for each component.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time


def timed(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=512, help="output image size for the decoders")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--skip-t5", action="store_true", help="skip the 4096-wide alignment (slow on CPU)")
    args = parser.parse_args()

    import torch

    from baselines.asuka.alignment import AsukaAlignment
    from baselines.asuka.decoder import build_decoder
    from baselines.asuka.mae import AsukaMAE

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    b, s = args.batch, args.size
    results: dict[str, float] = {}
    with torch.inference_mode():
        mae = AsukaMAE().to(device, dtype).eval()
        images = torch.rand(b, 3, 256, 256, device=device, dtype=dtype)
        masks = torch.zeros(b, 1, 256, 256, device=device, dtype=dtype)
        masks[:, :, 64:192, 40:200] = 1
        results["mae_prior_s"] = timed(lambda m=mae: m.prior(images, masks), args.repeats, sync)
        prior = mae.prior(images, masks)
        del mae
        widths = {"alignment_768_s": 768} if args.skip_t5 else {"alignment_768_s": 768, "alignment_4096_s": 4096}
        for name, dim in widths.items():
            alignment = AsukaAlignment(dim).to(device, dtype).eval()
            results[name] = timed(lambda a=alignment: a(prior), args.repeats, sync)
            del alignment
        z = torch.randn(b, 4, s // 8, s // 8, device=device, dtype=dtype)
        image = torch.rand(b, 3, s, s, device=device, dtype=dtype) * 2 - 1
        mask = torch.zeros(b, 1, s, s, device=device, dtype=dtype)
        mask[:, :, s // 4: 3 * s // 4, s // 8: 5 * s // 8] = 1
        plain = build_decoder("vae", "sd15").to(device, dtype).eval()
        results["decoder_vae_s"] = timed(lambda d=plain: d(z), args.repeats, sync)
        del plain
        ours = build_decoder("asuka", "sd15").to(device, dtype).eval()
        results["decoder_asuka_s"] = timed(lambda: ours(z, image, mask), args.repeats, sync)
    results["asuka_added_s"] = (results["mae_prior_s"] + results["alignment_768_s"]
                                + results["decoder_asuka_s"] - results["decoder_vae_s"])
    print(json.dumps({
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "dtype": args.dtype, "batch": b, "size": s, "repeats": args.repeats,
        "seconds": {k: round(v, 4) for k, v in results.items()},
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
