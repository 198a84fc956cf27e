"""Benchmark of the Table 1 GAN rows at real size with random weights (not a test; weights do not change the
cost): seconds per 512x512 image and peak memory for mat, comod, mae-far and lama (the authors' FFC generator,
checkpoint=authors; the TorchScript export is not timed, its file cannot be made offline).

Each method runs in its own process (so peak memory is its own): random weights are saved in the authors' key
layout, loaded through the inpainter exactly as a real file would be, then `--repeats` images go through the
harness one at a time after one warm-up image.

Usage:
    python benchmarks/bench_gan_baselines.py [--methods mat,comod,mae-far,lama] [--device cpu|cuda]
        [--repeats 2] [--threads N]
Prints one JSON line per method: seconds per image (median), peak resident memory (GiB; CUDA: peak allocated).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("mat", "comod", "mae-far", "lama")


def save_random_weights(method: str, folder: Path) -> tuple[dict, dict]:
    """(inpainter options, weight paths): random real-size weights in the authors' layout."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    if method == "mat":
        from baselines.mat.network import Generator

        path = folder / "mat.pth"
        torch.save(Generator().state_dict(), path)
        return {}, {"mat-places512": str(path)}
    if method == "comod":
        from baselines.comod.network import CoModGenerator

        path = folder / "comod.pth"
        torch.save(CoModGenerator().state_dict(), path)
        return {}, {"comod-places512": str(path)}
    if method == "mae-far":
        from baselines.asuka.mae import AsukaMAE
        from baselines.maefar.network import MaeFarACR

        state = {f"mae.{k}": v for k, v in AsukaMAE().state_dict().items()}
        state.update({f"acr.{k}": v for k, v in MaeFarACR().state_dict().items()})
        path = folder / "mae_far.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return {}, {"mae-far-places2": str(path)}
    from baselines.lama_ffc import FFCResNetGenerator, authors_state_dict

    path = folder / "lama.safetensors"
    save_file(authors_state_dict(FFCResNetGenerator()), str(path))
    return {"checkpoint": "authors"}, {"lama-big-authors": str(path)}


def run_one(method: str, device: str, repeats: int) -> dict:
    import numpy as np
    import torch

    from baselines.harness import inpaint_arrays
    from baselines.registry import create_inpainter

    with tempfile.TemporaryDirectory() as tmp:
        options, paths = save_random_weights(method, Path(tmp))
        inpainter = create_inpainter(method, device=device, weight_paths=paths, **options)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    mask = np.zeros((512, 512), np.float32)
    mask[128:384, 96:416] = 1
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for index in range(repeats + 1):
        start = time.perf_counter()
        inpaint_arrays(inpainter, [image], [mask], [index])
        sync()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    params = sum(p.numel() for m in vars(inpainter).values() if isinstance(m, torch.nn.Module) for p in m.parameters())
    return {"method": method, "device": device, "s_per_image": round(statistics.median(times[1:]), 2),
            "warmup_s": round(times[0], 2), "peak_gib": round(peak / 2**30, 2), "parameters": params,
            "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run a single method in this process
    args = parser.parse_args()
    if args.one:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(run_one(args.one, args.device, args.repeats)))
        return 0
    for method in args.methods.split(","):
        if method not in METHODS:
            parser.error(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        done = subprocess.run([sys.executable, __file__, "--one", method, "--device", args.device,
                               "--repeats", str(args.repeats), "--threads", str(args.threads)],
                              capture_output=True, text=True)
        print(done.stdout.strip() or json.dumps({"method": method, "error": done.stderr.strip()[-2000:]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
