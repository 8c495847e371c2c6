"""Bit-exact integer LIF simulation of a quantized deployment graph (Lava's fixed-point Loihi
arithmetic): ideal timing (:mod:`.integer`), hardware timing (:mod:`.timed`), the neuron update
(:mod:`.lif`) and the float check of a lowered graph (:mod:`.float_graph`)."""
