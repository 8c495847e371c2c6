"""lava-dl netx HDF5 for sequential SNNs, and a Lava run of it.

netx (lava-dl 0.6.0, ``lava.lib.dl.netx.hdf5.Network``) describes a chain of dense / conv layers
of CUBA neurons, so only sequential networks have a netx file (a U-Net does not: skips and
upsampling). What netx does with the file, read from its source and checked by running it:

* ``layer/0`` is ``input`` with only ``shape``: with a ``neuron`` group netx builds an Input
  block whose port is never connected and compilation fails.
* ``dense``: ``weight`` (out, in), summed without exponent (netx rescales it for Lava's Dense
  and back, exactly for even weights in [-256, 254] with at least one positive entry; an all-zero
  matrix raises, one with no positive entry can come out wrong, so the writer refuses both).
* ``conv``: torch layout and cross-correlation, ``shape`` (C, H, W), raw integer weights.
* ``flatten`` before a dense layer: torch's (C, H, W) order.
* ``neuron``: ``CUBA`` with ``iDecay`` (Lava's ``du + 1``), ``vDecay`` (``dv``), ``vThMant``
  (``vth``); the bias is ``bias_mant`` at netx's fixed ``bias_exp = 6``; per channel (C,) or per
  neuron in Lava's (W, H, C) order for conv layers.
* Every connection delays by one step, and a LIF integrates its bias from the first step; the run
  uses ``LIFReset`` (netx's ``reset_interval``, with the per-layer offset netx adds) so layer k
  starts from zero exactly when sample b's first input reaches it, step ``b R + k + 1``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import ExportError, UsageError
from ..fileio import write_atomic
from ..ir.feedforward import check_input
from ..ir.feedforward import QuantizedSNN, is_spike_input
from ..ir.fixed_point import NO_SYNAPTIC_MEMORY_DU

NETX_FILE = "network.net"
NETX_IDECAY = NO_SYNAPTIC_MEMORY_DU + 1  # netx builds its LIF with du = iDecay - 1


def check_netx(qnet: QuantizedSNN) -> None:
    """Refuse what netx cannot hold or would run wrongly, saying why."""
    if not qnet.spike_input:
        raise ExportError("netx: the network is driven by a current (its calibration input was "
                          "not 0/1 spikes); netx layers take binary spikes only.")
    for ql in qnet.layers:
        w = ql.weight_int
        if ql.layer.synapse.kind == "affine" and not bool((w > 0).any()):
            raise ExportError(f"netx: layer {ql.layer.name!r}: its integer weights have no "
                              f"positive entry (max {int(w.max())}); lava-dl netx 0.6.0 "
                              f"mis-scales such a dense matrix (or raises for all zeros).")


def write_netx(qnet: QuantizedSNN, path: str | Path) -> Path:
    """Write the netx HDF5 of ``qnet`` atomically."""
    check_netx(qnet)
    return write_atomic(path, lambda tmp: _write(qnet, tmp))


def _write(qnet: QuantizedSNN, tmp: Path) -> None:
    with h5py.File(tmp, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        g.create_dataset("type", data=np.bytes_("input"))
        g.create_dataset("shape", data=np.array(qnet.net.input_shape))
        idx, shape = 1, qnet.net.input_shape
        for ql in qnet.layers:
            syn = ql.layer.synapse
            if syn.kind == "affine" and len(shape) > 1:
                layers.create_group(str(idx)).create_dataset("type", data=np.bytes_("flatten"))
                idx += 1
            g = layers.create_group(str(idx))
            idx += 1
            g.create_dataset("shape", data=np.array(ql.layer.shape))
            g.create_dataset("weight", data=ql.weight_int.numpy().astype(np.float32))
            bias = ql.bias_mant.numpy()
            if syn.kind == "conv":
                g.create_dataset("type", data=np.bytes_("conv"))
                for key, val in (("stride", syn.stride), ("padding", syn.padding),
                                 ("dilation", (1, 1))):
                    g.create_dataset(key, data=np.array(val))
                g.create_dataset("groups", data=1)
                flat = bias.reshape(bias.shape[0], -1)
                bias = flat[:, 0] if (flat == flat[:, :1]).all() else bias.transpose(2, 1, 0)
            else:
                g.create_dataset("type", data=np.bytes_("dense"))
            g.create_dataset("bias", data=bias.astype(np.float32))
            n = g.create_group("neuron")
            n.create_dataset("type", data=np.bytes_("CUBA"))
            n.create_dataset("iDecay", data=NETX_IDECAY)  # no synaptic memory
            n.create_dataset("vDecay", data=ql.dv)
            n.create_dataset("vThMant", data=ql.vth)
            n.create_dataset("refDelay", data=1)
            n.create_dataset("gradedSpike", data=False)
            shape = ql.layer.shape


def _lava(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(reversed(shape))  # (C, H, W) -> Lava's (W, H, C)


def run_network(path: Path, x: np.ndarray, layer_shapes: list[tuple[int, ...]]
                ) -> list[np.ndarray]:
    """In this process: every layer's spikes [T, B, *shape] of the netx file at ``path`` on
    binary input ``x`` [T, B, *input]; all samples in one Lava run, one reset period each."""
    from .lava_compat import import_lava

    import_lava()
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    steps, batch = x.shape[:2]
    n_layers = len(layer_shapes)
    period = steps + n_layers + 1
    data = np.zeros((batch, period, *x.shape[2:]), dtype=np.int32)
    data[:, :steps] = np.swapaxes(x, 0, 1)
    data = data.reshape(batch * period, *x.shape[2:])
    data = np.moveaxis(data.transpose(0, *range(data.ndim - 1, 0, -1)), 0, -1)  # (..Lava.., t)
    net = netx.hdf5.Network(net_config=str(path), reset_interval=period, reset_offset=1)
    src = Source(data=data)
    src.s_out.connect(net.inp)
    sinks = []
    for blk in (b for b in net.layers if hasattr(b, "neuron")):
        sinks.append(Sink(shape=blk.neuron.s_out.shape, buffer=batch * period))
        blk.neuron.s_out.connect(sinks[-1].a_in)
    if len(sinks) != n_layers:
        raise ExportError(f"netx built {len(sinks)} neuron layers, expected {n_layers}.")
    try:
        net.run(condition=RunSteps(num_steps=batch * period),
                run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        raw = [s.data.get() for s in sinks]
    finally:
        net.stop()
    out = []
    for k, (r, shape) in enumerate(zip(raw, layer_shapes, strict=True)):
        r = np.moveaxis(r.reshape(*_lava(shape), batch, period), (-2, -1), (0, 1))
        r = r.transpose(0, 1, *range(r.ndim - 1, 1, -1))  # back to (C, H, W)
        out.append(np.swapaxes(r[:, k + 1:k + 1 + steps], 0, 1).astype(bool))
    return out


def run_netx(qnet: QuantizedSNN, x: torch.Tensor, *, path: Path | None = None,
             timeout_s: float = 600) -> list[torch.Tensor]:
    """Write (or take) the netx file of ``qnet`` and run it in Lava in a child process with a
    hard timeout: every layer's spikes [T, B, *shape], aligned with
    :func:`sdm_neuro.simulators.feedforward.run_integer`."""
    from .lava_process import run_child

    check_input(qnet.net, x)
    if not is_spike_input(x):  # the child gets int8 spikes: anything else would be cast
        raise UsageError("netx: the input has values other than 0 and 1; netx layers take "
                         "binary spikes only.")
    shapes = [ql.layer.shape for ql in qnet.layers]
    with tempfile.TemporaryDirectory(prefix="sdm-neuro-netx-") as tmp:
        net_path = path or write_netx(qnet, Path(tmp) / NETX_FILE)
        inp, out = Path(tmp) / "x.npy", Path(tmp) / "spikes.npz"
        np.save(inp, x.numpy().astype(np.int8))
        run_child([sys.executable, "-m", "sdm_neuro.export.netx", str(net_path), str(inp),
                    str(out), json.dumps(shapes)], timeout_s)
        with np.load(out) as z:
            return [torch.from_numpy(z[f"layer{k}"]) for k in range(len(shapes))]


def _main(argv: list[str]) -> int:
    net_path, inp, out, shapes = argv
    spikes = run_network(Path(net_path), np.load(inp), [tuple(s) for s in json.loads(shapes)])
    np.savez(out, **{f"layer{k}": s for k, s in enumerate(spikes)})
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
