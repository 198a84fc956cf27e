"""Benchmark of the MISATO build's two heavy steps (not a test).

1. Feature extraction: images/s of `ClipFeatures` with a random-weight ViT-L-14 (the paper-default
   architecture; weights do not change the cost), on real photos from scikit-image, through the
   shard cache and DataLoader exactly as `misato build` runs it.
2. Selection: `BisectingKMeans(n_clusters=500)` + nearest-to-centre representatives on 10,000 x 768
   synthetic unit-norm features (768 = CLIP ViT-L/14's width).

Usage:
    python benchmarks/bench_build.py [--images 8] [--device cpu] [--n 10000] [--dim 768] [--clusters 500]
Prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_features(n_images: int, device: str, batch_size: int, model: str) -> dict:
    import open_clip
    import skimage.data as data
    import torch
    from PIL import Image

    from misato.builder.features import ClipFeatures, extract_features
    from misato.builder.sources import FolderSource

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
        (tmp / "img").mkdir()
        for i in range(n_images):
            array = photos[i % len(photos)]
            flipped = np.ascontiguousarray(array[:, ::-1]) if i // len(photos) % 2 else array
            Image.fromarray(flipped).save(tmp / "img" / f"{i:04d}.png")
        torch.manual_seed(0)
        start = time.perf_counter()
        weights = tmp / "random.pt"
        torch.save(open_clip.create_model(model, pretrained=None).state_dict(), weights)
        extractor = ClipFeatures(model, weights=weights, device=device, quick_gelu=True)
        setup = time.perf_counter() - start
        source = FolderSource(tmp / "img")
        extractor.encode(torch.stack([extractor.transform(source.open(source.keys()[0]))]))  # warm-up
        start = time.perf_counter()
        features, _ = extract_features(source, extractor, tmp / "cache", "bench", batch_size=batch_size, progress=False)
        elapsed = time.perf_counter() - start
    return {"model": model, "weights": "random", "device": device, "images": n_images, "batch_size": batch_size,
            "dim": int(features.shape[1]), "seconds": round(elapsed, 3), "images_per_s": round(n_images / elapsed, 3),
            "model_setup_s": round(setup, 2), "torch_threads": torch.get_num_threads()}


def bench_clustering(n: int, dim: int, clusters: int, seed: int) -> dict:
    from misato.builder.select import fit_bisecting_kmeans, pick_representatives

    rng = np.random.default_rng(seed)
    # Clustered data (a mixture of 2,000 directions) rather than pure noise, closer to real CLIP features.
    centres = rng.normal(size=(2000, dim))
    features = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, dim))
    features = (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)
    start = time.perf_counter()
    clustering = fit_bisecting_kmeans(features, clusters, seed)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    picks = pick_representatives(features, clustering)
    pick = time.perf_counter() - start
    return {"n": n, "dim": dim, "clusters": clusters, "fit_s": round(fit, 2), "representatives_s": round(pick, 3),
            "distinct_representatives": len({p.index for p in picks})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="ViT-L-14")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-features", action="store_true")
    args = parser.parse_args()
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    if not args.skip_features:
        result["features"] = bench_features(args.images, args.device, args.batch_size, args.model)
    result["clustering"] = bench_clustering(args.n, args.dim, args.clusters, args.seed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
