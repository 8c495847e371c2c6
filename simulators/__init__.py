"""Bit-exact integer LIF simulator of Lava's fixed-point Loihi arithmetic.

See README.md in this folder; the simulator arrives with the quantize/simulate issue."""
