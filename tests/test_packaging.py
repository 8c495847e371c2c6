"""One import root: a regular (non-editable) install puts everything under sdm_neuro/."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import sdm_neuro

REPO = Path(__file__).resolve().parents[1]


def test_tests_use_the_installed_distribution():
    dist = importlib.metadata.distribution("sdm-neuro")
    assert dist.version == sdm_neuro.__version__
    assert str(REPO) not in [os.path.abspath(p) for p in sys.path if p]  # importlib mode


def test_regular_install_has_one_import_root(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-compile", "--target", str(target), str(REPO)],
                   check=True, capture_output=True, text=True)
    top = {p.name for p in target.iterdir() if not p.name.endswith((".dist-info", ".egg-info"))}
    assert top == {"sdm_neuro", "bin"} or top == {"sdm_neuro"}, top
    for sub in ("export", "simulators", "hardware_profiles"):
        assert (target / "sdm_neuro" / sub / "__init__.py").exists()
        assert (target / "sdm_neuro" / sub / "README.md").exists()
    for asset in ("default_digits16.pt", "digits16_classifier.pt", "MODEL_CARD.md"):
        assert (target / "sdm_neuro" / "assets" / asset).is_file(), asset
    for sub in ("data", "evaluation", "ir", "compiler", "frontends", "energy", "run"):
        assert (target / "sdm_neuro" / sub / "__init__.py").exists()
    for name in ("loihi2", "truenorth", "generic45nm_fp32"):  # the profiles ship as data
        assert (target / "sdm_neuro" / "hardware_profiles" / f"{name}.toml").is_file(), name
    code = ("import sdm_neuro.export, sdm_neuro.simulators, sdm_neuro.hardware_profiles, "
            "sdm_neuro.cli; print(sdm_neuro.export.__file__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(target)}, check=True)
    assert r.stdout.strip().startswith(str(target))
