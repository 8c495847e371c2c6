"""Sample quality against a dataset: FID / KID in the project classifier's feature space (and
Inception's when weights are given), recognisability, and the real-data floor / noise ceiling
measured in the same run so every figure has its scale beside it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from .classifier import TrainedClassifier
from .stats import feature_stats, fid_from_features, frechet_distance, kid

NOT_INCEPTION = ("FID/KID are computed in the feature space of the sdm-neuro {dataset} classifier "
                 "({dim}-d penultimate layer), NOT Inception-v3: compare them only with figures "
                 "computed with the same classifier file.")


MIN_FID_IMAGES = 2  # a covariance (FID) and the unbiased MMD (KID) need two images per set


@dataclass(frozen=True)
class QualityRow:
    """The metrics of one image set against the training set. FID / KID (and Inception FID) are
    ``None`` when they cannot be computed, with the reason in ``fid_kid_unavailable``."""

    name: str
    n: int
    fid: float | None
    kid: float | None
    kid_std: float | None
    confident: float          # fraction with max class probability >= threshold
    confident_stderr: float   # binomial standard error of that fraction
    class_entropy: float      # entropy (nats) of the predicted-class histogram
    class_counts: tuple[int, ...]
    inception_fid: float | None = None
    fid_kid_unavailable: str | None = None


def recognisability(probs: np.ndarray, threshold: float = 0.9) -> tuple[float, float, float,
                                                                          tuple[int, ...]]:
    """(confident fraction, its standard error, class-histogram entropy in nats, counts)."""
    n, k = probs.shape
    p = float((probs.max(1) >= threshold).mean())
    counts = np.bincount(probs.argmax(1), minlength=k)
    freq = counts[counts > 0] / n
    entropy = float(-(freq * np.log(freq)).sum()) + 0.0  # + 0.0: one class gives 0, not -0
    return p, math.sqrt(p * (1 - p) / n), entropy, tuple(int(c) for c in counts)


def noise_images(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The ceiling: standard normal noise clipped to the image range."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g).clamp(-1, 1)


@dataclass(frozen=True)
class QualityReport:
    dataset: str
    classifier: str
    feature_dim: int
    threshold: float
    kid_subsets: int
    kid_subset_size: int
    rows: tuple[QualityRow, ...]

    def row(self, name: str) -> QualityRow:
        return next(r for r in self.rows if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "classifier": self.classifier,
                "feature_dim": self.feature_dim,
                "note": NOT_INCEPTION.format(dataset=self.dataset, dim=self.feature_dim),
                "confidence_threshold": self.threshold, "entropy_max": math.log(
                    len(self.rows[0].class_counts)), "kid_subsets": self.kid_subsets,
                "kid_subset_size": self.kid_subset_size,
                "rows": {r.name: {k: v for k, v in asdict(r).items() if k != "name"}
                         for r in self.rows}}


def evaluate_sets(sets: dict[str, torch.Tensor], train_images: torch.Tensor,
                  classifier: TrainedClassifier, *, classifier_name: str = "",
                  threshold: float = 0.9, kid_subsets: int = 100, kid_subset_size: int = 1000,
                  seed: int = 0, inception: Any = None,
                  inception_reference: tuple[np.ndarray, np.ndarray] | None = None,
                  inception_stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                  progress: bool = False) -> QualityReport:
    """Score every image set in ``sets`` (name -> [N, C, H, W] in [-1, 1], N >= 1) against the
    training images. ``inception``: an Inception feature extractor (adds Inception FID, against
    the training images' features, or against ``inception_reference`` = (mu, sigma), a
    dataset's statistics, when given); ``inception_stats`` receives each set's (mu, sigma).

    Recognisability is computed for any N; FID and KID need at least two images in the set and
    in the training set, otherwise they are ``None`` and the row says why."""
    train_feats, _ = classifier.run(train_images)
    inc_train = inception_reference  # (mu, sigma) the Inception FIDs are measured against
    if inception is not None and inc_train is None and len(train_images) >= MIN_FID_IMAGES:
        from .inception import inception_features

        inc_train = feature_stats(inception_features(inception, train_images, progress=progress))
    rows = []
    # One subset size for every row, so their KIDs are comparable.
    sizes = [len(x) for x in sets.values() if len(x) >= MIN_FID_IMAGES]
    size = min(kid_subset_size, len(train_feats), *sizes)
    for name, images in sets.items():
        if len(images) == 0:
            raise UsageError(f"{name}: no images to score (an empty set).")
        feats, probs = classifier.run(images)
        conf, err, ent, counts = recognisability(probs, threshold)
        reason = _fid_kid_unavailable(len(images), len(train_feats))
        fid = k_mean = k_std = inc = None
        if reason is None:
            fid = fid_from_features(feats, train_feats)
            k_mean, k_std = kid(feats, train_feats, subsets=kid_subsets, subset_size=size,
                                seed=seed)
            if inception is not None and inc_train is not None:
                from .inception import inception_features

                stats = feature_stats(inception_features(inception, images, progress=progress))
                if inception_stats is not None:
                    inception_stats[name] = stats
                inc = frechet_distance(*stats, *inc_train)
        rows.append(QualityRow(name=name, n=len(images), fid=fid, kid=k_mean, kid_std=k_std,
                               confident=conf, confident_stderr=err, class_entropy=ent,
                               class_counts=counts, inception_fid=inc,
                               fid_kid_unavailable=reason))
    return QualityReport(dataset=classifier.dataset, classifier=classifier_name,
                         feature_dim=classifier.config.feature_dim, threshold=threshold,
                         kid_subsets=kid_subsets, kid_subset_size=size, rows=tuple(rows))


def _fid_kid_unavailable(n: int, n_train: int) -> str | None:
    """Why FID / KID cannot be computed for ``n`` images against ``n_train``, or None."""
    if n < MIN_FID_IMAGES:
        return (f"not computable: FID and KID need at least {MIN_FID_IMAGES} images "
                f"(a covariance, and pairs for the unbiased MMD); this set has {n}")
    if n_train < MIN_FID_IMAGES:
        return (f"not computable: FID and KID need at least {MIN_FID_IMAGES} training images; "
                f"the training set has {n_train}")
    return None
