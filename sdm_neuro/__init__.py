"""sdm-neuro: deploy spiking diffusion denoisers (SDDPM / SDM) to neuromorphic hardware."""

import os

# PyTorch's CPU allocator maps tensors of 2 MB and more with transparent huge pages when this is
# set (PyTorch's performance tuning guide; read once, at torch's first allocation, so only if
# torch is not imported yet). The simulators allocate tens of MB per layer per call on the paper
# configuration, and 4 KB page faults were a quarter of a call's time; set it to 0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from .config import PAPER_CIFAR10, UNetConfig
from .errors import CheckpointError, CheckpointMismatchError, ConfigError, SdmNeuroError, UsageError
from .models import SpikingUNet

__version__ = "0.1.0"

__all__ = ["PAPER_CIFAR10", "CheckpointError", "CheckpointMismatchError", "ConfigError",
           "SdmNeuroError", "SpikingUNet", "UNetConfig", "UsageError", "__version__"]
