"""Run a Lava child process with a hard timeout: the U-Net runs (:mod:`.lava_runtime`) and the
netx runs (:mod:`.netx`) each start one, because an error inside a Lava process can deadlock it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import ExportError


def run_child(cmd: list[str], timeout_s: float) -> None:
    """Run a Lava child process with a hard timeout (shared by the U-Net and netx runs): an
    error inside Lava can deadlock it. A new session, so a timeout kills its workers too."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        log, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ExportError(f"the Lava run did not finish within {timeout_s:.0f} s and was killed "
                          "(an error inside a Lava process can deadlock it).") from None
    if proc.returncode != 0:
        tail = log.decode(errors="replace")[-3000:]
        raise ExportError(f"the Lava run failed (exit code {proc.returncode}):\n{tail}")


def run_windows(graph, bias: dict, timeout_s: float, prefix: str) -> dict:
    """Run one call per sample of a scheduled graph (either mapping) in Lava, each in a child
    process (``sdm_neuro.export.lava_worker``), and return every node's window
    ``[T, B, C, H, W]`` (torch) as the worker recorded it. ``bias``: ``[T_snn, B, C, H, W]``
    bias mantissas per population."""
    import numpy as np
    import torch

    steps = graph.config.snn_steps
    batch = next(iter(bias.values())).shape[1]
    runs = []
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        gpath = graph.save(Path(tmp) / "graph.pt")
        for b in range(batch):
            inp, out = Path(tmp) / f"bias{b}.npz", Path(tmp) / f"out{b}.npz"
            np.savez(inp, **{k: np.asarray(v[:, b]).reshape(steps, -1).astype(np.int32)
                             for k, v in bias.items()})
            run_child([sys.executable, "-m", "sdm_neuro.export.lava_worker", str(gpath),
                       str(inp), str(out)], timeout_s)
            with np.load(out) as z:
                runs.append({k: z[k] for k in z.files})
    windows = {}
    for node in graph.nodes():
        w = np.stack([r[node.name][node.offset:node.offset + steps] for r in runs], axis=1)
        windows[node.name] = torch.from_numpy(w).reshape(steps, len(runs), *node.shape)
    return windows
