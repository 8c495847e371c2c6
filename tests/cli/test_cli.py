"""The command line: sample writes its outputs, python -m works, errors are clean."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from sdm_neuro import __version__
from sdm_neuro.cli import main as cli


def test_sample_writes_grid_array_and_json(tmp_path, capsys, tiny_checkpoint):
    ckpt = tiny_checkpoint
    out = tmp_path / "s"
    assert cli(["sample", str(ckpt), "--sampler", "ddim", "--steps", "4", "--num", "3",
                "--batch", "2", "--out", str(out), "--quiet", "--threshold", "0.999"]) == 0
    arr = np.load(out / "samples.npy")
    assert arr.shape == (3, 1, 8, 8) and arr.dtype == np.float32
    assert Image.open(out / "samples.png").size[0] > 64
    info = json.loads((out / "sample.json").read_text())
    assert info["sampler"] == "ddim" and info["num"] == 3 and info["threshold"] == 0.999
    assert sorted(p.name for p in out.iterdir()) == ["sample.json", "samples.npy", "samples.png"]


def test_usage_errors_exit_nonzero(tmp_path, capsys, tiny_checkpoint):
    ckpt = tiny_checkpoint
    # 0 is refused by the option itself; above the model's diffusion steps, once it is loaded
    assert cli(["sample", str(ckpt), "--steps", "0", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "argument --steps: must be an integer >= 1 (got 0)" in capsys.readouterr().err
    assert cli(["sample", str(ckpt), "--steps", "1001", "--out", str(tmp_path / "o"),
                "--quiet"]) == 2
    assert "--steps must be in [1, 1000] (got 1001)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_python_dash_m_and_version():
    r = subprocess.run([sys.executable, "-m", "sdm_neuro", "--version"], capture_output=True,
                       text=True, check=True)
    assert r.stdout.strip() == f"sdm-neuro {__version__}"
