"""Quantize a feed-forward SNN and run it with the integer simulator next to its float reference:
what ``sdm-neuro simulate`` and ``export`` do when the CHECKPOINT argument is a ``.nir`` file (or
``--bundle`` a feed-forward bundle). Also the network and its input as the jobs load them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from ..fileio import read_npy_header, regular_file
from ..simulators.feedforward import run_integer
from ..ir.feedforward import FeedForwardSNN, run_float
from ..compiler.quantize_feedforward import QuantizedSNN, quantize_feedforward


@dataclass(frozen=True, eq=False)
class FeedForwardRun:
    qnet: QuantizedSNN
    float_spikes: list[torch.Tensor]   # per layer [T, B, *shape], float64 0/1
    int_spikes: list[torch.Tensor]     # per layer, bool
    report: dict


MAX_INPUT_BYTES = 1 << 30          # an input .npy file
MAX_RUN_ELEMENTS = 1 << 26         # time steps x batch x (input + every layer's neurons)


def _count(dims) -> int:
    return int(np.prod([int(d) for d in dims], dtype=object))


def check_run_size(net: FeedForwardSNN, steps: int, batch: int, what: str) -> None:
    """Refuse, before anything is allocated, a run whose spike tensors (input and every layer,
    ``steps`` x ``batch`` each) would exceed :data:`MAX_RUN_ELEMENTS`."""
    per_step = _count(net.input_shape) + sum(_count(layer.shape) for layer in net.layers)
    if steps * batch * per_step > MAX_RUN_ELEMENTS:
        raise UsageError(f"{what}: {steps} time steps x {batch} samples x {per_step:,} values "
                         f"(input and neurons) per step is {steps * batch * per_step:,}, more "
                         f"than the {MAX_RUN_ELEMENTS:,} a run may hold; use fewer steps or "
                         f"samples.")


def load_input(path: Path, input_shape: tuple[int, ...], steps: int, *,
               net: FeedForwardSNN | None = None) -> torch.Tensor:
    """``.npy`` of [B, *input_shape] (held for ``steps`` steps) or [T, B, *input_shape] of
    numbers (bool, integer or float; finite). The header is checked against the file's size,
    the element type and the network's input before the data is read; with ``net`` the whole
    run's size too (:func:`check_run_size`). Anything else is a :class:`UsageError` naming the
    file and what was expected."""
    path = regular_file(path, what="an input .npy array", error=UsageError,
                        max_bytes=MAX_INPUT_BYTES)
    n = len(input_shape)
    want = f"[B, {', '.join(map(str, input_shape))}] or [T, B, {', '.join(map(str, input_shape))}]"
    with open(path, "rb") as f:
        shape, _, dtype = read_npy_header(f, where=str(path), what="a .npy array",
                                          error=UsageError)
        if dtype.kind not in "biuf" or dtype.fields is not None or dtype.shape != ():
            raise UsageError(f"{path}: elements of type {dtype}; the input must be numbers "
                             f"(bool, integer or float), not strings, objects or records.")
        if len(shape) not in (n + 1, n + 2) or tuple(shape[-n:]) != tuple(input_shape):
            raise UsageError(f"{path}: shape {shape}; the network's input is "
                             f"{tuple(input_shape)}, so give {want}.")
        if min(shape) < 1:
            raise UsageError(f"{path}: shape {shape} has a zero-length axis; expected {want} "
                             f"with every size >= 1.")
        held = len(shape) == n + 1
        if net is not None:
            check_run_size(net, steps if held else shape[0], shape[0 if held else 1], str(path))
        data = _count(shape) * dtype.itemsize
        size = path.stat().st_size - f.tell()
        if size != data:
            raise UsageError(f"{path}: its header declares {shape} {dtype} ({data:,} bytes of "
                             f"data), the file holds {size:,}; truncated or not a .npy file.")
        f.seek(0)
        try:
            arr = np.lib.format.read_array(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise UsageError(f"{path}: unreadable .npy data ({type(e).__name__}: {e}).") \
                from None
    x = torch.from_numpy(arr.astype(np.float64))
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise UsageError(f"{path}: {int(bad.sum())} values are NaN or inf (first at index "
                         f"{bad.nonzero()[0].tolist()}); the input must be finite.")
    return x.unsqueeze(0).expand(steps, *x.shape).clone() if held else x


def random_spikes(input_shape: tuple[int, ...], steps: int, batch: int, rate: float,
                  seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, *input_shape, generator=g, dtype=torch.float64)
            < rate).double()


def _count_option(value, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{option} must be an integer >= 1, got {value!r}.")
    return int(value)


def network_input(net: FeedForwardSNN, path: Path | None, *, steps: int, batch: int,
                  rate: float, seed: int) -> tuple[torch.Tensor, dict]:
    """The input to run and calibrate on: the user's ``.npy``, else random 0/1 spikes; and a
    description of it for reports. Options out of range are a :class:`UsageError` naming the
    option."""
    steps = _count_option(steps, "--time-steps")
    if path is not None:
        x = load_input(path, net.input_shape, steps, net=net)
        return x, {"file": str(path), "shape": list(x.shape)}
    batch = _count_option(batch, "--num")
    ok = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
    if not ok or not 0 < rate <= 1:
        raise UsageError(f"--rate must be a spike probability in (0, 1], got {rate!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed < 2**63:
        raise UsageError(f"--seed must be an integer in [0, 2**63), got {seed!r}.")
    check_run_size(net, steps, batch, "--time-steps x --num")
    return (random_spikes(net.input_shape, steps, batch, rate, seed),
            {"random_spikes": {"rate": rate, "seed": seed, "steps": steps, "batch": batch}})


def simulate_feedforward(net: FeedForwardSNN, x: torch.Tensor,
                        calibration: torch.Tensor | None = None, *,
                        qnet: QuantizedSNN | None = None) -> FeedForwardRun:
    """Quantize on ``calibration`` (default: ``x`` itself) unless ``qnet`` is given (an
    exported one), run float and integer, compare layer by layer."""
    if qnet is None:
        qnet = quantize_feedforward(net, x if calibration is None else calibration)
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
    return FeedForwardRun(qnet, ref, ints, report)


def save_run(run: FeedForwardRun, out: Path) -> None:
    """``spikes.npz`` (every layer's float and integer spikes, keys ``kind:layer``) and
    ``rates.png`` into the directory ``out``."""
    np.savez_compressed(out / "spikes.npz", **{
        f"{kind}:{layer.name}": s.numpy().astype(np.uint8)
        for kind, spikes in (("float", run.float_spikes), ("integer", run.int_spikes))
        for layer, s in zip(run.qnet.net.layers, spikes, strict=True)})
    save_plot(run, out / "rates.png")


def save_plot(run: FeedForwardRun, path: Path) -> None:
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


def is_feedforward_bundle(bundle: Path | None) -> bool:
    """``bundle`` is an export bundle of a feed-forward SNN (not of a U-Net)."""
    from ..export.feedforward_bundle import is_feedforward_bundle as check

    return bundle is not None and check(bundle)


def load_network(checkpoint: Path | None, bundle: Path | None, *, threshold_scale: float | None,
                 input: Path | None, time_steps: int, num: int, rate: float, seed: int,
                 dt: float | None) -> tuple[FeedForwardSNN, QuantizedSNN | None, torch.Tensor,
                                            dict]:
    """(network, its quantized form from a bundle or None, input, input description) of a
    ``.nir`` ``checkpoint`` or a feed-forward ``bundle``."""
    from ..frontends.feedforward_nir import feedforward_from_nir

    if threshold_scale is not None:
        raise UsageError("--threshold-scale applies to U-Net checkpoints, not to NIR graphs.")
    qnet = None
    if bundle is not None:
        from ..export.feedforward_bundle import read_feedforward_bundle

        qnet, _ = read_feedforward_bundle(bundle)
        net = qnet.net
    else:
        net = feedforward_from_nir(checkpoint, dt=dt)
    x, desc = network_input(net, input, steps=time_steps, batch=num, rate=rate, seed=seed)
    return net, qnet, x, desc
