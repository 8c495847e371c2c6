"""Compiler passes on the IR: lower a SpikingUNet (:mod:`.lower`), calibrate and quantize it
(:mod:`.quantize_graph`), schedule it for Loihi 2's timing (:mod:`.schedule`), quantize a
feed-forward SNN (:mod:`.quantize_feedforward`); :mod:`.pipeline` chains them."""

from .lower import lower

__all__ = ["lower"]
