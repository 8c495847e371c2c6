"""A small CNN classifier trained by the project on each dataset. Its penultimate layer is the
feature space of the project's FID / KID (not Inception's: the figures are comparable only with
other figures computed with the same classifier file), and its softmax gives recognisability."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CheckpointError, CheckpointMismatchError
from ..fileio import regular_file, write_atomic
from ..formats import check_format

FORMAT_TAG = "sdm-neuro-classifier"
FORMAT_VERSION = 1
MAX_CLASSIFIER_BYTES = 256 << 20  # the classifiers written here are about 1 MB


@dataclass(frozen=True)
class ClassifierConfig:
    img_ch: int
    img_size: int
    num_classes: int
    width: int = 32
    feature_dim: int = 128


class Classifier(nn.Module):
    """conv-BN-ReLU x4 (two stride-2), 2x2 average pool, a ReLU feature layer, logits."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        chans = [(config.img_ch, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2)]
        self.body = nn.Sequential(*[m for cin, cout, s in chans for m in (
            nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())])
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.feature = nn.Linear(16 * w, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.feature(self.pool(self.body(x)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.dropout(self.features(x), 0.3, self.training))


@dataclass(frozen=True)
class TrainedClassifier:
    model: Classifier
    dataset: str
    class_names: tuple[str, ...]
    meta: dict[str, Any]

    @property
    def config(self) -> ClassifierConfig:
        return self.model.config

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] at any size -> the classifier's resolution."""
        s = self.config.img_size
        if images.shape[-1] != s or images.shape[-2] != s:
            images = F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > s)
        return images

    @torch.no_grad()
    def run(self, images: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """(features float64 [N, D], class probabilities float64 [N, K])."""
        self.model.eval()
        feats, probs = [], []
        for chunk in torch.split(images.float(), batch_size):
            f = self.model.features(self.prepare(chunk))
            feats.append(f.double().numpy())
            probs.append(F.softmax(self.model.head(f), dim=1).double().numpy())
        return np.concatenate(feats), np.concatenate(probs)


def _shift(x: torch.Tensor, gen: torch.Generator, pad: int = 1) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (edge padding): cheap augmentation."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad,) * 4, mode="replicate")
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, n), generator=gen)).tolist()
    return torch.stack([xp[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(dy, dx))])


def _outliers(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Half clipped Gaussian noise, half pixel-shuffled images (same pixel statistics as the
    data, no shape). Blends of two digits were tried too: they cost real digits their
    confidence (held-out confident fraction fell from 0.92 to 0.01), so they are left out."""
    noise = torch.randn(x.shape, generator=gen).clamp(-1, 1)
    flat = x.flatten(1)
    perm = torch.argsort(torch.rand(flat.shape, generator=gen), dim=1)
    shuffled = torch.gather(flat, 1, perm).view_as(x)
    half = (torch.arange(len(x)) % 2 == 0)[:, None, None, None]
    return torch.where(half, noise, shuffled)


def train_classifier(train_images: torch.Tensor, train_labels: torch.Tensor, *, dataset: str,
                     class_names: tuple[str, ...], epochs: int = 30, batch_size: int = 64,
                     seed: int = 0, progress: bool = True,
                     test: tuple[torch.Tensor, torch.Tensor] | None = None) -> TrainedClassifier:
    """Adam 1e-3 with cosine decay, random 1-pixel shifts, outlier exposure; reports held-out
    accuracy."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    c, s = train_images.shape[1], train_images.shape[-1]
    model = Classifier(ClassifierConfig(img_ch=c, img_size=s, num_classes=len(class_names)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = len(train_images)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    bar = tqdm(total=steps, desc=f"classifier ({dataset})", unit="step", disable=not progress)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            x = _shift(train_images[idx], gen)
            loss = F.cross_entropy(model(x), train_labels[idx])
            # Outlier exposure (Hendrycks et al. 2019): push shapeless images to a uniform
            # prediction; without it the classifier called 62% of pure-noise images digits
            # with confidence >= 0.9, which would make that criterion meaningless.
            logp = F.log_softmax(model(_outliers(x, gen)), dim=1)
            loss = loss - 0.2 * logp.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    model.eval()
    meta: dict[str, Any] = {"epochs": epochs, "train_images": n, "seed": seed}
    trained = TrainedClassifier(model, dataset, tuple(class_names), meta)
    if test is not None:
        _, probs = trained.run(test[0])
        meta["test_accuracy"] = float((probs.argmax(1) == test[1].numpy()).mean())
        meta["test_images"] = len(test[0])
    return trained


def save_classifier(path: str | Path, clf: TrainedClassifier) -> Path:
    payload = {"format": FORMAT_TAG, "format_version": FORMAT_VERSION,
               "config": dataclasses.asdict(clf.config), "dataset": clf.dataset,
               "class_names": list(clf.class_names), "meta": clf.meta,
               "state_dict": {k: v.detach().cpu() for k, v in clf.model.state_dict().items()}}
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_classifier(path: str | Path) -> TrainedClassifier:
    from ..checkpoint import load_torch_file

    path = regular_file(path, what="an sdm-neuro classifier file", error=CheckpointError,
                        max_bytes=MAX_CLASSIFIER_BYTES)
    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not an sdm-neuro classifier file (expected format "
                              f"{FORMAT_TAG!r}, found a {type(obj).__name__}).")
    check_format(obj.get("format"), obj.get("format_version"), expected=FORMAT_TAG,
                 supported_max=FORMAT_VERSION, where=str(path),
                 what="an sdm-neuro classifier file", error=CheckpointError)
    config = _checked_config(path, obj.get("config"))
    dataset, class_names = obj.get("dataset"), obj.get("class_names")
    if not isinstance(dataset, str):
        raise CheckpointError(f"{path}: 'dataset' is {dataset!r}, expected a dataset name.")
    if not (isinstance(class_names, list | tuple) and len(class_names) == config.num_classes
            and all(isinstance(c, str) for c in class_names)):
        raise CheckpointError(f"{path}: 'class_names' must be a list of {config.num_classes} "
                              "strings (config num_classes).")
    try:
        model = Classifier(config)
        model.load_state_dict(obj["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise CheckpointMismatchError(f"{path}: classifier weights do not fit its config: "
                                      f"{str(e).splitlines()[0][:200]}") from None
    model.eval()
    return TrainedClassifier(model, dataset, tuple(class_names), dict(obj.get("meta") or {}))


# Ranges of the config fields, checked before the network is built (a huge width would
# allocate before the weights are compared).
_CONFIG_LIMITS = {"img_ch": (1, 3), "img_size": (1, 1024), "num_classes": (2, 1000),
                  "width": (1, 1024), "feature_dim": (1, 8192)}


def _checked_config(path: Path, cfg: Any) -> ClassifierConfig:
    if not isinstance(cfg, dict) or set(cfg) - set(_CONFIG_LIMITS):
        extra = sorted(set(cfg) - set(_CONFIG_LIMITS)) if isinstance(cfg, dict) else cfg
        raise CheckpointError(f"{path}: 'config' must be a dict of {', '.join(_CONFIG_LIMITS)} "
                              f"(got {extra!r}).")
    for key, (lo, hi) in _CONFIG_LIMITS.items():
        value = cfg.get(key, getattr(ClassifierConfig, key, None))
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise CheckpointError(f"{path}: config {key} is {value!r}, expected an integer in "
                                  f"[{lo}, {hi}].")
    return ClassifierConfig(**cfg)
