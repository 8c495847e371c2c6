"""Bit-exact integer LIF simulation of a quantized deployment graph (Lava's fixed-point Loihi
arithmetic): ideal timing (:mod:`.integer`), hardware timing (:mod:`.timed`), the neuron update
(:mod:`.lif`), the activity counts (:mod:`.counting`), the float check of a lowered graph
(:mod:`.float_graph`), and feed-forward SNNs read from NIR (:mod:`.feedforward`). The number
formats come from :mod:`sdm_neuro.ir.fixed_point`."""
