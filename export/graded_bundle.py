"""The export bundle of the graded mapping: a quantized, scheduled
:class:`~sdm_neuro.ir.graded.GradedGraph` as a directory a user carries to the hardware.

``manifest.json``  ``"format": "sdm-neuro-graded-bundle"``, ``"mapping": "graded"``, tool and
                   format versions, checkpoint SHA-256, model config, quantization (settings and
                   the per-node report), timing, target profile and the graded constraint check
                   (:func:`~sdm_neuro.hardware_profiles.graded.graded_placement`), file hashes
``network.nir``    the network, its single description: plain ``nir.read`` loads it with type
                   checking on; standard nodes only, the model's (shared) conv kernels as
                   ``Conv2d`` nodes, never unrolled; integer parameters in node metadata, see
                   :data:`GRADED_NIR_METADATA` (also in the manifest); gzip'd (NIR's own
                   writer) when its arrays are large enough for it to pay
``host.npz``       the host's float work, as in the composed bundle: ``temb/<block>`` (time
                   embedding tables), ``tail/*`` (decoder tail), ``tail_bias`` (the output relay's
                   carried constant), ``schedule/betas``

Why integer units in the NIR file: a conv's 8-bit mantissas and exponent are what the chip runs
and what the bundle must reproduce exactly, and ``weight_int << weight_exp`` fits int16 (|w| <=
256 * 2**7), a quarter of the float64 kernel and half the checkpoint's float32 one. So every NIR
edge carries integers (spikes 0/1, graded payloads), and the float units are metadata.

:func:`read_graded_bundle` rebuilds the graph exactly: every integer field (mantissas, exponents,
vth, bias_exp, du, dv, offsets, delays, channel ranges), every scale and carried bias, and the
host arrays bit for bit, so :class:`~sdm_neuro.simulators.graded.GradedSimulator` gives the same
eps on the read graph. The one field it cannot return is a conv's float ``weight`` before
rounding (the bundle keeps what the chip computes): the read graph holds
``(weight_int << weight_exp) * weight_lsb``, the quantized float kernel. Reading trusts
nothing, as :mod:`.bundle`'s reader (whose checks it shares): a malformed bundle is an
:class:`~sdm_neuro.errors.ExportError` (exit code 7) naming the file and the node or key.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, ExportError
from ..fileio import atomic_dir, sha256_file, write_json
from ..formats import check_format
from ..ir.fixed_point import (ACT_SHIFT, MAX_DELAY, VTH_SHIFT, WEIGHT_EXP_MAX, WEIGHT_EXP_MIN,
                              WEIGHT_MAX, WEIGHT_MIN)
from ..ir.graded import CONNECTION_KINDS, RELAY_KINDS, Connection, GradedGraph, Relay, check_graded
from ..ir.graph import NeuronParams, Population, Projection
from .bundle import (HOST_FILE, MANIFEST, MANIFEST_LIF_RANGES, NIR_FILE, NS, _array, _bool,
                     _check_manifest_fields, _conv_node, _fail, _host_stages, _int, _key, _meta,
                     _names, _nir_version, _num, _plain_conv, _scalar, _show, _str, host_arrays,
                     read_host_arrays, read_manifest, read_network)

GRADED_BUNDLE_FORMAT = "sdm-neuro-graded-bundle"
GRADED_NETWORK_FORMAT = "sdm-neuro-graded-network"
GRADED_BUNDLE_VERSION = 1
IF_R = 1 << ACT_SHIFT           # membrane LSBs per input unit: Lava adds a_in << 6 to u
PAYLOAD_BITS_RANGE = (2, 32)    # a GradedVec payload is an int32
# nir.write gzips every array as a chunked dataset, whose chunk index costs ~2.7 KB: it pays
# when the mean array is larger than this (measured: the 4-channel test model's 240 arrays of
# 0.25 KB mean double in size, the default model's 240 of 10.6 KB shrink by a third)
GZIP_MEAN_ABOVE_BYTES = 4000

GRADED_NIR_METADATA = f"""\
sdm-neuro graded NIR (key "{NS}" in each node's metadata; non-binding for other tools).

Units: integers, as Loihi 2 computes. Every edge carries integers: an IF node's spikes (0/1), a
relay's graded payload. Time: one NIR step is one Loihi 2 time step (dt = 1); a denoising call
lasts the manifest's timing.call_length steps; a node runs its T_snn-step window from `offset`.

IF nodes (one per IF layer, shape (C, H, W); Lava LIFReset, reset to zero at its window start):
r = {IF_R} (one input unit is {IF_R} membrane LSBs: Lava adds a_in << {ACT_SHIFT}), v_threshold =
vth << {VTH_SHIFT} membrane LSBs (Lava spikes when v > vth << {VTH_SHIFT}), v_reset = 0. Metadata:
name, vth, bias_exp, du, dv (Lava's LIF parameters; du = 4095 and dv = 0 is IF), threshold (the
float threshold), scale (float units of one membrane LSB: threshold / (64 vth)), offset, bias
([T_snn, C] float64 constant current per step), temb_block (the host adds temb/<block>[t] per
channel and call), pixel_input (the host adds the pixel conv per neuron and call). The per-call
bias mantissa is round(current / (scale * 2**bias_exp)), clipped to 13 bits.

Scale nodes with scale 1 are relays (Lava GradedVec, vth = 0): a relay sends the integer sum of
its incoming edges every step (exact; NIR sums fan-in edges). Metadata: name, kind ("sum", the
residual stream after a block or a 1x1 shortcut part; "upsample", 0/1 copies of spikes; "delay",
a delayed copy), scale (float units of one payload LSB), bias ([T_snn, C] float64: the constant
the payload leaves out; value = payload * scale + bias, folded in by every reader), offset.

Conv2d nodes named <kind>:<i> are the graph's connections in order (one edge in from the source,
one out to the destination; metadata kind and delay, the extra synaptic delay in steps on top of
the one step every connection adds):
* kind "conv" (a Lava Conv, the model's own shared kernel): weight = weight_int << weight_exp
  as int16 ([C_out, C_in, k, k], PyTorch cross-correlation), padding k // 2, stride, bias 0.
  Metadata weight_exp (0..{WEIGHT_EXP_MAX}; weight_int = weight >> weight_exp, even, in
  [{WEIGHT_MIN}, {WEIGHT_MAX}]) and weight_lsb (float units of one weight unit: the destination's
  input unit, 64 * scale of an IF layer or the scale of a relay, over the source's unit, 1 for
  spikes or the source relay's scale). Lava wraps the sum at 24 bits; delay is 0.
* kind "identity" (a Sparse / DelaySparse, one synapse per source neuron): a 1x1 Conv2d placing
  source channel c on destination channel dst_channel + c with weight 2**weight_exp
  (weight_exp in [{WEIGHT_EXP_MIN}, {WEIGHT_EXP_MAX}]); the chip floors: floor(payload * 2**k).
  Used for every identity, shape-preserving or not, since a skip concatenation needs channel
  placement and NIR has no concatenation.
* kind "upsample" (a Sparse fan-out, nearest x2 of the source's spikes). Extension: NIR has no
  upsampling; the node is an identity Conv2d (ones on each channel's diagonal, k = 1 + H % 2)
  whose padding gives the (2H, 2W) output so that types check. Its standard NIR meaning (a
  zero-padded conv) is NOT what it computes; tools that ignore this metadata must not run it.

Host nodes: Input "x_t" -> Conv2d "pixel_conv" (float, the host's; metadata gain) -> the stem;
Input "temb:<population>" -> its IF node; the output relay -> Output "decoder_input", whose
payload * scale + bias feeds the decoder tail in host.npz.
"""


# -- writing ------------------------------------------------------------------------------------

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _input_unit(node: Population | Relay) -> float:
    """Float units of one integer input unit: an IF layer's a_in, a relay's payload LSB."""
    return node.scale if isinstance(node, Relay) else (1 << ACT_SHIFT) * node.scale


def _output_unit(node: Population | Relay) -> float:
    """Float units of one unit of what a node sends: a spike is 1, a payload LSB its scale."""
    return node.scale if isinstance(node, Relay) else 1.0


def weight_lsb(graph: GradedGraph, conn: Connection) -> float:
    """Float model units of one unit of a conv's integer weight ``weight_int << weight_exp``."""
    return _input_unit(graph.node(conn.dst)) / _output_unit(graph.node(conn.src))


def identity_weight(c_dst: int, c_src: int, dst_channel: int, exp: int) -> np.ndarray:
    """[C_dst, C_src, 1, 1] float32: 2**exp from source channel c to dst_channel + c."""
    w = np.zeros((c_dst, c_src, 1, 1), dtype=np.float32)
    w[np.arange(c_src) + dst_channel, np.arange(c_src), 0, 0] = 2.0 ** exp
    return w


def upsample_geometry(h: int, w: int) -> tuple[int, tuple[int, int]]:
    """(kernel, padding) of the upsample extension: a Conv2d from (h, w) to (2h, 2w)."""
    k = 1 + h % 2
    if w % 2 != h % 2:
        raise ExportError(f"an upsample from a {h} x {w} map has no single-kernel Conv2d "
                          "encoding (the map's sides differ in parity).")
    return k, ((h + k - 1) // 2, (w + k - 1) // 2)


def upsample_weight(c: int, k: int) -> np.ndarray:
    return np.broadcast_to(np.eye(c, dtype=np.int8)[:, :, None, None], (c, c, k, k)).copy()


def _connection_node(graph: GradedGraph, conn: Connection, shapes: dict):
    import nir

    (c_src, h, w), c_dst = shapes[conn.src], shapes[conn.dst][0]
    meta: dict[str, Any] = {"kind": conn.kind, "delay": conn.delay}
    stride, pad = conn.stride, (0, 0)
    if conn.kind == "conv":
        weight = _np(conn.effective_weight()).astype(np.int16)  # |w| <= 256 << 7 fits int16
        meta.update(weight_exp=int(conn.weight_exp), weight_lsb=weight_lsb(graph, conn))
        pad = (conn.padding, conn.padding)
    elif conn.kind == "identity":
        weight = identity_weight(c_dst, c_src, conn.dst_channel, conn.weight_exp)
        meta.update(weight_exp=int(conn.weight_exp), dst_channel=conn.dst_channel)
    else:
        k, pad = upsample_geometry(h, w)
        weight = upsample_weight(c_src, k)
    return nir.Conv2d(input_shape=(h, w), weight=weight, stride=stride, padding=pad,
                      dilation=1, groups=1, bias=np.zeros(weight.shape[0], dtype=np.int8),
                      metadata={NS: meta})


def connection_names(graph: GradedGraph) -> list[str]:
    return [f"{c.kind}:{i}" for i, c in enumerate(graph.connections)]


def graded_to_nir(graph: GradedGraph):
    """The graded network and its host interface as a typed NIR graph (see
    :data:`GRADED_NIR_METADATA`)."""
    import nir

    if not graph.quantized or any(r.scale is None for r in graph.relays):
        raise ExportError("the graded graph is not quantized; quantize it "
                          "(sdm_neuro.compiler.quantize_graded) before writing its bundle.")
    cfg, h = graph.config, graph.host
    shapes = {n.name: n.shape for n in graph.nodes()}
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    for p in graph.populations:
        lif = p.lif
        nodes[p.name] = nir.IF(
            r=np.full(p.shape, IF_R, dtype=np.int8),
            v_threshold=np.full(p.shape, lif.vth << VTH_SHIFT, dtype=np.int32),
            v_reset=np.zeros(p.shape, dtype=np.int8),
            metadata={NS: {"name": p.name, "vth": lif.vth, "bias_exp": lif.bias_exp,
                           "du": lif.du, "dv": lif.dv, "threshold": float(p.threshold),
                           "scale": float(p.scale), "offset": p.offset,
                           "bias": _np(p.bias).astype(np.float64),
                           "temb_block": p.temb_block or "", "pixel_input": p.pixel_input}})
        if p.temb_block is not None:
            nodes[f"temb:{p.name}"] = nir.Input(input_type=np.array(p.shape), metadata={NS: {
                "role": "time embedding: host table temb/<block>[t], per channel",
                "block": p.temb_block}})
            edges.append((f"temb:{p.name}", p.name))
        if p.pixel_input:
            img = (cfg.img_ch, cfg.img_size, cfg.img_size)
            nodes["x_t"] = nir.Input(input_type=np.array(img),
                                     metadata={NS: {"role": "the noisy image x_t"}})
            nodes["pixel_conv"] = _conv_node(
                Projection("x_t", p.name, h.pixel_weight, gain=h.pixel_gain), img,
                {"role": "host pixel conv (float, BatchNorm folded)", "gain": list(h.pixel_gain)})
            edges += [("x_t", "pixel_conv"), ("pixel_conv", p.name)]
    for r in graph.relays:
        nodes[r.name] = nir.Scale(scale=np.ones(r.shape, dtype=np.int8), metadata={NS: {
            "name": r.name, "kind": r.kind, "scale": float(r.scale), "offset": r.offset,
            "bias": _np(r.bias).astype(np.float64)}})
    names = connection_names(graph)
    for name, c in zip(names, graph.connections, strict=True):
        nodes[name] = _connection_node(graph, c, shapes)
        edges += [(c.src, name), (name, c.dst)]
    nodes["decoder_input"] = nir.Output(output_type=np.array(shapes[graph.output]), metadata={
        NS: {"role": "the output relay's payload: payload * scale + bias feeds the decoder tail "
                     "(host.npz tail/*)"}})
    edges.append((graph.output, "decoder_input"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={NS: {
        "format": GRADED_NETWORK_FORMAT, "format_version": GRADED_BUNDLE_VERSION,
        "config": cfg.to_dict(), "populations": [p.name for p in graph.populations],
        "relays": [r.name for r in graph.relays], "order": list(graph.order),
        "connections": names, "output": graph.output,
        "payload_bits": int(graph.meta.get("payload_bits", 24)),
        "documentation": GRADED_NIR_METADATA}})


def _arrays(d: dict) -> tuple[int, int]:
    """(count, bytes) of the arrays in a nested dict (a NIR graph's ``to_dict()``)."""
    n = size = 0
    for v in d.values():
        k, b = (1, v.nbytes) if isinstance(v, np.ndarray) else \
            _arrays(v) if isinstance(v, dict) else (0, 0)
        n, size = n + k, size + b
    return n, size


def write_graded_bundle(graph: GradedGraph, out: str | Path, manifest: dict[str, Any], *,
                        force: bool = False) -> dict[str, Any]:
    """Write the bundle directory ``out`` atomically (a temporary directory renamed into place;
    ``out`` must not exist or be empty unless ``force``); returns the manifest written.
    ``manifest``: the caller's fields (target, checkpoint, profile, constraints, ...)."""
    import nir

    from ..diffusion import LinearSchedule

    sch = LinearSchedule(num_steps=graph.config.diffusion_steps)
    network = graded_to_nir(graph)  # before the directory: an unquantized graph writes nothing
    count, size = _arrays(network.to_dict())
    with atomic_dir(out, force=force) as tmp:
        nir.write(tmp / NIR_FILE, network,
                  compression="gzip" if size > GZIP_MEAN_ABOVE_BYTES * count else None)
        np.savez(tmp / HOST_FILE, **host_arrays(graph, sch.betas.double().numpy()))
        manifest = {"format": GRADED_BUNDLE_FORMAT, "format_version": GRADED_BUNDLE_VERSION,
                    "mapping": "graded", **manifest, "nir_version": _nir_version(),
                    "sampler_schedule": {"kind": "linear", "beta_1": float(sch.betas[0]),
                                         "beta_T": float(sch.betas[-1]),
                                         "steps": sch.num_steps},
                    "files": {n: {"sha256": sha256_file(tmp / n),
                                  "bytes": (tmp / n).stat().st_size}
                              for n in (NIR_FILE, HOST_FILE)},
                    "nir_metadata": GRADED_NIR_METADATA.splitlines()}
        write_json(tmp / MANIFEST, manifest)
    return manifest


def bundle_bytes(manifest: dict[str, Any]) -> int:
    return sum(int(v["bytes"]) for v in manifest["files"].values())


# -- reading: every value the graph is built from is checked where it enters ------------------

def _node(g, name: str, kind: type, what: str, where: str):
    node = g.nodes.get(name)
    if not isinstance(node, kind):
        raise ExportError(f"{where}: its node is {type(node).__name__ if node else 'missing'}, "
                          f"expected {what}.")
    return node


def _named(m: dict, name: str, where: str) -> None:
    if _str(_key(m, "name", where), f"{where}: name") != name:
        _fail(f"{where}: name", repr(name), m["name"])


def _filled(v: object, value: int, where: str, shape: tuple[int, ...], what: str) -> None:
    a = _array(v, where, "iu", shape)
    if (a != value).any():
        _fail(where, what, a)


def _population(g, name: str, steps: int, source: str) -> Population:
    import nir

    where = f"{source}: population {name}"
    node = _node(g, name, nir.IF, "an IF node", where)
    m = _meta(node, where)
    _named(m, name, where)
    lif = NeuronParams(**{k: _int(_key(m, k, where), f"{where}: {k}", lo, hi)
                          for k, (lo, hi) in MANIFEST_LIF_RANGES.items()})
    r = _array(node.r, f"{where}: r", "iu", ndim=3)
    shape = tuple(int(n) for n in r.shape)
    if min(shape) < 1:
        _fail(f"{where}: r", "an array of shape C x H x W, each at least 1", r)
    _filled(r, IF_R, f"{where}: r", shape, f"{IF_R} for every neuron (a_in << {ACT_SHIFT})")
    _filled(node.v_threshold, lif.vth << VTH_SHIFT, f"{where}: v_threshold", shape,
            f"vth << {VTH_SHIFT} = {lif.vth << VTH_SHIFT} for every neuron")
    _filled(node.v_reset, 0, f"{where}: v_reset", shape, "0 for every neuron (reset to zero)")
    threshold = _num(_key(m, "threshold", where), f"{where}: threshold", positive=True)
    scale = _num(_key(m, "scale", where), f"{where}: scale", positive=True)
    if not math.isclose(scale * 64 * lif.vth, threshold, rel_tol=1e-9):
        _fail(f"{where}: scale", f"threshold / (64 vth) = {threshold / (64 * lif.vth)!r}", scale)
    bias = _array(_key(m, "bias", where), f"{where}: bias", "f", (steps, shape[0]))
    temb = _str(_key(m, "temb_block", where), f"{where}: temb_block")
    return Population(name=name, shape=shape, threshold=threshold,
                      bias=torch.from_numpy(bias.astype(np.float64)), temb_block=temb or None,
                      pixel_input=_bool(_key(m, "pixel_input", where), f"{where}: pixel_input"),
                      scale=scale, lif=lif,
                      offset=_int(_key(m, "offset", where), f"{where}: offset", 0, 1 << 20))


def _relay(g, name: str, steps: int, source: str) -> Relay:
    import nir

    where = f"{source}: relay {name}"
    node = _node(g, name, nir.Scale, "a Scale node (a relay)", where)
    m = _meta(node, where)
    _named(m, name, where)
    ones = _array(node.scale, f"{where}: scale (the node's)", "iu", ndim=3)
    shape = tuple(int(n) for n in ones.shape)
    if min(shape) < 1 or (ones != 1).any():
        _fail(f"{where}: scale (the node's)", "1 for every neuron (a relay forwards its sum), "
              "shape C x H x W", ones)
    kind = _str(_key(m, "kind", where), f"{where}: kind")
    if kind not in RELAY_KINDS:
        _fail(f"{where}: kind", f"one of {', '.join(RELAY_KINDS)}", kind)
    scale = _num(_key(m, "scale", where), f"{where}: scale", positive=True)
    if kind == "upsample" and scale != 1.0:
        _fail(f"{where}: scale", "1.0 (an upsample relay's payloads are spikes)", scale)
    bias = _array(_key(m, "bias", where), f"{where}: bias", "f", (steps, shape[0]))
    return Relay(name, shape, torch.from_numpy(bias.astype(np.float64)), kind, scale,
                 _int(_key(m, "offset", where), f"{where}: offset", 0, 1 << 20))


def _geometry(node, where: str, want_pad: tuple[int, int]) -> int:
    """The stride of a connection's Conv2d, after its fixed fields: dilation 1, groups 1,
    bias 0, ``want_pad``."""
    _plain_conv(node, where)
    stride = _array(np.asarray(node.stride), f"{where}: stride", "iu", (2,))
    if stride[0] != stride[1]:
        _fail(f"{where}: stride", "equal in both axes", stride)
    pad = np.asarray(node.padding)
    if pad.dtype.kind not in "iu" or tuple(pad.tolist()) != want_pad:
        _fail(f"{where}: padding", f"{list(want_pad)} (see the graded NIR metadata)", pad)
    return _int(stride[0], f"{where}: stride", 1, 64)


def _connection(g, name: str, src: str, dst: str, nodes: dict, source: str) -> Connection:
    import nir

    where = f"{source}: connection {name} ({src} -> {dst})"
    node = _node(g, name, nir.Conv2d, "a Conv2d node", where)
    m = _meta(node, where)
    kind = _str(_key(m, "kind", where), f"{where}: kind")
    if kind not in CONNECTION_KINDS:
        _fail(f"{where}: kind", f"one of {', '.join(CONNECTION_KINDS)}", kind)
    delay = _int(_key(m, "delay", where), f"{where}: delay", 0, MAX_DELAY)
    if kind != "identity" and delay:
        _fail(f"{where}: delay", f"0 (only an identity, a DelaySparse, has delays; a {kind} "
              "reads a delayed copy)", delay)
    (c_src, h, w), (c_dst, h_dst, w_dst) = nodes[src].shape, nodes[dst].shape
    weight = node.weight
    if kind == "conv":
        weight = _array(weight, f"{where}: weight", "iu", ndim=4)
        k = weight.shape[-1]
        if weight.shape != (c_dst, c_src, k, k) or k % 2 == 0:
            _fail(f"{where}: weight", f"[{c_dst}, {c_src}, k, k] with k odd", weight)
        stride = _geometry(node, where, (k // 2, k // 2))
        if ((h - 1) // stride + 1, (w - 1) // stride + 1) != (h_dst, w_dst):
            raise ExportError(f"{where}: stride {stride} gives no {h_dst} x {w_dst} map from "
                              f"{h} x {w}.")
        exp = _int(_key(m, "weight_exp", where), f"{where}: weight_exp", 0, WEIGHT_EXP_MAX)
        full = weight.astype(np.int64)
        mant = full >> exp
        bad = ((mant << exp) != full) | (mant % 2 != 0) | (mant < WEIGHT_MIN) | (mant > WEIGHT_MAX)
        if bad.any():
            raise ExportError(f"{where}: weight / 2**weight_exp ({exp}) must be even integers "
                              f"in [{WEIGHT_MIN}, {WEIGHT_MAX}] (Lava's 8-bit mantissa); "
                              f"{int(bad.sum())} are not, e.g. weight {int(full[bad].flat[0])}.")
        lsb = _num(_key(m, "weight_lsb", where), f"{where}: weight_lsb", positive=True)
        want = _input_unit(nodes[dst]) / _output_unit(nodes[src])
        if not math.isclose(lsb, want, rel_tol=1e-9):
            _fail(f"{where}: weight_lsb", f"the destination's input unit over the source's, "
                  f"{want!r}", lsb)
        return Connection(src, dst, "conv", torch.from_numpy(full.astype(np.float64) * lsb),
                          stride=stride, weight_int=torch.from_numpy(mant.astype(np.int16)),
                          weight_exp=exp)
    if kind == "identity":
        exp = _int(_key(m, "weight_exp", where), f"{where}: weight_exp", WEIGHT_EXP_MIN,
                   WEIGHT_EXP_MAX)
        if c_src > c_dst or (h, w) != (h_dst, w_dst):
            raise ExportError(f"{where}: an identity places a {c_src} x {h} x {w} source inside "
                              f"its destination; {dst} is {c_dst} x {h_dst} x {w_dst}.")
        lo = _int(_key(m, "dst_channel", where), f"{where}: dst_channel", 0, c_dst - c_src)
        want = identity_weight(c_dst, c_src, lo, exp)
    else:
        if (c_dst, h_dst, w_dst) != (c_src, 2 * h, 2 * w):
            raise ExportError(f"{where}: a 2x upsample of {c_src} x {h} x {w} is "
                              f"{c_src} x {2 * h} x {2 * w}; {dst} is {c_dst} x {h_dst} x "
                              f"{w_dst}.")
        try:
            k, pad = upsample_geometry(h, w)
        except ExportError as e:
            raise ExportError(f"{where}: {e}") from None
        want = upsample_weight(c_src, k)
    weight = _array(weight, f"{where}: weight", "fiu", want.shape)
    if not np.array_equal(weight, want):
        _fail(f"{where}: weight", f"the {kind} pattern (see the graded NIR metadata)", weight)
    if _geometry(node, where, (0, 0) if kind == "identity" else pad) != 1:
        _fail(f"{where}: stride", "1", node.stride)
    if kind == "identity":
        return Connection(src, dst, "identity", dst_channel=lo, weight_exp=exp, delay=delay)
    return Connection(src, dst, "upsample")


def _check_schedule(graph: GradedGraph, names: list[str], source: str) -> None:
    """Every connection lines its source's window up with its destination's (dst offset =
    src offset + 1 + delay), or the graph is unscheduled (every offset and delay 0)."""
    if not any(n.offset for n in graph.nodes()) and not any(c.delay for c in graph.connections):
        return
    for name, c in zip(names, graph.connections, strict=True):
        a, b = graph.node(c.src).offset, graph.node(c.dst).offset
        if b != a + 1 + c.delay:
            raise ExportError(f"{source}: connection {name} ({c.src} -> {c.dst}): {c.dst} has "
                              f"offset {b}, but {c.src}'s offset {a} + 1 + delay {c.delay} is "
                              f"{a + 1 + c.delay}; the schedule is inconsistent.")


def graded_from_nir(g, host: dict[str, np.ndarray], *, source: str,
                    host_source: str = HOST_FILE) -> GradedGraph:
    """The graded graph a bundle's NIR graph (and host arrays) describes, every field checked:
    type, Lava's range, shape against its neighbours; an :class:`ExportError` naming the node
    and key otherwise."""
    top = _meta(g, f"{source}: graph")
    check_format(_scalar(top.get("format")), _scalar(top.get("format_version")),
                 expected=GRADED_NETWORK_FORMAT, supported_max=GRADED_BUNDLE_VERSION,
                 where=source, error=ExportError, show=_show,
                 what=f"an {GRADED_NETWORK_FORMAT} version {GRADED_BUNDLE_VERSION} network")
    raw = _key(top, "config", f"{source}: graph")
    if not isinstance(raw, dict):
        _fail(f"{source}: config", "a table of model settings", raw)
    from ..config import UNetConfig

    try:
        cfg = UNetConfig.from_dict({k: np.asarray(v).tolist() for k, v in raw.items()},
                                   source=f"{source}: config")
    except ConfigError as e:
        raise ExportError(str(e)) from None
    steps = cfg.snn_steps
    pops = [_population(g, n, steps, source)
            for n in _names(_key(top, "populations", source), f"{source}: populations")]
    relays = [_relay(g, n, steps, source)
              for n in _names(_key(top, "relays", source), f"{source}: relays")]
    if not pops or not pops[0].pixel_input or any(p.pixel_input for p in pops[1:]):
        raise ExportError(f"{source}: the first population (the stem) and only it must have "
                          f"pixel_input; populations with it: "
                          f"{[p.name for p in pops if p.pixel_input]}.")
    nodes = {n.name: n for n in (*pops, *relays)}
    ins, outs = defaultdict(list), defaultdict(list)
    for a, b in g.edges:
        outs[a].append(b)
        ins[b].append(a)
    names = _names(_key(top, "connections", source), f"{source}: connections")
    conns = []
    for name in names:
        if len(ins[name]) != 1 or len(outs[name]) != 1 or ins[name][0] not in nodes \
                or outs[name][0] not in nodes:
            raise ExportError(f"{source}: connection {name}: needs one edge in from a population "
                              f"or relay and one out to one; edges {ins[name]} -> {outs[name]}.")
        conns.append(_connection(g, name, ins[name][0], outs[name][0], nodes, source))
    output = _str(_key(top, "output", source), f"{source}: output")
    if output not in nodes or not isinstance(nodes[output], Relay):
        _fail(f"{source}: output", "a relay of the network", output)
    _check_edges(g, pops, conns, names, output, source)
    hs = _host_stages(g, host, pops, cfg, nodes[output].shape, source, host_source)
    if not torch.equal(hs.tail_bias, nodes[output].bias):
        raise ExportError(f"{host_source}: tail_bias differs from the bias the output relay "
                          f"{output} carries ({source}); they are one constant.")
    bits = _int(_key(top, "payload_bits", source), f"{source}: payload_bits",
                *PAYLOAD_BITS_RANGE)
    order = _names(_key(top, "order", source), f"{source}: order")
    graph = GradedGraph(cfg, tuple(pops), tuple(relays), tuple(conns), tuple(order), output,
                        hs, {"mapping": "graded", "payload_bits": bits})
    try:
        check_graded(graph, source)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    _check_schedule(graph, names, source)
    return graph


def _check_edges(g, pops: list[Population], conns: list[Connection], names: list[str],
                 output: str, source: str) -> None:
    """The NIR edges are exactly the described ones (NIR is the network's single description)."""
    want = {(c.src, n) for c, n in zip(conns, names, strict=True)} | {
        (n, c.dst) for c, n in zip(conns, names, strict=True)} | {
        ("x_t", "pixel_conv"), ("pixel_conv", pops[0].name), (output, "decoder_input")} | {
        (f"temb:{p.name}", p.name) for p in pops if p.temb_block is not None}
    edges = {tuple(e) for e in g.edges}
    for e in sorted(want - edges):
        raise ExportError(f"{source}: the edge {e[0]} -> {e[1]} is missing from the graph.")
    for e in sorted(edges - want):
        raise ExportError(f"{source}: the edge {e[0]} -> {e[1]} is not part of the graded "
                          "network (no connection, host input or output describes it).")


def _quantization(manifest: dict[str, Any], graph: GradedGraph, man_path: Path) -> dict:
    """The manifest's per-node quantization report; what it states must be what the network
    holds (vth, bias_exp, scale)."""
    report = (manifest.get("quantization") or {}).get("nodes")
    if report is None:
        return {}
    if not isinstance(report, dict):
        _fail(f"{man_path}: quantization.nodes", "an object (node -> report)", report)
    for node in graph.nodes():
        rec = report.get(node.name)
        if rec is None:
            continue
        if not isinstance(rec, dict):
            _fail(f"{man_path}: quantization.nodes.{node.name}", "an object", rec)
        own = {"scale": node.scale} if isinstance(node, Relay) else {
            "scale": node.scale, "vth": node.lif.vth, "bias_exp": node.lif.bias_exp}
        for key, value in own.items():
            if key in rec and rec[key] != value:
                raise ExportError(f"{man_path}: quantization.nodes.{node.name}.{key} is "
                                  f"{_show(rec[key])}; the network holds {value!r}.")
    return report


def read_graded_bundle(path: str | Path) -> tuple[GradedGraph, dict[str, Any]]:
    """(graded graph, manifest) of a graded bundle directory; checks the format, the file
    hashes and every value the graph is built from (:class:`ExportError` naming file and key)."""
    path = Path(path)
    manifest = read_manifest(path, GRADED_BUNDLE_FORMAT, GRADED_BUNDLE_VERSION,
                             error=ExportError)
    man_path = path / MANIFEST
    if manifest.get("mapping") != "graded":
        _fail(f"{man_path}: mapping", "'graded'", manifest.get("mapping"))
    for name, what in ((NIR_FILE, "the network"), (HOST_FILE, "the host's arrays")):
        if name not in manifest["files"]:
            raise ExportError(f"{man_path}: files does not list {name} ({what}).")
    _check_manifest_fields(manifest, man_path)
    host = read_host_arrays(path / HOST_FILE)
    graph = graded_from_nir(read_network(path / NIR_FILE), host, source=str(path / NIR_FILE),
                            host_source=str(path / HOST_FILE))
    config = manifest.get("model_config")
    if config is not None and config != json.loads(json.dumps(graph.config.to_dict())):
        raise ExportError(f"{man_path}: model_config {_show(config)} is not the network's "
                          f"({graph.config.to_dict()}).")
    meta = {**graph.meta, "source": f"read from {path}",
            "quantization": _quantization(manifest, graph, man_path)}
    return graph.replace(meta=meta), manifest
