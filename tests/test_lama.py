"""LaMa: the TorchScript export (a tiny stand-in) and the authors' checkpoint run by our FFC ResNet generator.

The authors' form is tested with random weights saved in their key layout (`generator.model.<i>...` plus
discriminator/loss entries that must be ignored): a tiny architecture for the contract tests, big-lama's own
for one real-size run.
"""

from __future__ import annotations

import time
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from skimage import data

from baselines.harness import inpaint_arrays
from baselines.lama import LamaInpainter
from baselines.lama_ffc import FFCResNetConfig, FFCResNetGenerator, authors_state_dict
from baselines.registry import create_inpainter
from inpainter_contract import check_contract, hole_masks, photo_crops
from misato.checkpoints import CheckpointNeedsConversionError, convert_to_safetensors
from misato.composite import composite_uint8
from baselines.runner import to_uint8
from misato.weights import WeightsNotFoundError, fix_text, get_spec

TINY = FFCResNetConfig(ngf=4, n_downsampling=2, n_blocks=2, max_features=16)  # bottleneck 16 = 4 local + 12 global
KEY = "lama-big-authors"
# Entries of the training module that are not the generator (names as in the authors' checkpoint).
NON_GENERATOR = {
    "discriminator.model0.0.weight": torch.zeros(8, 3, 4, 4),
    "loss_resnet_pl.impl.conv1.weight": torch.zeros(8, 3, 3, 3),
}


def random_generator(config: FFCResNetConfig, seed: int = 0) -> FFCResNetGenerator:
    """Random weights with non-trivial BatchNorm statistics (so eval-mode BN matters)."""
    torch.manual_seed(seed)
    generator = FFCResNetGenerator(config)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return generator.eval()


def save_authors_file(path, generator: FFCResNetGenerator, drop: str | None = None, add: dict | None = None):
    """The converted checkpoint: the training module's state dict, generator under `generator.`."""
    state = {**authors_state_dict(generator), **NON_GENERATOR, **(add or {})}
    if drop is not None:
        del state[drop]
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return save_authors_file(tmp_path_factory.mktemp("lama") / "tiny-lama.safetensors", random_generator(TINY))


def authors_inpainter(path, config: FFCResNetConfig = TINY) -> LamaInpainter:
    return create_inpainter("lama", checkpoint="authors", generator_config=config, weight_paths={KEY: str(path)})


# ---------------------------------------------------------------- the authors' checkpoint (tiny random weights)


def test_authors_checkpoint_runs_the_contract(tiny_file):
    inpainter = authors_inpainter(tiny_file)
    assert inpainter.batched and inpainter.deterministic
    preds = check_contract(inpainter, 64, stochastic=False)  # deterministic: the seed does not matter
    for mask, pred in zip(hole_masks(3, 64), preds):
        assert pred.out_of_range == 0  # sigmoid output
        assert pred.raw[mask == 1].std() > 0  # not a constant fill


def test_authors_input_is_masked_image_and_mask(tiny_file):
    """As the authors' predict.py: generator(cat(image * (1 - mask), mask)), mask binarised, no paste-back."""
    inpainter = authors_inpainter(tiny_file)
    generator = random_generator(TINY)
    images = torch.rand(2, 3, 32, 40)
    masks = torch.zeros(2, 1, 32, 40)
    masks[:, :, 8:20, 10:30] = 0.9  # binarised to 1
    out = inpainter.inpaint(images, masks, [0, 1])
    hole = (masks > 0.5).float()
    with torch.no_grad():
        expected = generator(torch.cat([images * (1 - hole), hole], dim=1))
    torch.testing.assert_close(out, expected)
    # the ground truth under the hole is not seen
    torch.testing.assert_close(inpainter.inpaint(images * (1 - hole), masks, [0, 1]), out)
    assert not torch.allclose(out[hole.expand_as(out) == 0], images[hole.expand_as(images) == 0])  # raw, not pasted


def test_authors_config_is_recorded(tiny_file):
    config = authors_inpainter(tiny_file).config()
    assert config["options"]["checkpoint"] == "authors"
    assert config["generator"]["ngf"] == TINY.ngf and config["generator"]["n_blocks"] == TINY.n_blocks
    (record,) = config["weights"]
    assert record["key"] == KEY and record["source"] == "explicit" and record["matches"] is None


def test_authors_spec_is_registered():
    spec = get_spec(KEY)
    assert spec.url == "https://huggingface.co/smartywu/big-lama/resolve/main/big-lama.zip"
    assert spec.sha256 == "" and spec.filename.endswith(".safetensors")
    assert "misato weights convert big-lama/models/best.ckpt" in spec.manual  # never downloaded automatically
    assert "--state-key state_dict" in spec.manual and "misato weights convert" in fix_text(spec)
    assert set(LamaInpainter.weights) == {"lama-big", KEY}


def test_default_generator_config_is_big_lama():
    config = FFCResNetConfig()
    assert (config.in_channels, config.out_channels, config.ngf) == (4, 3, 64)
    assert (config.n_downsampling, config.n_blocks) == (3, 18)
    assert (config.ratio_global, config.max_features, config.multiple) == (0.75, 1024, 8)


# ---------------------------------------------------------------- wrong or missing authors' files


@pytest.mark.parametrize(
    "drop,add,message",
    [
        ("generator.model.1.ffc.convl2l.weight", None, "missing keys.*model.1.ffc.convl2l.weight"),
        (None, {"generator.model.99.weight": torch.zeros(1)}, "unexpected keys.*model.99.weight"),
    ],
)
def test_wrong_keys_name_the_file_and_keys(tmp_path, drop, add, message):
    path = save_authors_file(tmp_path / "bad.safetensors", random_generator(TINY), drop=drop, add=add)
    with pytest.raises(ValueError, match=f"(?s)bad.safetensors.*{message}"):
        authors_inpainter(path)


def test_wrong_architecture_is_a_shape_error(tiny_file):
    with pytest.raises(ValueError, match="tiny-lama.safetensors.*wrong shape"):
        authors_inpainter(tiny_file, FFCResNetConfig(ngf=8, n_downsampling=2, n_blocks=2, max_features=32))


def test_file_without_generator_entries(tmp_path):
    path = tmp_path / "disc.safetensors"
    save_file({k: v.contiguous() for k, v in NON_GENERATOR.items()}, str(path))
    with pytest.raises(ValueError, match="disc.safetensors.*no 'generator.' entries"):
        authors_inpainter(path)


@dataclass
class HyperParameters:
    """Stands in for the config objects a Lightning checkpoint pickles beside the weights."""

    ngf: int = 4


def test_lightning_checkpoint_is_refused_then_converted(tmp_path, tiny_file):
    generator = random_generator(TINY)
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": {**authors_state_dict(generator), **NON_GENERATOR},
                "hyper_parameters": HyperParameters()}, ckpt)
    refusal = "misato weights convert .*best.ckpt .*--state-key state_dict"
    with pytest.raises(CheckpointNeedsConversionError, match=refusal):
        authors_inpainter(ckpt)
    converted = convert_to_safetensors(ckpt, tmp_path / "best.safetensors", "state_dict")
    images, masks = torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    torch.testing.assert_close(authors_inpainter(converted).inpaint(images, masks, [0]),
                               authors_inpainter(tiny_file).inpaint(images, masks, [0]))


def test_release_archive_is_explained(tmp_path):
    archive = tmp_path / "big-lama-best.safetensors"  # what downloading the spec's URL stores
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("big-lama/config.yaml", "generator: {}\n")
        zf.writestr("big-lama/models/best.ckpt", b"not a checkpoint")
    with pytest.raises(ValueError, match="release archive.*misato weights convert big-lama/models/best.ckpt"):
        authors_inpainter(archive)


def test_missing_authors_file_is_a_typed_error(tmp_path, monkeypatch):
    for var in ("MISATO_WEIGHTS_DIR", "TORCH_HOME", "XDG_CACHE_HOME", "HF_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("MISATO_WEIGHT_LAMA_BIG_AUTHORS", raising=False)
    with pytest.raises(WeightsNotFoundError, match="big-lama-best.safetensors"):
        create_inpainter("lama", checkpoint="authors")
    with pytest.raises(WeightsNotFoundError):
        authors_inpainter(tmp_path / "absent.safetensors")


def test_bad_options(tiny_file):
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        create_inpainter("lama", checkpoint="onnx")
    with pytest.raises(ValueError, match="generator_config"):
        create_inpainter("lama", generator_config=TINY, weight_paths={"lama-big": str(tiny_file)})


def test_generator_rejects_sizes_it_cannot_take():
    generator = FFCResNetGenerator(TINY)
    with pytest.raises(ValueError, match="multiples of 4"):
        generator(torch.zeros(1, 4, 18, 16))
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        generator(torch.zeros(1, 3, 16, 16))


# ---------------------------------------------------------------- the TorchScript export (tiny stand-in)


class TinyLama(torch.nn.Module):
    """Same signature as big-lama: (image [0,1] (B,3,H,W), mask 1 = hole (B,1,H,W)) -> composited image."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if image.shape[2] % 8 != 0 or image.shape[3] % 8 != 0:
            raise RuntimeError("H and W must be multiples of 8")
        return image * (1 - mask) + mask * 0.25


@pytest.fixture
def tiny_lama_file(tmp_path):
    path = tmp_path / "tiny-lama.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, still supported
        torch.jit.script(TinyLama()).save(str(path))
    return path


def test_lama_with_tiny_torchscript(tiny_lama_file):
    inpainter = create_inpainter("lama", weight_paths={"lama-big": str(tiny_lama_file)})
    assert not inpainter.batched
    image, mask = photo_crops(64, n=2)[1][:60, :52].copy(), hole_masks(1, 64)[0][:60, :52].copy()  # not multiples of 8
    (pred,) = inpaint_arrays(inpainter, [image], [mask], [0])
    assert pred.raw.shape == (60, 52, 3)
    np.testing.assert_allclose(pred.raw[mask == 1], 0.25, atol=1e-6)
    np.testing.assert_array_equal(to_uint8(pred.raw)[mask == 0], image[mask == 0])
    config = inpainter.config()
    assert config["options"]["checkpoint"] == "torchscript" and "generator" not in config
    (record,) = config["weights"]
    assert record["key"] == "lama-big" and record["source"] == "explicit"
    assert record["matches"] is False and record["expected_sha256"] == get_spec("lama-big").sha256


def test_lama_missing_weights_is_a_typed_error(tmp_path, monkeypatch):
    for var in ("MISATO_WEIGHTS_DIR", "TORCH_HOME", "XDG_CACHE_HOME", "HF_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("MISATO_WEIGHT_LAMA_BIG", raising=False)
    with pytest.raises(WeightsNotFoundError, match="big-lama.pt"):
        create_inpainter("lama")
    with pytest.raises(WeightsNotFoundError):
        create_inpainter("lama", weight_paths={"lama-big": str(tmp_path / "absent.pt")})


# ---------------------------------------------------------------- real size


@pytest.mark.realsize
def test_big_lama_real_size(tmp_path):
    generator = random_generator(FFCResNetConfig())
    assert sum(p.numel() for p in generator.parameters()) == 50_975_875
    path = save_authors_file(tmp_path / "big-lama-best.safetensors", generator)
    del generator
    inpainter = create_inpainter("lama", checkpoint="authors", weight_paths={KEY: str(path)})
    image = np.ascontiguousarray(data.astronaut())  # 512 x 512
    mask = np.zeros((512, 512), np.float32)
    mask[150:350, 200:330] = 1
    start = time.perf_counter()
    (pred,) = inpaint_arrays(inpainter, [image], [mask], [0])
    seconds = time.perf_counter() - start
    assert pred.raw.shape == (512, 512, 3) and 0 <= pred.raw.min() and pred.raw.max() <= 1
    np.testing.assert_array_equal(composite_uint8(to_uint8(pred.raw), image, mask)[mask == 0], image[mask == 0])
    print(f"big-lama 512x512 CPU forward: {seconds:.1f} s on {torch.get_num_threads()} thread(s)")


def test_a_file_that_is_not_torchscript_is_a_one_line_error(tmp_path):
    """`--weight lama-big=FILE` with another kind of file ended in torch's RuntimeError traceback
    (PytorchStreamReader failed reading zip archive ...); now a CorruptCheckpointError (a ValueError: the CLI's one
    line) naming the file and the authors' checkpoint option."""
    from misato.checkpoints import CorruptCheckpointError

    other = tmp_path / "other.pth"
    other.write_bytes(b"not a TorchScript archive" * 40)
    with pytest.raises(CorruptCheckpointError, match="not a TorchScript file") as error:
        create_inpainter("lama", weight_paths={"lama-big": str(other)})
    assert str(other) in str(error.value) and f"--weight {KEY}=PATH" in str(error.value)
