"""The export bundle of a feed-forward SNN (from a NIR file): a directory with

``manifest.json``  tool, source file and SHA-256, dt, calibration input, quantization, profile
                   check, file hashes (checked on read)
``network.nir``    the float network (this project's NIR writer: dt and discretisation in the
                   graph metadata), readable by snnTorch / Norse within their limits (README)
``quantized.pt``   the integer parameters (:func:`sdm_neuro.compiler.quantize_feedforward.to_state`)
``network.net``    target loihi2 only: the lava-dl netx HDF5 (:mod:`.netx`)

:func:`read_feedforward_bundle` rebuilds exactly the quantized network that was exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import torch

from ..errors import CheckpointError, ConfigError, ExportError
from ..checkpoint import load_torch_file
from ..fileio import regular_file, sha256_file, write_json
from ..frontends.feedforward_nir import feedforward_from_nir, feedforward_to_nir
from ..compiler.quantize_feedforward import QuantizedSNN, from_state, to_state
from .bundle import MANIFEST, NIR_FILE, bundle_format, read_manifest
from .netx import NETX_FILE, write_netx

SEQ_FORMAT, SEQ_VERSION = "sdm-neuro-sequential-bundle", 1
QUANT_FILE = "quantized.pt"
MAX_QUANT_BYTES = 1 << 30


def is_feedforward_bundle(path: str | Path) -> bool:
    """Whether ``path`` holds a sequential bundle's manifest (a guarded peek, see
    :func:`~sdm_neuro.export.bundle.bundle_format`)."""
    return bundle_format(path) == SEQ_FORMAT


def write_feedforward_bundle(qnet: QuantizedSNN, out: Path, manifest: dict[str, Any], *,
                            netx: bool) -> dict[str, Any]:
    """Write the bundle's files into the (empty, temporary) directory ``out``."""
    files = {NIR_FILE: "the float network (NIR; dt and discretisation in the graph metadata)",
             QUANT_FILE: "integer parameters per layer (weight_int, bias_mant at bias_exp 6, "
                         "vth, dv; du 4095; weight_exp 0)"}
    nir.write(out / NIR_FILE, feedforward_to_nir(qnet.net))
    torch.save(to_state(qnet), out / QUANT_FILE)
    if netx:
        write_netx(qnet, out / NETX_FILE)
        files[NETX_FILE] = ("lava-dl netx HDF5; run it with netx.hdf5.Network(net_config=..., "
                            "reset_interval=R, reset_offset=1), R >= time steps + layers + 1, "
                            "binary spikes into net.inp (sdm_neuro.export.netx.run_netx)")
    manifest = {"format": SEQ_FORMAT, "format_version": SEQ_VERSION, **manifest,
                "dt": qnet.net.dt, "quantization": qnet.report,
                "files": {n: {"sha256": sha256_file(out / n), "what": w}
                          for n, w in files.items()}}
    write_json(out / MANIFEST, manifest)
    return manifest


def read_feedforward_bundle(path: str | Path) -> tuple[QuantizedSNN, dict[str, Any]]:
    """The quantized network of a bundle and its manifest, after the manifest's hash check;
    a missing, oversized, truncated or malformed file is an :class:`ExportError` naming it
    (exit code 7, as for U-Net bundles)."""
    path = Path(path)
    manifest = read_manifest(path, SEQ_FORMAT, SEQ_VERSION, error=ExportError)
    for name in (NIR_FILE, QUANT_FILE):  # read_manifest checked that "files" is an object
        if name not in manifest["files"]:
            raise ExportError(f"{path / MANIFEST}: does not list {name}; a sequential "
                              f"bundle has {NIR_FILE} and {QUANT_FILE}.")
    try:  # the readers shared with plain .nir and parameter files name the file themselves
        net = feedforward_from_nir(path / NIR_FILE)
        quant = regular_file(path / QUANT_FILE, what="integer parameters (torch.save)",
                             error=ExportError, max_bytes=MAX_QUANT_BYTES)
        state = load_torch_file(quant)
        return from_state(net, state, source=str(quant)), manifest
    except (CheckpointError, ConfigError) as e:
        raise ExportError(str(e)) from None
