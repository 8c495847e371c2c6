"""Files shipped inside the package: the default model (a SpikingUNet trained on scikit-learn's
digits at 16x16, see ``MODEL_CARD.md``) and the digits classifier whose feature space the
quality metrics use."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ..errors import CheckpointError

DEFAULT_MODEL = "default_digits16.pt"
DIGITS_CLASSIFIER = "digits16_classifier.pt"


def asset_path(name: str) -> Path:
    path = Path(str(files(__name__) / name))
    if not path.is_file():
        raise CheckpointError(f"{path}: the packaged file is missing; reinstall sdm-neuro.")
    return path


def default_model_path() -> Path:
    """The shipped default checkpoint (used whenever a command is given no checkpoint)."""
    return asset_path(DEFAULT_MODEL)


def digits_classifier_path() -> Path:
    return asset_path(DIGITS_CLASSIFIER)
