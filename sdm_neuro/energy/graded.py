"""Energy of the graded mapping on one hardware profile, from the graded integer simulator's
counters (:class:`sdm_neuro.simulators.integer.Counters`: ``spikes[pop]``, ``payloads[relay]``,
``synops["src->dst"]``, ``neuron_updates``, ``host_macs``, all summed over the batch and calls).

Components (pJ per image per call; the fuller model of :mod:`.model`, for this mapping):

* synaptic operations, binary (a spike or an upsample relay's 0/1 payload times the conv's or
  fan-out's targets) and graded (a non-zero payload times the targets of a conv or identity),
  both at ``synop_pj``: no energy of a graded synaptic operation (a multiply of a 24-bit
  payload, not an add) is published, so the graded ones are a lower bound;
* messages: binary spikes at ``spike_message_pj``, non-zero graded payloads at
  ``graded_message_pj`` (each plus ``spike_hop_pj`` where given, as :mod:`.model` does);
* neuron updates: every IF and relay neuron every step, as :func:`.model.profile_energy` costs
  them; host MACs; static power x run time where the profile gives both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConstraintError, UsageError
from ..hardware_profiles.graded import graded_support
from ..hardware_profiles.profile import Profile
from ..ir.graded import GradedGraph
from .model import Energy, host_and_static

if TYPE_CHECKING:
    from ..simulators.integer import Counters


@dataclass(frozen=True)
class GradedActivity:
    """Per image and per call: the counters divided by the images x calls they summed."""

    spikes: Mapping[str, float]        # IF population -> spikes
    payloads: Mapping[str, float]      # relay -> non-zero payloads sent
    synops: Mapping[str, float]        # "src->dst" -> synaptic operations
    neuron_updates: float
    host_macs: float

    @classmethod
    def from_counters(cls, counters: Counters, image_calls: int) -> GradedActivity:
        """``image_calls``: images x denoising calls the counters summed (batch x calls)."""
        if image_calls < 1:
            raise UsageError(f"image_calls must be >= 1 (got {image_calls}).")
        n = image_calls
        return cls({k: v / n for k, v in counters.spikes.items()},
                   {k: v / n for k, v in counters.payloads.items()},
                   {k: v / n for k, v in counters.synops.items()},
                   counters.neuron_updates / n, counters.host_macs / n)


def graded_counts(activity: GradedActivity, graph: GradedGraph) -> dict[str, float]:
    """What the energy multiplies: binary / graded messages and synaptic operations, payload
    bits sent, neuron updates, host MACs (per image per call). An upsample relay's payloads are
    0/1 spikes, so they count as binary."""
    graded = {r.name for r in graph.relays if not r.binary}
    known = {n.name for n in graph.nodes()}
    unknown = sorted((set(activity.spikes) | set(activity.payloads)) - known)
    if unknown:
        raise UsageError(f"activity names nodes this graded graph does not have: {unknown[:5]}.")
    synops = {True: 0.0, False: 0.0}
    for key, v in activity.synops.items():
        synops[key.split("->")[0] in graded] += v
    g_msgs = sum(v for k, v in activity.payloads.items() if k in graded)
    b_msgs = sum(activity.spikes.values()) + sum(v for k, v in activity.payloads.items()
                                                 if k not in graded)
    bits = graph.meta.get("payload_bits", 24)
    return {"binary spike messages": b_msgs, "graded messages": g_msgs,
            "graded payload bits": g_msgs * bits, "binary synaptic ops": synops[False],
            "graded synaptic ops": synops[True], "neuron updates": activity.neuron_updates,
            "host MACs": activity.host_macs}


def graded_energy(profile: Profile, activity: GradedActivity, graph: GradedGraph) -> Energy:
    """The graded mapping's energy on ``profile`` (module docstring). A profile that cannot run
    the mapping is a :class:`ConstraintError`."""
    why = graded_support(profile)
    if why:
        raise ConstraintError(why)
    e = profile.energy
    n = graded_counts(activity, graph)
    notes = []
    for key in ("synop_pj", "spike_message_pj", "graded_message_pj"):
        if key in e and e[key].derivation:
            notes.append(f"{key} = {e[key].value} pJ is not a published figure: "
                         f"{e[key].derivation}")
    synop = e["synop_pj"].value
    comp = {"synaptic ops (binary)": n["binary synaptic ops"] * synop,
            "synaptic ops (graded)": n["graded synaptic ops"] * synop}
    notes.append("a graded synaptic op (payload x weight) is costed as a binary one (synop_pj): "
                 "a lower bound")
    hop = e["spike_hop_pj"].value if "spike_hop_pj" in e else 0.0
    for label, key, count in (("spike messages", "spike_message_pj", "binary spike messages"),
                              ("graded messages", "graded_message_pj", "graded messages")):
        if key in e:
            comp[label] = n[count] * (e[key].value + hop)
        else:
            notes.append(f"no {key} in this profile: {label} not costed")
    if hop:
        notes.append("each message is costed with one hop between cores")
    if "neuron_update_active_pj" in e:
        comp["neuron updates"] = n["neuron updates"] * e["neuron_update_active_pj"].value
        notes.append("every IF and relay neuron update is costed as an active update (an upper "
                     "bound)")
    elif "ac_pj" in e:
        comp["neuron updates"] = n["neuron updates"] * e["ac_pj"].value
        notes.append("a neuron update is costed as one accumulate (ac_pj)")
    else:
        notes.append("no neuron-update figure in this profile: not costed")
    host_and_static(profile, n["host MACs"], graph.config.snn_steps, comp, notes)
    return Energy(f"graded mapping, fuller model ({profile.name})", comp, tuple(notes))


__all__ = ["GradedActivity", "graded_counts", "graded_energy"]
