"""MISATO builder: sources, features + cache, selection rule, layout/manifest, determinism, resume,
verify, datasets round trip, the released archive and Places2.

Offline and CPU-only: real photos shipped by scikit-image / scikit-learn (crops and flips for volume),
a COCO annotation file written on the fly (polygons, compressed RLE, crowd), pixel features for the
end-to-end builds and a tiny random-weight open_clip model for the CLIP path.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misato.builder import export
from misato.builder.features import FeatureCache, PixelFeatures, extract_features
from misato.builder.pipeline import BuildConfig, FeatureOptions, SampleTask, build_misato, make_sample
from misato.builder.select import fit_bisecting_kmeans, pick_representatives, select_representatives
from misato.builder.sources import (
    CocoSource,
    FlickrLMDBSource,
    FolderSource,
    Matterport3DSource,
    MegaDepthSource,
    SourceError,
)
from misato.builder.verify import verify_folder
from misato.data import DOMAINS, load_dataset
from misato.io import read_mask, read_rgb, sha256_file

CLUSTERS = 3
SEED = 7


# --------------------------------------------------------------------------- photos and source trees


def _photos() -> list[np.ndarray]:
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "colorwheel", "hubble_deep_field"]
    photos = [getattr(data, n)() for n in names] + list(load_sample_images().images)
    return [np.ascontiguousarray(p[..., :3]).astype(np.uint8) for p in photos]


def _variants(photos: list[np.ndarray], count: int, start: int) -> list[np.ndarray]:
    """`count` different crops/flips of the photos, varied aspect ratios, at most ~300 px."""
    out = []
    for i in range(count):
        p = photos[(start + i) % len(photos)]
        h, w = p.shape[:2]
        ch, cw = int(h * (0.6 + 0.1 * (i % 3))), int(w * (0.7 + 0.1 * (i % 2)))
        y, x = (i * 37) % (h - ch + 1), (i * 53) % (w - cw + 1)
        crop = p[y:y + ch, x:x + cw]
        if (i + start) % 2:
            crop = crop[:, ::-1]
        image = Image.fromarray(np.ascontiguousarray(crop))
        scale = 300 / max(image.size)
        out.append(np.asarray(image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))))
    return out


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(array).save(path)


def _horse_polygon(width: int, height: int) -> list[float]:
    """A real object outline: the largest contour of skimage's horse silhouette, fit into the image."""
    import skimage.data as data
    from skimage import measure

    horse = ~data.horse()
    contour = max(measure.find_contours(horse.astype(float), 0.5), key=len)[::4]
    ys, xs = contour[:, 0] / horse.shape[0] * height * 0.6 + height * 0.2, contour[:, 1] / horse.shape[1] * width * 0.5
    return np.stack([xs, ys], 1).ravel().round(2).tolist()


def _coco_annotations(images: list[tuple[int, str, int, int]], full_id: int) -> dict:
    """COCO instances dict: per image a horse polygon, a compressed-RLE blob and an uncompressed crowd RLE;
    image `full_id` gets a foreground covering almost everything (too little background)."""
    from pycocotools import mask as mask_utils

    anns, aid = [], 1
    for image_id, name, w, h in images:
        anns.append({"id": aid, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": float(w * h) * 0.1,
                     "segmentation": [_horse_polygon(w, h)], "bbox": [0, 0, w, h]})
        blob = np.zeros((h, w), np.uint8, order="F")
        blob[h // 10:h // 3, w // 2:w - w // 10] = 1
        rle = mask_utils.encode(blob)
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append({"id": aid + 1, "image_id": image_id, "category_id": 2, "iscrowd": 0, "area": float(blob.sum()),
                     "segmentation": rle, "bbox": [w // 2, h // 10, w // 2 - w // 10, h // 3 - h // 10]})
        crowd = np.zeros((h, w), np.uint8)
        crowd[h - h // 6:, : w // 4] = 1
        if image_id == full_id:
            crowd[:] = 1
            crowd[: h // 12, : w // 12] = 0
        counts, flat, value, run = [], crowd.ravel(order="F"), 0, 0
        for pixel in flat:  # uncompressed RLE as COCO stores crowd regions: run lengths from 0
            if pixel != value:
                counts.append(run)
                value, run = pixel, 0
            run += 1
        counts.append(run)
        anns.append({"id": aid + 2, "image_id": image_id, "category_id": 1, "iscrowd": 1, "area": float(crowd.sum()),
                     "segmentation": {"size": [h, w], "counts": counts}, "bbox": [0, 0, w, h]})
        aid += 3
    return {"images": [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in images],
            "annotations": anns, "categories": [{"id": 1, "name": "horse"}, {"id": 2, "name": "blob"}]}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    photos = _photos()
    for i, array in enumerate(_variants(photos, 9, 0)):
        _save(root / "landscape" / f"flickr_{i:03d}.png", array)
    for i, array in enumerate(_variants(photos, 9, 3)):
        _save(root / "matterport" / f"house{i % 3}" / "undistorted_color_images" / f"view_{i}_i1_{i % 6}.jpg", array)
    _save(root / "matterport" / "house0" / "undistorted_depth_images" / "depth_0.png", np.zeros((8, 8, 3), np.uint8))
    for i, array in enumerate(_variants(photos, 9, 5)):
        _save(root / "megadepth" / f"{i % 2:04d}" / f"dense{i % 2}" / "imgs" / f"img_{i}.jpg", array)
    _save(root / "megadepth" / "0000" / "dense0" / "depths" / "d.png", np.zeros((8, 8, 3), np.uint8))
    images = []
    for i, array in enumerate(_variants(photos, 10, 1)):
        image_id = 1000 + 7 * i
        name = f"COCO_train2014_{image_id:012d}.jpg"
        _save(root / "coco" / "train2014" / name, array)
        images.append((image_id, name, array.shape[1], array.shape[0]))
    annotations = root / "coco" / "instances_train2014.json"
    annotations.write_text(json.dumps(_coco_annotations(images, full_id=images[0][0])))
    return {"root": root, "landscape": root / "landscape", "indoor": root / "matterport",
            "building": root / "megadepth", "coco_images": root / "coco" / "train2014", "coco_ann": annotations}


def _sources(tree: dict[str, Path]) -> dict:
    return {"landscape": FolderSource(tree["landscape"]), "indoor": Matterport3DSource(tree["indoor"]),
            "building": MegaDepthSource(tree["building"]),
            "background": CocoSource(tree["coco_images"], tree["coco_ann"])}


def _cli_build(tree: dict[str, Path], out: Path, *extra: str) -> int:
    from misato.cli import main

    return main(["build", "--landscape", str(tree["landscape"]), "--indoor", str(tree["indoor"]),
                 "--building", str(tree["building"]), "--coco-images", str(tree["coco_images"]),
                 "--coco-annotations", str(tree["coco_ann"]), "--out", str(out), "--clusters", str(CLUSTERS),
                 "--seed", str(SEED), "--features", "pixels", "--feature-workers", "0", "--no-progress", *extra])


@pytest.fixture(scope="module")
def built(tree: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "misato"
    assert _cli_build(tree, out, "--with-1024", "--mask-naming-1024", "released") == 0
    return out


# --------------------------------------------------------------------------- sources


def test_folder_adapters_list_sorted_and_follow_patterns(tree: dict[str, Path]) -> None:
    indoor = Matterport3DSource(tree["indoor"]).keys()
    assert indoor == sorted(indoor) and len(indoor) == 9
    assert all("/undistorted_color_images/" in k for k in indoor)  # the depth image is not listed
    building = MegaDepthSource(tree["building"]).keys()
    assert len(building) == 9 and all("/imgs/" in k for k in building)
    everything = FolderSource(tree["building"]).keys()
    assert len(everything) == 10  # the plain folder adapter takes every image
    coco = CocoSource(tree["coco_images"], tree["coco_ann"])
    assert coco.keys() == sorted(coco.keys()) and coco.keys()[0] == "000000001000"
    assert coco.open(coco.keys()[1]).mode == "RGB"
    with pytest.raises(SourceError, match="no .png/.jpg"):
        MegaDepthSource(tree["landscape"]).keys()


class _FakeTxn:
    def __init__(self, store: dict[bytes, bytes]) -> None:
        self.store = store

    def __enter__(self) -> "_FakeTxn":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def cursor(self):
        return iter(sorted(self.store.items()))


def test_flickr_lmdb_keys_and_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """InfinityGAN layout: f'{size}-{idx:08d}' PNG bytes + 'length'; lmdb replaced by an in-memory stand-in."""
    photos = _variants(_photos(), 3, 0)
    store = {b"length": b"3"}
    for i, array in enumerate(photos):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        store[f"1024-{i:08d}".encode()] = buffer.getvalue()
    env = types.SimpleNamespace(begin=lambda write=False: _FakeTxn(store))
    fake = types.ModuleType("lmdb")
    fake.open = lambda *a, **k: env
    monkeypatch.setitem(sys.modules, "lmdb", fake)
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "data.mdb").write_bytes(b"")
    source = FlickrLMDBSource(tmp_path / "db")
    assert source.keys() == ["1024-00000000", "1024-00000001", "1024-00000002"]
    np.testing.assert_array_equal(np.asarray(source.open("1024-00000002")), photos[2])

    monkeypatch.setitem(sys.modules, "lmdb", None)  # not installed: a clear, typed error
    with pytest.raises(SourceError, match="pip install lmdb"):
        FlickrLMDBSource(tmp_path / "db").keys()


# --------------------------------------------------------------------------- features


class _CountingPixels(PixelFeatures):
    calls = 0

    def encode(self, batch):  # type: ignore[override]
        type(self).calls += len(batch)
        return super().encode(batch)


def test_pixel_features_cache_is_resumable(tree: dict[str, Path], tmp_path: Path) -> None:
    source = FolderSource(tree["landscape"])
    extractor = _CountingPixels()
    features, cache = extract_features(source, extractor, tmp_path, "landscape", batch_size=2, shard_size=4, progress=False)
    assert features.shape == (9, extractor.dim) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    assert _CountingPixels.calls == 9 and cache.n_shards == 3
    cache.shard_path(1).unlink()  # an interrupted run: only that shard is recomputed
    cache.shard_path(2).write_bytes(b"garbage")  # a damaged shard is detected by its hash
    again, _ = extract_features(source, extractor, tmp_path, "landscape", batch_size=3, shard_size=4, progress=False)
    assert _CountingPixels.calls == 9 + 4 + 1
    np.testing.assert_array_equal(again, features)
    # A different listing never reads this cache: the folder name carries the source fingerprint.
    other = FeatureCache.for_source(tmp_path, "landscape", FolderSource(tree["building"]), extractor)
    assert other.folder != cache.folder


def test_feature_workers_do_not_change_features(tree: dict[str, Path], tmp_path: Path) -> None:
    source = MegaDepthSource(tree["building"])
    a, _ = extract_features(source, PixelFeatures(), tmp_path / "a", "b", workers=0, progress=False)
    b, _ = extract_features(source, PixelFeatures(), tmp_path / "b", "b", workers=2, batch_size=4, progress=False)
    np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A tiny random-weight open_clip architecture, registered under a test name and saved to a file."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("clip")
    config = {"embed_dim": 32,
              "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (folder / "misato-test-tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / "misato-test-tiny.json")
    torch.manual_seed(0)
    model = open_clip.create_model("misato-test-tiny", pretrained=None)
    weights = folder / "tiny.pt"
    torch.save(model.state_dict(), weights)
    return "misato-test-tiny", weights


def test_clip_features_match_open_clip_directly(tree: dict[str, Path], tmp_path: Path, tiny_clip: tuple[str, Path]) -> None:
    import open_clip
    import torch

    from misato.builder.features import ClipFeatures

    name, weights = tiny_clip
    extractor = ClipFeatures(name, weights=weights, device="cpu")
    source = FolderSource(tree["landscape"])
    features, cache = extract_features(source, extractor, tmp_path, "landscape", batch_size=4, progress=False)
    assert features.shape == (9, 32)
    assert extractor.key.startswith(f"clip-{name}-{sha256_file(weights)[:12]}")
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(weights))
    model.eval()
    with torch.no_grad():
        direct = model.encode_image(torch.stack([preprocess(source.open(k)) for k in source.keys()]))
    direct = torch.nn.functional.normalize(direct, dim=-1).numpy()
    np.testing.assert_allclose(features, direct, atol=1e-5)
    # A second extractor from the same file reads the cache (same key) and gives the same features.
    again = extract_features(source, ClipFeatures(name, weights=weights), tmp_path, "landscape", progress=False)[0]
    np.testing.assert_array_equal(again, features)


def test_clip_reads_torchscript_archives_like_openai_releases(tiny_clip: tuple[str, Path], tmp_path: Path) -> None:
    """OpenAI's ViT-L-14.pt is a TorchScript archive that torch.load(weights_only=True) refuses."""
    import open_clip
    import torch

    from misato.builder.features import ClipFeatures
    from misato.clip import CLIP_PRESETS, is_torchscript

    name, weights = tiny_clip
    model = open_clip.create_model(name, pretrained=str(weights)).eval()
    example = (torch.rand(1, 3, 64, 64), torch.zeros(1, 77, dtype=torch.long))
    archive = tmp_path / "tiny-jit.pt"
    torch.jit.save(torch.jit.trace(model, example, check_trace=False), archive)
    assert is_torchscript(archive) and not is_torchscript(weights)
    extractor = ClipFeatures(name, weights=archive)
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_image(images), dim=-1).numpy()
    np.testing.assert_allclose(extractor.encode(images), expected, atol=1e-5)
    assert CLIP_PRESETS["ViT-L-14"].quick_gelu  # OpenAI weights were trained with QuickGELU


def test_cli_build_with_clip_features(tree: dict[str, Path], tmp_path: Path, tiny_clip: tuple[str, Path]) -> None:
    from misato.cli import main

    name, weights = tiny_clip
    out = tmp_path / "clip-build"
    assert main(["build", "--indoor", str(tree["indoor"]), "--out", str(out), "--clusters", "3", "--features", "clip",
                 "--clip-model", name, "--clip-weights", str(weights), "--feature-workers", "0", "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    record = manifest["domains"]["indoor"]["features"]
    assert record["kind"] == "clip" and record["weights"]["sha256"] == sha256_file(weights)
    assert [s["id"] for s in manifest["samples"]] == ["0500", "0501", "0502"]
    assert len(load_dataset(out)) == 3


def test_default_clip_weights_come_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from misato.builder.features import ClipFeatures
    from misato.weights import WeightsNotFoundError

    monkeypatch.setenv("MISATO_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("MISATO_WEIGHT_CLIP_VIT_L_14_OPENAI", raising=False)
    with pytest.raises(WeightsNotFoundError, match="clip-vit-l-14-openai"):
        ClipFeatures("ViT-L-14")
    with pytest.raises(ValueError, match="no registered weights"):
        ClipFeatures("ViT-B-32")


# --------------------------------------------------------------------------- selection


def test_representative_is_member_nearest_centre() -> None:
    from sklearn.datasets import make_blobs

    features, _ = make_blobs(n_samples=240, centers=12, n_features=8, random_state=3)
    features = features.astype(np.float32)
    picks, clustering = select_representatives(features, n_clusters=10, seed=0)
    assert len(picks) == 10 and len({p.index for p in picks}) == 10
    assert [p.index for p in picks] == sorted(p.index for p in picks)
    for pick in picks:
        members = [i for i in range(len(features)) if clustering.labels[i] == pick.cluster]
        centre = clustering.centers[pick.cluster]
        best = min(members, key=lambda i: (float(np.sum((features[i].astype(np.float64) - centre) ** 2)), i))
        assert pick.index == best
        assert set(pick.ranked.tolist()) == set(members)


def test_ties_go_to_the_lowest_index_and_search_stays_in_cluster() -> None:
    from misato.builder.select import Clustering

    # Rows 1 and 3 are equally near centre 0; row 2 (cluster 1) is nearer to centre 0 than both.
    features = np.array([[0.0, 3.0], [1.0, 0.0], [0.1, 0.0], [-1.0, 0.0], [5.0, 5.0]])
    clustering = Clustering(np.array([0, 0, 1, 0, 1]), np.array([[0.0, 0.0], [5.0, 5.0]]), {})
    picks = pick_representatives(features, clustering)
    assert [p.index for p in picks] == [1, 4]


def test_clustering_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 16)).astype(np.float32)
    a = fit_bisecting_kmeans(features, 20, seed=5)
    b = fit_bisecting_kmeans(features, 20, seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)
    with pytest.raises(ValueError, match="cannot make"):
        fit_bisecting_kmeans(features[:5], 20, seed=5)


# --------------------------------------------------------------------------- the build


def test_layout_manifest_and_loader(built: Path, tree: dict[str, Path]) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    dataset = load_dataset(built)
    expected = [f"{o + i:04d}" for o in (0, 500, 1000, 1500) for i in range(CLUSTERS)]
    assert [s.stem for s in dataset.samples] == expected
    assert [s.domain for s in dataset.samples] == [d for d in DOMAINS for _ in range(CLUSTERS)]
    for sample in dataset.samples:
        image, mask_file = Image.open(sample.image_path), Image.open(sample.mask_path)
        assert image.mode == "RGB" and image.size == (512, 512)
        assert mask_file.mode == "L" and set(np.unique(np.asarray(mask_file)).tolist()) <= {0, 255}
    # 1024: no COCO, released mask naming, loadable.
    big = load_dataset(built, resolution=1024)
    assert len(big) == 3 * CLUSTERS and all(s.mask_path.name == "00" + s.stem + ".png" for s in big.samples)
    assert Image.open(big.samples[0].image_path).size == (1024, 1024)
    # Manifest: every file hashed, crop boxes are centred squares, ratios within the range.
    assert set(manifest["files"]) == {p.relative_to(built).as_posix() for p in built.glob("[0-9]*/*/*.png")}
    for relpath, digest in manifest["files"].items():
        assert sha256_file(built / relpath) == digest
    roots = {d: Path(manifest["domains"][d]["source"]["root"]) for d in DOMAINS}
    for entry in manifest["samples"]:
        lo, hi = manifest["config"]["ratio_range"]
        assert lo <= entry["mask"]["hole_ratio"] <= hi
        mask = read_mask(built / export.mask_relpath(512, entry["index"]))
        assert mask.mean() == pytest.approx(entry["mask"]["hole_ratio"])
        w, h = entry["source"]["size"]
        left, top, right, bottom = entry["crop_box"]
        assert right - left == bottom - top == min(w, h) and left == (w - min(w, h)) // 2
        if entry["domain"] != "background":
            source = Image.open(roots[entry["domain"]] / entry["source"]["path"]).convert("RGB")
            expected_pixels = np.asarray(source.crop(tuple(entry["crop_box"])).resize((512, 512), Image.LANCZOS))
            np.testing.assert_array_equal(read_rgb(built / export.image_relpath(512, entry["index"])), expected_pixels)
    assert manifest["config"]["features"]["kind"] == "pixels"
    assert "NOT the paper" in manifest["domains"]["landscape"]["features"]["note"]
    assert manifest["packages"]["numpy"] == np.__version__


def test_representatives_are_distinct_and_nearest(built: Path, tree: dict[str, Path]) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    for domain, source in _sources(tree).items():
        if domain == "background":
            continue
        entries = [s for s in manifest["samples"] if s["domain"] == domain]
        keys = [e["source"]["key"] for e in entries]
        assert len(set(keys)) == CLUSTERS
        features = PixelFeatures()
        matrix = np.stack([features.encode(features.transform(source.open(k))[None])[0] for k in source.keys()])
        clustering = fit_bisecting_kmeans(matrix, CLUSTERS, SEED)
        expected = sorted(
            min(np.flatnonzero(clustering.labels == c),
                key=lambda i: (float(np.sum((matrix[i].astype(np.float64) - clustering.centers[c]) ** 2)), i))
            for c in range(CLUSTERS))
        assert [e["source"]["index"] for e in entries] == expected


def test_coco_holes_never_cover_foreground(built: Path, tree: dict[str, Path]) -> None:
    from pycocotools.coco import COCO

    coco = COCO(str(tree["coco_ann"]))
    manifest = json.loads((built / "manifest.json").read_text())
    entries = [s for s in manifest["samples"] if s["domain"] == "background"]
    assert len(entries) == CLUSTERS
    for entry in entries:
        image_id = int(entry["source"]["key"])
        union = np.zeros((coco.imgs[image_id]["height"], coco.imgs[image_id]["width"]), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None)):
            union |= coco.annToMask(ann)
        left, top, right, bottom = entry["crop_box"]
        crop = Image.fromarray(union[top:bottom, left:right] * 255).resize((512, 512), Image.BOX)
        foreground = np.asarray(crop) > 0  # any object coverage counts as foreground
        mask = read_mask(built / export.mask_relpath(512, entry["index"])) > 0
        assert foreground.any() and not (mask & foreground).any()
    assert not list((built / "1024" / "image").glob("15*.png"))


def test_coco_image_without_background_is_skipped_and_recorded(tree: dict[str, Path], tmp_path: Path) -> None:
    from misato.builder.pipeline import _coco_subset

    source = CocoSource(tree["coco_images"], tree["coco_ann"])
    keys = source.keys()[:2]  # keys[0] is almost all foreground (a crowd region over the image)
    task = SampleTask(out=str(tmp_path), domain="background", position=0, index=1500, seed=SEED, size=256,
                      size_1024=False, mask_naming_1024="plain", resample="lanczos", ratio_range=(0.2, 0.8),
                      max_tries=50, source=source.restricted(keys),
                      candidates=[{"key": k, "source_index": i, "rank": i} for i, k in enumerate(keys)],
                      coco=_coco_subset(source, keys))
    record = make_sample(task)
    assert [s["key"] for s in record["skipped"]] == [keys[0]]
    assert record["skipped"][0]["background_ratio"] < 0.2
    assert record["source"]["key"] == keys[1] and (tmp_path / "256/image/1500.png").is_file()


def test_deterministic_across_runs_and_worker_counts(built: Path, tree: dict[str, Path], tmp_path: Path) -> None:
    config = BuildConfig(out=tmp_path / "again", sources=_sources(tree), clusters=CLUSTERS, seed=SEED, size_1024=True,
                         mask_naming_1024="released", features=FeatureOptions(kind="pixels"), workers=2, progress=False)
    manifest = build_misato(config)
    reference = json.loads((built / "manifest.json").read_text())
    assert manifest["files"] == reference["files"] and manifest["samples"] == reference["samples"]
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (built / "manifest.json").read_bytes()


def test_resume_skips_written_samples(built: Path, tree: dict[str, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import misato.builder.pipeline as pipeline

    out = tmp_path / "copy"
    shutil.copytree(built, out)
    (out / export.image_relpath(512, 501)).unlink()
    writes: list[str] = []
    original = pipeline.save_png
    monkeypatch.setattr(pipeline, "save_png", lambda path, array: (writes.append(Path(path).name), original(path, array)))
    assert _cli_build(tree, out, "--with-1024", "--mask-naming-1024", "released") == 0
    assert sorted(writes) == ["000501.png", "0501.png", "0501.png", "0501.png"]  # only the damaged sample
    assert verify_folder(out).ok


def test_verify_detects_problems(built: Path, tmp_path: Path) -> None:
    from misato.cli import main

    out = tmp_path / "copy"
    shutil.copytree(built, out)
    assert verify_folder(out).ok and main(["verify", str(out)]) == 0
    mask = out / export.mask_relpath(512, 2)
    array = np.asarray(Image.open(mask)).copy()
    array[0, 0] = 255 - array[0, 0]
    Image.fromarray(array).save(mask)
    (out / export.image_relpath(512, 1000)).unlink()
    shutil.copy(out / export.image_relpath(512, 0), out / "512" / "image" / "0499.png")
    report = verify_folder(out)
    assert report.changed == ["512/mask/0002.png"]
    assert report.missing == ["512/image/1000.png"]
    assert report.unlisted == ["512/image/0499.png"]
    assert main(["verify", str(out)]) == 1


# --------------------------------------------------------------------------- exports and loaders


def test_datasets_round_trip(built: Path, tmp_path: Path) -> None:
    from misato.builder.hf import from_hf, load_hf, save_hf, to_hf

    dataset = load_dataset(built)
    table = to_hf(dataset, embed=False)
    assert table.column_names == ["image", "mask", "domain", "id"]
    assert table[0]["domain"] == "landscape" and table[len(table) - 1]["domain"] == "background"
    save_hf(dataset, tmp_path / "hf")
    shutil.move(str(built), str(tmp_path / "moved"))  # the saved copy must not need the original files
    try:
        loaded = load_hf(tmp_path / "hf")
        back = from_hf(loaded, tmp_path / "folder")
    finally:
        shutil.move(str(tmp_path / "moved"), str(built))
    assert [s.stem for s in back.samples] == [s.stem for s in dataset.samples]
    assert [s.domain for s in back.samples] == [s.domain for s in dataset.samples]
    for a, b in zip(dataset.samples, back.samples):
        np.testing.assert_array_equal(read_rgb(a.image_path), read_rgb(b.image_path))
        np.testing.assert_array_equal(read_mask(a.mask_path), read_mask(b.mask_path))


def test_cli_hf_target(built: Path, tmp_path: Path) -> None:
    from misato.builder.hf import load_hf
    from misato.cli import main

    assert main(["build", "hf", "--from", str(built), "--resolution", "1024", "--out", str(tmp_path / "hf")]) == 0
    table = load_hf(tmp_path / "hf")
    assert len(table) == 3 * CLUSTERS and table[0]["image"].size == (1024, 1024)
    assert set(table["domain"]) == {"landscape", "indoor", "building"}


def test_released_archive_and_folder(built: Path, tmp_path: Path) -> None:
    from misato.builder.released import open_released

    archive = tmp_path / "hub" / "MISATO.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(built.glob("[0-9]*/*/*.png")):
            handle.write(path, "MISATO/" + path.relative_to(built).as_posix())
    for resolution, count in ((512, 4 * CLUSTERS), (1024, 3 * CLUSTERS)):
        from_zip = open_released(archive, resolution=resolution, extract_to=tmp_path / "x")
        from_hub_folder = open_released(archive.parent, resolution=resolution, extract_to=tmp_path / "y")
        direct = open_released(built, resolution=resolution)
        for opened in (from_zip, from_hub_folder):
            assert len(opened) == count
            assert [s.stem for s in opened.samples] == [s.stem for s in direct.samples]
            assert all(sha256_file(a.mask_path) == sha256_file(b.mask_path)
                       for a, b in zip(opened.samples, direct.samples))
    # An archive without the resolution folder (image/ and mask/ at its top) is found by image size, and
    # an archive without image files (like asuka_training_mask.zip) is left packed.
    flat = tmp_path / "hub2" / "misato_1k.zip"
    flat.parent.mkdir()
    with zipfile.ZipFile(flat, "w") as handle:
        for path in sorted(built.glob("1024/*/*.png")):
            handle.write(path, path.relative_to(built / "1024").as_posix())
    with zipfile.ZipFile(flat.parent / "asuka_training_mask.zip", "w") as handle:
        handle.writestr("asuka_training_mask/object_masks/0.png", b"x")
    opened = open_released(flat.parent, resolution=1024)
    assert [s.stem for s in opened.samples] == [s.stem for s in open_released(built, resolution=1024).samples]
    assert not (flat.parent / "extracted" / "asuka_training_mask").exists()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as handle:
        handle.writestr("../evil.png", b"x")
    with pytest.raises(ValueError, match="unsafe"):
        open_released(bad, extract_to=tmp_path / "z")


def test_places2_set(tmp_path: Path) -> None:
    from misato.builder.places2 import Places2Config, build_places2
    from misato.masks import misato_mask

    val = tmp_path / "val_large"
    for i, array in enumerate(_variants(_photos(), 5, 2)):
        _save(val / f"Places365_val_{i + 1:08d}.jpg", array)
    config = Places2Config(val_dir=val, out=tmp_path / "p2", seed=3, size=256, progress=False)
    manifest = build_places2(config)
    dataset = load_dataset(tmp_path / "p2")
    assert [s.stem for s in dataset.samples] == [f"Places365_val_{i + 1:08d}" for i in range(5)]
    for index, sample in enumerate(dataset.samples):
        expected = misato_mask(3, "places2", index, size=256)
        np.testing.assert_array_equal(read_mask(sample.mask_path), expected.mask.astype(np.float32))
        assert read_rgb(sample.image_path).shape == (256, 256, 3)
    assert verify_folder(tmp_path / "p2").ok
    assert len(manifest["files"]) == 10
    from misato.cli import main

    assert main(["build", "places2", "--places2-val", str(val), "--out", str(tmp_path / "p2crop"), "--size", "160",
                 "--places2-mode", "crop", "--limit", "2", "--no-progress"]) == 0
    crop = json.loads((tmp_path / "p2crop" / "manifest.json").read_text())
    assert len(crop["samples"]) == 2 and crop["config"]["mode"] == "crop"
    box = crop["samples"][0]["crop_box"]
    w, h = crop["samples"][0]["source"]["size"]
    assert box[2] - box[0] == 160 and box[0] == (w - 160) // 2 and box[1] == (h - 160) // 2
    source = np.asarray(Image.open(val / crop["samples"][0]["source"]["key"]).convert("RGB"))
    np.testing.assert_array_equal(read_rgb(tmp_path / "p2crop" / "image" / "Places365_val_00000001.png"),
                                  source[box[1]:box[3], box[0]:box[2]])
