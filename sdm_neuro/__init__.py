"""sdm-neuro: deploy spiking diffusion denoisers (SDDPM / SDM) to neuromorphic hardware."""

from .config import PAPER_CIFAR10, UNetConfig
from .errors import CheckpointError, CheckpointMismatchError, ConfigError, SdmNeuroError, UsageError
from .models import SpikingUNet

__version__ = "0.1.0"

__all__ = ["PAPER_CIFAR10", "CheckpointError", "CheckpointMismatchError", "ConfigError",
           "SdmNeuroError", "SpikingUNet", "UNetConfig", "UsageError", "__version__"]
