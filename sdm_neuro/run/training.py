"""The training jobs: ``train`` (a SpikingUNet, with exact resume) and ``train_classifier`` (the
feature / recognisability classifier that evaluate uses)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, UsageError
from ..training import TrainResult
from .checkpoints import as_path, set_threads
from .outputs import check_output, check_outputs

_TRAIN_FIELDS = ("dataset", "data_dir", "batch_size", "lr", "warmup", "grad_clip", "ema_decay",
                 "seed", "hflip")
_MODEL_FIELDS = ("ch", "ch_mult", "num_res_blocks", "snn_steps", "img_size", "tsm")


@dataclass(frozen=True, eq=False)
class TrainClassifierResult:
    out: Path
    classifier: Any     # the fitted classifier; its meta holds test_accuracy and test_images

    def summary_lines(self) -> list[str]:
        meta = self.classifier.meta
        return [f"saved {self.out}: held-out accuracy {meta['test_accuracy']:.4f} on "
                f"{meta['test_images']} images"]


def train(*, dataset: str | None = None, data_dir: str | Path | None = None,
          out: str | Path | None = None, release: str | Path | None = None,
          steps: int | None = None, batch_size: int | None = None, lr: float | None = None,
          warmup: int | None = None, grad_clip: float | None = None,
          ema_decay: float | None = None, seed: int | None = None, hflip: bool | None = None,
          save_every: int = 1000, device: str = "auto", threads: int | None = None,
          resume: str | Path | None = None, init: str | Path | None = None,
          ch: int | None = None, ch_mult: tuple[int, ...] | None = None,
          num_res_blocks: int | None = None, snn_steps: int | None = None,
          img_size: int | None = None, tsm: bool | None = None, quiet: bool = False,
          command_line: str = "") -> TrainResult:
    """Train with the SDDPM reference recipe (Adam 2e-4, batch 32, grad clip 1.0, linear warm-up,
    random t, epsilon MSE) plus an EMA of the weights. Options left out take the recipe's value;
    the architecture defaults to a preset per dataset. Nothing is downloaded: MNIST /
    Fashion-MNIST / CIFAR-10 are read from their distribution files in --data-dir.

    Writes the checkpoint ``out`` (resumable) and the EMA weights alone into ``release``, or
    continues the run of ``resume`` exactly (written back to it without ``out``); a resumed run
    keeps its recipe, so only ``steps``, ``out``, ``device`` and ``save_every`` may differ.
    ``command_line`` (how the run was started) is recorded in the checkpoint's meta. (The first
    paragraph is the command's ``--help`` description.)"""
    from .. import training
    from ..checkpoint import read_checkpoint

    out, release, resume, init = (as_path(p) for p in (out, release, resume, init))
    data_dir = as_path(data_dir)
    check_outputs("train", out=out, release=release)
    set_threads(threads)
    values = {"dataset": dataset, "data_dir": data_dir, "batch_size": batch_size, "lr": lr,
              "warmup": warmup, "grad_clip": grad_clip, "ema_decay": ema_decay, "seed": seed,
              "hflip": hflip, "ch": ch, "ch_mult": ch_mult, "num_res_blocks": num_res_blocks,
              "snn_steps": snn_steps, "img_size": img_size, "tsm": tsm}
    target = out or resume
    if target is None:
        raise UsageError("train: --out CKPT is required (or --resume CKPT to continue a run).")
    if out is None:  # the resumed checkpoint is rewritten in place
        check_output(target, "--resume", "file", force=None)
    given = {k: values[k] for k in _TRAIN_FIELDS + _MODEL_FIELDS if values[k] is not None}
    if resume is not None:
        # A resumed run is the same run: its recipe comes from the checkpoint; only the length,
        # the device and where to write may change.
        ck = read_checkpoint(resume, weights="net")
        if not isinstance(ck.meta.get("train_config"), dict):
            raise CheckpointError(f"{resume}: no 'meta.train_config' recipe; only "
                                  "checkpoints written by 'sdm-neuro train' can be resumed.")
        stored = training.TrainConfig.from_dict(ck.meta["train_config"], source=str(resume))
        model_config = ck.config
        for k, v in given.items():
            have = getattr(stored, k) if k in _TRAIN_FIELDS else getattr(model_config, k)
            if (str(v) if k == "data_dir" else v) != have:
                raise UsageError(f"--resume {resume}: --{k.replace('_', '-')} {v} differs "
                                 f"from the run being resumed ({have}); a resumed run keeps its "
                                 "recipe (only --steps, --out, --device, --save-every may change).")
        config = dataclasses.replace(stored, steps=stored.steps if steps is None else steps)
    else:
        ini = read_checkpoint(init) if init is not None else None
        dataset = dataset or (ini.meta.get("dataset") if ini else None) or "digits"
        # Weights to start from fix the architecture; the options may still change T_snn, the
        # image size or add TSM gains.
        base = ini.config if ini else training.default_model_config(dataset, img_size)
        model_config = base.replace(**{k: v for k, v in given.items() if k in _MODEL_FIELDS})
        tc = {k: v for k, v in given.items() if k in _TRAIN_FIELDS}
        tc.setdefault("hflip", dataset == "cifar10")
        if "data_dir" in tc:
            tc["data_dir"] = str(tc["data_dir"])
        config = training.TrainConfig(**tc, **({} if steps is None else {"steps": steps}))
    return training.train(model_config, config, out=target, save_every=save_every, device=device,
                          resume=resume, init=init, release=release, progress=not quiet,
                          command=command_line)


def train_classifier(*, out: str | Path, dataset: str = "digits",
                     data_dir: str | Path | None = None, img_size: int = 16, seed: int = 0,
                     threads: int | None = None, quiet: bool = False) -> TrainClassifierResult:
    """Fit the classifier that evaluate scores samples with, on ``dataset`` at ``img_size``;
    save it to ``out``."""
    from ..evaluation.classifier import save_classifier
    from ..evaluation.evaluate import fit_classifier

    out = Path(out)
    check_outputs("train-classifier", out=out)
    set_threads(threads)
    clf = fit_classifier(dataset, img_size=img_size, data_dir=as_path(data_dir), seed=seed,
                         progress=not quiet)
    save_classifier(out, clf)
    return TrainClassifierResult(out, clf)
