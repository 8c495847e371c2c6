"""Model -> quantized deployment graph, and the integer denoiser the samplers call."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field

import torch

from ..diffusion import LinearSchedule
from ..errors import UsageError
from ..models.unet import SpikingUNet
from ..ir.graph import DeployGraph
from .lower import lower
from .calibrate import Calibration, Inputs, as_calibration, stamped
from .quantize_graph import incoming_weight_max, neuron_choices, quantize

# The CLI's calibration set: its default size (--calibration-images) and the batches it is drawn
# in (recorded in bundles). The float run takes calibrate.CALIBRATION_CHUNK images at a time
# and keeps per-layer ranges only, so time grows with the images and memory does not.
CALIBRATION = {"images": 128, "batch_size": 32}

LOWERING_PASSES = (
    ("lower (float64): BatchNorm folded into the convs; 1x1 shortcuts, residual sums and skip "
     "concatenations composed into projections; the time-embedding MLP tabulated per t; the "
     "pixel conv and the decoder tail kept on the host"),
    ("calibrate: drive, bias and membrane ranges per population on training images noised at "
     f"uniformly random t (--calibration-images, default {CALIBRATION['images']}, in batches of "
     f"{CALIBRATION['batch_size']}), one float32 run of the graded graph (float64 when a "
     "choice lies within 2**-10 of its boundary)"),
    ("quantize (Loihi 2 fixed point): vth a power of two; 8-bit even weights with a "
     "weight_exp per projection; 13-bit bias mantissas with a bias_exp per population"),
    ("schedule: window offsets (longest path from the stem) and balancing synaptic delays for "
     "Lava's one-step Sparse delay"),
)


def calibration_inputs(images: torch.Tensor, *, count: int = CALIBRATION["images"],
                       batch_size: int = CALIBRATION["batch_size"],
                       seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` training images (drawn with replacement) noised at uniformly random t, what the
    denoiser sees while sampling, in batches of at most ``batch_size``."""
    if count < 1 or batch_size < 1:
        raise UsageError(f"calibration needs at least one image in batches of at least one "
                         f"(got --calibration-images {count}, batch size {batch_size}).")
    gen = torch.Generator().manual_seed(seed)
    sch = LinearSchedule()
    out = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        idx = torch.randint(len(images), (n,), generator=gen)
        t = torch.randint(sch.num_steps, (n,), generator=gen)
        x0 = images[idx]
        out.append((sch.q_sample(x0, t, torch.randn(x0.shape, generator=gen)), t))
    return out


def build_integer_graph(model: SpikingUNet, calibration: Calibration | Inputs) -> DeployGraph:
    """Lower (in float64), calibrate on ``calibration`` (see :mod:`.calibrate`) and quantize.
    The host decoder keeps the model's own float32 parameters."""
    calibration = as_calibration(model, calibration)
    calibration.measured()  # first: its float graph is gone before the composed one exists
    graph = lower(copy.deepcopy(model).double())
    tail = {k: v.float() for k, v in graph.host.tail.items()}
    graph = graph.replace(host=dataclasses.replace(graph.host, tail=tail))
    wmaxes = incoming_weight_max(graph)

    def choose(stats):
        return {k: (n.vth, n.bias_exp) for k, n in neuron_choices(graph, stats, wmaxes).items()}

    stats, dtype = calibration.ranges(choose)
    return stamped(quantize(graph, neuron_choices(graph, stats, wmaxes)), dtype)


@dataclass
class IntegerDenoiser:
    """A sampler-compatible ``eps = f(x_t, t)`` backed by the integer simulator of either mapping
    (a :class:`~sdm_neuro.ir.graded.GradedGraph` runs the graded simulators); optionally compares
    with the float model on the same input every ``compare_every`` calls."""

    graph: DeployGraph
    mode: str = "ideal"                # or "hardware": Lava's delays (same results)
    float_model: SpikingUNet | None = None  # on the CPU
    device: str | None = None          # where the integer network runs (eps on the CPU)
    compare_every: int = 10
    call_offset: int = 0               # calls made before this one's first (a shard's start):
    #                                    the comparisons fall on the same calls as in one run
    errors: list[dict] = field(default_factory=list)
    agreement: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..ir.graded import GradedGraph
        from ..ir.graph import is_scheduled
        from ..simulators.graded import GradedSimulator, GradedTimedSimulator
        from ..simulators.integer import Counters, IntegerSimulator
        from ..simulators.timed import TimedSimulator
        from .schedule import schedule
        from .schedule_graded import schedule_graded

        if self.mode not in ("ideal", "hardware"):
            raise UsageError(f"unknown timing mode {self.mode!r} (ideal or hardware).")
        graded = isinstance(self.graph, GradedGraph)
        if self.mode == "hardware" and not (graded and is_scheduled(self.graph)):
            # (a graded bundle's graph is scheduled already: its delay copies are in it)
            self.graph = (schedule_graded if graded else schedule)(self.graph)
            self.sim = (GradedTimedSimulator if graded else TimedSimulator)(self.graph,
                                                                           self.device)
        elif graded:  # a sampler reads eps and the populations' spikes, not the payloads
            self.sim = GradedSimulator(self.graph, self.device, keep_payloads=False)
        else:
            self.sim = IntegerSimulator(self.graph, self.device)
        self.counters = Counters()

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        call = self.call_offset + self.counters.calls
        eps, spikes = self.sim(x, t, self.counters)
        if self.float_model is not None and call % self.compare_every == 0:
            self.float_model.record_spikes(True)
            with torch.no_grad():
                ref = self.float_model(x, t)
            rec = self.float_model.recorded_spikes()
            self.float_model.record_spikes(False)
            err = (eps - ref).float()
            self.errors.append({"call": call, "t": int(t[0]),
                                "eps_rmse": float(err.pow(2).mean().sqrt()),
                                "eps_rel": float(err.norm() / max(float(ref.norm()), 1e-12))})
            for name, s in rec.items():
                self.agreement.setdefault(name, []).append(
                    float((s.bool() == spikes[name].cpu()).float().mean()))
        return eps


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = float((a.float() - b.float()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)
