"""Cost and behaviour of the context-stability and visual-consistency metrics (issue 14).

Not a test. Prints:
  the per-image seconds of color_shift, color_shift_raw and seam at 512 x 512 (median over photos and masks,
  one CPU thread, as a scoring worker runs them), against PSNR and SSIM for scale;
  with the Mask R-CNN COCO weights (registry key maskrcnn-resnet50-fpn-coco: `--weight PATH`,
  $MISATO_WEIGHT_MASKRCNN_RESNET50_FPN_COCO or the weights folder): hallucination of the ground truth itself
  and of the same photos with 1, 2 and 3 object cut-outs (the detector's own masks of objects in other photos)
  pasted into the hole, which must rise; without them, says so and times the detector on random weights only.

    python benchmarks/bench_context_metrics.py --n 8
    python benchmarks/bench_context_metrics.py --weight ~/Downloads/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from evaluators.detection import MaskRCNNCoco, hallucination_values
from evaluators.pixel_metrics import Decoded, color_shift, color_shift_raw, psnr, seam, ssim
from evaluators.protocols import get_protocol
from misato.weights import WeightsNotFoundError, resolve

SIZE = 512


def photos() -> list[np.ndarray]:
    """512 x 512 centre crops of the photos scikit-image and scikit-learn ship."""
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_image

    out = []
    for photo in (data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), load_sample_image("china.jpg"),
                  load_sample_image("flower.jpg")):
        side = min(photo.shape[:2])
        y, x = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
        out.append(np.array(Image.fromarray(photo[y:y + side, x:x + side]).resize((SIZE, SIZE), Image.BICUBIC)))
    return out


def hole_mask(seed: int) -> np.ndarray:
    """float32 (512, 512), 1 = hole: a MISATO background-domain mask (about 20-80% of the image)."""
    from misato.masks import misato_mask

    for index in range(seed, seed + 100):
        sample = misato_mask(seed, "background", index, SIZE)
        if sample is not None:
            return (sample.mask > 0).astype(np.float32)
    raise RuntimeError("no mask sampled")


def time_colour_metrics(n: int) -> None:
    torch.set_num_threads(1)
    protocol = get_protocol("comod")
    images = photos()
    rng = np.random.default_rng(0)
    seconds: dict[str, list[float]] = {}
    for i in range(n):
        gt = images[i % len(images)]
        hole = hole_mask(i)
        pred = np.clip(gt.astype(np.float64) + rng.normal(0, 20, gt.shape) + 10, 0, 255).astype(np.uint8)
        scored = np.where(hole[..., None] > 0, pred, gt).astype(np.uint8)
        sample = Decoded(gt, pred, (hole * 255).astype(np.uint8), hole, scored, True)
        for metric in (color_shift, color_shift_raw, seam, psnr, ssim):
            start = time.perf_counter()
            metric(sample, protocol)
            seconds.setdefault(metric.__name__, []).append(time.perf_counter() - start)
    print(f"per-image seconds at {SIZE}x{SIZE}, median of {n} (photos x MISATO masks, 1 thread):")
    for name, values in seconds.items():
        print(f"  {name:<16} {statistics.median(values):.4f} s (max {max(values):.4f})")


def cut_outs(detector: MaskRCNNCoco, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB crop, bool mask crop) of the highest-scored object the detector finds in each photo."""
    out = []
    for image, found in zip(images, detector.detect([torch.from_numpy(i).permute(2, 0, 1) for i in images])):
        if len(found.scores) and found.masks is not None:
            mask = found.masks[int(np.argmax(found.scores))]
            ys, xs = np.nonzero(mask)
            crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            out.append((image[crop], mask[crop]))
    return out


def paste(image: np.ndarray, hole: np.ndarray, objects: list[tuple[np.ndarray, np.ndarray]],
          rng: np.random.Generator) -> np.ndarray:
    """`image` with each cut-out, scaled to fit in a quarter of the image, pasted where its box lies in the hole
    as much as possible (best of 50 random places)."""
    from PIL import Image

    out = image.copy()
    for rgb, mask in objects:
        scale = min(1.0, 0.25 * SIZE / max(rgb.shape[:2]))
        size = (max(1, int(rgb.shape[1] * scale)), max(1, int(rgb.shape[0] * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
        mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
        h, w = mask.shape
        places = [(int(rng.integers(0, SIZE - h + 1)), int(rng.integers(0, SIZE - w + 1))) for _ in range(50)]
        y, x = max(places, key=lambda p: hole[p[0]:p[0] + h, p[1]:p[1] + w][mask].mean())
        region = out[y:y + h, x:x + w]
        region[mask] = rgb[mask]
    return out


def detector_check(weight: str | None, n: int) -> None:
    protocol = get_protocol("comod")
    torch.set_num_threads(2)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = resolve("maskrcnn-resnet50-fpn-coco", weight)
    except WeightsNotFoundError as error:
        print(f"\nhallucination needs the Mask R-CNN COCO weights; not found ({str(error).splitlines()[0]}).\n"
              "Timing the detector on random weights only (no numbers about hallucination).")
        import tempfile
        from pathlib import Path

        import torchvision

        state = torchvision.models.detection.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=91).state_dict()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "random-maskrcnn.pth"
            torch.save(state, path)
            detector = MaskRCNNCoco({MaskRCNNCoco.weight_keys[0]: resolve(MaskRCNNCoco.weight_keys[0], path)},
                                    device, protocol.detector_score)
        images = [torch.from_numpy(p).permute(2, 0, 1) for p in photos()[:2]]
        detector.detect(images[:1])
        start = time.perf_counter()
        for _ in range(3):
            detector.detect(images)
            if device.type == "cuda":
                torch.cuda.synchronize()
        where = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
        print(f"Mask R-CNN (random weights), one scored image + its ground truth at {SIZE} (resized to 800 inside), "
              f"{where}: {(time.perf_counter() - start) / 3:.3f} s per image pair")
        return
    detector = MaskRCNNCoco({resolved.key: resolved}, device, protocol.detector_score)
    images = photos()
    objects = cut_outs(detector, images)
    print(f"\n{len(objects)} cut-outs from {len(images)} photos; hallucination (objects per image, area share) "
          f"with k cut-outs pasted in the hole, mean over {n} images:")
    rng = np.random.default_rng(0)
    for k in range(4):
        counts, areas = [], []
        for i in range(n):
            gt, hole = images[i % len(images)], hole_mask(i)
            others = [o for j, o in enumerate(objects) if j != i % len(images)][:k]
            pred = paste(gt, hole, others, rng)
            scored = np.where(hole[..., None] > 0, pred, gt).astype(np.uint8)
            found = detector.detect([torch.from_numpy(x).permute(2, 0, 1) for x in (scored, gt)])
            count, area = hallucination_values(found[0], found[1], hole, protocol)
            counts.append(count)
            areas.append(area)
        print(f"  k={k}: hallucination {np.mean(counts):.2f}, hallucination_area {np.mean(areas):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=12, help="images per measurement")
    parser.add_argument("--weight", help="path of maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth")
    args = parser.parse_args()
    time_colour_metrics(args.n)
    detector_check(args.weight, args.n)


if __name__ == "__main__":
    main()
