"""The examples run (in tiny settings)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_trains_samples_and_saves(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "examples" / "quickstart.py"),
                        "--train-steps", "3", "--sample-steps", "3", "--num", "2",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "tiny.pt").exists() and (tmp_path / "samples" / "samples.png").exists()
    assert np.load(tmp_path / "samples" / "samples.npy").shape == (2, 1, 16, 16)
