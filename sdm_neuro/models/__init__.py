"""Float PyTorch models: the spiking U-Net (SDDPM) and its temporal-wise variant (SDM)."""

from .neuron import IFNeuron, atan_spike
from .unet import SpikingUNet, count_parameters, membrane_output, neuron_shapes

__all__ = ["IFNeuron", "SpikingUNet", "atan_spike", "count_parameters", "membrane_output",
           "neuron_shapes"]
