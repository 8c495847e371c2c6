"""Deployment: the integer-ready graph IR, the lowering from SpikingUNet and quantization."""

from .graph import HOST, DeployGraph, HostStages, NeuronParams, Population, Projection
from .lower import lower

__all__ = ["HOST", "DeployGraph", "HostStages", "NeuronParams", "Population", "Projection",
           "lower"]
