"""The examples run (in tiny settings)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_trains_samples_and_evaluates(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "examples" / "quickstart.py"),
                        "--train-steps", "3", "--sample-steps", "3", "--num", "4",
                        "--out", str(tmp_path), "--quiet"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "tiny.pt").exists() and (tmp_path / "samples.png").exists()
    lines = r.stdout.splitlines()
    assert any(line.startswith("samples ") for line in lines)
    assert any(line.startswith("held-out real (floor)") for line in lines)
