"""Scoring throughput: images/s, overhead beyond network forwards, and the ground-truth cache speed-up.

Not a test. Real architectures with random weights (no downloads): TF-Inception (torch-fidelity port),
AlexNet + the real LPIPS heads, and optionally CLIP ViT-L/14. Photos from scikit-image, 512x512, MISATO
masks. Prints:
  images/s of the first method (no cache),
  overhead = (wall - forward) / forward for that run (decode, compositing, pixel metrics, statistics, SVM, I/O),
  speed-up of a second method on the same dataset (ground-truth features from the cache).

    python benchmarks/bench_scoring.py --n 64 --clip
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image


def make_inputs(root: Path, n: int, size: int) -> tuple[Path, Path, Path]:
    from skimage import data

    from misato.masks import misato_mask

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
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


def random_weights(folder: Path, clip: bool) -> dict[str, str]:
    import lpips
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(0)
    with mock.patch.object(torch, "load", lambda *a, **k: {}), mock.patch.object(
        FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None
    ):
        tf_net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")
    paths = {"inception-tf": folder / "inception.pth", "alexnet-torchvision": folder / "alexnet.pth",
             "inception-torchvision": folder / "inception_torchvision.pth"}
    torch.save(tf_net.state_dict(), paths["inception-tf"])
    tv_net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(tv_net.state_dict(), paths["inception-torchvision"])
    torch.save(torchvision.models.alexnet().state_dict(), paths["alexnet-torchvision"])
    paths["lpips-alex-lin"] = Path(lpips.__file__).parent / "weights/v0.1/alex.pth"
    if clip:
        import open_clip

        paths["clip-vit-l-14-openai"] = folder / "clip.pth"
        torch.save(open_clip.create_model("ViT-L-14", pretrained=None).state_dict(), paths["clip-vit-l-14-openai"])
    return {k: str(v) for k, v in paths.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--protocol", default="comod", help="scoring protocol (asuka: the official scripts' own)")
    parser.add_argument("--clip", action="store_true", help="include the CLIP ViT-L/14 score")
    args = parser.parse_args()

    from evaluators.scoring import ScoreConfig, score
    from misato.data import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir, pred_a, pred_b = make_inputs(tmp, args.n, args.size)
        weights = random_weights(tmp, args.clip)
        metrics = ("lpips", "fid", "u_ids", "p_ids", "kid", "psnr", "ssim", "grad_error") + (("clip_score",) if args.clip else ())
        dataset = load_dataset(data_dir)
        config = ScoreConfig(metrics=metrics, weights=weights, device=args.device, batch_size=args.batch_size,
                             num_workers=args.num_workers, cache_dir=str(tmp / "cache"), protocol=args.protocol)
        # Warm-up on two other images (own cache key): builds the networks once, as `misato run` keeps them.
        warm_data, warm_pred, _ = make_inputs(tmp / "warm", 2, args.size)
        score(load_dataset(warm_data), warm_pred, "warmup", tmp / "res", config)
        start = time.perf_counter()
        first = score(dataset, pred_a, "a", tmp / "res", config)
        first_wall = time.perf_counter() - start
        start = time.perf_counter()
        second = score(dataset, pred_b, "b", tmp / "res", config)
        second_wall = time.perf_counter() - start
    forward = first.record.timing["forward_s"]
    print(f"device {first.record.device}, {args.n} images at {args.size}, protocol {args.protocol}, "
          f"metrics {','.join(metrics)}")
    if first.record.unavailable:
        print(f"unavailable: {first.record.unavailable}")
    print(f"first method : {first_wall:.1f} s wall, {args.n / first_wall:.2f} images/s, forward {forward:.1f} s, "
          f"overhead (wall - forward) / forward = {(first_wall - forward) / forward:.1%}")
    print(f"second method: {second_wall:.1f} s wall, forward {second.record.timing['forward_s']:.1f} s, "
          f"speed-up from the cache = {first_wall / second_wall:.2f}x")


if __name__ == "__main__":
    main()
