"""Compiler passes on the IR: lower a SpikingUNet to either mapping (:mod:`.lower`,
:mod:`.lower_graded`), calibrate it (:mod:`.calibrate`, one run for both mappings), quantize it
(:mod:`.quantize_graph`, :mod:`.quantize_graded`), schedule it for Loihi 2's timing
(:mod:`.schedule`, :mod:`.schedule_graded`), quantize a feed-forward SNN
(:mod:`.quantize_feedforward`); :mod:`.pipeline` chains them."""

from .lower import lower

__all__ = ["lower"]
