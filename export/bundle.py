"""The export bundle: a directory a user carries to the hardware.

``manifest.json``  tool and format versions, checkpoint SHA-256, model config, quantization
                   settings, target profile, lowering passes, timing, constraint check, file hashes
``network.nir``    the spiking network, the single description of it (plain ``nir.read`` loads it,
                   type checking on); integer parameters in node metadata, see ``NIR_METADATA``
``host.npz``       the host's float work: time-embedding tables, decoder tail, sampler schedule

Both the integer simulator and the Lava backend build their networks from the bundle
(:func:`read_bundle` returns the deployment graph they take), so a bundle runs exactly as the
checkpoint it was exported from. Reading trusts nothing: every listed file must be a plain
name inside the bundle with its recorded size and SHA-256, array sizes are checked from the
headers before anything is loaded (no pickles), and every field the graph is built from is
checked for type, Lava's range and fit; a malformed bundle is an :class:`ExportError` (exit
code 7) naming the file and the population, projection or key.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from ..config import UNetConfig
from ..ir.graph import HOST, DeployGraph, HostStages, NeuronParams, Population, Projection
from ..errors import CheckpointError, ExportError, SdmNeuroError
from ..formats import check_format
from ..fileio import read_json_limited, read_npy_header, regular_file, sha256_file
from ..ir.fixed_point import (LIF_RANGES, MAX_DELAY, VTH_MAX, WEIGHT_EXP_RANGE, WEIGHT_MAX,
                              WEIGHT_MIN)

BUNDLE_FORMAT = "sdm-neuro-bundle"
BUNDLE_VERSION = 1
NIR_FILE, HOST_FILE, MANIFEST = "network.nir", "host.npz", "manifest.json"
NS = "sdm_neuro"  # the metadata key every node's own fields live under

NIR_METADATA = """\
sdm-neuro NIR metadata (key "sdm_neuro" in each node's metadata; non-binding for other tools).

Time: one NIR step is one Loihi 2 time step (dt = 1, unitless). A denoising call lasts
`timing.call_length` steps (manifest); population P runs its T_snn-step window from step
`offset` and is reset (u = v = 0) at its start (Lava LIFReset, reset_interval = call_length).

IF nodes (one per population, shape (C, H, W)): r = 1, v_threshold = the float threshold,
v_reset = 0 (reset to zero). Metadata: name, du, dv, vth (Lava mantissa; compared with
v > vth << 6), bias_exp, scale (float units of one membrane LSB), offset, bias ([T_snn, C]
float64 constant input per step), temb_block (the host adds temb[t] of this block per channel
and call), pixel_input (the host adds the pixel conv per neuron and call). The per-call bias
mantissa is round(current / (scale * 2**bias_exp)), clipped to 13 bits.

Conv2d nodes (one per projection): weight = the float weight [C_out, C_in, k, k] (BatchNorm,
shortcuts and concatenation composed in), stride, padding = k // 2, bias = 0. Metadata: src,
dst, weight_int (int16, even, in [-256, 254]; the synapse is weight_int << weight_exp membrane
LSBs of the target; TSM: [T_snn, ...], one set per SNN step of the source), weight_exp, delay
(extra synaptic delay in steps; Lava's one-step Sparse delay comes on top, and for a TSM
projection whose per-step weights differ one more step for its time-gated relay), gain (per SNN
step weight multipliers of SDM's TSM; empty = all ones), upsample.

Extension - nearest upsampling: a projection with metadata upsample = u > 1 is the conv applied
AFTER a u x nearest upsample of the source spikes. NIR has no upsampling, so such a node is
written as a Conv2d on the source map whose padding is chosen to give the upsampled output
shape (types check); its standard NIR meaning (a zero-padded conv) is NOT what it computes.
Tools that ignore this metadata must not run graphs that contain it.

Host nodes: Input "x_t" -> Conv2d "pixel_conv" (host float, metadata pixel_gain) -> the stem;
Input "temb:<block>" (the host's per-channel time embedding, broadcast) -> its population;
Conv2d "host:<i>" projections (float, read by the host) -> Output "decoder_input", whose sum
plus host.npz tail_bias feeds the decoder tail in host.npz.
"""


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def _conv_node(proj: Projection, src_shape: tuple[int, int, int], meta: dict[str, Any]):
    import nir

    w = _np(proj.weight).astype(np.float64)
    k, (_, h, wd), u = proj.kernel, src_shape, proj.upsample
    # see NIR_METADATA, "Extension": padding that gives the upsampled shape keeps types valid
    pad = (((h * (u - 1) + k - 1) // 2, (wd * (u - 1) + k - 1) // 2) if u > 1
           else (proj.padding, proj.padding))
    return nir.Conv2d(input_shape=(h, wd), weight=w, stride=proj.stride, padding=pad,
                      dilation=1, groups=1, bias=np.zeros(w.shape[0]), metadata={NS: meta})


def graph_to_nir(graph: DeployGraph):
    """The spiking network and its host interface as a typed NIR graph."""
    import nir

    cfg = graph.config
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    shapes = {p.name: p.shape for p in graph.populations}
    for pop in graph.populations:
        shape = pop.shape
        lif = pop.lif
        nodes[pop.name] = nir.IF(
            r=np.ones(shape), v_threshold=np.full(shape, pop.threshold), v_reset=np.zeros(shape),
            metadata={NS: {"name": pop.name, "du": lif.du, "dv": lif.dv, "vth": lif.vth,
                           "bias_exp": lif.bias_exp, "scale": pop.scale, "offset": pop.offset,
                           "bias": _np(pop.bias).astype(np.float64),
                           "temb_block": pop.temb_block or "", "pixel_input": pop.pixel_input}})
        if pop.temb_block is not None:
            name = f"temb:{pop.name}"
            nodes[name] = nir.Input(input_type=np.array(shape), metadata={NS: {
                "role": "time embedding: host table temb/<block>[t], per channel",
                "block": pop.temb_block}})
            edges.append((name, pop.name))
        if pop.pixel_input:
            nodes["x_t"] = nir.Input(input_type=np.array([cfg.img_ch, cfg.img_size, cfg.img_size]),
                                     metadata={NS: {"role": "the noisy image x_t"}})
            h = graph.host
            px = Projection("x_t", pop.name, h.pixel_weight, gain=h.pixel_gain)
            nodes["pixel_conv"] = _conv_node(px, (cfg.img_ch, cfg.img_size, cfg.img_size), {
                "role": "host pixel conv (float, BatchNorm folded)", "gain": list(h.pixel_gain)})
            edges += [("x_t", "pixel_conv"), ("pixel_conv", pop.name)]
    out_shape = None
    for i, proj in enumerate(graph.projections):
        meta = {"src": proj.src, "dst": proj.dst, "upsample": proj.upsample,
                "gain": list(proj.gain), "delay": proj.delay}
        if proj.dst == HOST:
            name = f"host:{i}"
            c_out, (_, h, w) = proj.weight.shape[0], shapes[proj.src]
            out_shape = (c_out, h * proj.upsample // proj.stride, w * proj.upsample // proj.stride)
            edges.append((name, "decoder_input"))
        else:
            name = f"conv:{i}"
            meta.update(weight_int=_np(proj.weight_int).astype(np.int16),
                        weight_exp=int(proj.weight_exp))
            edges.append((name, proj.dst))
        nodes[name] = _conv_node(proj, shapes[proj.src], meta)
        edges.append((proj.src, name))
    nodes["decoder_input"] = nir.Output(output_type=np.array(out_shape), metadata={NS: {
        "role": "summed host projections: the decoder tail's input (host.npz tail/*)"}})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={NS: {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "config": cfg.to_dict(),
        "populations": [p.name for p in graph.populations],
        "projections": [n for n in nodes if n.startswith(("conv:", "host:"))],
        "documentation": NIR_METADATA}})


def host_arrays(graph: DeployGraph, betas: np.ndarray) -> dict[str, np.ndarray]:
    h = graph.host
    return {**{f"temb/{k}": _np(v) for k, v in h.temb_table.items()},
            **{f"tail/{k}": _np(v) for k, v in h.tail.items()},
            "tail_bias": _np(h.tail_bias), "schedule/betas": betas}


def write_bundle(graph: DeployGraph, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the bundle's files into the (temporary) directory ``out``; returns the manifest."""
    import nir

    from ..diffusion import LinearSchedule
    from ..fileio import write_json

    sch = LinearSchedule(num_steps=graph.config.diffusion_steps)
    nir.write(out / NIR_FILE, graph_to_nir(graph))
    np.savez(out / HOST_FILE, **host_arrays(graph, sch.betas.double().numpy()))
    manifest = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, **manifest,
                "nir_version": _nir_version(),
                "sampler_schedule": {"kind": "linear", "beta_1": float(sch.betas[0]),
                                     "beta_T": float(sch.betas[-1]), "steps": sch.num_steps},
                "files": {n: {"sha256": sha256_file(out / n), "bytes": (out / n).stat().st_size}
                          for n in (NIR_FILE, HOST_FILE)},
                "nir_metadata": NIR_METADATA.splitlines()}
    write_json(out / MANIFEST, manifest)
    return manifest


def _nir_version() -> str:
    from importlib.metadata import version

    return version("nir")


# -- reading: every value the graph is built from is checked where it enters ----------------

MANIFEST_MAX_BYTES = 16 << 20   # a manifest is kilobytes (the paper model's: about 100 KB)
FILE_MAX_BYTES = 4 << 30        # network.nir or host.npz on disk
DECLARED_MAX_BYTES = 4 << 30    # array data a NIR / npz file declares, checked before reading
HDF5_MAX_OBJECTS = 200_000      # groups and datasets of one NIR file (the paper model: ~3,000)
_SHA256 = re.compile("[0-9a-f]{64}")
_PROJECTION_NAME = re.compile(r"(conv|host):[0-9]+")
# Lava's LIF ranges (du, dv 12 bits, bias_exp 3 bits), in the order they are read; vth >= 1:
# the scale is threshold / 64 vth
MANIFEST_LIF_RANGES = {"vth": (1, VTH_MAX), "bias_exp": LIF_RANGES["bias_exp"],
                       "du": LIF_RANGES["du"], "dv": LIF_RANGES["dv"]}


def _show(v: object) -> str:
    if isinstance(v, np.ndarray) and v.ndim > 0:
        return (str(v.tolist()) if v.size <= 8 and v.dtype.kind in "biuf" else
                f"an array of dtype {v.dtype} and shape {list(v.shape)}")
    v = _scalar(v)
    if isinstance(v, np.generic):
        v = v.item()
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(where: str, expected: str, got: object) -> NoReturn:
    raise ExportError(f"{where} must be {expected}, got {_show(got)}.")


def _scalar(v: object) -> object:
    return v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v


def _int(v: object, where: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi]: no bool, no float, no string (no silent casts)."""
    v = _scalar(v)
    if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer) or \
            not lo <= v <= hi:
        _fail(where, f"an integer in [{lo}, {hi}]", v)
    return int(v)


def _num(v: object, where: str, *, positive: bool = False) -> float:
    v = _scalar(v)
    if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.integer | np.floating) \
            or not math.isfinite(v) or (positive and not v > 0):
        _fail(where, "a finite positive number" if positive else "a finite number", v)
    return float(v)


def _bool(v: object, where: str) -> bool:
    v = _scalar(v)
    if not isinstance(v, bool | np.bool_):
        _fail(where, "a boolean", v)
    return bool(v)


def _str(v: object, where: str) -> str:
    v = _scalar(v)
    if isinstance(v, bytes):
        try:
            v = v.decode()
        except UnicodeDecodeError:
            _fail(where, "UTF-8 text", v)
    if not isinstance(v, str):
        _fail(where, "a string", v)
    return v


def _array(v: object, where: str, kinds: str, shape: tuple[int, ...] | None = None,
           ndim: int | None = None) -> np.ndarray:
    """A numeric array of one of ``kinds`` (numpy dtype kinds), all finite, of ``shape``."""
    if not isinstance(v, np.ndarray) or v.dtype.kind not in kinds or v.dtype.fields:
        _fail(where, {"f": "a float array", "iu": "an integer array"}.get(kinds,
                                                                          "a numeric array"), v)
    if shape is not None and v.shape != tuple(shape):
        _fail(where, f"an array of shape {list(shape)}", v)
    if ndim is not None and v.ndim != ndim:
        _fail(where, f"an array with {ndim} dimension(s)", v)
    if v.dtype.kind == "f" and not np.isfinite(v).all():
        raise ExportError(f"{where}: {int((~np.isfinite(v)).sum())} value(s) are NaN or "
                          "infinite.")
    return v


def _key(meta: dict, key: str, where: str) -> object:
    if key not in meta:
        raise ExportError(f"{where}: metadata key {key!r} missing.")
    return meta[key]


def _meta(node: object, where: str) -> dict:
    meta = getattr(node, "metadata", None)
    m = meta.get(NS) if isinstance(meta, dict) else None
    if not isinstance(m, dict):
        raise ExportError(f"{where}: no {NS!r} metadata (not written by sdm-neuro export).")
    return m


def _names(v: object, where: str) -> list[str]:
    if isinstance(v, np.ndarray) and v.ndim == 1:
        v = list(v)
    if not isinstance(v, list | tuple):
        _fail(where, "a list of node names", v)
    from collections import Counter

    names = [_str(x, where) for x in v]
    dup = sorted(n for n, c in Counter(names).items() if c > 1)
    if dup:
        raise ExportError(f"{where}: names repeat ({', '.join(dup)}).")
    return names


def _populations(g, names: list[str], cfg: UNetConfig, source: str) -> list[Population]:
    import nir

    pops = []
    for name in names:
        where = f"{source}: population {name}"
        node = g.nodes.get(name)
        if not isinstance(node, nir.IF):
            raise ExportError(f"{where}: its node is {type(node).__name__ if node else 'missing'}"
                              ", expected an IF node.")
        m = _meta(node, where)
        if _str(_key(m, "name", where), f"{where}: name") != name:
            _fail(f"{where}: name", repr(name), m["name"])
        th = _array(node.v_threshold, f"{where}: v_threshold", "f", ndim=3)
        shape = tuple(int(n) for n in th.shape)
        if min(shape) < 1 or not (th == th.flat[0]).all() or not th.flat[0] > 0:
            _fail(f"{where}: v_threshold", "one positive threshold for the whole population "
                  "(shape C x H x W, each at least 1)", th)
        if not (_array(node.r, f"{where}: r", "fiu", shape) == 1).all():
            _fail(f"{where}: r", "1 for every neuron (IF, unit input gain)", node.r)
        if not (_array(node.v_reset, f"{where}: v_reset", "fiu", shape) == 0).all():
            _fail(f"{where}: v_reset", "0 for every neuron (reset to zero)", node.v_reset)
        lif = NeuronParams(**{k: _int(_key(m, k, where), f"{where}: {k}", lo, hi)
                              for k, (lo, hi) in MANIFEST_LIF_RANGES.items()})
        threshold = float(th.flat[0])
        scale = _num(_key(m, "scale", where), f"{where}: scale", positive=True)
        if not math.isclose(scale * 64 * lif.vth, threshold, rel_tol=1e-9):
            _fail(f"{where}: scale", f"threshold / (64 vth) = {threshold / (64 * lif.vth)!r}",
                  scale)
        bias = _array(_key(m, "bias", where), f"{where}: bias", "f", (cfg.snn_steps, shape[0]))
        temb = _str(_key(m, "temb_block", where), f"{where}: temb_block")
        pops.append(Population(
            name=name, shape=shape, threshold=threshold,
            bias=torch.from_numpy(bias.astype(np.float64)), temb_block=temb or None,
            pixel_input=_bool(_key(m, "pixel_input", where), f"{where}: pixel_input"),
            scale=scale, offset=_int(_key(m, "offset", where), f"{where}: offset", 0, 1 << 20),
            lif=lif))
    if not pops or not pops[0].pixel_input or any(p.pixel_input for p in pops[1:]):
        raise ExportError(f"{source}: the first population (the stem) and only it must have "
                          f"pixel_input; populations with it: "
                          f"{[p.name for p in pops if p.pixel_input]}.")
    return pops


def _plain_conv(node, where: str) -> None:
    """Fields the reader does not carry must have the values it assumes (else they would be
    silently ignored): dilation 1, groups 1, bias 0 (biases are population fields)."""
    for key, want in (("dilation", 1), ("groups", 1), ("bias", 0)):
        value = np.asarray(getattr(node, key))
        if value.dtype.kind not in "biuf" or (value != want).any():
            _fail(f"{where}: {key}", f"{want} (what the reader runs)", value)


def _geometry(node, m: dict, where: str) -> tuple[int, int]:
    """(stride, upsample) of a Conv2d node."""
    _plain_conv(node, where)
    stride = _array(np.asarray(node.stride), f"{where}: stride", "iu", (2,))
    if stride[0] != stride[1]:
        _fail(f"{where}: stride", "equal in both axes", stride)
    s = _int(stride[0], f"{where}: stride", 1, 64)
    u = _int(_key(m, "upsample", where), f"{where}: upsample", 1, 64)
    if u > 1 and s != 1:
        raise ExportError(f"{where}: an upsampling projection (upsample {u}) must have stride 1, "
                          f"got {s}.")
    return s, u


def _projections(g, names: list[str], pops: dict[str, tuple[int, Population]],
                 cfg: UNetConfig, source: str) -> list[Projection]:
    import nir

    projs = []
    for name in names:
        where = f"{source}: projection {name}"
        if not _PROJECTION_NAME.fullmatch(name):
            _fail(f"{source}: projections", "names conv:<i> or host:<i>", name)
        node = g.nodes.get(name)
        if not isinstance(node, nir.Conv2d):
            raise ExportError(f"{where}: its node is {type(node).__name__ if node else 'missing'}"
                              ", expected a Conv2d node.")
        m = _meta(node, where)
        to_host = name.startswith("host:")
        src = _str(_key(m, "src", where), f"{where}: src")
        dst = _str(_key(m, "dst", where), f"{where}: dst")
        if src not in pops:
            _fail(f"{where}: src", "a population of this network", src)
        if to_host and dst != HOST:
            _fail(f"{where}: dst", repr(HOST), dst)
        if not to_host and (dst not in pops or pops[dst][0] <= pops[src][0]):
            _fail(f"{where}: dst", f"a population after {src} (populations are in "
                  "topological order)", dst)
        where = f"{source}: projection {name} ({src} -> {dst})"
        c_src, h, w = pops[src][1].shape
        weight = _array(node.weight, f"{where}: weight", "f", ndim=4)
        k = weight.shape[-1]
        c_dst = pops[dst][1].shape[0] if dst in pops else weight.shape[0]
        if weight.shape != (c_dst, c_src, k, k) or k % 2 == 0:
            _fail(f"{where}: weight", f"[{c_dst}, {c_src}, k, k] with k odd", weight)
        s, u = _geometry(node, m, where)
        out = ((h * u - 1) // s + 1, (w * u - 1) // s + 1)  # padding k // 2 keeps h * u
        if dst in pops and out != pops[dst][1].shape[1:]:
            raise ExportError(f"{where}: gives a {out[0]} x {out[1]} map (source {h} x {w}, "
                              f"upsample {u}, stride {s}); {dst} is "
                              f"{pops[dst][1].shape[1]} x {pops[dst][1].shape[2]}.")
        pad = (((h * (u - 1) + k - 1) // 2, (w * (u - 1) + k - 1) // 2) if u > 1
               else (k // 2, k // 2))
        if tuple(np.asarray(node.padding).tolist()) != pad:
            _fail(f"{where}: padding", f"{list(pad)} (see NIR_METADATA)", node.padding)
        gain = _array(np.asarray(_key(m, "gain", where)), f"{where}: gain", "fiu", ndim=1)
        if len(gain) not in (0, cfg.snn_steps):
            _fail(f"{where}: gain", f"empty or {cfg.snn_steps} values (one per SNN step)", gain)
        w_int = w_exp = None
        if not to_host:
            w_int = _weight_int(_key(m, "weight_int", where), weight.shape, cfg, where)
            w_exp = _int(_key(m, "weight_exp", where), f"{where}: weight_exp", *WEIGHT_EXP_RANGE)
        elif "weight_int" in m:
            raise ExportError(f"{where}: a host projection has float weights only, but "
                              "weight_int is given.")
        projs.append(Projection(
            src=src, dst=dst, weight=torch.from_numpy(weight.astype(np.float64)), stride=s,
            upsample=u, gain=tuple(float(v) for v in gain), weight_int=w_int, weight_exp=w_exp,
            delay=_int(_key(m, "delay", where), f"{where}: delay", 0, MAX_DELAY)))
    return projs


def _weight_int(v: object, shape: tuple[int, ...], cfg: UNetConfig, where: str) -> torch.Tensor:
    """Lava's 8-bit weight mantissas: even integers in [-256, 254] (truncation is a no-op)."""
    w = _array(v, f"{where}: weight_int", "iu")
    if w.shape not in (shape, (cfg.snn_steps, *shape)):
        _fail(f"{where}: weight_int", f"an array of shape {list(shape)} or "
              f"{[cfg.snn_steps, *shape]} (TSM: one set per SNN step)", w)
    bad = (w < WEIGHT_MIN) | (w > WEIGHT_MAX) | (w % 2 != 0)
    if bad.any():
        raise ExportError(f"{where}: weight_int must be even integers in "
                          f"[{WEIGHT_MIN}, {WEIGHT_MAX}] (Lava's 8-bit mantissa); "
                          f"{int(bad.sum())} are not, e.g. {int(w[bad].flat[0])}.")
    return torch.from_numpy(w.astype(np.int16))


def _host_stages(g, host: dict[str, np.ndarray], pops: list[Population], cfg: UNetConfig,
                 dec: tuple[int, int, int] | None, source: str, host_source: str) -> HostStages:
    import nir

    px = g.nodes.get("pixel_conv")
    where = f"{source}: pixel_conv"
    if not isinstance(px, nir.Conv2d):
        raise ExportError(f"{where}: missing or not a Conv2d node.")
    pw = _array(px.weight, f"{where}: weight", "f", (pops[0].shape[0], cfg.img_ch, 3, 3))
    _plain_conv(px, where)
    if np.asarray(px.stride).tolist() != [1, 1] or np.asarray(px.padding).tolist() != [1, 1]:
        _fail(f"{where}: stride and padding", "[1, 1] and [1, 1]",
              [np.asarray(px.stride).tolist(), np.asarray(px.padding).tolist()])
    gain = _array(np.asarray(_key(_meta(px, where), "gain", where)), f"{where}: gain", "fiu",
                  ndim=1)
    if len(gain) not in (0, cfg.snn_steps):
        _fail(f"{where}: gain", f"empty or {cfg.snn_steps} values (one per SNN step)", gain)
    if dec is None or dec[1:] != (cfg.img_size, cfg.img_size):
        raise ExportError(f"{source}: the host projections (host:<i>) must give one decoder "
                          f"input of {cfg.img_size} x {cfg.img_size}; got {dec}.")
    known = ("temb/", "tail/", "tail_bias", "schedule/betas")
    unknown = sorted(k for k in host if not k.startswith(known[:2]) and k not in known[2:])
    if unknown:
        raise ExportError(f"{host_source}: unknown array(s) {', '.join(unknown)}.")
    temb = {}
    for pop in pops:  # a block's table must fit every population it drives
        if pop.temb_block is not None:
            key = f"temb/{pop.temb_block}"
            if key not in host:
                raise ExportError(f"{host_source}: {key} missing (time embedding of "
                                  f"population {pop.name}).")
            temb[pop.temb_block] = _array(host[key], f"{host_source}: {key}", "f",
                                          (cfg.diffusion_steps, pop.shape[0]))
    tail = {}
    for key, shape in _tail_shapes(cfg, dec[0]).items():
        if f"tail/{key}" not in host:
            raise ExportError(f"{host_source}: tail/{key} missing (decoder tail).")
        tail[key] = _array(host[f"tail/{key}"], f"{host_source}: tail/{key}", "fiu", shape)
    extra = sorted(k[5:] for k in host if k.startswith("tail/") and k[5:] not in tail)
    if extra:
        raise ExportError(f"{host_source}: unknown decoder tail array(s) {', '.join(extra)}.")
    tail_bias = _array(_get(host, "tail_bias", host_source), f"{host_source}: tail_bias", "f",
                       (cfg.snn_steps, dec[0]))
    betas = _array(_get(host, "schedule/betas", host_source), f"{host_source}: schedule/betas",
                   "f", (cfg.diffusion_steps,))
    if not ((betas > 0) & (betas < 1)).all():
        _fail(f"{host_source}: schedule/betas", "in (0, 1)", betas)
    return HostStages(
        pixel_weight=torch.from_numpy(pw.astype(np.float64)),
        pixel_gain=tuple(float(v) for v in gain),
        temb_table={k: torch.from_numpy(v) for k, v in temb.items()},
        tail={k: torch.from_numpy(v) for k, v in tail.items()},
        tail_bias=torch.from_numpy(tail_bias.astype(np.float64)))


def _get(host: dict[str, np.ndarray], key: str, host_source: str) -> np.ndarray:
    if key not in host:
        raise ExportError(f"{host_source}: {key} missing.")
    return host[key]


def _tail_shapes(cfg: UNetConfig, c: int) -> dict[str, tuple[int, ...]]:
    """The decoder tail's parameters (``SpikingUNet.tail``) for ``c`` input channels."""
    def bn(name: str, n: int) -> dict[str, tuple[int, ...]]:
        return {**{f"{name}.{k}": (n,) for k in ("weight", "bias", "running_mean",
                                                  "running_var")},
                f"{name}.num_batches_tracked": ()}

    conv = "tail_conv.tsmconv" if cfg.tsm else "tail_conv"
    return {**bn("tail_bn", c), f"{conv}.weight": (cfg.img_ch, c, 3, 3),
            f"{conv}.bias": (cfg.img_ch,),
            **({"tail_conv.tsmp": (cfg.snn_steps, 1, 1, 1, 1)} if cfg.tsm else {}),
            "T_output_layer.weight": (cfg.img_ch, cfg.img_ch, 3, 3, 1),
            "T_output_layer.bias": (cfg.img_ch,), **bn("last_bn", cfg.img_ch)}


def _check_schedule(graph: DeployGraph, source: str) -> None:
    """Stored offsets and delays are the schedule of this graph (or all zero: unscheduled)."""
    from ..errors import ConfigError
    from ..compiler.schedule import schedule

    if not any(p.offset for p in graph.populations) and not any(
            p.delay for p in graph.projections):
        return
    try:
        want = schedule(graph)
    except ConfigError as e:
        raise ExportError(f"{source}: {e}") from None
    for got, ref in zip(graph.populations, want.populations, strict=True):
        if got.offset != ref.offset:
            raise ExportError(f"{source}: population {got.name}: offset is {got.offset}; the "
                              f"schedule of this network gives {ref.offset}.")
    for i, (got, ref) in enumerate(zip(graph.projections, want.projections, strict=True)):
        if got.delay != ref.delay:
            raise ExportError(f"{source}: projection {i} ({got.src} -> {got.dst}): delay is "
                              f"{got.delay}; the schedule of this network gives {ref.delay}.")


def _decoder_shape(projs: list[Projection], pops: dict[str, tuple[int, Population]],
                   source: str) -> tuple[int, int, int] | None:
    shapes = set()
    for p in projs:
        if p.dst == HOST:
            _, h, w = pops[p.src][1].shape
            shapes.add((p.weight.shape[0], (h * p.upsample - 1) // p.stride + 1,
                        (w * p.upsample - 1) // p.stride + 1))
    if len(shapes) > 1:
        raise ExportError(f"{source}: the host projections give different shapes "
                          f"{sorted(shapes)}; they are summed into one decoder input.")
    return shapes.pop() if shapes else None


def graph_from_nir(g, host: dict[str, np.ndarray], *, source: str,
             host_source: str = HOST_FILE) -> DeployGraph:
    """The deployment graph a bundle's NIR graph (and host arrays) describes. Every field is
    checked: type, Lava's range, shape against its neighbours; a malformed one is an
    :class:`ExportError` naming the population or projection and the key."""
    from ..errors import ConfigError

    top = _meta(g, f"{source}: graph")
    check_format(_scalar(top.get("format")), _scalar(top.get("format_version")),
                 expected=BUNDLE_FORMAT, supported_max=BUNDLE_VERSION, where=source,
                 what=f"an {BUNDLE_FORMAT} version {BUNDLE_VERSION} network", error=ExportError,
                 show=_show)
    raw = _key(top, "config", f"{source}: graph")
    if not isinstance(raw, dict):
        _fail(f"{source}: config", "a table of model settings", raw)
    try:
        cfg = UNetConfig.from_dict({k: np.asarray(v).tolist() for k, v in raw.items()},
                                   source=f"{source}: config")
    except ConfigError as e:
        raise ExportError(str(e)) from None
    pops = _populations(g, _names(_key(top, "populations", source), f"{source}: populations"),
                        cfg, source)
    index = {p.name: (i, p) for i, p in enumerate(pops)}
    names = _names(_key(top, "projections", source), f"{source}: projections")
    projs = _projections(g, names, index, cfg, source)
    _check_edges(g, names, projs, source)
    hs = _host_stages(g, host, pops, cfg, _decoder_shape(projs, index, source), source,
                      host_source)
    graph = DeployGraph(cfg, tuple(pops), tuple(projs), hs)
    _check_schedule(graph, source)
    return graph


def _check_edges(g, names: list[str], projs: list[Projection], source: str) -> None:
    """The NIR edges say what the metadata says (NIR is the network's single description)."""
    edges = {tuple(e) for e in g.edges}
    for name, p in zip(names, projs, strict=True):
        for e in ((p.src, name), (name, "decoder_input" if p.dst == HOST else p.dst)):
            if e not in edges:
                raise ExportError(f"{source}: projection {name} ({p.src} -> {p.dst}): the "
                                  f"edge {e[0]} -> {e[1]} is missing from the graph.")


def bundle_file(bundle: Path, name: object, *, where: str,
                error: type[SdmNeuroError] = ExportError) -> Path:
    """The file ``name`` lists inside ``bundle``: a plain file name (no directory part, no
    ``..``) whose real path, links resolved, is directly in the bundle directory."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name \
            or "\0" in name:
        raise error(f"{where}: {name!r} is not a plain file name inside the bundle (no "
                    "directory part, '..' or absolute path).")
    path = bundle / name
    try:
        real, base = path.resolve(), bundle.resolve()
    except (OSError, RuntimeError) as e:
        raise error(f"{path}: cannot be resolved ({e}).") from None
    if real.parent != base:
        raise error(f"{path}: resolves to {real}, outside the bundle directory {base}; a link "
                    "out of the bundle is not followed.")
    return path


def bundle_format(path: str | Path) -> str | None:
    """The format a bundle directory's manifest declares, or None when there is no readable
    one: a guarded peek for choosing a reader (a named pipe or /dev/zero as manifest.json is
    refused, not opened); the reader then checks the manifest in full."""
    try:
        man = read_json_limited(Path(path) / MANIFEST, what="a bundle manifest",
                                error=ExportError, max_bytes=MANIFEST_MAX_BYTES)
    except ExportError:
        return None
    fmt = man.get("format") if isinstance(man, dict) else None
    return fmt if isinstance(fmt, str) else None


def read_manifest(path: str | Path, fmt: str = BUNDLE_FORMAT, version: int = BUNDLE_VERSION,
                  *, error: type[SdmNeuroError] = CheckpointError) -> dict[str, Any]:
    """A bundle's manifest, after checking its format and every listed file: a plain name in
    the bundle, a regular file, its size and SHA-256. ``fmt`` and ``version``: the format and
    the newest version this reader reads (:func:`sdm_neuro.formats.check_format`). ``error`` is
    the class raised (the U-Net reader passes :class:`ExportError`)."""
    path = Path(path)
    if not path.is_dir():
        raise error(f"{path}: not an export bundle (not a directory).")
    man_path = bundle_file(path, MANIFEST, where=str(path), error=error)
    if not man_path.exists():
        raise error(f"{path}: not an export bundle (no {MANIFEST}).")
    manifest = read_json_limited(man_path, what=f"a {fmt} manifest", error=error,
                                 max_bytes=MANIFEST_MAX_BYTES)
    if not isinstance(manifest, dict):
        raise error(f"{man_path}: must be a JSON object, got {type(manifest).__name__}.")
    check_format(manifest.get("format"), manifest.get("format_version"), expected=fmt,
                 supported_max=version, where=str(man_path),
                 what=f"a {fmt} version {version} manifest", error=error)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise error(f"{man_path}: files must be an object (file name -> {{sha256, bytes}}), "
                    f"got {_show(files)}.")
    for name, info in files.items():
        _check_listed(path, man_path, name, info, error)
    return manifest


def _check_listed(path: Path, man_path: Path, name: str, info: object,
                  error: type[SdmNeuroError]) -> None:
    where = f"{man_path}: files.{name}"
    f = bundle_file(path, name, where=f"{man_path}: files", error=error)
    if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) \
            or not _SHA256.fullmatch(info["sha256"]):
        raise error(f"{where}.sha256 must be 64 lowercase hex digits, got "
                    f"{_show(info.get('sha256') if isinstance(info, dict) else info)}.")
    size = info.get("bytes")
    if "bytes" in info and (type(size) is not int or size < 0):
        raise error(f"{where}.bytes must be a non-negative integer, got {_show(size)}.")
    if not f.exists():
        raise error(f"{f}: missing (listed in {MANIFEST}).")
    regular_file(f, what=f"a bundle file listed in {MANIFEST}", error=error,
                 max_bytes=FILE_MAX_BYTES)
    if size is not None and f.stat().st_size != size:
        raise error(f"{f}: {f.stat().st_size:,} bytes, {MANIFEST} lists {size:,}; the file "
                    "was changed.")
    if sha256_file(f) != info["sha256"]:
        raise error(f"{f}: SHA-256 differs from {MANIFEST}; the file was changed.")


def read_host_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``host.npz``, each checked from its ``.npy`` header before it is read:
    plain numeric dtypes only (no objects, no pickles), declared size = stored size."""
    import zipfile

    regular_file(path, what="the host arrays (.npz)", error=ExportError,
                 max_bytes=FILE_MAX_BYTES)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            declared = sum(i.file_size for i in infos)
            if declared > DECLARED_MAX_BYTES:
                raise ExportError(f"{path}: declares {declared:,} bytes of arrays, more than "
                                  f"{DECLARED_MAX_BYTES:,}.")
            for info in infos:
                key = info.filename.removesuffix(".npy")
                if key == info.filename or key in out:
                    raise ExportError(f"{path}: member {info.filename!r} is not a (unique) "
                                      ".npy array.")
                with zf.open(info) as f:
                    out[key] = _npy_member(f, info.file_size, f"{path}: {key}")
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile / zlib raise many types for a bad archive
        raise ExportError(f"{path}: not a readable .npz archive ({type(e).__name__}: "
                          f"{e}).") from None
    return out


def _npy_member(f, size: int, where: str) -> np.ndarray:
    shape, fortran, dtype = read_npy_header(f, where=where, what="a .npy array",
                                            error=ExportError)
    if dtype.hasobject or dtype.fields or dtype.kind not in "biuf":
        raise ExportError(f"{where}: dtype {dtype} is not a plain numeric array (object and "
                          "pickled arrays are refused).")
    nbytes = math.prod(shape) * dtype.itemsize
    if f.tell() + nbytes != size:
        raise ExportError(f"{where}: the header declares shape {list(shape)} of {dtype} "
                          f"({nbytes:,} bytes); the archive holds {size - f.tell():,}.")
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise ExportError(f"{where}: truncated ({len(data):,} of {nbytes:,} bytes).")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), order="C")


def _check_hdf5(path: Path) -> None:
    """Refuse a NIR file whose datasets declare more data than ``DECLARED_MAX_BYTES`` (or more
    than ``HDF5_MAX_OBJECTS`` objects) before ``nir.read`` loads it all into memory. Uses
    h5py's low-level visit: shapes from the dataspaces, no data read."""
    import h5py

    total = count = 0

    def visit(name: bytes, info) -> None:
        nonlocal total, count
        count += 1
        if count > HDF5_MAX_OBJECTS:
            raise ExportError(f"{path}: more than {HDF5_MAX_OBJECTS:,} HDF5 objects.")
        if info.type == h5py.h5o.TYPE_DATASET:
            ds = h5py.h5d.open(fid, name)
            shape = ds.get_space().shape or ()
            total += math.prod(shape) * ds.get_type().get_size()
            if total > DECLARED_MAX_BYTES:
                raise ExportError(f"{path}: declares more than {DECLARED_MAX_BYTES:,} bytes of "
                                  f"data (dataset {name.decode(errors='replace')}: shape "
                                  f"{list(shape)}).")
            _check_conv_geometry(path, name, ds, shape)

    try:
        with h5py.File(path, "r") as f:
            fid = f.id
            h5py.h5o.visit(fid, visit, info=True)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises many types for a bad file
        raise ExportError(f"{path}: not a readable NIR (HDF5) file ({type(e).__name__}: "
                          f"{e}).") from None


def _check_conv_geometry(path: Path, name: bytes, ds, shape: tuple[int, ...]) -> None:
    """A conv node's stride and dilation are divisors when ``nir.read`` builds the node: a 0
    there is refused here, naming the node, rather than as a division error inside nir."""
    parts = name.split(b"/")
    if len(parts) != 4 or parts[:2] != [b"node", b"nodes"] or \
            parts[3] not in (b"stride", b"dilation") or math.prod(shape) > 2 or \
            ds.dtype.kind not in "iu":
        return
    import h5py

    values = np.empty(shape, dtype=ds.dtype)
    ds.read(h5py.h5s.ALL, h5py.h5s.ALL, values)
    if (values < 1).any():
        node, key = parts[2].decode(errors="replace"), parts[3].decode()
        where = f"{path}: projection {node}" if _PROJECTION_NAME.fullmatch(node) else \
            f"{path}: node {node}"
        _fail(f"{where}: {key}", "integers in [1, 64]", values.ravel()[0] if values.size == 1
              else values)


def read_network(path: Path):
    """``nir.read`` of a bundle's network, after the HDF5 size check."""
    import nir

    _check_hdf5(path)
    try:
        g = nir.read(path)
    except Exception as e:  # noqa: BLE001 - nir / h5py raise many types for a bad file
        raise ExportError(f"{path}: not a readable NIR graph ({type(e).__name__}: "
                          f"{e}).") from None
    if not isinstance(g, nir.NIRGraph):
        raise ExportError(f"{path}: holds a {type(g).__name__}, not a NIR graph.")
    return g


def _check_manifest_fields(manifest: dict[str, Any], man_path: Path) -> None:
    """The manifest fields the commands read besides the network (simulate / energy-report
    --bundle): types checked here, where the file enters."""
    for key, kind in (("target", str), ("dataset", str), ("checkpoint", dict),
                      ("quantization", dict), ("model_config", dict)):
        if manifest.get(key) is not None and not isinstance(manifest[key], kind):
            _fail(f"{man_path}: {key}", "a string" if kind is str else "an object",
                  manifest[key])
    src = manifest.get("checkpoint") or {}
    for key in ("path", "sha256", "kind", "weights"):
        if src.get(key) is not None and not isinstance(src[key], str):
            raise ExportError(f"{man_path}: checkpoint.{key} must be a string, got "
                              f"{_show(src[key])}.")
    quant = manifest.get("quantization") or {}
    if "threshold_scale" in quant:
        _num(quant["threshold_scale"], f"{man_path}: quantization.threshold_scale",
             positive=True)
    if quant.get("populations") is not None and not isinstance(quant["populations"], dict):
        raise ExportError(f"{man_path}: quantization.populations must be an object, got "
                          f"{_show(quant['populations'])}.")


def _quantization_meta(manifest: dict[str, Any], graph: DeployGraph, man_path: Path
                       ) -> dict[str, dict]:
    """Per population, the manifest's quantization record; it must state what the network
    holds. A manifest without one gets the network's own vth, scale, bias_exp."""
    own = {p.name: {"vth": p.lif.vth, "scale": p.scale, "bias_exp": p.lif.bias_exp}
           for p in graph.populations}
    listed = (manifest.get("quantization") or {}).get("populations")
    if listed is None:
        return own
    if set(listed) != set(own):
        raise ExportError(f"{man_path}: quantization.populations lists "
                          f"{sorted(set(listed) ^ set(own))[:5]} unlike the network.")
    for name, values in own.items():
        rec = listed[name]
        if not isinstance(rec, dict):
            raise ExportError(f"{man_path}: quantization.populations.{name} must be an object, "
                              f"got {_show(rec)}.")
        for key, value in values.items():
            if key in rec and rec[key] != value:
                raise ExportError(f"{man_path}: quantization.populations.{name}.{key} is "
                                  f"{_show(rec[key])}; the network holds {value!r}.")
    return listed


def read_bundle(path: str | Path) -> tuple[DeployGraph, dict[str, Any]]:
    """(deployment graph, manifest) of a bundle directory; checks the format, the file hashes
    and every value the graph is built from (:class:`ExportError` naming file and key)."""
    path = Path(path)
    manifest = read_manifest(path, error=ExportError)
    man_path = path / MANIFEST
    if NIR_FILE not in manifest["files"]:
        raise ExportError(f"{man_path}: this bundle has no spiking network ({NIR_FILE}); it "
                          f"was exported for target {manifest.get('target')!r}.")
    if HOST_FILE not in manifest["files"]:
        raise ExportError(f"{man_path}: files does not list {HOST_FILE} (the host's arrays).")
    _check_manifest_fields(manifest, man_path)
    host = read_host_arrays(path / HOST_FILE)
    graph = graph_from_nir(read_network(path / NIR_FILE), host, source=str(path / NIR_FILE),
                     host_source=str(path / HOST_FILE))
    config = manifest.get("model_config")
    if config is not None and config != json.loads(json.dumps(graph.config.to_dict())):
        raise ExportError(f"{man_path}: model_config {_show(config)} is not the network's "
                          f"({graph.config.to_dict()}).")
    return graph.replace(meta={"quantization": _quantization_meta(manifest, graph, man_path)}
                         ), manifest
