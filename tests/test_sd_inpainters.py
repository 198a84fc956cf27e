"""SD 1.5 inpainters (`sd`, `sd-text`, `sd-prompt`, `sd-repaint`) on CPU with tiny random diffusers modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from baselines.sd.components import check_batch
from baselines.sd.inpainters import SDInpainter, SDPromptInpainter, SDTextInpainter
from baselines.sd.repaint import SDRepaintInpainter
from baselines.sd.tiny import tiny_inpaint_pipeline, tiny_scheduler, tiny_unet, tiny_vae
from tiny_models import refuse_network, tiny_prompt_embeds

SIZE = 32  # 4x4 latents (the tiny VAE downsamples 8x as SD's): the 2-core CI machine is shared
REPAINT_SIZE = 32
ATOL = 1e-5  # batched vs single-sample CPU kernels differ by float rounding only




def batch(n: int = 2, seed: int = 0, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random images (B, 3, size, size) in [0, 1] and different box masks (B, 1, size, size), 1 = hole."""
    generator = torch.Generator().manual_seed(seed)
    images = F.interpolate(torch.rand(n, 3, 8, 8, generator=generator), size=size, mode="bilinear")
    masks = torch.zeros(n, 1, size, size)
    unit = size // 8
    for i in range(n):
        top = unit + unit * i
        masks[i, :, top : top + 3 * unit, unit + 1 : 5 * unit - 3] = 1.0
    return images, masks


def check_contract(out: torch.Tensor, images: torch.Tensor) -> None:
    assert out.shape == images.shape
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


def check_batch_invariance(inpainter, images: torch.Tensor, masks: torch.Tensor, seeds: list[int]) -> None:
    together = inpainter.inpaint(images, masks, seeds)
    for i, seed in enumerate(seeds):
        alone = inpainter.inpaint(images[i : i + 1], masks[i : i + 1], [seed])
        torch.testing.assert_close(alone[0], together[i], atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def pipe():
    return tiny_inpaint_pipeline(text_encoder=True)


@pytest.fixture(scope="module")
def embeds():
    return tiny_prompt_embeds(seed=0), tiny_prompt_embeds(seed=1)


# ------------------------------------------------------------------------------------------ sd, sd-text


def test_sd_contract_seeds_batch_invariance_and_equivalence_to_diffusers(pipe, embeds):
    positive, negative = embeds
    inpainter = SDInpainter.from_components(pipe, prompt_embeds=positive, negative_prompt_embeds=negative, guidance=3.0)
    assert inpainter.effective_guidance == 3.0
    images, masks = batch()
    out = inpainter.inpaint(images, masks, [11, 12])
    check_contract(out, images)
    # each sample's output follows its own seed, whatever the batch
    for i, seed in enumerate([11, 12]):
        alone = inpainter.inpaint(images[i : i + 1], masks[i : i + 1], [seed])
        torch.testing.assert_close(alone[0], out[i], atol=ATOL, rtol=0)
    other_seed = inpainter.inpaint(images[1:], masks[1:], [99])
    assert (other_seed[0] - out[1]).abs().max() > 1e-3
    # the wrapper only converts arguments: same output as the diffusers pipeline called directly
    direct = pipe(
        prompt_embeds=positive.expand(2, -1, -1), negative_prompt_embeds=negative.expand(2, -1, -1), image=images,
        mask_image=masks, height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=3.0,
        generator=[torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)], output_type="pt",
    ).images
    torch.testing.assert_close(out, direct, atol=ATOL, rtol=0)


def test_sd_empty_prompt_skips_identity_guidance(pipe):
    """Prompt "" with guidance 7.5: CFG with equal embeddings is the identity, so it runs as guidance 1.0;
    the result must equal diffusers' own CFG pass with negative = positive."""
    inpainter = SDInpainter.from_components(pipe, guidance=7.5)  # encodes "" with the tiny text encoder
    assert inpainter.options["guidance"] == 7.5 and inpainter.effective_guidance == 1.0
    assert inpainter.config()["effective_guidance"] == 1.0
    images, masks = batch(1)
    out = inpainter.inpaint(images, masks, [3])
    empty = inpainter.prompt_embeds
    with_cfg = pipe(
        prompt_embeds=empty, negative_prompt_embeds=empty, image=images, mask_image=masks, height=SIZE, width=SIZE,
        num_inference_steps=2, guidance_scale=7.5, generator=[torch.Generator().manual_seed(3)], output_type="pt",
    ).images
    torch.testing.assert_close(out, with_cfg, atol=1e-4, rtol=0)


def test_sd_text_encodes_background_and_guides_against_empty(pipe):
    text = SDTextInpainter.from_components(pipe, guidance=7.5)
    empty = SDInpainter.from_components(pipe, guidance=7.5)
    expected, _ = pipe.encode_prompt("background", "cpu", 1, False)
    torch.testing.assert_close(text.prompt_embeds, expected)
    torch.testing.assert_close(text.negative_prompt_embeds, empty.prompt_embeds)
    assert text.effective_guidance == 7.5 and text.config()["prompt"] == "background"
    images, masks = batch(1, size=64)
    check_contract(text.inpaint(images, masks, [0]), images)


def test_prompt_needs_a_text_encoder_or_embeddings():
    with pytest.raises(ValueError, match="text encoder"):
        SDTextInpainter.from_components(tiny_inpaint_pipeline())


def test_inputs_are_validated(pipe, embeds):
    inpainter = SDInpainter.from_components(pipe, prompt_embeds=embeds[0], guidance=1.0)
    images, masks = batch(2)
    with pytest.raises(ValueError, match="seeds"):
        inpainter.inpaint(images, masks, [1])
    with pytest.raises(ValueError, match="multiples of 8"):
        check_batch("sd", images[..., :28], masks[..., :28], [1, 2], 8)
    with pytest.raises(ValueError, match="masks"):
        inpainter.inpaint(images, masks[:, :, :16], [1, 2])


# ------------------------------------------------------------------------------------------ sd-prompt


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_sd_prompt_loads_embeddings_from_a_file(pipe, embeds, tmp_path, suffix):
    positive, negative = torch.randn(5, 32), torch.randn(5, 32)
    path = tmp_path / f"prompt{suffix}"
    tensors = {"prompt_embeds": positive, "negative_prompt_embeds": negative}
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    learned = SDPromptInpainter.from_components(pipe, prompt_file=str(path), guidance=2.0)
    torch.testing.assert_close(learned.prompt_embeds, positive[None])
    torch.testing.assert_close(learned.negative_prompt_embeds, negative[None])
    assert learned.config()["prompt_file_sha256"]
    reference = SDInpainter.from_components(pipe, prompt_embeds=positive[None], negative_prompt_embeds=negative[None],
                                            guidance=2.0)
    images, masks = batch(1)
    torch.testing.assert_close(learned.inpaint(images, masks, [4]), reference.inpaint(images, masks, [4]))


def test_sd_prompt_defaults_to_no_guidance_and_checks_the_file(pipe, tmp_path):
    path = tmp_path / "single.pt"
    torch.save(torch.randn(1, 6, 32), path)  # a bare tensor is the positive embedding
    learned = SDPromptInpainter.from_components(pipe, prompt_file=str(path))
    assert learned.effective_guidance == 1.0 and learned.negative_prompt_embeds is None
    assert learned.prompt_embeds.shape == (1, 6, 32)
    wrong = tmp_path / "wrong.pt"
    torch.save({"something_else": torch.randn(3, 32)}, wrong)
    with pytest.raises(ValueError, match="prompt_embeds"):
        SDPromptInpainter.from_components(pipe, prompt_file=str(wrong))
    with pytest.raises(ValueError, match="prompt_file"):
        SDPromptInpainter.from_components(pipe)


# ------------------------------------------------------------------------------------------ sd-repaint


@pytest.fixture(scope="module")
def repaint_parts():
    # 40 training timesteps instead of 1000: RePaint's undo_step draws noise once per training timestep jumped
    config = dict(tiny_scheduler().config, num_train_timesteps=40)
    return tiny_unet(in_channels=4), tiny_vae(), config, tiny_prompt_embeds()


def randn_per_sample(shape, generators) -> torch.Tensor:
    return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generators])


@torch.no_grad()
def plain_latent_blending(unet, vae, config, embeds, images, masks, seeds, steps) -> torch.Tensor:
    """Textbook latent blending written independently of RePaintScheduler: DDIM (eta 0) on the whole latent,
    known latents re-noised to the next time with DDIMScheduler.add_noise, blended by the latent mask."""
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler(
        num_train_timesteps=config["num_train_timesteps"], beta_start=config["beta_start"],
        beta_end=config["beta_end"], beta_schedule=config["beta_schedule"], clip_sample=False,
        set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading",
    )
    ddim.set_timesteps(steps)
    factor = vae.config.scaling_factor
    known = vae.encode((images * 2 - 1) * (masks < 0.5)).latent_dist.mean * factor
    scale = images.shape[-1] // known.shape[-1]  # the VAE's downsampling (8, as SD's)
    cells = F.max_pool2d(masks, scale)  # 1 = a hole pixel in the latent cell
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    x = randn_per_sample(known.shape, generators)
    timesteps = [int(t) for t in ddim.timesteps]
    for i, t in enumerate(timesteps):
        eps = unet(x, t, encoder_hidden_states=embeds.expand(len(seeds), -1, -1)).sample
        x = ddim.step(eps, t, x, eta=0.0).prev_sample
        noise = randn_per_sample(known.shape, generators)
        if i + 1 < len(timesteps):
            known_t = ddim.add_noise(known, noise, torch.tensor([timesteps[i + 1]]))
        else:
            known_t = known  # the end of the chain: alpha_bar = 1
        x = cells * x + (1 - cells) * known_t
    decoded = ((vae.decode(x / factor).sample + 1) / 2).clamp(0, 1)
    return images * (1 - masks) + decoded * masks


def test_repaint_without_resampling_equals_plain_latent_blending(repaint_parts):
    unet, vae, config, embeds = repaint_parts
    inpainter = SDRepaintInpainter.from_components(unet, vae, config, embeds, steps=4, jump_length=1, jump_n_sample=1)
    assert inpainter.unet_evaluations() == 4
    images, masks = batch(2, size=REPAINT_SIZE)
    out = inpainter.inpaint(images, masks, [21, 22])
    expected = plain_latent_blending(unet, vae, config, embeds, images, masks, [21, 22], steps=4)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)


def test_repaint_contract_paste_back_and_batch_invariance(repaint_parts):
    unet, vae, config, embeds = repaint_parts
    inpainter = SDRepaintInpainter.from_components(unet, vae, config, embeds, steps=4, jump_length=2, jump_n_sample=2)
    config_record = inpainter.config()
    assert config_record["options"]["jump_length"] == 2 and config_record["options"]["jump_n_sample"] == 2
    assert config_record["clip_sample"] is False and inpainter.scheduler.config.clip_sample is False
    assert config_record["unet_evaluations"] > 4  # resampling costs extra UNet calls
    images, masks = batch(2, size=REPAINT_SIZE)
    out = inpainter.inpaint(images, masks, [1, 2])
    check_contract(out, images)
    known = masks == 0
    assert torch.equal(out.expand_as(images)[known.expand_as(images)], images[known.expand_as(images)])
    plain = SDRepaintInpainter.from_components(unet, vae, config, embeds, steps=4, jump_length=1, jump_n_sample=1)
    assert (plain.inpaint(images, masks, [1, 2]) - out).abs().max() > 1e-4  # resampling changes the result
    check_batch_invariance(inpainter, images, masks, [1, 2])


def test_repaint_refuses_an_inpainting_unet(repaint_parts):
    _, vae, config, embeds = repaint_parts
    with pytest.raises(ValueError, match="text-to-image UNet"):
        SDRepaintInpainter.from_components(tiny_unet(in_channels=9), vae, config, embeds)


# ------------------------------------------------------------------------------------------ registry, loading


def test_registry_names_resolve_to_these_classes():
    from baselines.registry import REGISTRY

    for name in ("sd", "sd-text", "sd-prompt", "sd-repaint", "asuka-sd", "asuka-flux"):
        cls = REGISTRY.get(name)
        assert cls.name == name
        assert cls.policy.pad_multiple in (8, 16)


@pytest.mark.parametrize("cls", [SDInpainter, SDRepaintInpainter])
def test_missing_model_folder_gives_a_fix(cls, tmp_path):
    with pytest.raises(FileNotFoundError, match="Fix: pass model="):
        cls(device="cpu", model=str(tmp_path))


def test_loading_from_local_diffusers_folders(tmp_path, repaint_parts):
    """The real loading path (from_pretrained of a folder, prompt encoded by the loaded text encoder) gives
    the same output as the same modules passed in directly."""
    from diffusers import StableDiffusionPipeline

    from baselines.sd.tiny import tiny_text_encoder

    inpaint_pipe = tiny_inpaint_pipeline(text_encoder=True)
    inpaint_pipe.save_pretrained(tmp_path / "inpaint")
    loaded = SDTextInpainter(device="cpu", model=str(tmp_path / "inpaint"), steps=2, guidance=2.0)
    direct = SDTextInpainter.from_components(inpaint_pipe, steps=2, guidance=2.0)
    assert loaded.options["model"] == str(tmp_path / "inpaint") and loaded.prompt_embeds.shape[1] == 77
    images, masks = batch(1)
    torch.testing.assert_close(loaded.inpaint(images, masks, [2]), direct.inpaint(images, masks, [2]))

    unet, vae, config, _ = repaint_parts
    encoder, tokenizer = tiny_text_encoder()
    base = StableDiffusionPipeline(vae=vae, text_encoder=encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=tiny_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    base.save_pretrained(tmp_path / "base")
    repaint = SDRepaintInpainter(device="cpu", model=str(tmp_path / "base"), steps=2, jump_length=1, jump_n_sample=1)
    assert repaint.effective_guidance == 1.0  # prompt "" with the default guidance 7.5
    empty, _ = base.encode_prompt("", "cpu", 1, False)
    reference = SDRepaintInpainter.from_components(unet, vae, base.scheduler.config, empty, steps=2, jump_length=1,
                                                   jump_n_sample=1)
    images, masks = batch(1, size=REPAINT_SIZE)
    torch.testing.assert_close(repaint.inpaint(images, masks, [2]), reference.inpaint(images, masks, [2]))


# ------------------------------------------------------------------------------------------ network and trained runs


@pytest.fixture
def no_network(monkeypatch):
    return refuse_network(monkeypatch)


def prompt_file(tmp_path, tokens: int = 6):
    from safetensors.torch import save_file

    path = tmp_path / "learned.safetensors"
    save_file({"prompt_embeds": torch.randn(1, tokens, 32)}, str(path))
    return path


@pytest.mark.parametrize("name", ["sd", "sd-text", "sd-prompt", "sd-repaint"])
def test_hub_models_are_never_fetched_without_allow_download(name, no_network, tmp_path):
    """Without model= the default hub id is read from the Hugging Face cache only: a clear error naming the fix,
    and no connection attempted (the old code asked the Hub)."""
    from baselines.registry import create_inpainter

    options = {"prompt_file": str(prompt_file(tmp_path))} if name == "sd-prompt" else {}
    with pytest.raises(FileNotFoundError, match=r"not in the Hugging Face cache and downloads are off.*--offline"):
        create_inpainter(name, steps=2, **options)
    assert no_network == []


def test_allow_download_reaches_the_hub(no_network, tmp_path, monkeypatch):
    """With allow_download the same load is allowed to connect (here refused by the test, so it fails); offline
    (MISATO_OFFLINE=1, as --offline means) it is not, whatever the option says."""
    from baselines.registry import create_inpainter

    with pytest.raises(FileNotFoundError, match="Hugging Face model id"):
        create_inpainter("sd", steps=2, allow_download=True)
    assert no_network
    no_network.clear()
    monkeypatch.setenv("MISATO_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="downloads are off"):
        create_inpainter("sd", steps=2, allow_download=True)
    assert no_network == []


def make_prompt_run(folder, tokens: int = 6):
    """A `misato train prompt --preset tiny` run folder as the trainer writes it: sd/ (tiny parts, no text
    encoder) and prompt.safetensors with its manifest."""
    from baselines.asuka.trained import save_sd_components, write_prompt_folder

    folder.mkdir()
    embeds = torch.randn(1, tokens, 32, generator=torch.Generator().manual_seed(3))
    write_prompt_folder(folder, embeds, save_sd_components(tiny_inpaint_pipeline(), folder))
    return embeds


def test_sd_prompt_loads_a_prompt_training_run_as_model(no_network, tmp_path):
    from baselines.registry import create_inpainter

    run = tmp_path / "prompt-run"
    embeds = make_prompt_run(run)
    learned = create_inpainter("sd-prompt", model=str(run), steps=2)
    torch.testing.assert_close(learned.prompt_embeds, embeds)
    assert learned.options["trained_folder"] == str(run.resolve())
    assert learned.options["sd_model"] == str(run.resolve() / "sd") and learned.config()["prompt_file_sha256"]
    images, masks = batch(1)
    check_contract(learned.inpaint(images, masks, [1]), images)
    other = prompt_file(tmp_path, tokens=4)  # an explicit prompt_file overrides the run's
    assert create_inpainter("sd-prompt", model=str(run), prompt_file=str(other), steps=2).prompt_embeds.shape[1] == 4
    assert no_network == []

    (run / "prompt.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"prompt-run: its prompt file .*prompt.safetensors is missing"):
        create_inpainter("sd-prompt", model=str(run), steps=2)
    make_prompt_run(tmp_path / "no-sd")
    import shutil

    shutil.rmtree(tmp_path / "no-sd" / "sd")
    with pytest.raises(FileNotFoundError, match=r"no-sd: its SD folder .*sd is missing"):
        create_inpainter("sd-prompt", model=str(tmp_path / "no-sd"), steps=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: a folder without sd_prompt.json"):
        create_inpainter("sd-prompt", model=str(tmp_path / "empty"), steps=2)
    assert no_network == []


def test_damaged_prompt_file_is_a_one_line_error_naming_it(tmp_path):
    """A truncated embeddings file (sd-prompt's prompt_file, asuka-sd's null embeddings) used to end in a raw
    SafetensorError; it goes through the project's one checkpoint reader."""
    from safetensors.torch import save_file

    from baselines.sd.components import load_tensor_file
    from misato.checkpoints import CorruptCheckpointError

    good = tmp_path / "prompt.safetensors"
    save_file({"prompt_embeds": torch.zeros(4, 8)}, str(good))
    assert torch.equal(load_tensor_file(good)["prompt_embeds"], torch.zeros(4, 8))
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(CorruptCheckpointError, match=str(bad)):
        load_tensor_file(bad)
