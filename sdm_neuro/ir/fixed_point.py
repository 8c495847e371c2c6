"""Loihi 2's number formats, as Lava's bit-accurate process models compute them: the one home of
every fixed-point width and range. Quantization, the simulators, the Lava and netx backends and
the design-rule checks read them from here; hardware profiles carry their own limits (a profile
describes a chip, this module the arithmetic the simulators reproduce).

Sources: lava-nc 0.10.0 ``lava/proc/lif/models.py`` (``AbstractPyLifModelFixed``,
``PyLifModelBitAcc``: u, v precision 24, vth precision 17, the shifts and offsets),
``lava/proc/dense/models.py`` and ``lava/proc/sparse/models.py`` (``PyDenseModelBitAcc``,
``PyDelaySparseModelBitAcc``: the weight truncation and ``weight_exp`` shift) and lava-dl 0.6.0
``lava/lib/dl/netx`` (``max_delay=62``, ``bias_exp = 6``; Lava's ``DelayDense`` itself takes any
delay); ``../shared/reference/lava-fixed-point.md`` restates the arithmetic. Lava checks none of
the parameter ranges below: the quantizers and readers here do.
"""

from __future__ import annotations

# --- synapses (Dense / Sparse, sign mode MIXED; Lava's Conv ignores weight_exp and truncation) -
WEIGHT_BITS = 8                           # num_weight_bits: a signed 8-bit mantissa...
WEIGHT_MIN = -(1 << WEIGHT_BITS)          # -256: ...that MIXED sign mode scales by 2
WEIGHT_MAX = (1 << WEIGHT_BITS) - 2       # 254: even values only, so Lava's truncation is a no-op
# weight_exp, a signed 4-bit exponent as on Loihi (Lava accepts any): a connection outputs
# (W @ s) << weight_exp, a floor >> for a negative exponent.
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
WEIGHT_EXP_RANGE = (WEIGHT_EXP_MIN, WEIGHT_EXP_MAX)
MAX_DELAY = 62                            # synaptic delays 0..62 steps (netx's max_delay)

# --- neuron state (LIF: u the synaptic current, v the membrane) -------------------------------
STATE_BITS = 24                           # u and v are 24-bit
MAX_UV = 1 << (STATE_BITS - 1)            # Lava's max_uv_val, 2**23
V_MAX = MAX_UV - 1                        # v saturates to [-V_MAX, V_MAX]
ACT_SHIFT = 6                             # u += a_in << 6
VTH_SHIFT = 6                             # spike when v > vth << 6
VTH_BITS = 17                             # vth mantissa
VTH_MAX = (1 << VTH_BITS) - 1

# --- decays -----------------------------------------------------------------------------------
DECAY_SHIFT = 12                          # x * (4096 - d) >> 12, rounding toward zero
DECAY_UNITY = 1 << DECAY_SHIFT            # 4096
DECAY_MAX = DECAY_UNITY - 1               # du, dv in [0, 4095]
DS_OFFSET = 1                             # added to du only (ds_offset); dm_offset for dv is 0
NO_SYNAPTIC_MEMORY_DU = DECAY_UNITY - DS_OFFSET  # du = 4095: u forgets every step (IF neurons)
NO_LEAK_DV = 0                            # dv = 0: v decays by nothing, a perfect integrator

# --- bias -------------------------------------------------------------------------------------
BIAS_BITS = 13                            # signed bias mantissa
BIAS_MIN = -(1 << (BIAS_BITS - 1))        # -4096
BIAS_MAX = (1 << (BIAS_BITS - 1)) - 1     # 4095
BIAS_EXP_MAX = 7                          # bias_mant << bias_exp, bias_exp in [0, 7]
NETX_BIAS_EXP = 6                         # lava-dl netx writes every bias at this exponent

# Inclusive ranges of the per-process LIF parameters (Lava checks none of them itself).
LIF_RANGES = {"du": (0, DECAY_MAX), "dv": (0, DECAY_MAX), "vth": (0, VTH_MAX),
              "bias_exp": (0, BIAS_EXP_MAX)}

# --- graded input from the host ---------------------------------------------------------------
# Largest graded input per step (exclusive). Lava holds u and v in int32 and adds a_in << ACT_SHIFT
# to u: below this bound a_in << 6 stays under 2**30, leaving room for the decayed 24-bit u and v
# and the bias in the int32 sums (simulators/lif.py, note 3).
INT32_BITS = 32
HOST_A_IN_MAX = 1 << (INT32_BITS - 1 - ACT_SHIFT - 1)
