"""Run a Lava child process with a hard timeout: the U-Net runs (:mod:`.lava_runtime`) and the
netx runs (:mod:`.netx`) each start one, because an error inside a Lava process can deadlock it."""

from __future__ import annotations

import os
import signal
import subprocess

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
