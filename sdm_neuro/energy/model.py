"""Two labelled energy models and the ANN baseline, all per image and per denoising call (pJ).

* The papers' convention (:func:`convention_energy`; Spikformer line, SDDPM):
  ``E_AC x SOPs + E_MAC x MACs`` of layers with real-valued input, counted on the PyTorch
  model's layers (:mod:`.ops`), 45 nm float figures.
* The fuller model (:func:`profile_energy`), per profile, on the deployed graph's measured
  activity (:mod:`.activity`): synaptic operations, neuron updates, spike messages, memory
  accesses after Lemaire et al. (ICONIP 2022) where the profile's figures do not already
  include them, the host's work, and static power x run time where the profile gives both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.fixed_point import STATE_BITS, WEIGHT_BITS
from ..ir.graph import DeployGraph
from ..hardware_profiles.profile import Profile
from .activity import Activity
from .ops import LayerOps

# The spiking-network papers' 45 nm figures (Horowitz, ISSCC 2014): used by the convention and,
# labelled, for host work on a profile that has no host figure of its own.
CONVENTION_AC_PJ = 0.9
CONVENTION_MAC_PJ = 4.6


@dataclass(frozen=True)
class Energy:
    """Energy of one image for one call, split by component (pJ), with what it assumed."""

    model: str
    components: dict[str, float]
    notes: tuple[str, ...] = ()

    @property
    def total_pj(self) -> float:
        return sum(self.components.values())

    def to_dict(self, calls: int) -> dict:
        return {"model": self.model, "per_call_pj": self.components,
                "per_call_total_pj": self.total_pj, "per_image_total_uj":
                self.total_pj * calls * 1e-6, "notes": list(self.notes)}


def convention_energy(ops: list[LayerOps], *, ac_pj: float = CONVENTION_AC_PJ,
                      mac_pj: float = CONVENTION_MAC_PJ) -> Energy:
    """The papers' convention: ``E_AC x SOPs + E_MAC x MACs(real-valued-input layers)``; SOPs
    are the effective synaptic operations of spike-input layers (spikes x true fan-out; the
    papers' firing rate x T x dense ops, exact at the borders)."""
    sops = sum(o.effective for o in ops if o.spiking_input)
    macs = sum(o.dense for o in ops if not o.spiking_input)
    return Energy(f"papers' convention (E_AC {ac_pj} pJ x SOPs + E_MAC {mac_pj} pJ x MACs of "
                  "real-valued-input layers)",
                  {"synaptic (AC)": sops * ac_pj, "real-valued input (MAC)": macs * mac_pj})


def ann_baseline(ops: list[LayerOps], mac_pj: float) -> float:
    """The same U-Net as a non-spiking network: every layer's dense MACs once per call (pJ)."""
    return sum(o.dense_per_row for o in ops) * mac_pj


def profile_energy(profile: Profile, activity: Activity, graph: DeployGraph) -> Energy:
    """The fuller model: one profile's energy on the deployed graph's measured activity (see
    the module docstring)."""
    e = profile.energy
    lim = profile.limits
    notes = []
    synops = sum(activity.synops.values())
    spikes = sum(activity.spikes.values())
    comp = {"synaptic ops": synops * e["synop_pj"].value}
    if e["synop_pj"].derivation:
        notes.append(f"synop_pj = {e['synop_pj'].value} pJ is not a published figure: "
                     f"{e['synop_pj'].derivation}")
    if "neuron_update_active_pj" in e:
        comp["neuron updates"] = activity.neuron_updates * e["neuron_update_active_pj"].value
        notes.append("every neuron update is costed as an active update (an upper bound)")
    elif "ac_pj" in e:
        comp["neuron updates"] = activity.neuron_updates * e["ac_pj"].value
        notes.append("a neuron update is costed as one accumulate (ac_pj)")
    else:
        notes.append("no neuron-update figure in this profile: not costed")
    if "spike_message_pj" in e:
        comp["spike messages"] = spikes * e["spike_message_pj"].value
        if "spike_hop_pj" in e:
            comp["spike messages"] += spikes * e["spike_hop_pj"].value
            notes.append("each spike is costed as one message and one hop between cores")
    if "memory_read_64bit_pj" in e and profile.kind == "baseline":
        # Lemaire et al.: a synaptic op reads its weight; a neuron update reads and writes its
        # state. Neuromorphic profiles' synaptic figures already include their SRAM accesses.
        wb = (lim["weight_bits"].value if "weight_bits" in lim else WEIGHT_BITS) / 64
        sb = (lim["state_bits"].value if "state_bits" in lim else STATE_BITS) / 64
        read = e["memory_read_64bit_pj"].value
        write = e["memory_write_64bit_pj"].value if "memory_write_64bit_pj" in e else read
        comp["memory"] = synops * wb * read + activity.neuron_updates * sb * (read + write)
        notes.append("memory after Lemaire et al. (2022): one weight read per synaptic op, one "
                     "state read and write per neuron update, at the profile's bit widths")
    host_and_static(profile, activity.host_macs, graph.config.snn_steps, comp, notes)
    return Energy(f"fuller model ({profile.name})", comp, tuple(notes))


def host_and_static(profile: Profile, host_macs: float, snn_steps: int,
                    comp: dict[str, float], notes: list[str]) -> None:
    """The host's MACs and static power x run time (either mapping), into ``comp`` (pJ per image
    per call) with what was assumed in ``notes``."""
    e = profile.energy
    host_pj = e["host_mac_pj"].value if "host_mac_pj" in e else CONVENTION_MAC_PJ
    if "host_mac_pj" not in e:
        notes.append(f"host work (pixel conv, decoder tail) costed at the 45 nm fp32 MAC, "
                     f"{CONVENTION_MAC_PJ} pJ (the profile has no host figure)")
    comp["host"] = host_macs * host_pj
    p = profile.power
    if "static_power_mw" in p and "time_step_us" in p:
        seconds = p["time_step_us"].value * 1e-6 * snn_steps
        comp["static"] = p["static_power_mw"].value * 1e-3 * seconds * 1e12
        notes.append("static power x T_snn time steps of one call")
    else:
        notes.append("static power not included (the profile lacks static power or step time)")


def population_energy(profile: Profile, activity: Activity, graph: DeployGraph
                      ) -> dict[str, dict[str, float]]:
    """Per population (pJ per image per call): synaptic ops arriving at it, its neuron updates,
    its spike messages; for the per-layer chart."""
    e = profile.energy
    upd = e["neuron_update_active_pj"].value if "neuron_update_active_pj" in e else (
        e["ac_pj"].value if "ac_pj" in e else 0.0)
    msg = sum(e[k].value for k in ("spike_message_pj", "spike_hop_pj") if k in e)
    steps = graph.config.snn_steps
    out = {}
    for pop in graph.populations:
        out[pop.name] = {"synaptic ops": activity.synops_into(pop.name) * e["synop_pj"].value,
                         "neuron updates": pop.neurons * steps * upd,
                         "spike messages": activity.spikes.get(pop.name, 0.0) * msg}
    return out
