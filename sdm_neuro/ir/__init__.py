"""The deployment IR: the integer-ready U-Net graph (:mod:`.graph`), its host stages
(:mod:`.host`), feed-forward SNNs read from NIR (:mod:`.feedforward`) and Loihi 2's fixed-point
number formats (:mod:`.fixed_point`)."""

from .graph import HOST, DeployGraph, HostStages, NeuronParams, Population, Projection

__all__ = ["HOST", "DeployGraph", "HostStages", "NeuronParams", "Population", "Projection"]
