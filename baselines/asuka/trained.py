"""Folders written by `misato train` and read by the inpainters: the one owner of their file names and manifests.

- MAE run (`misato train mae`): `mae.safetensors` (our `AsukaMAE` keys = the release's) + `mae.json`
  {format, config (MAEConfig fields), weights: "finetuned"}.
- ASUKA-SD folder (`misato train alignment`): `asuka_sd.json` {format, sd_model, alignment, alignment_variant,
  mae {path, sha256, config}, decoders}; `alignment.safetensors`; `sd/` (a diffusers folder, only when the run
  used tiny random SD parts). `misato inpaint --method asuka-sd --option model=FOLDER` loads it as it is.
- Decoder run (`misato train decoder`): `decoder.safetensors` (the conditioned decoder, diffusers keys) +
  `decoder.json` {format, arch ("asuka" | "cond"), file}. An ASUKA-SD manifest names decoders by Table 2(d) name
  (`decoders`: {"asuka": path, "cond": path, ...}); `asuka-sd --option decoder=NAME|PATH` picks one.
- Learned prompt (`misato train prompt`): `prompt.safetensors` {prompt_embeds (1, L, D)}, the file `sd-prompt`
  reads (`--option prompt_file=...`), `sd_prompt.json` {format, sd_model, prompt_file}; `sd/` as above.
  `sd-prompt --option model=FOLDER` loads the run as it is (`PromptFolder`).
Paths in manifests are relative to the folder when inside it, else absolute.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from misato.io import atomic_write_json, sha256_file, write_errors_named

MAE_FILE, MAE_MANIFEST, MAE_FORMAT = "mae.safetensors", "mae.json", "misato-mae/1"
ASUKA_SD_MANIFEST, ASUKA_SD_FORMAT = "asuka_sd.json", "misato-asuka-sd/1"
ALIGNMENT_FILE = "alignment.safetensors"
PROMPT_FILE, PROMPT_MANIFEST, PROMPT_FORMAT = "prompt.safetensors", "sd_prompt.json", "misato-sd-prompt/1"
DECODER_FILE, DECODER_MANIFEST, DECODER_FORMAT = "decoder.safetensors", "decoder.json", "misato-asuka-decoder/1"
SD_FOLDER = "sd"


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    """Contiguous CPU copies written to a temporary name, then renamed (atomic). A failed write (a full disk)
    removes the temporary file and raises an OSError naming `path` (`misato.io.write_errors_named`)."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    with write_errors_named(path, temporary=tmp):
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
        tmp.replace(path)


def _relative(path: Path, folder: Path) -> str:
    path, folder = path.resolve(), folder.resolve()
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def _resolve(value: str, folder: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else folder / path


def _read_manifest(folder: Path, name: str, fmt: str, what: str) -> dict[str, Any]:
    """The manifest `name` of a run folder, checked for its format; errors name the folder and the fix."""
    manifest = folder / name
    if not manifest.is_file():
        raise FileNotFoundError(f"{what} {folder}: a folder without {name} (not a finished `misato train` run)")
    data = json.loads(manifest.read_text())
    if data.get("format") != fmt:
        raise ValueError(f"{manifest}: unknown format {data.get('format')!r} (expected {fmt})")
    return data


def save_mae_run(mae: torch.nn.Module, folder: Path) -> dict[str, str]:
    """Write the fine-tuned MAE into a run folder; returns {role: file name}."""
    save_safetensors(mae.state_dict(), folder / MAE_FILE)
    atomic_write_json(folder / MAE_MANIFEST, {"format": MAE_FORMAT, "config": dataclasses.asdict(mae.config),
                                              "weights": "finetuned", "file": MAE_FILE})
    return {"mae": MAE_FILE, "mae_manifest": MAE_MANIFEST}


@dataclass(frozen=True)
class MAESource:
    """A MAE to load: file, and its MAEConfig fields (None: not recorded, use the caller's preset)."""

    path: Path
    config: dict[str, Any] | None


def find_mae(source: str | Path) -> MAESource:
    """`--mae`: a MAE run folder (its mae.json) or a MAE file (.pth in the release layout, or .safetensors)."""
    source = Path(source).expanduser()
    if source.is_dir():
        data = _read_manifest(source, MAE_MANIFEST, MAE_FORMAT, "--mae")
        return MAESource(_resolve(data["file"], source), data["config"])
    if source.is_file():
        return MAESource(source, None)
    raise FileNotFoundError(f"--mae {source}: no such file or folder")


def write_asuka_sd_folder(folder: Path, alignment: torch.nn.Module, sd_model: str, mae_path: Path,
                          mae_config: Any) -> dict[str, str]:
    """Write the alignment weights and the manifest `asuka-sd` reads; returns {role: file name}."""
    save_safetensors(alignment.state_dict(), folder / ALIGNMENT_FILE)
    atomic_write_json(folder / ASUKA_SD_MANIFEST, {
        "format": ASUKA_SD_FORMAT,
        "sd_model": sd_model,
        "alignment": ALIGNMENT_FILE,
        "alignment_variant": alignment.variant,
        "alignment_dim": alignment.dim,
        "mae": {"path": _relative(mae_path, folder), "sha256": sha256_file(mae_path),
                "config": dataclasses.asdict(mae_config)},
        "decoders": {},
    })
    return {"alignment": ALIGNMENT_FILE, "manifest": ASUKA_SD_MANIFEST}


def compose_asuka_sd(alignment_run: Path, folder: Path, decoders: dict[str, Path]) -> None:
    """An ASUKA-SD folder made of other runs: the alignment run's manifest with absolute paths, plus named
    decoders (e.g. {"dec-asuka": runs/decoder}); written atomically, and only when its content changes."""
    source = AsukaSDFolder.read(alignment_run)
    data = json.loads((source.folder / ASUKA_SD_MANIFEST).read_text())
    data.update(sd_model=source.sd_model, alignment=str(source.alignment),
                decoders={name: str(Path(path).resolve()) for name, path in decoders.items()})
    data["mae"]["path"] = str(source.mae)
    target = folder / ASUKA_SD_MANIFEST
    if target.is_file() and json.loads(target.read_text()) == data:
        return  # unchanged: keep the file (and its time stamp) as it is
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target, data)


def save_decoder_run(decoder: torch.nn.Module, arch: str, folder: Path) -> dict[str, str]:
    """Write a trained conditioned decoder (diffusers keys) and its manifest; returns {role: file name}."""
    save_safetensors(decoder.state_dict(), folder / DECODER_FILE)
    atomic_write_json(folder / DECODER_MANIFEST, {"format": DECODER_FORMAT, "arch": arch, "file": DECODER_FILE})
    return {"decoder": DECODER_FILE, "decoder_manifest": DECODER_MANIFEST}


def find_decoder(source: str | Path) -> Path:
    """A decoder file: a decoder run folder's `decoder.safetensors`, or the file itself."""
    source = Path(source).expanduser()
    if source.is_dir():
        return _resolve(_read_manifest(source, DECODER_MANIFEST, DECODER_FORMAT, "decoder")["file"], source)
    if not source.is_file():
        raise FileNotFoundError(f"decoder {source}: no such file or folder")
    return source


@dataclass(frozen=True)
class AsukaSDFolder:
    """A read `asuka_sd.json`: absolute paths, the MAE config fields, and the named decoders (may be empty)."""

    folder: Path
    sd_model: str
    alignment: Path
    alignment_variant: str
    mae: Path
    mae_sha256: str
    mae_config: dict[str, Any]
    decoders: dict[str, Path]

    @classmethod
    def read(cls, folder: str | Path) -> "AsukaSDFolder":
        folder = Path(folder).expanduser().resolve()
        data = _read_manifest(folder, ASUKA_SD_MANIFEST, ASUKA_SD_FORMAT, "asuka-sd model")
        return cls(folder, _sd_model(data["sd_model"], folder, "asuka-sd model"), _resolve(data["alignment"], folder),
                   data["alignment_variant"], _resolve(data["mae"]["path"], folder), data["mae"]["sha256"],
                   data["mae"]["config"], {k: _resolve(v, folder) for k, v in data.get("decoders", {}).items()})

    @staticmethod
    def is_one(path: str | Path) -> bool:
        return (Path(path).expanduser() / ASUKA_SD_MANIFEST).is_file()


def _sd_model(reference: str, folder: Path, what: str) -> str:
    """The SD model a manifest names: its own `sd/` folder (tiny random parts; an error when it is missing, never
    read as a hub id), another local folder as an absolute path, else a Hugging Face model id as written."""
    local = _resolve(reference, folder)
    if reference == SD_FOLDER and not local.is_dir():
        raise FileNotFoundError(f"{what} {folder}: its SD folder {local} is missing (the run saved its tiny SD "
                                "parts there)")
    return str(local) if local.exists() else reference


@dataclass(frozen=True)
class PromptFolder:
    """A read `sd_prompt.json` (a `misato train prompt` run): the SD model it trained against (hub id or absolute
    folder) and the learned prompt file; both checked to exist (`sd-prompt --option model=RUN`)."""

    folder: Path
    sd_model: str
    prompt_file: Path

    @classmethod
    def read(cls, folder: str | Path) -> "PromptFolder":
        folder = Path(folder).expanduser().resolve()
        data = _read_manifest(folder, PROMPT_MANIFEST, PROMPT_FORMAT, "sd-prompt model")
        prompt_file = _resolve(data["prompt_file"], folder)
        if not prompt_file.is_file():
            raise FileNotFoundError(f"sd-prompt model {folder}: its prompt file {prompt_file} is missing")
        return cls(folder, _sd_model(data["sd_model"], folder, "sd-prompt model"), prompt_file)


def write_prompt_folder(folder: Path, embeds: torch.Tensor, sd_model: str) -> dict[str, str]:
    """Write the learned prompt as `sd-prompt` reads it ((1, L, D) under 'prompt_embeds') and its manifest."""
    save_safetensors({"prompt_embeds": embeds.detach().float()}, folder / PROMPT_FILE)
    atomic_write_json(folder / PROMPT_MANIFEST, {"format": PROMPT_FORMAT, "sd_model": sd_model,
                                                 "prompt_file": PROMPT_FILE})
    return {"prompt": PROMPT_FILE, "manifest": PROMPT_MANIFEST}


def save_sd_components(pipe: Any, folder: Path) -> str:
    """Save a (tiny, random) SD inpainting pipeline the run used as a diffusers folder; returns its relative name."""
    pipe.save_pretrained(str(folder / SD_FOLDER), safe_serialization=True)
    return SD_FOLDER
