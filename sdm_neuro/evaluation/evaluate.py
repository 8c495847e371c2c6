"""``sdm-neuro evaluate``: score generated images against their dataset (see :mod:`.quality`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..fileio import read_npy_header, regular_file
from .classifier import (
    TrainedClassifier,
    load_classifier,
    save_classifier,
    train_classifier,
)
from .quality import QualityReport, evaluate_sets, noise_images

SAMPLES, FLOOR, CEILING = "samples", "held-out real (floor)", "noise (ceiling)"

# Images are in [-1, 1]. DDIM's last update is not clamped (as in the reference): it adds
# sqrt(1 - abar_0) * eps = 0.01 * eps to a clamped x0, so its samples overshoot by about 0.03;
# the slack leaves room for |eps| up to 10 and still refuses [0, 255] images.
IMAGE_LIMIT = 1.1
SAMPLES_FORM = ("a .npy array of float images [N, C, H, W] (N >= 1, C = 1 or 3, H = W) with "
                "values in [-1, 1]")
SAMPLES_MAX_BYTES = 4 << 30  # 50,000 CIFAR-10 images in float64 are 1.2 GB


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
                    inception_reference: tuple | None = None,
                    inception_stats: dict | None = None,
                    progress: bool = True) -> QualityReport:
    """Scores ``samples`` ([N, C, H, W] in [-1, 1]) beside the floor (held-out real images, as
    many as there are samples when the split allows, so FID's small-sample bias is alike) and
    the ceiling (clipped Gaussian noise, as many as samples), all against the training split
    (Inception FID against ``inception_reference`` when given: see
    :func:`~.quality.evaluate_sets`)."""
    from ..data import load_dataset

    check_kid_options(kid_subsets, kid_subset_size)
    check_images(samples, "samples")
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
                         inception=inception, inception_reference=inception_reference,
                         inception_stats=inception_stats, progress=progress)


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
    """A plain-text table (also used by the CLI when stdout is not a terminal); a metric that
    could not be computed shows as n/a, with the reason below the table."""
    emax = math.log(len(report.rows[0].class_counts))
    head = f"{'set':<24}{'n':>6}{'FID':>10}{'KID':>10}{'conf>=' + str(report.threshold):>12}" \
           f"{'entropy/max':>13}"
    lines = [head]
    for r in report.rows:
        inc = f"  Inception FID {r.inception_fid:.2f}" if r.inception_fid is not None else ""
        lines.append(f"{r.name:<24}{r.n:>6}{fmt_metric(r.fid, '.3f'):>10}"
                     f"{fmt_metric(r.kid, '.4f'):>10}"
                     f"{r.confident:>9.3f}±{r.confident_stderr:.3f}{r.class_entropy / emax:>11.3f}"
                     + inc)
    reasons: dict[str, list[str]] = {}
    for r in report.rows:
        if r.fid_kid_unavailable:
            reasons.setdefault(r.fid_kid_unavailable, []).append(r.name)
    lines += [f"FID/KID n/a ({', '.join(names)}): {why}" for why, names in reasons.items()]
    return lines


def fmt_metric(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``n/a`` for a metric that was not computable."""
    return "n/a" if value is None else format(value, spec)


def check_kid_options(subsets: int, subset_size: int) -> None:
    if isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 1:
        raise UsageError(f"--kid-subsets must be an integer >= 1 (got {subsets!r}).")
    if isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 2:
        raise UsageError(f"--kid-subset-size must be an integer >= 2 (the unbiased KID "
                         f"estimate needs pairs; got {subset_size!r}).")


def check_images(images: torch.Tensor | np.ndarray, source: str) -> None:
    """UsageError naming ``source`` unless ``images`` is a non-empty float [N, C, H, W] batch,
    finite and within [-1, 1] (up to DDIM's overshoot, see ``IMAGE_LIMIT``)."""
    if isinstance(images, torch.Tensor):  # bfloat16 has no numpy form: compare in float32
        arr = images.detach().cpu()
        arr = (arr.float() if arr.is_floating_point() else arr).numpy()
    else:
        arr = images
    if arr.dtype.kind != "f" or arr.ndim != 4 or 0 in arr.shape:
        raise UsageError(f"{source}: expected float images [N, C, H, W] with N, C, H, W >= 1, "
                         f"got {arr.dtype} {list(arr.shape)}.")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(np.argwhere(~finite)[0][0])
        raise UsageError(f"{source}: {int((~finite).sum())} values are NaN or infinite (first "
                         f"in image {bad}); expected images in [-1, 1].")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -IMAGE_LIMIT or hi > IMAGE_LIMIT:
        hint = " (images in [0, 255] map to [-1, 1] as x / 127.5 - 1)" if hi > 2 else ""
        raise UsageError(f"{source}: values range over [{lo:.4g}, {hi:.4g}], expected images in "
                         f"[-1, 1] (at most {IMAGE_LIMIT} in magnitude){hint}.")


def read_samples(path: str | Path) -> torch.Tensor:
    """``evaluate --samples``: a .npy file of images as float32 [N, C, H, W], UsageError
    naming the file otherwise. The header is read and checked (dtype, shape, its byte count
    against the file's size) before the data; nothing is unpickled."""
    path = regular_file(path, what=SAMPLES_FORM, error=UsageError, max_bytes=SAMPLES_MAX_BYTES)
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = read_npy_header(f, where=str(path), what=SAMPLES_FORM,
                                                    error=UsageError)
            _check_sample_form(path, shape, dtype)
            nbytes = math.prod(shape) * dtype.itemsize
            have = path.stat().st_size - f.tell()
            if have != nbytes:
                what = "truncated" if have < nbytes else "trailing data"
                raise UsageError(f"{path}: {what}: the header says {dtype} {list(shape)} = "
                                 f"{nbytes:,} bytes, the file has {have:,} after the header.")
            data = f.read(nbytes + 1)
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e.strerror or e}).") from None
    if len(data) != nbytes:  # the file changed while it was read
        raise UsageError(f"{path}: {len(data):,} bytes of data, the header says {nbytes:,}.")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    check_images(arr, str(path))
    return torch.from_numpy(arr.astype(np.float32))  # a writable native-order copy


def _check_sample_form(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """The header's dtype and shape against what evaluate scores, before any data is read."""
    form = f"{dtype} {list(shape)}"
    if dtype.kind != "f" or dtype.hasobject or dtype.names is not None:
        raise UsageError(f"{path}: expected float images [N, C, H, W] in [-1, 1], got {form} "
                         f"({SAMPLES_FORM}).")
    if len(shape) != 4 or min(shape) < 1:
        raise UsageError(f"{path}: expected float images [N, C, H, W] with every size >= 1, got "
                         f"{form} ({SAMPLES_FORM}).")
    if shape[1] not in (1, 3) or shape[2] != shape[3]:
        raise UsageError(f"{path}: got images of {shape[1]} channel(s), {shape[2]}x{shape[3]}; "
                         f"expected 1 or 3 channels and square images ({SAMPLES_FORM}).")


def report_dict(report: QualityReport, **extra: Any) -> dict[str, Any]:
    return {**extra, **report.to_dict()}
