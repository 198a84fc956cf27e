"""The training loop every stage shares: accelerate, data order, checkpoints, resume, logs, run record.

A stage (`baselines.asuka.training.{mae,alignment,prompt}`) provides `build(config, inputs, accelerator) ->
StageParts`: the module to train, its loss, and how to save the final files. Everything else is here:

- `accelerate.Accelerator` owns devices, mixed precision, gradient accumulation and multi-process training
  (`accelerate launch ... -m misato train STAGE ...`); accumulation = batch_size / (micro_batch_size * processes).
- Data order and all randomness come from item seeds (`training.data`), so a resumed run reads and draws exactly
  what the uninterrupted run did.
- Checkpoints: `accelerator.save_state` into `checkpoints/.step-N.tmp`, then renamed to `checkpoints/step-N`
  (a kill during a save leaves only a temporary folder, ignored and removed on resume). The learning rate is a
  pure function of the step (no scheduler state). After SIGKILL, rerunning the same command resumes from the
  newest checkpoint; on CPU the final weights are bitwise those of an uninterrupted run.
- Records: `run.json` (config, identity, versions, seeds, data fingerprint, inputs' sha256, status),
  `log.jsonl` (step, loss, lr, steps/s, stage values), TensorBoard events when `tensorboard` is installed.

Fault injection for tests: `MISATO_TRAIN_KILL_AT_STEP=N` makes the process SIGKILL itself after step N.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from baselines.asuka.training.config import TrainConfig
from baselines.asuka.training.data import (
    MaskFolder,
    MaskSource,
    StepBatchSampler,
    TrainingImages,
    collate,
    data_fingerprint,
    list_training_images,
)
from misato.io import atomic_write_json, atomic_write_text, sha256_file, write_errors_named

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"
LOG_FILE = "log.jsonl"
CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer.json"
KILL_ENV = "MISATO_TRAIN_KILL_AT_STEP"
MAX_BAD_LISTED = 100


@dataclass
class TrainInputs:
    """What a run reads besides its config. data: image folder or file list; mae: MAE file or MAE run folder;
    masks: mask folder or zip (config mask_source "folder"); coco_annotations: instances JSON for object shapes."""

    data: str
    out: str
    mae: str | None = None
    masks: str | None = None
    coco_annotations: str | None = None
    decoder_init: str | None = None
    latents: str | None = None
    weights: dict[str, str] = field(default_factory=dict)
    allow_download: bool = False


@dataclass
class StageParts:
    """What a stage gives the loop.

    trainable: the module whose parameters with requires_grad are optimised (its forward is what the loss calls,
    so that DDP sees it); loss(model, batch, step) -> (scalar loss, {name: float} to log); save(model, folder) ->
    {file role: file name} written into the run folder (the unwrapped model); inputs: {role: {path, sha256}} of
    the files the stage read (frozen parts); frozen: {name: module} that must not change (tests check it);
    item_extra: per-item hook for the dataset (picklable); canonical_crops: one crop per file for the whole run
    (seeded by the file, not the epoch; the decoder's offline latents are computed on it); aux, aux_loss: a second
    trained module with its own AdamW (the decoder's discriminator): aux_loss(aux, step) -> loss or None, called
    after the main loss of the same micro-batch.
    """

    trainable: torch.nn.Module
    loss: Callable[[torch.nn.Module, dict[str, Any], int], tuple[torch.Tensor, dict[str, float]]]
    save: Callable[[torch.nn.Module, Path], dict[str, str]]
    inputs: dict[str, Any] = field(default_factory=dict)
    frozen: dict[str, torch.nn.Module] = field(default_factory=dict)
    item_extra: Callable | None = None
    canonical_crops: bool = False
    aux: torch.nn.Module | None = None
    aux_loss: Callable[[torch.nn.Module, int], torch.Tensor | None] | None = None


def file_record(path: str | os.PathLike) -> dict[str, str]:
    """{path, sha256} of a file; of a folder, sha256 over its files' (relative path, sha256) lines."""
    path = Path(path).resolve()
    if not path.is_dir():
        return {"path": str(path), "sha256": sha256_file(path)}
    lines = "".join(f"{p.relative_to(path)}\0{sha256_file(p)}\n" for p in sorted(path.rglob("*")) if p.is_file())
    return {"path": str(path), "sha256": hashlib.sha256(lines.encode()).hexdigest()}


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up, then constant or cosine to 0."""
    if config.lr_warmup_steps and step < config.lr_warmup_steps:
        return config.lr * (step + 1) / config.lr_warmup_steps
    if config.lr_schedule == "cosine":
        span = max(1, config.steps - config.lr_warmup_steps)
        progress = min(1.0, (step - config.lr_warmup_steps) / span)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr


def accumulation_steps(config: TrainConfig, num_processes: int) -> int:
    per_step = config.micro_batch_size * num_processes
    if config.batch_size % per_step:
        raise ValueError(f"batch_size {config.batch_size} is not a multiple of micro_batch_size {config.micro_batch_size}"
                         f" x {num_processes} process(es); change one of them")
    return config.batch_size // per_step


def mask_source(config: TrainConfig, inputs: TrainInputs) -> MaskSource:
    """The configured mask source, checked before any work: a mask folder, or the sampler with COCO object shapes
    (from --coco-annotations) or synthetic ones."""
    from misato.masks.coco import ObjectShapeBank

    if config.mask_source == "folder":
        if not inputs.masks:
            raise ValueError("mask_source 'folder' needs --masks DIR_OR_ZIP")
        return MaskSource(folder=MaskFolder(inputs.masks))
    if inputs.masks:
        raise ValueError("--masks is given but mask_source is 'sampler'; add --set mask_source=folder")
    if inputs.coco_annotations:
        path = Path(inputs.coco_annotations)
        if not path.is_file():
            raise FileNotFoundError(f"--coco-annotations {path}: no such file")
        from pycocotools.coco import COCO

        return MaskSource(objects=ObjectShapeBank.from_coco(COCO(str(path))))
    objects = ObjectShapeBank.synthetic(config.synthetic_objects, seed=config.seed) if config.synthetic_objects else None
    return MaskSource(objects=objects)


def latest_checkpoint(out: Path) -> Path | None:
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return None
    done = sorted(p for p in folder.glob("step-*") if (p / TRAINER_STATE).is_file())
    return done[-1] if done else None


def _logged_step(line: str) -> float:
    """The step of a log.jsonl line; inf for a line a kill cut short (it is dropped on resume)."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


class RunLog:
    """log.jsonl (and TensorBoard when installed), main process only. On resume, lines past the resumed step
    (written after the last checkpoint of a killed run) are dropped so the log matches the weights."""

    def __init__(self, out: Path, start_step: int, enabled: bool) -> None:
        self.path = out / LOG_FILE
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if _logged_step(line) <= start_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step + 1)
        except ImportError:
            self.writer = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with write_errors_named(self.path), open(self.path, "a") as handle:  # a full disk names no file
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _identity(config: TrainConfig, data: dict[str, Any], inputs: dict[str, Any], mask_info: dict) -> dict[str, Any]:
    """What must match for a folder to be resumed: config, data fingerprint, mask source and input files."""
    return {"config": config.record(), "data_sha256": data["sha256"], "masks": mask_info,
            "inputs": {k: v.get("sha256") if isinstance(v, dict) else v for k, v in inputs.items()}}


def _check_resumable(out: Path, identity: dict[str, Any]) -> None:
    """Refuse a folder whose run differs in any key of `identity` (a partial identity checks those keys only)."""
    record_path = out / RUN_RECORD
    if not record_path.is_file():
        return
    previous = json.loads(record_path.read_text()).get("identity")
    if previous is None or any(previous.get(k) != v for k, v in identity.items()):
        keys = sorted(k for k in identity if previous is None or previous.get(k) != identity[k])
        fields = []
        if previous is not None and "config" in keys:
            fields = sorted(k for k in identity["config"] if previous["config"].get(k) != identity["config"][k])
        raise ValueError(f"--out {out} holds a run with a different {', '.join(keys)}"
                         f"{' (fields: ' + ', '.join(fields) + ')' if fields else ''}; use a new --out to start "
                         "another run, or the same settings to resume this one")


def train(config: TrainConfig, build: Callable[..., StageParts], inputs: TrainInputs, max_steps: int | None = None,
          progress: bool = True, cpu: bool = False) -> dict[str, Any]:
    """Run (or resume) one training stage into `inputs.out`; returns the final run record.

    Every input is checked before any model is built. max_steps: stop after this many optimizer steps (the
    learning-rate schedule still follows config.steps); a later call with a larger max_steps continues the run.
    """
    from accelerate import Accelerator
    from accelerate.state import PartialState
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from misato.environment import git_state, package_versions, utc_now

    config.validate()
    end = min(config.steps, max_steps) if max_steps is not None else config.steps
    if end < 1:
        raise ValueError(f"--max-steps must be >= 1, got {max_steps}")
    root, files = list_training_images(inputs.data)
    masks = mask_source(config, inputs)
    state = PartialState(cpu=cpu)
    accum = accumulation_steps(config, state.num_processes)
    if config.mixed_precision == "fp16" and state.device.type == "cpu":
        raise ValueError("mixed_precision fp16 needs a GPU; use 'bf16' or 'no' on CPU")
    accelerator = Accelerator(mixed_precision=config.mixed_precision, gradient_accumulation_steps=accum, cpu=cpu)
    out = Path(inputs.out).resolve()
    data = data_fingerprint(root, files)

    out_check = {k: v for k, v in _identity(config, data, {}, masks.describe()).items() if k != "inputs"}
    _check_resumable(out, out_check)  # before any model is built; the input files are checked below
    set_seed(config.seed)  # model initialisation: the same on every process
    parts = build(config, inputs, accelerator)
    identity = _identity(config, data, parts.inputs, masks.describe())
    if accelerator.is_main_process:
        _check_resumable(out, identity)
    accelerator.wait_for_everyone()

    params = [p for p in parts.trainable.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the stage has no trainable parameter")
    # the trained module and, when the stage has one, its auxiliary module (the decoder's discriminator): one AdamW
    # each, all prepared by accelerate together
    modules = [parts.trainable] + ([parts.aux] if parts.aux is not None else [])
    optimizers = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=config.lr,
                                    betas=tuple(config.adam_betas), weight_decay=config.weight_decay) for m in modules]
    prepared = accelerator.prepare(*modules, *optimizers)
    models, optimizers = list(prepared[:len(modules)]), list(prepared[len(modules):])
    model, aux = models[0], (models[1] if len(models) > 1 else None)

    start, bad_total, bad_listed = 0, 0, []
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        trainer = json.loads((checkpoint / TRAINER_STATE).read_text())
        start, bad_total, bad_listed = trainer["step"], trainer["bad_images"], trainer["bad_listed"]
        accelerator.print(f"resuming {out} from {checkpoint.name} (step {start})")

    previous = out / RUN_RECORD
    if start >= end and previous.is_file():
        done_record = json.loads(previous.read_text())
        if done_record.get("files") and done_record.get("step", 0) >= end:
            accelerator.print(f"{out}: already at step {start} (target {end}); nothing to do")
            return done_record

    record: dict[str, Any] = {
        "stage": config.stage,
        "identity": identity,
        "config": config.record(),
        "inputs": {**parts.inputs, "data": data, "masks": masks.describe(), "args": vars(inputs)},
        "seeds": {"run": config.seed, "items": "sample_seed('{epoch}/{relative path}', run seed)",
                  "process_order": "per-epoch permutation default_rng([run seed, epoch])"},
        "accelerate": {"processes": accelerator.num_processes, "gradient_accumulation_steps": accum,
                       "mixed_precision": config.mixed_precision, "device": str(accelerator.device)},
        "versions": package_versions(),
        "git": git_state(),
        "started": utc_now(),
        "status": "running",
        "step": start,
        "target_steps": end,
    }
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        for stale in (out / CHECKPOINTS).glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        atomic_write_json(out / RUN_RECORD, record)
    accelerator.wait_for_everyone()

    dataset = TrainingImages(root, files, config.resolution, masks, tuple(config.crop_scale), config.hflip,
                             parts.item_extra, canonical_seed=config.seed if parts.canonical_crops else None)
    sampler = StepBatchSampler(files, config.micro_batch_size, accelerator.num_processes, accelerator.process_index,
                               config.seed, start * accum, end * accum)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers,
                                         collate_fn=collate)
    batches = iter(loader)
    run_log = RunLog(out, start, accelerator.is_main_process)
    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    bar = tqdm(total=end, initial=start, desc=f"train {config.stage}", unit="step",
               disable=not (progress and accelerator.is_main_process))
    tick = time.perf_counter()
    for step in range(start, end):
        lr = lr_at(config, step)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        losses, extras = [], {}
        for _ in range(accum):
            batch = next(batches)
            bad_total += len(batch["bad"])
            bad_listed.extend(m for m in dict.fromkeys(batch["bad"]) if m not in bad_listed)
            del bad_listed[MAX_BAD_LISTED:]
            with accelerator.accumulate(*models):
                with accelerator.autocast():
                    loss, extras = parts.loss(model, batch, step)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"step {step}: loss is {loss.item()}; lower lr or check the data")
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.grad_clip > 0:
                    accelerator.clip_grad_norm_(params, config.grad_clip)
                optimizers[0].step()
                optimizers[0].zero_grad(set_to_none=True)
                if aux is not None:
                    with accelerator.autocast():
                        aux_value = parts.aux_loss(aux, step)
                    if aux_value is not None:
                        accelerator.backward(aux_value)
                        optimizers[1].step()
                        optimizers[1].zero_grad(set_to_none=True)
                        extras = {**extras, "aux_loss": float(aux_value.detach())}
            losses.append(loss.detach().float())
        mean_loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
        done = step + 1
        now = time.perf_counter()
        if done % config.log_every == 0 or done == end:
            run_log.write({"step": done, "loss": mean_loss, "lr": lr, "steps_per_s": 1.0 / max(now - tick, 1e-9),
                           "bad_images": bad_total, **extras})
        tick = now
        bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
        bar.update(1)
        if done % config.checkpoint_every == 0 or done == end:
            _save_checkpoint(accelerator, out, done, config.keep_checkpoints,
                             {"step": done, "bad_images": bad_total, "bad_listed": bad_listed})
        if kill_at and done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    run_log.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # the writers (`save_safetensors`, `atomic_write_bytes`) remove their own temporary files on a failed write and
        # name their file; this names the run folder for a writer that does not (diffusers' save_pretrained)
        with write_errors_named(out):
            files_written = parts.save(accelerator.unwrap_model(model), out)
        record.update(status="finished" if end == config.steps else "stopped at --max-steps", step=max(start, end),
                      finished=utc_now(), bad_images=bad_total, bad_images_listed=bad_listed,
                      files={role: file_record(out / name) for role, name in files_written.items()})
        atomic_write_json(out / RUN_RECORD, record)
    accelerator.wait_for_everyone()
    return record


def _save_checkpoint(accelerator: Any, out: Path, step: int, keep: int, trainer: dict[str, Any]) -> None:
    """Write checkpoint `step-N` through the temporary folder `.step-N.tmp`. A failed write (a full disk: torch,
    safetensors or Python raising) removes the temporary folder and raises an OSError naming `step-N`
    (`misato.io.named_write_error`); the previous checkpoints are kept, so the same command resumes from them."""
    folder = out / CHECKPOINTS
    final = folder / f"step-{step:08d}"
    tmp = folder / f".step-{step:08d}.tmp"
    with write_errors_named(final, temporary=tmp):
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            atomic_write_json(tmp / TRAINER_STATE, trainer)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    if accelerator.is_main_process:
        for old in sorted(folder.glob("step-*"))[:-keep]:  # zero-padded names: sorted = oldest first
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
