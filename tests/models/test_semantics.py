"""Reference semantics checked without ../shared: an independent per-step implementation,
invariants (Conv3d == per-step conv, BN folding, TSM with unit gains == SDDPM), the time table."""

import math

import pytest
import torch
from torch.nn import functional as F

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.models.layers import sinusoidal_table

CONFIGS = [
    UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=3, snn_steps=2, img_size=8),
    UNetConfig(ch=8, ch_mult=(1, 2, 2), num_res_blocks=2, img_ch=1, snn_steps=4, img_size=8),
    UNetConfig(ch=8, ch_mult=(2,), num_res_blocks=0, img_ch=1, snn_steps=3, img_size=4),
    UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=3, tsm=True, img_size=8),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"ch{c.ch}-{c.ch_mult}-r{c.num_res_blocks}-T{c.snn_steps}-tsm{c.tsm}")
@pytest.mark.parametrize("threshold", [1.0, 0.998])
def test_model_matches_independent_per_step_implementation(cfg, threshold, randomized, per_step_reference):
    torch.manual_seed(1)
    model = randomized(SpikingUNet(cfg), seed=3)
    model.set_threshold(threshold)
    x = torch.randn(3, cfg.img_ch, cfg.img_size, cfg.img_size)
    t = torch.tensor([3, 400, 999])
    model.record_spikes()
    with torch.no_grad():
        eps = model(x, t)
    mine = model.recorded_spikes()
    ref_eps, ref_spikes = per_step_reference(model.state_dict(), x, t, snn_steps=cfg.snn_steps,
                                             threshold=threshold)
    assert list(mine) == list(ref_spikes)
    rates = []
    for name, s in ref_spikes.items():
        assert torch.equal(mine[name], s), f"spikes differ in {name}"
        rates.append(s.mean().item())
    assert 0.02 < sum(rates) / len(rates) < 0.9  # the check is not vacuous
    assert (eps - ref_eps).abs().max().item() <= 1e-5


def test_sinusoidal_table_formula():
    table = sinusoidal_table(1000, 16)
    p, i = 417, 3
    f = math.exp(-(2 * i / 16) * math.log(10000))
    assert table[p, 2 * i].item() == pytest.approx(math.sin(p * f), abs=1e-4)
    assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(p * f), abs=1e-4)


def test_output_conv3d_equals_per_step_conv2d(randomized):
    cfg = CONFIGS[0]
    model = randomized(SpikingUNet(cfg))
    h = torch.randn(cfg.snn_steps, 2, cfg.img_ch, 8, 8)
    w3d = model.T_output_layer
    via3d = w3d(h.permute(1, 2, 3, 4, 0)).permute(4, 0, 1, 2, 3)
    per_step = F.conv2d(h.flatten(0, 1), w3d.weight[..., 0], w3d.bias, padding=1)
    assert (via3d.flatten(0, 1) - per_step).abs().max().item() <= 1e-6


def conv_bn_pairs(model):
    """(conv, bn) pairs where the BN directly follows the conv (every spiking-path conv)."""
    mods = dict(model.named_modules())
    pairs = [(mods["conv"], mods["bn"]), (mods["conv_identity"], mods["bn_identity"])]
    for name, m in mods.items():
        if isinstance(m, torch.nn.BatchNorm2d) and name.rpartition(".")[2] in ("bn", "bn1", "bn2") \
                and "." in name:
            prefix, _, leaf = name.rpartition(".")
            pairs.append((mods[f"{prefix}.{leaf.replace('bn', 'conv')}"], m))
    return pairs


def test_batchnorm_folding_preserves_spikes(randomized):
    """Eval-mode BN folded into the preceding conv gives the same spikes (the lowering relies on
    it): w' = w * g/sqrt(var+eps), b' = (b - mean) * g/sqrt(var+eps) + beta."""
    import copy

    cfg = CONFIGS[1]
    model = randomized(SpikingUNet(cfg), seed=5)
    folded = copy.deepcopy(model)
    pairs = conv_bn_pairs(folded)
    assert len(pairs) == 2 + sum(1 for n, _ in folded.named_modules() if n.endswith(("conv1", "conv2"))) \
        + sum(1 for n, _ in folded.named_modules() if n.endswith(".conv"))
    with torch.no_grad():
        for conv, bn in pairs:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
            bn.weight.fill_(1.0), bn.bias.zero_(), bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)  # BN becomes the identity
    x, t = torch.randn(4, cfg.img_ch, 8, 8), torch.tensor([10, 200, 600, 900])
    model.record_spikes(), folded.record_spikes()
    with torch.no_grad():
        e1, e2 = model(x, t), folded(x, t)
    s1, s2 = model.recorded_spikes(), folded.recorded_spikes()
    flips = sum((s1[k] != s2[k]).sum().item() for k in s1)
    total = sum(s.numel() for s in s1.values())
    # float re-association may flip a decision that lies within ~1e-6 of threshold
    assert flips <= total * 1e-4
    if flips == 0:
        assert (e1 - e2).abs().max().item() <= 1e-4


def test_tsm_with_unit_gains_equals_sddpm(randomized):
    base = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=3, img_size=8)
    plain = randomized(SpikingUNet(base), seed=2)
    tsm = SpikingUNet(base.replace(tsm=True)).eval()
    sd = {}
    for k, v in plain.state_dict().items():
        prefix, _, leaf = k.rpartition(".")
        if f"{prefix}.tsmconv.{leaf}" in tsm.state_dict():
            sd[f"{prefix}.tsmconv.{leaf}"] = v
        else:
            sd[k] = v
    for k in tsm.state_dict():
        if k.endswith("tsmp"):
            sd[k] = torch.ones(3, 1, 1, 1, 1)
    tsm.load_state_dict(sd, strict=True)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 700])
    with torch.no_grad():
        assert torch.equal(plain(x, t), tsm(x, t))


def test_tsm_gain_scales_conv_output_per_step():
    from sdm_neuro.models.layers import TSMConv2d

    conv = TSMConv2d(2, 1, 1, 1)
    with torch.no_grad():
        conv.tsmconv.weight.fill_(2.0), conv.tsmconv.bias.fill_(1.0)
        conv.tsmp.copy_(torch.tensor([0.5, 3.0]).view(2, 1, 1, 1, 1))
    x = torch.ones(2 * 1, 1, 1, 1)  # rows: step 0, step 1 (time-major, batch 1)
    assert conv(x).view(-1).tolist() == [1.5, 9.0]  # (2*1+1)*0.5, (2*1+1)*3


def test_output_is_batch_size_independent(randomized):
    cfg = CONFIGS[0]
    model = randomized(SpikingUNet(cfg), seed=4)
    x = torch.randn(5, cfg.img_ch, 8, 8)
    t = torch.full((5,), 321)
    with torch.no_grad():
        full = model(x, t)
        rows = torch.cat([model(x[i:i + 1], t[i:i + 1]) for i in range(5)])
        pair = model(x[1:3], t[1:3])
    assert torch.equal(full, rows)
    assert torch.equal(full[1:3], pair)


def test_training_mode_gradients_flow_through_surrogate(randomized):
    cfg = CONFIGS[0]
    model = randomized(SpikingUNet(cfg)).train()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1, 2])
    model(x, t).square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    # conv1 of the first block sits behind two spiking layers: only the surrogate carries it
    assert grads["downblocks.0.conv1.weight"].abs().sum() > 0
    assert model.time_embedding.timembedding[0].weight.grad is None  # frozen table
