"""Helpers shared by test files of different folders (pytest puts tests/support on sys.path:
``pythonpath`` in pyproject.toml). Fixtures live in tests/conftest.py; these are plain functions
and constants that module-level code and parametrize lists need too."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

# --- an export bundle changed in place, its manifest's hashes updated to match ----------------


def bundle_manifest(b: Path) -> dict:
    from sdm_neuro.export.bundle import MANIFEST

    return json.loads((b / MANIFEST).read_text())


def rehash_bundle(b: Path) -> None:
    """Update the manifest's hashes and sizes to the files as they are now."""
    from sdm_neuro.export.bundle import MANIFEST

    man = bundle_manifest(b)
    for name, info in man["files"].items():
        f = b / name
        if f.is_file():
            info["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
            info["bytes"] = f.stat().st_size
    (b / MANIFEST).write_text(json.dumps(man))


def set_nir_field(b: Path, node: str, key: str, value, meta: bool = True) -> None:
    """Replace one dataset of ``node`` in network.nir (a metadata key, or a node field)."""
    import h5py

    from sdm_neuro.export.bundle import NIR_FILE

    with h5py.File(b / NIR_FILE, "r+") as f:
        group = f["node"]["nodes"][node]
        group = group["metadata"]["sdm_neuro"] if meta else group
        del group[key]
        if isinstance(value, str):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        else:
            group.create_dataset(key, data=value)
    rehash_bundle(b)


# --- feed-forward networks: random input spikes and the NIR file ------------------------------

STEPS, BATCH = 16, 3


def ff_inputs(net, seed: int = 1) -> torch.Tensor:
    from sdm_neuro.run.feedforward import random_spikes

    return random_spikes(net.input_shape, STEPS, BATCH, 0.3, seed)


def ff_written(net, tmp_path: Path, name: str = "net.nir") -> Path:
    import nir

    from sdm_neuro.frontends.feedforward_nir import feedforward_to_nir

    path = tmp_path / name
    nir.write(path, feedforward_to_nir(net))
    return path


# --- ONNX: a PyTorch model the exported file does not match -----------------------------------


class Shifted(torch.nn.Module):
    """The model with ``shift`` added to eps: a PyTorch model the ONNX file does not match."""

    def __init__(self, model, shift: float) -> None:
        super().__init__()
        self.model, self.config, self.shift = model, model.config, shift

    def forward(self, x, t):
        return self.model(x, t) + self.shift


# --- a valid user hardware profile (TOML) ------------------------------------------------------

GOOD_PROFILE = """
name = "mine"
title = "My chip"
kind = "neuromorphic"
process = "7 nm"
description = "test"
[limits]
neurons_per_core = { value = 100, tag = "datasheet", source = "the manual" }
[energy]
synop_pj = { value = 2.5, tag = "estimated", source = "a paper", derivation = "from x" }
"""

# --- samples for evaluate: two valid 16 x 16 images in [-1, 1] ---------------------------------

GOOD_SAMPLES = np.linspace(-1, 1, 2 * 1 * 16 * 16, dtype=np.float32).reshape(2, 1, 16, 16)


def npy(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr)
    return path
