"""Inception statistics in pytorch-fid's ``.npz`` format (``mu`` [D], ``sigma`` [D, D]): the
dataset statistics SDDPM's evaluation reads, and the sample statistics ``evaluate`` writes, so
FID at the papers' scale needs neither the dataset's images nor a second Inception pass."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..fileio import write_atomic


def read_fid_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of ``path``, checked: a readable ``.npz`` holding ``mu`` [D] and ``sigma``
    [D, D], finite, ``sigma`` symmetric."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            if "mu" not in f or "sigma" not in f:
                raise UsageError(f"{path}: FID statistics need arrays 'mu' and 'sigma' "
                                 f"(pytorch-fid's .npz format); it holds {sorted(f.files)}.")
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UsageError(f"{path}: not a readable .npz of FID statistics ({e}).") from None
    d = mu.shape[0] if mu.ndim == 1 else None
    if d is None or sigma.shape != (d, d):
        raise UsageError(f"{path}: 'mu' must be [D] and 'sigma' [D, D]; got {mu.shape} and "
                         f"{sigma.shape}.")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UsageError(f"{path}: 'mu' or 'sigma' holds NaN or infinity.")
    if not np.allclose(sigma, sigma.T, rtol=1e-5, atol=1e-8):
        raise UsageError(f"{path}: 'sigma' is not symmetric, so not a covariance matrix.")
    return mu, sigma


def write_fid_stats(path: str | Path, mu: np.ndarray, sigma: np.ndarray) -> Path:
    """``mu``, ``sigma`` as pytorch-fid's ``.npz`` (``np.savez``), written atomically."""
    def write(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, mu=np.asarray(mu), sigma=np.asarray(sigma))
        tmp.write_bytes(buf.getvalue())

    return write_atomic(path, write)
