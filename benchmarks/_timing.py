"""Shared helpers of the benchmark scripts: timing, and running code in a fresh interpreter
with its peak memory."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# The child's own VmHWM (Linux). ru_maxrss is not used: Linux carries the parent's high-water
# mark across fork + exec into the child's figure.
PEAK = """
def _peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
"""


# Wall time of one call on ``device`` (CUDA work is asynchronous: synchronize around it).
TIMER = """
def _timed(device, fn, *args):
    import time, torch
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(*args)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0
"""


def child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line (``_peak_mb()`` gives its
    peak memory, ``_timed(device, fn, *args)`` the wall time of one call)."""
    r = subprocess.run([sys.executable, "-c", PEAK + TIMER + code], capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_cli(argv: list[str]) -> dict:
    """``sdm-neuro ARGV`` in a fresh interpreter: exit code, wall seconds, peak memory (MB)."""
    t0 = time.perf_counter()
    out = child(f"""
import json
from sdm_neuro.cli import main
rc = main({argv!r})
print(json.dumps({{"rc": rc, "peak_rss_mb": _peak_mb()}}))
""")
    return {**out, "wall_s": round(time.perf_counter() - t0, 1)}
