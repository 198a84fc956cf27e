"""cmmd, cmmd_l14, fd_dinov2 and dreamsim (issue 25): each equal to a direct computation on random-weight networks,
independent of the batch split, and a missing or wrong weight file reported with the standard fix text."""

import dataclasses
import json
import sys
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators import protocols
from evaluators.cmmd import WholeImage, maximum_mean_discrepancy
from evaluators.metrics import DEFAULT, METRICS, TABLE1, metrics_help
from evaluators.scoring import ScoreConfig, score
from misato.composite import composite_uint8
from misato.data import load_dataset
from misato.io import read_mask, read_rgb
from misato.weights import fix_text, get_spec, resolve

NEW = ("cmmd", "cmmd_l14", "fd_dinov2", "dreamsim", "dreamsim_image")


def _config(weights, **kwargs):
    return ScoreConfig(weights=weights, device="cpu", **{"batch_size": 3, "bootstrap": 0, "set_bootstrap": 0,
                                                         "use_cache": False, **kwargs})


def _pairs(dataset, predictions):
    """(ground truth, pasted-back result, hole) uint8 / float per sample, as the scorer sees them."""
    for sample in dataset.samples:
        gt, hole = read_rgb(sample.image_path), read_mask(sample.mask_path)
        yield gt, composite_uint8(read_rgb(predictions / f"{sample.stem}.png"), gt, hole), hole


def test_new_metrics_are_opt_in_listed_and_outside_table1():
    for name in NEW:
        assert name in METRICS and name not in DEFAULT and name not in TABLE1
        assert f"  {name} " in metrics_help() and "[opt-in]" in metrics_help().split(f"  {name} ")[1].splitlines()[0]
    for protocol in protocols.PROTOCOLS.values():
        assert (protocol.cmmd_sigma, protocol.cmmd_scale, protocol.cmmd_clip_model) == (10.0, 1000.0, "ViT-L-14-336")
        assert protocol.dinov2_size == 224 and "cmmd_sigma" in protocol.record()


# ---------------------------------------------------------------- CMMD

def _direct_mmd(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0) -> float:
    """The reference's estimator written out pair by pair in float64 (every pair, the diagonal included)."""
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))  # noqa: E731
    mean = lambda a, b: np.mean([[k(u, v) for v in b] for u in a])  # noqa: E731
    return scale * (mean(x, x) + mean(y, y) - 2 * mean(x, y))


def test_mmd_equals_pairwise_float64_evaluation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)) * 4, rng.normal(size=(9, 5)) * 4 + 1
    assert maximum_mean_discrepancy(x, y) == pytest.approx(_direct_mmd(x, y), rel=1e-12)
    assert maximum_mean_discrepancy(x, y, 3.0, 1.0) == pytest.approx(_direct_mmd(x, y, 3.0, 1.0), rel=1e-12)
    assert maximum_mean_discrepancy(x, x) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="embeddings"):
        maximum_mean_discrepancy(x, y[:, :4])


def test_mmd_equals_the_reference_implementation():
    """Values of google-research/cmmd's own `distance.mmd`, run outside the repo (jax 0.10.2, jax_enable_x64) on
    these seeded embeddings; with jax's default float32 the reference gives 0.41246 and 0.094286 (float32 rounding,
    8e-4 and 7e-4 relative)."""
    rng = np.random.default_rng(0)
    reference = {(50, 768): 0.4128091405004912, (200, 768): 0.09422286188853515, (7, 5): 634.4332831838208}
    for (n, d), shift in zip(reference, (0.05, 0.02, 4.0)):
        x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + shift
        if d == 768:  # unit-norm, as CLIP embeddings
            x, y = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
        assert maximum_mean_discrepancy(x, y) == pytest.approx(reference[(n, d)], rel=1e-9)


def test_cmmd_set_metric_is_independent_of_the_batch_split():
    from evaluators.cmmd import ClipMaximumMeanDiscrepancy

    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(10, 6)).astype(np.float32), rng.normal(size=(10, 6)).astype(np.float32)
    values = []
    for split in ((10,), (1, 9), (3, 3, 4)):
        metric, start = ClipMaximumMeanDiscrepancy(protocols.get_protocol("comod"), None), 0
        for size in split:
            metric.update(real[start:start + size], fake[start:start + size])
            start += size
        values.append(metric.compute()["cmmd"])
    assert values[0] == pytest.approx(_direct_mmd(real.astype(np.float64), fake.astype(np.float64)), rel=1e-12)
    assert values[0] == values[1] == values[2]


@pytest.fixture
def small_cmmd_protocols(monkeypatch):
    """Every protocol with the small ViT-S-32 the random CLIP file was made for, as both CLIP models."""
    from misato.clip import CLIP_PRESETS, ClipPreset

    # the tests give the random file under the ViT-L-14-336 key (cmmd's)
    monkeypatch.setitem(CLIP_PRESETS, "ViT-S-32", ClipPreset("ViT-S-32", "clip-vit-l-14-336-openai", True))
    patched = {name: dataclasses.replace(p, clip_model="ViT-S-32", cmmd_clip_model="ViT-S-32")
               for name, p in protocols.PROTOCOLS.items()}
    monkeypatch.setattr(protocols, "PROTOCOLS", patched)


def test_cmmd_equals_direct_clip_embeddings_and_batch_split(tiny_dataset, tiny_predictions, tmp_path, random_weights,
                                                           small_cmmd_protocols):
    from evaluators.clip_score import ClipEmbedder

    weights = {**random_weights, "clip-vit-l-14-336-openai": random_weights["clip-vit-l-14-openai"]}
    dataset = load_dataset(tiny_dataset)
    one = score(dataset, tiny_predictions, "a", tmp_path / "a", _config(weights, metrics=("cmmd", "cmmd_l14"),
                                                                           batch_size=1))
    five = score(dataset, tiny_predictions, "b", tmp_path / "b", _config(weights, metrics=("cmmd", "cmmd_l14"),
                                                                            batch_size=5))
    embedder = ClipEmbedder("ViT-S-32", resolve("clip-vit-l-14-openai", weights["clip-vit-l-14-openai"]),
                            torch.device("cpu"))
    whole, hole_only = WholeImage(embedder.image_size, embedder.mean, embedder.std), embedder.preprocess()
    embed = lambda tensor: embedder.forward(tensor[None])[0].numpy()  # noqa: E731
    real, fake, real_hole, fake_hole = [], [], [], []
    for gt, result, hole in _pairs(dataset, tiny_predictions):
        real.append(embed(whole(gt)))
        fake.append(embed(whole(result)))
        real_hole.append(embed(hole_only(gt, hole)))
        fake_hole.append(embed(hole_only(result, hole)))
    expected = _direct_mmd(np.array(real, np.float64), np.array(fake, np.float64))
    expected_hole = _direct_mmd(np.array(real_hole, np.float64), np.array(fake_hole, np.float64))
    assert expected > 0 and expected_hole > 0
    for result in (one, five):
        assert result.record.overall["cmmd"] == pytest.approx(expected, rel=1e-4)
        assert result.record.overall["cmmd_l14"] == pytest.approx(expected_hole, rel=1e-4)
    # float32 forwards of 1 or 5 images round differently: 6e-7 relative measured
    assert five.record.overall["cmmd"] == pytest.approx(one.record.overall["cmmd"], rel=1e-5)


def test_cmmd_intervals_recorded(tiny_dataset, tiny_predictions, tmp_path, random_weights, small_cmmd_protocols):
    weights = {**random_weights, "clip-vit-l-14-336-openai": random_weights["clip-vit-l-14-openai"]}
    result = score(load_dataset(tiny_dataset), tiny_predictions, "a", tmp_path,
                   _config(weights, metrics=("cmmd",), set_bootstrap=10))
    low, high = result.record.intervals["overall"]["cmmd"]
    assert low <= high and result.record.weights["clip-vit-l-14-336-openai"]["sha256"]


# ---------------------------------------------------------------- missing weights: every new metric

@pytest.mark.parametrize("metric, keys", [("cmmd", ("clip-vit-l-14-336-openai",)),
                                          ("fd_dinov2", ("dinov2-vit-l-14", "dinov2-vit-l-14-config")),
                                          ("dreamsim", ("dino-vitb16", "dreamsim-ensemble"))])
def test_missing_weights_give_the_standard_fix_text(tiny_dataset, tiny_predictions, tmp_path, metric, keys):
    result = score(load_dataset(tiny_dataset), tiny_predictions, "m", tmp_path, _config({}, metrics=(metric, "psnr")))
    reason = result.record.unavailable[metric]
    for key in keys:
        assert fix_text(get_spec(key)) in reason
    assert metric not in result.record.overall and result.record.overall["psnr"] is not None
    with pytest.raises(FileNotFoundError, match="Fix: run `misato weights fetch"):
        score(load_dataset(tiny_dataset), tiny_predictions, "m", tmp_path, _config({}, metrics=(metric,), strict=True))


# ---------------------------------------------------------------- FD-DINOv2

@pytest.fixture
def tiny_dinov2(tmp_path) -> dict[str, str]:
    """A tiny random DINOv2 (transformers Dinov2Config) saved as hub files: config.json and model.safetensors."""
    from safetensors.torch import save_file
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                          patch_size=14, image_size=56)
    model = Dinov2Model(config).eval()
    folder = tmp_path / "dinov2"
    folder.mkdir()
    config.to_json_file(folder / "config.json")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    return {"dinov2-vit-l-14-config": str(folder / "config.json"), "dinov2-vit-l-14": str(folder / "model.safetensors")}


def test_fd_dinov2_equals_direct_dinov2_forward_and_frechet(tiny_dataset, tiny_predictions, tmp_path, tiny_dinov2):
    from transformers import Dinov2Model

    from evaluators.dinov2 import Dinov2Resize
    from evaluators.functional.frechet import frechet_distance

    dataset = load_dataset(tiny_dataset)
    one = score(dataset, tiny_predictions, "a", tmp_path / "a", _config(tiny_dinov2, metrics=("fd_dinov2",),
                                                                           batch_size=1))
    five = score(dataset, tiny_predictions, "b", tmp_path / "b", _config(tiny_dinov2, metrics=("fd_dinov2",),
                                                                            batch_size=5))
    model = Dinov2Model.from_pretrained(Path(tiny_dinov2["dinov2-vit-l-14"]).parent, local_files_only=True).eval()
    pre = Dinov2Resize(224)
    with torch.no_grad():
        cls = lambda image: model(pixel_values=pre(image)[None]).last_hidden_state[0, 0]  # noqa: E731
        # the CLS token of the normed last hidden state, spelled out (not the model's pooler_output)
        rows = [(cls(gt).numpy(), cls(result).numpy())
                for gt, result, _ in _pairs(dataset, tiny_predictions)]
    real, fake = (np.array([r[i] for r in rows], np.float64) for i in (0, 1))
    expected = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert expected > 0
    assert one.record.overall["fd_dinov2"] == pytest.approx(expected, rel=1e-4)
    assert five.record.overall["fd_dinov2"] == pytest.approx(one.record.overall["fd_dinov2"], rel=1e-9)
    assert one.record.weights["dinov2-vit-l-14"]["matches"] is None  # no published digest: recorded, not verified


def test_dinov2_files_that_do_not_fit_are_refused(tmp_path, tiny_dinov2):
    from evaluators.dinov2 import load_dinov2

    config, weights = Path(tiny_dinov2["dinov2-vit-l-14-config"]), Path(tiny_dinov2["dinov2-vit-l-14"])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "vit"}))
    with pytest.raises(ValueError, match="not a DINOv2 config.json"):
        load_dinov2(other, weights)
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**json.loads(config.read_text()), "hidden_size": 32}))
    with pytest.raises(ValueError, match=f"{weights}: not a transformers Dinov2Model state dict"):
        load_dinov2(wider, weights)


# ---------------------------------------------------------------- DreamSim

def _tiny_vit(patch_size=16, **kwargs):
    """DreamSim's ViT at a tiny width (12 blocks: the package reads block 11)."""
    from dreamsim.feature_extraction.vision_transformer import VisionTransformer

    return VisionTransformer(patch_size=patch_size, embed_dim=24, depth=12, num_heads=2, mlp_ratio=1, qkv_bias=True,
                             norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), **kwargs)


@pytest.fixture
def tiny_dreamsim(tmp_path, monkeypatch) -> dict[str, str]:
    """The release layout with tiny random backbones and a random LoRA adapter: the archive and the DINO file."""
    from dreamsim import model as package
    from dreamsim.feature_extraction import vision_transformer
    from peft import LoraConfig, get_peft_model

    from evaluators.dreamsim_metric import dino_backbone

    for module in (vision_transformer, sys.modules["dreamsim.feature_extraction.load_clip_as_dino"],
                   sys.modules["dreamsim.feature_extraction.load_open_clip_as_dino"]):
        monkeypatch.setattr(module, "vit_base", _tiny_vit)
    torch.manual_seed(0)
    folder = tmp_path / "release"
    folder.mkdir()
    dino = tmp_path / "dino_vitbase16_pretrain.pth"
    torch.save(_tiny_vit(num_classes=0).state_dict(), dino)
    head = {f"module.head.mlp.{i}.{p}": torch.zeros(1) for i in (0, 2, 4) for p in ("weight", "bias")}
    torch.save({"student": {**head, "module.head.last_layer.weight": torch.zeros(1)}}, folder / "dino_vitb16_pretrain.pth")
    for name in ("clip_vitb16_pretrain.pth.tar", "open_clip_vitb16_pretrain.pth.tar"):
        vit = _tiny_vit()
        vit.pos_drop = torch.nn.LayerNorm(24)
        torch.save({"state_dict": {**vit.state_dict(), "proj": torch.randn(24, 8)}}, folder / name)
    monkeypatch.setattr(torch.hub, "load", lambda repo, name, *a, **k: dino_backbone(dino))
    monkeypatch.setattr(torch.hub, "set_dir", lambda d: None)
    base = package.PerceptualModel(**package.dreamsim_args["model_config"]["ensemble"], device="cpu",
                                   load_dir=str(folder), normalize_embeds=True)
    adapted = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=["qkv"]))
    for name, parameter in adapted.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.2)  # peft starts B at zero: make the adapter change the output
    adapted.save_pretrained(folder / "ensemble_lora")
    archive = tmp_path / "dreamsim_ensemble_checkpoint.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(folder).as_posix())
    monkeypatch.undo()  # the loader must work without the hub patches; the tiny ViT stays
    for module in (vision_transformer, sys.modules["dreamsim.feature_extraction.load_clip_as_dino"],
                   sys.modules["dreamsim.feature_extraction.load_open_clip_as_dino"]):
        monkeypatch.setattr(module, "vit_base", _tiny_vit)
    return {"dreamsim-ensemble": str(archive), "dino-vitb16": str(dino), "_folder": str(folder)}


def test_dreamsim_equals_the_package_on_crops_and_images(tiny_dataset, tiny_predictions, tmp_path, tiny_dreamsim,
                                                         monkeypatch):
    from dreamsim import dreamsim
    from PIL import Image

    from evaluators.dreamsim_metric import dino_backbone, hole_box

    weights = {k: v for k, v in tiny_dreamsim.items() if not k.startswith("_")}
    dataset = load_dataset(tiny_dataset)
    metrics = ("dreamsim", "dreamsim_image")
    one = score(dataset, tiny_predictions, "a", tmp_path / "a", _config(weights, metrics=metrics, batch_size=1))
    four = score(dataset, tiny_predictions, "b", tmp_path / "b", _config(weights, metrics=metrics, batch_size=4))
    # the package's own loading (its hub call given the same DINO file) and its own preprocess, image by image
    monkeypatch.setattr(torch.hub, "load", lambda repo, name, *a, **k: dino_backbone(Path(weights["dino-vitb16"])))
    monkeypatch.setattr(torch.hub, "set_dir", lambda d: None)
    model, preprocess = dreamsim(pretrained=True, device="cpu", cache_dir=tiny_dreamsim["_folder"])
    pil = lambda array: Image.fromarray(np.ascontiguousarray(array))  # noqa: E731
    crop, image = [], []
    with torch.no_grad():
        for gt, result, hole in _pairs(dataset, tiny_predictions):
            box = hole_box(hole)
            crop.append(float(model(preprocess(pil(result[box])), preprocess(pil(gt[box])))))
            image.append(float(model(preprocess(pil(result)), preprocess(pil(gt)))))
    assert np.std(crop) > 0 and not np.allclose(crop, image)
    # 1 - cosine in float32: batches of 1 and 4 round the cosine apart by up to a few 1e-8 (measured 2e-8)
    for result in (one, four):
        assert result.record.overall["dreamsim"] == pytest.approx(np.mean(crop), rel=1e-4, abs=2e-7)
        assert result.record.overall["dreamsim_image"] == pytest.approx(np.mean(image), rel=1e-4, abs=2e-7)
    assert "dreamsim" in one.record.per_hole_ratio[next(iter(one.record.per_hole_ratio))]
    rows = one.csv_path.read_text().splitlines()
    assert rows[0].endswith("dreamsim,dreamsim_image")
    assert [float(r.split(",")[-2]) for r in rows[1:]] == pytest.approx(crop, rel=1e-4, abs=2e-7)


def test_dreamsim_archive_checked(tmp_path):
    from evaluators.dreamsim_metric import unpack_archive

    not_zip = tmp_path / "a.zip"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        unpack_archive(not_zip, tmp_path / "out")
    other = tmp_path / "b.zip"
    with zipfile.ZipFile(other, "w") as out:
        out.writestr("readme.txt", "x")
    with pytest.raises(ValueError, match="missing dino_vitb16_pretrain.pth"):
        unpack_archive(other, tmp_path / "out")
    escaping = tmp_path / "c.zip"
    with zipfile.ZipFile(escaping, "w") as out:
        out.writestr("../evil.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        unpack_archive(escaping, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()
