"""Fine-tune a registry architecture for pneumothorax yes/no: ``train(config) -> TrainResult``.

One run: read the train and val images of the data folder's stored patient-level split (test
images are never read, see :mod:`harness.train.data`), letterbox them once at the input size,
build the model (local ImageNet weights if given or cached, else from scratch; see
:mod:`harness.train.pretrained`), then per epoch: shuffled mini-batches with X-ray augmentation
(:mod:`harness.train.augment`), class-weighted cross-entropy, AdamW (or SGD) with linear warm-up
and cosine decay per step, and a validation pass. Early stopping watches validation AUROC
(ties: lower validation loss); the best epoch's weights are kept. After every epoch the full
state goes to ``train-state.pt`` so an interrupted run continues with ``resume=True``.

Determinism: every epoch seeds torch from (seed, epoch), so the same config, data and thread
count give the same checkpoint bytes on CPU, interrupted and resumed or not.

Output in ``config.out``: ``weights.safetensors`` (best epoch) and ``ptxplain-model.json``
(:class:`~ptxplain.models.meta.ModelMeta` with ``trained=True``, the Youden threshold chosen on
validation, validation metrics and the data + split fingerprint).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import torch
from torch import nn

from harness.data.dataset import ReadOptions
from harness.train.config import (
    OPTIMIZERS,
    PRECISIONS,
    WEIGHTS_FILENAME,
    TrainConfig,
    is_finished,
    resolve_device,
    resolve_precision,
    settings_key,
)
from harness.train.data import ImageTensors, TrainValRecords, load_images, read_train_val
from harness.train.digests import record_digests
from harness.train.distill import load_teacher
from harness.train.loop import EpochRunner, Validation, epoch_seed, steps_per_epoch, warmup_cosine
from harness.train.metrics import class_weights, youden_threshold
from harness.train.pretrained import WeightsInit, initialise_weights
from harness.train.provenance import DataProvenance, check_finished
from harness.train.state import STATE_FILENAME, TrainState, load_state, save_state
from ptxplain.errors import ConfigError
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.weights import save_weights

__all__ = [
    "OPTIMIZERS",
    "PRECISIONS",
    "WEIGHTS_FILENAME",
    "TrainConfig",
    "TrainImages",
    "TrainResult",
    "images_at",
    "load_train_images",
    "resolve_device",
    "resolve_precision",
    "train",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainImages:
    """Train and val images at one input size, with the data + split fingerprint."""

    train: ImageTensors
    val: ImageTensors
    fingerprint: str
    counts: dict[str, dict[str, int]]
    provenance: DataProvenance


@dataclasses.dataclass(frozen=True)
class TrainResult:
    out: Path
    finished: bool  # False: stopped by stop_after, resumable
    epochs: int
    seconds: float
    meta: ModelMeta | None = None

    @property
    def weights_path(self) -> Path:
        return self.out / WEIGHTS_FILENAME


def load_train_images(data: Path, read: ReadOptions, size: int, progress: bool) -> TrainImages:
    """Read the split's train and val images, letterboxed at ``size``."""
    return images_at(read_train_val(data, read), size, progress)


def images_at(records: TrainValRecords, size: int, progress: bool) -> TrainImages:
    """The records' train and val images, letterboxed at ``size``."""
    return TrainImages(
        train=load_images(records.train, size, desc="train images", progress=progress),
        val=load_images(records.val, size, desc="val images", progress=progress),
        fingerprint=records.fingerprint,
        counts=records.counts,
        provenance=records.provenance,
    )


def _check_out(config: TrainConfig) -> None:
    """Refuse to clobber a finished or interrupted run unless told."""
    if config.overwrite:
        for name in (META_FILENAME, WEIGHTS_FILENAME, STATE_FILENAME):
            (config.out / name).unlink(missing_ok=True)
        return
    if is_finished(config.out) and not config.resume:
        raise ConfigError(f"--out {config.out}: holds a trained model; use --overwrite to retrain")
    if (config.out / STATE_FILENAME).exists() and not config.resume:
        raise ConfigError(
            f"--out {config.out}: holds an interrupted run ({STATE_FILENAME}); "
            "use --resume to continue it or --overwrite to start over"
        )


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weights only, not on biases or norm parameters."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr, fused=True)


@dataclasses.dataclass
class _Run:
    """The pieces of one run, built by :func:`_setup`."""

    config: TrainConfig
    images: TrainImages
    init: WeightsInit
    runner: EpochRunner
    state: TrainState
    class_weights: list[float]


def _setup(config: TrainConfig, images: TrainImages) -> _Run:
    spec = config.spec
    torch.manual_seed(config.seed)
    model = spec.build(config.size)
    init = initialise_weights(
        model,
        spec,
        config.weights,
        config.weight_dirs,
        zero_init_residual=config.zero_init_residual,
    )
    device = torch.device(config.device)
    model = model.to(device).to(memory_format=torch.channels_last)
    weights = class_weights(images.train.labels.numpy(), len(spec.classes))
    optimizer = _optimizer(model, config)
    steps = steps_per_epoch(len(images.train), config.batch_size)
    schedule = warmup_cosine(config.warmup_epochs * steps, config.epochs * steps)
    runner = EpochRunner(
        model=model,
        spec=spec,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
        loss_fn=nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32)).to(device),
        batch_size=config.batch_size,
        augment=config.augment,
        device=device,
        bf16=config.precision == "bf16",
        clip_grad=config.clip_grad,
        teacher=None
        if config.teacher is None
        else load_teacher(
            config.teacher,
            images.fingerprint,
            config.size,
            alpha=config.distill_alpha,
            temperature=config.distill_temperature,
            device=device,
        ),
    )
    key = settings_key(config, images.fingerprint)
    state_path = config.out / STATE_FILENAME
    if config.resume and state_path.exists():
        state = load_state(state_path, key, model, optimizer, runner.scheduler)
        log.info("%s: resuming after epoch %d from %s", spec.name, state.epoch, state_path)
    else:
        state = TrainState(settings_key=key)
    return _Run(config, images, init, runner, state, [float(w) for w in weights])


def _log_start(run: _Run) -> None:
    config, init = run.config, run.init
    if init.path is None:
        why = "no ImageNet weights found locally" if config.weight_dirs else "no weights given"
        log.info("%s: training from scratch (%s)", config.arch, why)
    else:
        head = "head too" if init.head_loaded else "fresh 2-class head"
        log.info("%s: starting from local weights %s (%s)", config.arch, init.path, head)
    if config.teacher is not None:
        log.info(
            "%s: distilling from %s (alpha %.2f, temperature %.1f)",
            config.arch,
            config.teacher,
            config.distill_alpha,
            config.distill_temperature,
        )
    log.info(
        "%s: %d train / %d val images at %d px; %s",
        config.arch,
        len(run.images.train),
        len(run.images.val),
        config.size,
        config.describe(),
    )


def _record_epoch(run: _Run, loss: float, val: Validation, seconds: float) -> None:
    state = run.state
    state.epoch += 1
    state.train_seconds += seconds
    entry = {"epoch": state.epoch, "train_loss": loss, "val_loss": val.loss}
    state.history.append({**entry, "val_auroc": val.auroc, "seconds": seconds})
    if state.improved(val.auroc, val.loss):
        state.best_epoch, state.best_auroc, state.best_loss = state.epoch, val.auroc, val.loss
        weights = run.runner.model.state_dict().items()
        state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights}
        state.epochs_since_best = 0
    else:
        state.epochs_since_best += 1
    state.stopped_early = state.epochs_since_best >= run.config.patience
    log.info(
        "%s epoch %d: train loss %.4f, val loss %.4f, val AUROC %.4f (best %.4f at epoch %d)",
        run.config.arch,
        state.epoch,
        loss,
        val.loss,
        val.auroc,
        state.best_auroc,
        state.best_epoch,
    )


def _done(run: _Run) -> bool:
    return run.state.epoch >= run.config.epochs or run.state.stopped_early


def _state_due(run: _Run, since_save: float) -> bool:
    """Write the state when the interval has passed or the run stops resumable; a finished
    run writes its checkpoint instead."""
    if _done(run):
        return False
    return since_save >= run.config.state_every_s or run.state.epoch == run.config.stop_after


def _train_epochs(run: _Run) -> None:
    from tqdm import tqdm

    config, state, runner = run.config, run.state, run.runner
    steps = steps_per_epoch(len(run.images.train), config.batch_size)
    bar = tqdm(
        total=config.epochs * steps,
        initial=state.epoch * steps,
        desc=config.arch,
        file=sys.stderr,
        disable=not config.progress,
        dynamic_ncols=True,
    )
    last_save = time.perf_counter()
    with bar:
        while not _done(run) and state.epoch < (config.stop_after or config.epochs):
            started = time.perf_counter()
            note = f", val AUROC {state.history[-1]['val_auroc']:.4f}" if state.history else ""
            seed = epoch_seed(config.seed, state.epoch + 1)
            loss = runner.train_epoch(run.images.train, seed, bar, note)
            val = runner.validate(run.images.val)
            _record_epoch(run, loss, val, time.perf_counter() - started)
            bar.set_postfix_str(f"loss {loss:.4f}, val AUROC {val.auroc:.4f}")
            if _state_due(run, time.perf_counter() - last_save):
                path = config.out / STATE_FILENAME
                save_state(path, state, runner.model, runner.optimizer, runner.scheduler)
                last_save = time.perf_counter()


def _meta(run: _Run, val: Validation) -> ModelMeta:
    config, state = run.config, run.state
    choice = youden_threshold(val.labels, val.scores)
    metrics = {
        "val_auroc": val.auroc,
        "val_loss": val.loss,
        "val_sensitivity": choice.sensitivity,
        "val_specificity": choice.specificity,
        "val_youden_j": choice.youden_j,
        "best_epoch": float(state.best_epoch),
        "epochs_run": float(state.epoch),
        "train_seconds": round(state.train_seconds, 2),
    }
    extra = {
        "threshold_rule": "youden_j_on_val",
        "init": run.init.source,
        "class_weights": run.class_weights,
        "stopped_early": state.stopped_early,
        "hyperparameters": config.hyperparameters(),
        "split_counts": run.images.counts,
        "history": state.history,
    }
    data = run.images.provenance
    recipe = {
        "profile": config.profile,
        "hyperparameters": config.hyperparameters(),
        "settings_key": run.state.settings_key,
    }
    return ModelMeta.for_spec(
        config.spec,
        config.size,
        threshold=choice.threshold,
        trained=True,
        weights_source=f"ptxplain train ({run.init.source}{_distilled(run)})",
        metrics=metrics,
        data_fingerprint=run.images.fingerprint,
        extra=json.loads(json.dumps(extra)),
        dataset=data.dataset,
        synthetic=data.synthetic,
        train_ids_sha256=data.train_ids_sha256,
        recipe=json.loads(json.dumps(recipe)),
    )


def _distilled(run: _Run) -> str:
    teacher = run.runner.teacher
    return "" if teacher is None else f", distilled from {teacher.spec.name}"


def _finish(run: _Run) -> ModelMeta:
    """Restore the best epoch, pick the threshold on val, write weights + metadata."""
    model = run.runner.model
    model.load_state_dict(run.state.best_weights)
    meta = _meta(run, run.runner.validate(run.images.val))
    meta = record_digests(run.config.out, run.images, meta)  # train-digests.bin
    save_weights(model, run.config.out / WEIGHTS_FILENAME)
    meta.write(run.config.out / META_FILENAME)
    (run.config.out / STATE_FILENAME).unlink(missing_ok=True)
    return meta


def _identical_finished(config: TrainConfig, images: TrainImages) -> bool:
    """Whether ``config.out`` already holds this very run; raises on a different one unless
    ``config.force`` (then False: retrain)."""
    if not is_finished(config.out) or config.overwrite:
        return False
    if (config.out / STATE_FILENAME).exists():
        return False  # an unfinished run on top: _check_out decides
    key = settings_key(config, images.fingerprint)
    hyper = config.hyperparameters()
    return check_finished(config.out, images.provenance, key, hyper, force=config.force)


def train(config: TrainConfig, images: TrainImages | None = None) -> TrainResult:
    """Train ``config.arch``; ``images`` (at ``config.size``) saves re-reading the data. A
    folder holding this very run (same data and recipe) is left alone; one holding another run
    stops with the difference unless ``config.force``."""
    if config.threads:
        torch.set_num_threads(config.threads)
    images = images or load_train_images(config.data, config.read, config.size, config.progress)
    if _identical_finished(config, images):
        log.info(
            "%s: %s holds this very run (same data and recipe); skipped", config.arch, config.out
        )
        return TrainResult(config.out, True, 0, 0.0, ModelMeta.read(config.out / META_FILENAME))
    if is_finished(config.out) and not (config.out / STATE_FILENAME).exists():
        config = dataclasses.replace(config, overwrite=True)  # forced, or --overwrite
    _check_out(config)
    config.out.mkdir(parents=True, exist_ok=True)
    run = _setup(config, images)
    _log_start(run)
    _train_epochs(run)
    if not _done(run):
        log.info("%s: stopped after epoch %d; --resume continues", config.arch, run.state.epoch)
        return TrainResult(config.out, False, run.state.epoch, run.state.train_seconds)
    meta = _finish(run)
    log.info(
        "%s: best epoch %d, val AUROC %.4f, threshold %.4f -> %s",
        config.arch,
        run.state.best_epoch,
        meta.metrics["val_auroc"],
        meta.threshold,
        config.out,
    )
    return TrainResult(config.out, True, run.state.epoch, run.state.train_seconds, meta)
