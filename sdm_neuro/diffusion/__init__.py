"""Diffusion: the linear schedule, the epsilon training loss and the DDPM / DDIM samplers."""

from .loss import diffusion_loss
from .samplers import (
                       SAMPLERS,
                       NoiseSource,
                       generate,
                       model_call_steps,
                       on_device,
                       reference_step_list,
                       sample,
)
from .schedule import LinearSchedule

__all__ = ["SAMPLERS", "LinearSchedule", "NoiseSource", "diffusion_loss", "generate",
           "model_call_steps", "on_device", "reference_step_list", "sample"]
