"""``sdm-neuro evaluate``: score generated images against their dataset (see :mod:`.quality`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from .classifier import (
    TrainedClassifier,
    load_classifier,
    save_classifier,
    train_classifier,
)
from .quality import QualityReport, evaluate_sets, noise_images

SAMPLES, FLOOR, CEILING = "samples", "held-out real (floor)", "noise (ceiling)"


def classifier_epochs(n: int) -> int:
    """About 50k image presentations: 30 epochs of digits, 2 of MNIST / CIFAR-10."""
    return min(30, max(2, 50_000 // max(n, 1)))


def fit_classifier(dataset: str, *, img_size: int, data_dir: str | Path | None = None,
                   seed: int = 0, progress: bool = True) -> TrainedClassifier:
    from ..data import load_dataset

    train = load_dataset(dataset, split="train", data_dir=data_dir, img_size=img_size)
    test = load_dataset(dataset, split="test", data_dir=data_dir, img_size=img_size)
    return train_classifier(train.images, train.labels, dataset=dataset,
                            class_names=train.class_names, seed=seed, progress=progress,
                            epochs=classifier_epochs(len(train)), test=(test.images, test.labels))


def get_classifier(dataset: str, *, img_size: int, data_dir: str | Path | None = None,
                   path: str | Path | None = None, save_to: Path | None = None,
                   progress: bool = True, log=print) -> tuple[TrainedClassifier, str]:
    """The classifier to score with: ``path`` if given, the shipped one for digits, otherwise one
    trained now (and saved to ``save_to`` for reuse with ``--classifier``)."""
    if path is not None:
        clf = load_classifier(path)
        if clf.dataset != dataset:
            raise UsageError(f"{path}: this classifier was trained on {clf.dataset!r}, the images "
                             f"are scored against {dataset!r}.")
        return clf, str(path)
    if dataset == "digits":
        from ..assets import digits_classifier_path

        p = digits_classifier_path()
        return load_classifier(p), f"shipped {p.name}"
    log(f"no --classifier given: training one on {dataset} (saved for reuse)")
    clf = fit_classifier(dataset, img_size=img_size, data_dir=data_dir, progress=progress)
    if save_to is not None:
        save_classifier(save_to, clf)
    return clf, str(save_to) if save_to else "trained now"


def evaluate_images(samples: torch.Tensor, *, dataset: str, classifier: TrainedClassifier,
                    classifier_name: str, data_dir: str | Path | None = None,
                    inception_weights: str | Path | None = None, kid_subsets: int = 100,
                    kid_subset_size: int = 1000, seed: int = 0,
                    progress: bool = True) -> QualityReport:
    """Scores ``samples`` ([N, C, H, W] in [-1, 1]) beside the floor (held-out real images, as
    many as there are samples when the split allows, so FID's small-sample bias is alike) and
    the ceiling (clipped Gaussian noise, as many as samples), all against the training split."""
    from ..data import load_dataset

    size = samples.shape[-1]
    train = load_dataset(dataset, split="train", data_dir=data_dir, img_size=size)
    test = load_dataset(dataset, split="test", data_dir=data_dir, img_size=size)
    if tuple(samples.shape[1:]) != train.image_shape:
        raise UsageError(f"samples have shape {tuple(samples.shape[1:])}, {dataset} images at "
                         f"this size have {train.image_shape}.")
    inception = None
    if inception_weights is not None:
        from .inception import load_inception

        inception = load_inception(inception_weights)
    sets = {SAMPLES: samples.float(), FLOOR: test.images[:len(samples)],
            CEILING: noise_images(len(samples), train.image_shape, seed)}
    return evaluate_sets(sets, train.images, classifier, classifier_name=classifier_name,
                         kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed,
                         inception=inception, progress=progress)


def class_histogram_png(path: Path, report: QualityReport, class_names: tuple[str, ...]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    from ..fileio import write_atomic

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    k = len(class_names)
    width = 0.8 / len(report.rows)
    for i, r in enumerate(report.rows):
        freq = np.asarray(r.class_counts) / max(r.n, 1)
        ax.bar(np.arange(k) + (i - (len(report.rows) - 1) / 2) * width, freq, width, label=r.name)
    ax.set_xticks(np.arange(k), class_names, rotation=45 if k > 10 or len(class_names[0]) > 2
                  else 0)
    ax.set(ylabel="fraction", title=f"predicted classes ({report.dataset} classifier)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return out


def summary_lines(report: QualityReport) -> list[str]:
    """A plain-text table (also used by the CLI when stdout is not a terminal)."""
    import math

    emax = math.log(len(report.rows[0].class_counts))
    head = f"{'set':<24}{'n':>6}{'FID':>10}{'KID':>10}{'conf>=' + str(report.threshold):>12}" \
           f"{'entropy/max':>13}"
    lines = [head]
    for r in report.rows:
        inc = f"  Inception FID {r.inception_fid:.2f}" if r.inception_fid is not None else ""
        lines.append(f"{r.name:<24}{r.n:>6}{r.fid:>10.3f}{r.kid:>10.4f}"
                     f"{r.confident:>9.3f}±{r.confident_stderr:.3f}{r.class_entropy / emax:>11.3f}"
                     + inc)
    return lines


def report_dict(report: QualityReport, **extra: Any) -> dict[str, Any]:
    return {**extra, **report.to_dict()}
