"""Training: exact resume, EMA, TSM initialisation, the CLI's recipe handling."""

import json

import pytest
import torch

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.checkpoint import read_checkpoint, read_train_state, save_checkpoint
from sdm_neuro.cli import main as cli
from sdm_neuro.errors import ConfigError, UsageError
from sdm_neuro.training import (
    TrainConfig,
    batch_indices,
    ema_update,
    to_tsm_state_dict,
    train,
)

TINY = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=2, img_size=8)
RECIPE = TrainConfig(dataset="digits", steps=4, batch_size=8, lr=1e-3, warmup=2, ema_decay=0.9)


def _run(tmp_path, name, steps, resume=None):
    return train(TINY, RECIPE.__class__(**{**RECIPE.to_dict(), "steps": steps}),
                 out=tmp_path / name, device="cpu", resume=resume, progress=False,
                 save_every=0, log=lambda _: None)


def test_batches_cover_each_epoch_once_and_depend_only_on_step():
    n, b = 10, 4
    seq = torch.cat([batch_indices(k, b, n, seed=3) for k in range(5)])  # 2 epochs exactly
    assert sorted(seq[:10].tolist()) == list(range(10)) == sorted(seq[10:20].tolist())
    assert torch.equal(batch_indices(3, b, n, seed=3), batch_indices(3, b, n, seed=3))
    assert not torch.equal(seq[:10], seq[10:20])  # a fresh permutation per epoch
    assert not torch.equal(batch_indices(0, b, n, seed=3), batch_indices(0, b, n, seed=4))


def test_resume_continues_bit_for_bit(tmp_path):
    straight = _run(tmp_path, "a.pt", 4)
    _run(tmp_path, "b.pt", 2)
    resumed = _run(tmp_path, "b.pt", 4, resume=tmp_path / "b.pt")
    assert straight.step == resumed.step == 4
    for weights in ("net", "ema"):
        a = read_checkpoint(tmp_path / "a.pt", weights=weights).state_dict
        b = read_checkpoint(tmp_path / "b.pt", weights=weights).state_dict
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (weights, k)
    sa, sb = read_train_state(tmp_path / "a.pt"), read_train_state(tmp_path / "b.pt")
    assert torch.equal(sa["rng"], sb["rng"]) and sa["losses"] == sb["losses"]
    # ...and the run did learn something: the weights moved away from the initialisation.
    init = SpikingUNet(TINY).state_dict()
    assert any(not torch.equal(init[k], v) for k, v in
               read_checkpoint(tmp_path / "a.pt", weights="net").state_dict.items()
               if v.is_floating_point())


def test_outputs_and_release(tmp_path):
    res = train(TINY, RECIPE.__class__(**{**RECIPE.to_dict(), "steps": 2}), out=tmp_path / "r.pt",
                release=tmp_path / "release.pt", device="cpu", progress=False,
                log=lambda _: None)
    rel = torch.load(tmp_path / "release.pt", weights_only=True)
    assert set(rel) == {"format", "format_version", "config", "net_model", "meta"}
    ema = read_checkpoint(tmp_path / "r.pt", weights="ema").state_dict
    assert all(torch.equal(rel["net_model"][k], ema[k]) for k in ema)
    log = json.loads(res.log_json.read_text())
    assert log["step"] == 2 and res.loss_png.stat().st_size > 1000
    ck = read_checkpoint(tmp_path / "r.pt")
    assert ck.meta["dataset"] == "digits" and ck.meta["train_config"]["lr"] == 1e-3


def test_ema_update_matches_the_reference_formula():
    torch.manual_seed(0)
    a, b = SpikingUNet(TINY), SpikingUNet(TINY)
    for p in b.parameters():
        p.data.normal_()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    ema_update(a, b, 0.9)
    src = b.state_dict()
    for k, v in a.state_dict().items():
        want = before[k] * 0.9 + src[k] * (1 - 0.9) if v.is_floating_point() else src[k]
        torch.testing.assert_close(v, want, rtol=0, atol=1e-6)


def test_tsm_initialised_from_a_non_tsm_model_is_the_same_function():
    torch.manual_seed(0)
    plain = SpikingUNet(TINY).eval()
    tsm_cfg = TINY.replace(tsm=True)
    tsm = SpikingUNet(tsm_cfg).eval()
    tsm.load_state_dict(to_tsm_state_dict(plain.state_dict(), tsm_cfg))
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 500, 999])
    with torch.no_grad():
        torch.testing.assert_close(tsm(x, t), plain(x, t), rtol=0, atol=1e-5)


def test_cli_trains_tsm_from_a_non_tsm_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    base = save_checkpoint(tmp_path / "base.pt", TINY, SpikingUNet(TINY).state_dict())
    out = tmp_path / "tsm.pt"
    assert cli(["train", "--init", str(base), "--tsm", "--ch", "8", "--ch-mult", "1,2",
                "--snn-steps", "2", "--img-size", "8", "--steps", "2", "--batch", "4",
                "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    ck = read_checkpoint(out)
    assert ck.config.tsm and any(k.endswith(".tsmp") for k in ck.state_dict)


def test_init_takes_the_architecture_of_its_checkpoint(tmp_path, capsys):
    base = save_checkpoint(tmp_path / "base.pt", TINY, SpikingUNet(TINY).state_dict(),
                           meta={"dataset": "digits"})
    out = tmp_path / "next.pt"
    assert cli(["train", "--init", str(base), "--steps", "1", "--batch", "4", "--device", "cpu",
                "--out", str(out), "--quiet"]) == 0
    assert read_checkpoint(out).config == TINY
    # Flags that change the architecture cannot load those weights: say which and why.
    code = cli(["train", "--init", str(base), "--ch", "16", "--steps", "1", "--batch", "4",
                "--device", "cpu", "--out", str(tmp_path / "bad.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code and "ch 8 vs 16" in err and str(base) in err
    assert not (tmp_path / "bad.pt").exists()


def test_resume_refuses_a_changed_recipe(tmp_path, capsys):
    _run(tmp_path, "c.pt", 2)
    assert cli(["train", "--resume", str(tmp_path / "c.pt"), "--lr", "0.1", "--steps", "3",
                "--quiet"]) == UsageError.exit_code
    assert "--lr 0.1 differs" in capsys.readouterr().err
    assert cli(["train", "--resume", str(tmp_path / "c.pt"), "--steps", "2",
                "--quiet"]) == UsageError.exit_code
    assert "already at step 2" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "mnist"], "--data-dir"),
    (["--batch", "0"], "batch_size"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--lr", "-1"], "cuda" if not
     torch.cuda.is_available() else "lr"),
])
def test_bad_training_options(tmp_path, capsys, argv, message):
    code = cli(["train", *argv, "--steps", "1", "--out", str(tmp_path / "x.pt"), "--quiet"])
    assert code != 0 and message in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
