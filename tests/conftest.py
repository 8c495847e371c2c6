"""Shared fixtures.

``../shared/reference`` (beside the checkout) holds the reference oracle and key listings; tests
that need it skip with a clear reason when it is absent, so the project stays self-contained.

Under ``CI=true`` nothing may be skipped: a missing dependency or fixture (Lava, ../shared) fails
the run with the skip's reason (:func:`pytest_runtest_makereport`, :func:`pytest_collectreport`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = Path(os.environ.get("SDM_NEURO_SHARED", REPO.parent / "shared")) / "reference"


IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _fail_skips_in_ci(report) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where everything a test needs must be " \
                          f"present: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skips_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skips_in_ci(outcome.get_result())


def _shared(name: str) -> Path:
    path = SHARED_REFERENCE / name
    if not path.exists():
        pytest.skip(f"reference fixture {path} not available (../shared is absent); "
                    "this test checks against the published reference and needs it")
    return path


@pytest.fixture(scope="session")
def oracle() -> dict:
    """Inputs, spikes and outputs of the SDDPM reference model (see fixtures/README.md)."""
    return torch.load(_shared("fixtures/sddpm_tiny_oracle.pt"), weights_only=True)


@pytest.fixture(scope="session")
def key_listing():
    """Parse a reference key listing into ``{key: (shape, dtype)}`` (state_dict order)."""

    def parse(name: str) -> dict[str, tuple[list[int], str]]:
        out = {}
        for line in _shared(name).read_text().splitlines():
            fields = [f.strip() for f in line.split(" | ")]
            if line.startswith("#") or len(fields) != 4 or not fields[1].startswith("["):
                continue
            shape = [int(v) for v in fields[1].strip("[]").split(",") if v.strip()]
            out[fields[0]] = (shape, fields[2])
        return out

    return parse


@pytest.fixture(scope="session")
def reference_checkpoint(tmp_path_factory, key_listing):
    """Write a reference-format checkpoint (SDDPM trainer layout: net_model, optim, step, x_T)
    with random weights for every key of a listing; returns its path."""

    def make(listing: str, *, ema: bool = False) -> Path:
        g = torch.Generator().manual_seed(0)
        sd = {k: (torch.zeros(shape, dtype=torch.int64) if dtype == "int64"
                  else 0.5 + torch.rand(shape, generator=g) if k.endswith("running_var")
                  else torch.randn(shape, generator=g) * 0.02)
              for k, (shape, dtype) in key_listing(listing).items()}
        path = tmp_path_factory.mktemp("ref") / (Path(listing).stem + ".pt")
        payload = {"net_model": sd, "optim": {"state": {}, "param_groups": []}, "step": 1000,
                   "x_T": torch.randn(4, 3, 32, 32, generator=g)}
        if ema:
            payload["ema_model"] = {k: v.clone() for k, v in sd.items()}
        torch.save(payload, path)
        return path

    return make


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make every path of a freshly initialised model matter: non-zero biases, non-trivial
    BatchNorm statistics and a full-gain tail (the reference inits it at gain 1e-5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("tsmp"):
                p.copy_(0.7 + 0.6 * torch.rand(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.8 + 0.4 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.3 + 0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
        w = model.tail_conv.weight
        torch.nn.init.xavier_uniform_(w, gain=1.0, generator=g)
    return model.eval()


@pytest.fixture(scope="session")
def randomized():
    return randomize


# ---------------------------------------------------------------------------------------------
# An independent implementation of the reference forward pass, written from
# ../shared/reference/spiking-diffusion-models.md, for tests that must not trust the model code.
# It loops over SNN steps OUTSIDE the network (the model loops inside each layer), works on the
# raw state_dict with functional ops, and uses the Conv3d itself for the output layer.
# ---------------------------------------------------------------------------------------------

def _bn(sd, p, x):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                        sd[f"{p}.bias"], False, 0.0, 1e-5)


def _conv(sd, p, x, s, stride=1):
    if f"{p}.tsmp" in sd:
        w, b = sd[f"{p}.tsmconv.weight"], sd[f"{p}.tsmconv.bias"]
        y = F.conv2d(x, w, b, stride=stride, padding=w.shape[-1] // 2)
        return y * sd[f"{p}.tsmp"][s, 0]
    w, b = sd[f"{p}.weight"], sd[f"{p}.bias"]
    return F.conv2d(x, w, b, stride=stride, padding=w.shape[-1] // 2)


def _swish(x):
    return x * torch.sigmoid(x)


def reference_forward(sd: dict, x: torch.Tensor, t: torch.Tensor, *, snn_steps: int,
                      threshold: float = 1.0):
    """eps and the spikes of every IF layer ({name: [T,B,C,H,W]}) for one call from rest."""
    temb = sd["time_embedding.timembedding.0.weight"][t]
    temb = _swish(F.linear(temb, sd["time_embedding.timembedding.1.weight"],
                           sd["time_embedding.timembedding.1.bias"]))
    temb = F.linear(temb, sd["time_embedding.timembedding.3.weight"],
                    sd["time_embedding.timembedding.3.bias"])
    v: dict[str, torch.Tensor] = {}
    spikes: dict[str, list] = {}

    def fire(name, inp):
        u = v.get(name, torch.zeros_like(inp)) + inp
        s = (u >= threshold).float()
        v[name] = u * (1 - s)
        spikes.setdefault(name, []).append(s)
        return s

    def blocks(prefix):
        i = 0
        while any(k.startswith(f"{prefix}.{i}.") for k in sd):
            yield f"{prefix}.{i}", f"{prefix}.{i}.temb_proj.1.weight" in sd
            i += 1

    per_step = []
    for s in range(snn_steps):
        h = _bn(sd, "bn", _conv(sd, "conv", x, s))
        h = _bn(sd, "bn_identity", _conv(sd, "conv_identity", fire("neuron", h), s))
        hs = [h]

        def run(p, is_res, h, up=False, down=False):
            if is_res:
                a = _bn(sd, f"{p}.bn1", _conv(sd, f"{p}.conv1", fire(f"{p}.neuron1", h), s))  # noqa: B023 - called in this iteration
                a = a + F.linear(_swish(temb), sd[f"{p}.temb_proj.1.weight"],
                                 sd[f"{p}.temb_proj.1.bias"])[:, :, None, None]
                a = _bn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv2", fire(f"{p}.neuron2", a), s))  # noqa: B023 - called in this iteration
                has_sc = f"{p}.shortcut.weight" in sd or f"{p}.shortcut.tsmp" in sd
                return a + (_conv(sd, f"{p}.shortcut", h, s) if has_sc else h)  # noqa: B023 - called in this iteration
            z = fire(f"{p}.neuron", h)
            if up:
                z = F.interpolate(z, scale_factor=2, mode="nearest")
            return _bn(sd, f"{p}.bn", _conv(sd, f"{p}.conv", z, s, stride=2 if down else 1))  # noqa: B023 - called in this iteration

        for p, is_res in blocks("downblocks"):
            h = run(p, is_res, h, down=not is_res)
            hs.append(h)
        for p, is_res in blocks("middleblocks"):
            h = run(p, is_res, h)
        for p, is_res in blocks("upblocks"):
            if is_res:
                h = torch.cat([h, hs.pop()], dim=1)
            h = run(p, is_res, h, up=not is_res)
        per_step.append(h)
    eps = reference_tail(sd, torch.stack(per_step))
    return eps, {k: torch.stack(vs) for k, vs in spikes.items()}


def reference_tail(sd: dict, h: torch.Tensor) -> torch.Tensor:
    """The reference decoder tail: ``h`` [T,B,C,H,W] (the analog input of ``tail_bn`` per SNN
    step) -> eps [B, img_ch, H, W]."""
    steps = h.shape[0]
    h = torch.stack([_conv(sd, "tail_conv", _swish(_bn(sd, "tail_bn", h[s])), s)
                     for s in range(steps)])
    z = F.conv3d(h.permute(1, 2, 3, 4, 0), sd["T_output_layer.weight"], sd["T_output_layer.bias"],
                 padding=(1, 1, 0)).permute(4, 0, 1, 2, 3)
    z = torch.stack([_bn(sd, "last_bn", z[s]) for s in range(steps)])
    h = _swish(z) + h
    return sum(math.pow(0.8, steps - 1 - s) * h[s] for s in range(steps))


# ---------------------------------------------------------------------------------------------
# The host side of a quantized deployment graph, written independently of sdm_neuro.ir.host
# and the simulators from the graph's documented fields (export/bundle.py), for the exactness
# tests: the per-call bias mantissas fed to a population and the decoder that reads the spikes.
# ---------------------------------------------------------------------------------------------

def _np_conv_f64(x: np.ndarray, w: np.ndarray, stride: int = 1, up: int = 1) -> np.ndarray:
    """[N, Ci, H, W] x [Co, Ci, k, k] -> [N, Co, Ho, Wo] float64 by explicit taps (padding k//2,
    nearest upsample by ``up`` first)."""
    if up > 1:
        x = x.repeat(up, axis=2).repeat(up, axis=3)
    n, ci, h, wd = x.shape
    co, _, k, _ = w.shape
    pad = k // 2
    xp = np.zeros((n, ci, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, co, ho, wo))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy:dy + stride * ho:stride, dx:dx + stride * wo:stride]
            out += np.einsum("oc,nchw->nohw", w[:, :, dy, dx], patch)
    return out


def independent_bias(graph, x: torch.Tensor, t: torch.Tensor) -> dict[str, np.ndarray]:
    """Per population, the int64 ``bias_mant`` ``[T, B, C, H, W]`` of one call: the constant
    bias per step and channel, plus the time embedding of ``t`` (``temb_block``), plus the
    pixel conv of ``x`` times the per-step gain (the stem), in membrane LSBs at ``bias_exp``,
    rounded half to even and clipped to the 13-bit mantissa."""
    steps, batch = graph.config.snn_steps, x.shape[0]
    h = graph.host
    pixel = _np_conv_f64(x.double().numpy(), h.pixel_weight.double().numpy())
    gain = np.array(h.pixel_gain or (1.0,) * steps)
    out = {}
    for pop in graph.populations:
        c, hh, ww = pop.shape
        cur = np.broadcast_to(pop.bias.double().numpy()[:, None, :, None, None],
                              (steps, batch, c, hh, ww)).copy()
        if pop.temb_block is not None:
            temb = h.temb_table[pop.temb_block].double().numpy()[t.numpy()]  # [B, C]
            cur += temb[None, :, :, None, None]
        if pop.pixel_input:
            cur += gain[:, None, None, None, None] * pixel[None]
        lsb = pop.scale * 2.0**pop.lif.bias_exp
        out[pop.name] = np.clip(np.round(cur / lsb), -4096, 4095).astype(np.int64)
    return out


def independent_decode(graph, spikes: dict[str, torch.Tensor]) -> torch.Tensor:
    """eps from every population's spikes ``[T, B, C, H, W]``: the host projections' float
    weights (upsample, stride, per-step gain) summed onto the constant decoder input, then the
    reference tail, all in float64."""
    steps = graph.config.snn_steps
    h = graph.host
    total = None
    for p in graph.projections:
        if p.dst != "host":
            continue
        z = spikes[p.src].double().numpy()
        w = p.weight.double().numpy()
        y = np.stack([p.gain_at(s) * _np_conv_f64(z[s], w, p.stride, p.upsample)
                      for s in range(steps)])
        total = y if total is None else total + y
    total = total + h.tail_bias.double().numpy()[:, None, :, None, None]
    sd = {k: v.double() for k, v in h.tail.items()}
    return reference_tail(sd, torch.from_numpy(total))


@pytest.fixture
def host_reference():
    """(independent_bias, independent_decode): see those functions."""
    return independent_bias, independent_decode


@pytest.fixture
def per_step_reference():
    return reference_forward


@pytest.fixture
def make_feedforward():
    """A random feed-forward SNN (:class:`FeedForwardSNN`): conv (stride 1, padding 1) -> conv
    (stride 2, no padding) -> affine, per-channel thresholds, per-neuron leak drive.
    ``kind``: "IF"; "LIF" (unit input gain, snnTorch's convention, dt 1e-4); "LIF-r1" (gain
    dt/tau, Norse's convention, dt 1e-3). ``uniform``: one threshold per layer (snnTorch needs
    it)."""
    from sdm_neuro.ir.feedforward import Layer, Neurons, FeedForwardSNN, Synapse

    def make(seed: int = 0, kind: str = "IF", *, in_shape=(2, 7, 6), uniform: bool = False,
             retention: float = 0.9, leak: bool = True) -> FeedForwardSNN:
        g = torch.Generator().manual_seed(seed)

        def rnd(*shape, scale=1.0):
            return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

        def neurons(shape):
            n = shape[0]
            th = (torch.full((1,) * len(shape), 1.0, dtype=torch.float64) if uniform else
                  0.6 + torch.rand(n, *[1] * (len(shape) - 1), generator=g,
                                   dtype=torch.float64))
            th = th.expand(shape).clone()
            lk = rnd(*shape, scale=0.02) if leak else torch.zeros(shape, dtype=torch.float64)
            if kind == "IF":
                one = torch.ones(shape, dtype=torch.float64)
                return Neurons("IF", th, one, one.clone(), torch.zeros(shape, dtype=torch.float64))
            a = torch.full(shape, retention, dtype=torch.float64)
            c = torch.ones(shape, dtype=torch.float64) if kind == "LIF" else 1 - a
            return Neurons("LIF", th, a, c, lk * (1 - a))

        c0 = in_shape[0]
        s1 = Synapse("conv", rnd(4, c0, 3, 3, scale=0.5), rnd(4, scale=0.05), in_shape,
                     (1, 1), (1, 1))
        s2 = Synapse("conv", rnd(5, 4, 3, 3, scale=0.35), rnd(5, scale=0.05), s1.out_shape,
                     (2, 2), (0, 0))
        n_in = int(torch.tensor(s2.out_shape).prod())
        s3 = Synapse("affine", rnd(7, n_in, scale=0.4), rnd(7, scale=0.05), (n_in,))
        gain = 1.0 if kind != "LIF-r1" else 1 / (1 - retention)  # same spiking for all kinds
        s1, s2, s3 = (Synapse(s.kind, s.weight * gain, s.bias * gain, s.in_shape, s.stride,
                              s.padding) for s in (s1, s2, s3))
        layers = tuple(Layer(f"l{i}", s, neurons(s.out_shape))
                       for i, s in enumerate((s1, s2, s3)))
        return FeedForwardSNN(tuple(in_shape), layers, 1e-4 if kind == "LIF" else 1e-3,
                             f"random seed {seed}")

    return make


# ---------------------------------------------------------------------------------------------
# The tiny model of quick runs, defined once here; its variants are derived from it. (Models
# that are a test's subject, such as paper configurations or parametrized architectures, stay
# in their tests.)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_config():
    """The tiny U-Net of a quick run: 8 channels, levels (1, 2), one ResBlock per level, one
    image channel, 2 SNN steps, 8 x 8 images."""
    from sdm_neuro import UNetConfig

    return UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=2, img_size=8)


@pytest.fixture(scope="session")
def tiny_config_ch4(tiny_config):
    """The tiny model with 4 channels (the export bundles of the tiny model)."""
    return tiny_config.replace(ch=4)


@pytest.fixture(scope="session")
def tiny_config_ch4_t3(tiny_config):
    """The tiny model with 4 channels and 3 SNN steps (quantized graphs, the integer simulator,
    Lava)."""
    return tiny_config.replace(ch=4, snn_steps=3)


@pytest.fixture(scope="session")
def micro_config(tiny_config):
    """The smallest model: 2 channels, one level, 4 x 4 images (11 populations of 2 x 4 x 4),
    for tests that write or read a model many times."""
    return tiny_config.replace(ch=2, ch_mult=(1,), img_size=4)


@pytest.fixture(scope="session")
def tiny_state_dict(tiny_config):
    """``tiny_state_dict(cfg=tiny_config, seed=0)``: the state_dict of a model of ``cfg``
    initialised under ``torch.manual_seed(seed)``."""
    from sdm_neuro import SpikingUNet

    def make(cfg=None, seed=0):
        torch.manual_seed(seed)
        return SpikingUNet(tiny_config if cfg is None else cfg).state_dict()

    return make


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_config, tiny_state_dict):
    """``tmp_path / "m.pt"``: a native checkpoint of the tiny model initialised under seed 0."""
    from sdm_neuro.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path / "m.pt", tiny_config, tiny_state_dict())


@pytest.fixture
def randomized_checkpoint(tmp_path, tiny_config_ch4, randomized):
    """``tmp_path / "tiny.pt"``: the 4-channel tiny model, randomized (not freshly initialised:
    every layer spikes, not always), dataset digits."""
    from sdm_neuro import SpikingUNet
    from sdm_neuro.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = tiny_config_ch4
    return save_checkpoint(tmp_path / "tiny.pt", cfg, randomized(SpikingUNet(cfg)).state_dict(),
                           meta={"dataset": "digits"})


@pytest.fixture(scope="session")
def tiny_recipe():
    """A training recipe of a few quick steps on digits."""
    from sdm_neuro.training import TrainConfig

    return TrainConfig(dataset="digits", steps=4, batch_size=8, lr=1e-3, warmup=2, ema_decay=0.9)


@pytest.fixture(scope="session")
def train_tiny(tiny_config, tiny_recipe):
    """``train_tiny(folder, name, steps, resume=None)``: train the tiny model with the tiny
    recipe for ``steps`` steps into ``folder / name`` (on CPU, quietly)."""
    from sdm_neuro.training import train

    def run(folder, name, steps, resume=None):
        return train(tiny_config,
                     tiny_recipe.__class__(**{**tiny_recipe.to_dict(), "steps": steps}),
                     out=folder / name, device="cpu", resume=resume, progress=False,
                     save_every=0, log=lambda _: None)

    return run


@pytest.fixture(scope="session")
def micro_bundle(tmp_path_factory, micro_config, randomized):
    """(folder, graph): a well-formed NIR export bundle of the randomized micro model, written
    once; tests copy it before they change it."""
    from sdm_neuro import SpikingUNet
    from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
    from sdm_neuro.compiler.schedule import schedule
    from sdm_neuro.export.bundle import write_bundle

    torch.manual_seed(0)
    model = randomized(SpikingUNet(micro_config))
    graph = schedule(build_integer_graph(model, calibration_inputs(
        torch.rand(8, 1, 4, 4) * 2 - 1, count=4, batch_size=4)))
    out = tmp_path_factory.mktemp("bundle") / "b"
    out.mkdir()
    write_bundle(graph, out, {"target": "nir", "dataset": "digits",
                              "model_config": graph.config.to_dict(),
                              "quantization": {"threshold_scale": 1.0,
                                               "populations": graph.meta["quantization"]}})
    return out, graph


def _onnx_model(cfg):
    from sdm_neuro import SpikingUNet

    torch.manual_seed(0)
    model = SpikingUNet(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial folded BN: a fair spike rate
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(0.0, 0.5)
            if hasattr(m, "tsmp"):
                m.tsmp.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="session")
def onnx_model():
    """``onnx_model(cfg)``: a model of ``cfg`` under seed 0 with non-trivial BatchNorm
    statistics (a fair spike rate) and TSM gains, in eval mode."""
    return _onnx_model


@pytest.fixture(scope="session")
def onnx_exported(tmp_path_factory, tiny_config):
    """``onnx_exported(tsm)``: (model, ONNX file) of the tiny model (``onnx_model``), exported
    once per tsm for the session (an export takes ~20 s)."""
    from sdm_neuro.export.onnx import export_onnx

    cache = {}

    def get(tsm: bool):
        if tsm not in cache:
            model = _onnx_model(tiny_config.replace(tsm=tsm))
            folder = tmp_path_factory.mktemp(f"onnx_tsm{int(tsm)}")
            cache[tsm] = model, export_onnx(model, folder / "m.onnx")
        return cache[tsm]

    return get


@pytest.fixture(scope="session")
def assert_lava_bit_exact():
    """``assert_lava_bit_exact(graph, x, t, host_reference)``: one denoising call of ``graph``
    (scheduled here) in Lava gives every population's spikes of the hardware-timed simulator
    exactly, and an eps read from Lava's spikes by the tests' own decoder within 1e-4 of the
    range; the balancing delays are exercised and no population is silent or saturated. Lava
    must be installed (the modules that use it skip without it)."""
    from sdm_neuro.compiler.schedule import schedule
    from sdm_neuro.export.lava_runtime import lava_spikes
    from sdm_neuro.simulators.timed import TimedSimulator

    def check(graph, x, t, host_reference):
        independent_bias, independent_decode = host_reference
        graph = schedule(graph)
        eps_sim, spk_sim = TimedSimulator(graph)(x, t)
        spk_lava = lava_spikes(graph, independent_bias(graph, x, t), timeout_s=500)
        for name, s in spk_sim.items():
            assert torch.equal(spk_lava[name], s), name
        # eps: the simulator's own decoder (float32) against the tests' float64 one on Lava's
        # spikes
        eps_lava = independent_decode(graph, spk_lava)
        assert torch.allclose(eps_sim.double(), eps_lava, rtol=0,
                              atol=1e-4 * eps_lava.abs().max())
        # the balancing delays were exercised (DelaySparse), not only plain Sparse
        assert any(p.delay for p in graph.projections)
        # ... and every population spiked somewhere, and none everywhere (a silent or saturated
        # layer would test little)
        for name, s in spk_sim.items():
            assert 0 < int(s.sum()) < s.numel(), name

    return check
