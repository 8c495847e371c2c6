"""Quantize a sequential SNN and run it with the integer simulator next to its float reference:
the Python API behind ``sdm-neuro simulate --nir FILE``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from ..simulators.sequential import run_integer
from .network import SequentialSNN, run_float
from .quantize import QuantizedSNN, quantize_sequential


@dataclass(frozen=True, eq=False)
class SequentialRun:
    qnet: QuantizedSNN
    float_spikes: list[torch.Tensor]   # per layer [T, B, *shape], float64 0/1
    int_spikes: list[torch.Tensor]     # per layer, bool
    report: dict


def load_input(path: Path, input_shape: tuple[int, ...], steps: int) -> torch.Tensor:
    """``.npy`` of [B, *input_shape] (held for ``steps`` steps) or [T, B, *input_shape]."""
    try:
        x = torch.from_numpy(np.load(path, allow_pickle=False)).double()
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: not a readable .npy array ({type(e).__name__}: {e}).") \
            from None
    n = len(input_shape)
    if tuple(x.shape[-n:]) != tuple(input_shape) or x.dim() not in (n + 1, n + 2):
        raise DatasetError(f"{path}: shape {tuple(x.shape)}; the network's input is "
                           f"{tuple(input_shape)}, so give [B, *input] or [T, B, *input].")
    if not torch.isfinite(x).all():
        raise DatasetError(f"{path}: contains NaN or inf.")
    return x.unsqueeze(0).expand(steps, *x.shape).clone() if x.dim() == n + 1 else x


def random_spikes(input_shape: tuple[int, ...], steps: int, batch: int, rate: float,
                  seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, *input_shape, generator=g, dtype=torch.float64)
            < rate).double()


def network_input(net: SequentialSNN, path: Path | None, *, steps: int, batch: int,
                  rate: float, seed: int) -> tuple[torch.Tensor, dict]:
    """The input to run and calibrate on: the user's ``.npy``, else random 0/1 spikes; and a
    description of it for reports."""
    if path is not None:
        x = load_input(path, net.input_shape, steps)
        return x, {"file": str(path), "shape": list(x.shape)}
    if not 0 < rate <= 1:
        raise DatasetError(f"--rate must be in (0, 1], got {rate}.")
    return (random_spikes(net.input_shape, steps, batch, rate, seed),
            {"random_spikes": {"rate": rate, "seed": seed, "steps": steps, "batch": batch}})


def simulate_sequential(net: SequentialSNN, x: torch.Tensor,
                        calibration: torch.Tensor | None = None, *,
                        qnet: QuantizedSNN | None = None) -> SequentialRun:
    """Quantize on ``calibration`` (default: ``x`` itself) unless ``qnet`` is given (an
    exported one), run float and integer, compare layer by layer."""
    if qnet is None:
        qnet = quantize_sequential(net, x if calibration is None else calibration)
    ref = run_float(net, x)
    counters: dict = {}
    ints = run_integer(qnet, x, counters=counters)
    layers = {}
    for layer, f, i in zip(net.layers, ref, ints, strict=True):
        fi = i.double()
        layers[layer.name] = {
            "shape": list(layer.shape), "kind": layer.neurons.kind,
            "rate_float": float(f.mean()), "rate_integer": float(fi.mean()),
            "spike_agreement": float((f == fi).double().mean()),
            **qnet.report["layers"][layer.name]}
    cf, ci = ref[-1].sum(0).flatten(1), ints[-1].double().sum(0).flatten(1)
    report = {
        "source": net.source, "dt": net.dt, "input_shape": list(net.input_shape),
        "time_steps": int(x.shape[0]), "batch": int(x.shape[1]),
        "input": "spikes" if qnet.spike_input else "current (first synapse on the host)",
        "layers": layers,
        "output": {"count_abs_diff_mean": float((cf - ci).abs().mean()),
                   "argmax_agreement": float((cf.argmax(1) == ci.argmax(1)).double().mean())},
        "events": {"u_wrap": counters.get("u_wrap", 0),
                   "v_saturate": counters.get("v_saturate", 0)},
    }
    return SequentialRun(qnet, ref, ints, report)


def save_run(run: SequentialRun, out: Path) -> None:
    """``spikes.npz`` (every layer's float and integer spikes, keys ``kind:layer``) and
    ``rates.png`` into the directory ``out``."""
    np.savez_compressed(out / "spikes.npz", **{
        f"{kind}:{layer.name}": s.numpy().astype(np.uint8)
        for kind, spikes in (("float", run.float_spikes), ("integer", run.int_spikes))
        for layer, s in zip(run.qnet.net.layers, spikes, strict=True)})
    save_plot(run, out / "rates.png")


def save_plot(run: SequentialRun, path: Path) -> None:
    """Per-layer firing rates and the first sample's output spike counts, float vs integer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(run.report["layers"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    idx = np.arange(len(names))
    for off, key, label in ((-0.2, "rate_float", "float"), (0.2, "rate_integer", "integer")):
        a.bar(idx + off, [run.report["layers"][n][key] for n in names], 0.4, label=label)
    a.set_xticks(idx, names, rotation=20, fontsize=7)
    a.set_ylabel("firing rate (spikes / neuron / step)")
    a.legend()
    cf = run.float_spikes[-1][:, 0].sum(0).flatten().numpy()
    ci = run.int_spikes[-1][:, 0].double().sum(0).flatten().numpy()
    j = np.arange(len(cf))
    b.bar(j - 0.2, cf, 0.4, label="float")
    b.bar(j + 0.2, ci, 0.4, label="integer")
    b.set_xlabel("output neuron")
    b.set_ylabel("spike count, sample 0")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
